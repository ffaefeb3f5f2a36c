//! Feature selection by mutual information with the target, estimated on quantile bins (a
//! filter like scikit-learn's `SelectKBest(mutual_info_classif)`, but model-free and linear in
//! the rows). It sees non-linear and non-monotonic relations that a correlation filter misses,
//! and costs far less than fitting a model per feature.

use super::Matrix;
use crate::family::Problem;
use exeml_core::ProblemType;

/// Bins per feature (plus one for missing values) and for a regression target.
const BINS: usize = 16;
/// Rows the scores are estimated on (evenly spaced over the table).
const SAMPLE_ROWS: usize = 50_000;

/// Bin of each value: quantile bins over the non-missing values, the last bin for `NaN`.
fn bin_codes(values: &[f64]) -> (Vec<usize>, usize) {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    present.sort_by(f64::total_cmp);
    present.dedup();
    let edges: Vec<f64> = if present.len() <= BINS {
        present
    } else {
        (1..BINS)
            .map(|b| present[b * present.len() / BINS])
            .collect()
    };
    let codes = values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                BINS
            } else {
                edges.partition_point(|&e| e < v).min(BINS - 1)
            }
        })
        .collect();
    (codes, BINS + 1)
}

/// Mutual information (nats) between two binned variables, minus the Miller–Madow estimate of
/// its positive bias, so that a feature with many bins is not favoured by chance.
fn mutual_information(a: &[usize], n_a: usize, b: &[usize], n_b: usize) -> f64 {
    let n = a.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mut joint = vec![0.0; n_a * n_b];
    let (mut pa, mut pb) = (vec![0.0; n_a], vec![0.0; n_b]);
    for (&i, &j) in a.iter().zip(b) {
        joint[i * n_b + j] += 1.0;
        pa[i] += 1.0;
        pb[j] += 1.0;
    }
    let mut mi = 0.0;
    for i in 0..n_a {
        for j in 0..n_b {
            let c = joint[i * n_b + j];
            if c > 0.0 {
                mi += c / n * (c * n / (pa[i] * pb[j])).ln();
            }
        }
    }
    let used = |p: &[f64]| p.iter().filter(|&&c| c > 0.0).count() as f64;
    let bias = (used(&pa) - 1.0) * (used(&pb) - 1.0) / (2.0 * n);
    mi - bias
}

/// How informative each feature of `x` is about `y` (class index or value), higher is better.
pub fn scores(x: &Matrix, y: &[f64], problem: Problem) -> Vec<f64> {
    let step = x.rows.div_ceil(SAMPLE_ROWS).max(1);
    let rows: Vec<usize> = (0..x.rows)
        .step_by(step)
        .filter(|&r| !y[r].is_nan())
        .collect();
    let ys: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
    let (target, n_target) = match problem.kind {
        ProblemType::Regression => bin_codes(&ys),
        _ => (
            ys.iter().map(|&v| v as usize).collect(),
            problem.n_classes.max(1),
        ),
    };
    (0..x.cols)
        .map(|c| {
            let column = x.column(c);
            let values: Vec<f64> = rows.iter().map(|&r| column[r]).collect();
            let (codes, n_codes) = bin_codes(&values);
            mutual_information(&codes, n_codes, &target, n_target)
        })
        .collect()
}

/// Indices (increasing) of the best `percent` % of features by `scores`, at least one.
pub fn best_share(scores: &[f64], percent: u8) -> Vec<usize> {
    let keep = ((scores.len() * usize::from(percent)).div_ceil(100)).clamp(1, scores.len().max(1));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Best first; equal scores keep the column order, so the choice is deterministic.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = order.into_iter().take(keep).collect();
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(columns: &[Vec<f64>]) -> Matrix {
        Matrix {
            rows: columns[0].len(),
            cols: columns.len(),
            data: columns.concat(),
        }
    }

    #[test]
    fn informative_features_outrank_noise_even_when_not_monotonic() {
        let n = 2000;
        let noise: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1009) as f64).collect();
        let x: Vec<f64> = (0..n).map(|i| (i as f64 / n as f64) * 4.0 - 2.0).collect();
        // Class depends on |x|: a correlation filter would score it near zero.
        let y: Vec<f64> = x
            .iter()
            .map(|v| f64::from(u8::from(v.abs() > 1.0)))
            .collect();
        let with_missing: Vec<f64> = (0..n)
            .map(|i| if y[i] > 0.0 { f64::NAN } else { 1.0 })
            .collect();
        let problem = Problem {
            kind: ProblemType::Binary,
            n_classes: 2,
        };
        let s = scores(&matrix(&[noise, x, with_missing]), &y, problem);
        assert!(s[0].abs() < 0.01, "noise scores about zero: {s:?}");
        assert!(s[1] > 0.3 && s[2] > 0.3, "{s:?}");
        assert_eq!(best_share(&s, 60), vec![1, 2]);
        let top = best_share(&s, 1);
        assert!(top == vec![1] || top == vec![2], "{top:?}");
        assert_eq!(best_share(&s, 100), vec![0, 1, 2]);
    }

    #[test]
    fn regression_targets_are_binned() {
        let n = 1000;
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let flat = vec![3.0; n];
        let y: Vec<f64> = x.iter().map(|v| v.sin() * 0.01 + v).collect();
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let s = scores(&matrix(&[flat, x]), &y, problem);
        assert!(s[1] > 1.0 && s[0].abs() < 1e-9, "{s:?}");
    }
}
