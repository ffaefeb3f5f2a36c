//! Temperature scaling (Guo et al., 2017, "On calibration of modern neural networks"): one
//! number, fitted on validation rows, that sharpens or softens a single-label classifier's
//! probabilities so that their log loss is lowest. Label smoothing and mixup leave fine-tuned
//! networks under-confident (and long training over-confident); the order of the classes in
//! every row, and so accuracy, is unchanged.
//!
//! It works on probabilities: a row `p` becomes `p^(1/T)`, renormalised. For one softmax model
//! that is exactly `softmax(z / T)` of its logits `z`; for an ensemble's averaged probabilities
//! it is the same one-parameter family applied to their logarithms. Multi-label models, whose
//! labels are independent sigmoids, get the binary counterpart: each probability `p` becomes
//! `sigmoid(logit(p) / T)`, one temperature for all labels, fitted on the mean binary log loss
//! ([`fit_label_temperature`], [`apply_label_temperature`]); being increasing, it changes no
//! decision when each label's threshold is rescaled with it. Written here because it is a dozen lines over the
//! log-likelihood: no calibration crate covers it without pulling in a whole ML framework.

/// The range searched for the inverse temperature `1/T`: from much softer (T = 5) to much
/// sharper (T = 0.2) than the model. Beyond it the model is badly broken, not mis-calibrated.
const INVERSE_TEMPERATURE_RANGE: (f64, f64) = (0.2, 5.0);

/// Golden-section steps: the bracket shrinks to 0.618^60 of its width, far below what the log
/// loss can tell apart.
const SEARCH_STEPS: usize = 60;

/// Probabilities are floored here before taking logarithms, as scikit-learn's `log_loss` clips.
const FLOOR: f64 = f64::EPSILON;

/// The temperature that minimises the mean log loss of `proba` (rows of class probabilities)
/// against the true classes `truth`; 1 when there are no rows. Rows whose class is out of range
/// are left out.
pub fn fit_temperature(proba: &[Vec<f32>], truth: &[usize]) -> f64 {
    let rows: Vec<(Vec<f64>, usize)> = proba
        .iter()
        .zip(truth)
        .filter(|(p, c)| **c < p.len())
        .map(|(p, &c)| {
            let logs = p.iter().map(|&q| f64::from(q).max(FLOOR).ln()).collect();
            (logs, c)
        })
        .collect();
    if rows.is_empty() {
        return 1.0;
    }
    // The log loss is convex in the inverse temperature (a log-sum-exp of linear functions of
    // it, less a linear term), so a golden-section search finds its minimum.
    best_temperature(|beta: f64| -> f64 {
        rows.iter()
            .map(|(logs, c)| log_sum_exp(logs.iter().map(|l| beta * l)) - beta * logs[*c])
            .sum::<f64>()
            / rows.len() as f64
    })
}

/// The temperature that minimises the mean binary log loss of independent label probabilities
/// `proba` (one row per example, one column per label) against each row's set of true labels
/// `truth`; 1 when there are no rows. Labels out of a row's range are ignored.
pub fn fit_label_temperature(proba: &[Vec<f32>], truth: &[Vec<usize>]) -> f64 {
    // Each (row, label) pair as its logit `z` and `s = +1` for a true label, `-1` otherwise:
    // its log loss at inverse temperature `beta` is `ln(1 + exp(-s·beta·z))`.
    let pairs: Vec<(f64, f64)> = proba
        .iter()
        .zip(truth)
        .flat_map(|(p, labels)| {
            p.iter().enumerate().map(move |(j, &q)| {
                let sign = if labels.contains(&j) { 1.0 } else { -1.0 };
                (logit(q), sign)
            })
        })
        .collect();
    if pairs.is_empty() {
        return 1.0;
    }
    // Convex in `beta` (softplus of a linear function of it): golden-section search again.
    best_temperature(|beta: f64| -> f64 {
        pairs
            .iter()
            .map(|&(z, sign)| softplus(-sign * beta * z))
            .sum::<f64>()
            / pairs.len() as f64
    })
}

/// The temperature `1/beta` whose `beta`, within [`INVERSE_TEMPERATURE_RANGE`], minimises the
/// convex `loss`, found by golden-section search; 1 unless that beats `beta = 1` on `loss`.
fn best_temperature(loss: impl Fn(f64) -> f64) -> f64 {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = INVERSE_TEMPERATURE_RANGE;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (loss(a), loss(b));
    for _ in 0..SEARCH_STEPS {
        if fa <= fb {
            hi = b;
            (b, fb) = (a, fa);
            a = hi - ratio * (hi - lo);
            fa = loss(a);
        } else {
            lo = a;
            (a, fa) = (b, fb);
            b = lo + ratio * (hi - lo);
            fb = loss(b);
        }
    }
    let beta = (lo + hi) / 2.0;
    // Never worse on the rows it was fitted on than leaving the model as it is.
    if loss(beta) < loss(1.0) {
        1.0 / beta
    } else {
        1.0
    }
}

/// Rescale one row of class probabilities at `temperature` (see the module docs), in place.
/// A temperature of 1 (or one that is not a positive number) leaves the row as it is.
pub fn apply_temperature(row: &mut [f32], temperature: f64) {
    if !(temperature.is_finite() && temperature > 0.0) || temperature == 1.0 {
        return;
    }
    let beta = 1.0 / temperature;
    let logs: Vec<f64> = row
        .iter()
        .map(|&q| beta * f64::from(q).max(FLOOR).ln())
        .collect();
    let total = log_sum_exp(logs.iter().copied());
    for (q, l) in row.iter_mut().zip(logs) {
        *q = (l - total).exp() as f32;
    }
}

/// Rescale one row of independent label probabilities at `temperature` (see the module docs),
/// in place: each `p` becomes `sigmoid(logit(p) / T)`. A temperature of 1 (or one that is not a
/// positive number) leaves the row as it is.
pub fn apply_label_temperature(row: &mut [f32], temperature: f64) {
    if !(temperature.is_finite() && temperature > 0.0) || temperature == 1.0 {
        return;
    }
    for q in row.iter_mut() {
        *q = sigmoid(logit(*q) / temperature) as f32;
    }
}

/// `ln(p / (1 - p))`, with `p` kept [`FLOOR`] away from 0 and 1.
fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(FLOOR, 1.0 - FLOOR);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `ln(1 + exp(x))`, without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `ln Σ exp(x)`, without overflow.
fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(z: &[f64]) -> Vec<f32> {
        let total: f64 = z.iter().map(|v| v.exp()).sum();
        z.iter().map(|v| (v.exp() / total) as f32).collect()
    }

    #[test]
    fn on_a_softmax_it_is_softmax_of_the_logits_over_the_temperature() {
        let z = [2.0, 0.5, -1.0];
        let mut row = softmax(&z);
        apply_temperature(&mut row, 2.0);
        let expected = softmax(&[1.0, 0.25, -0.5]);
        for (got, want) in row.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-6, "{row:?} against {expected:?}");
        }
        // 1, zero, negative and non-finite temperatures leave the row alone.
        for t in [1.0, 0.0, -2.0, f64::NAN] {
            let mut same = softmax(&z);
            apply_temperature(&mut same, t);
            assert_eq!(same, softmax(&z));
        }
    }

    #[test]
    fn it_recovers_the_temperature_that_made_an_over_confident_model() {
        // Rows drawn from softmax(z) (class 0 with probability p0), reported at twice the
        // confidence: softmax(2z). The fitted temperature undoes it.
        let z = [1.0, 0.0, -0.5];
        let honest = softmax(&z);
        let sharp = softmax(&z.map(|v| 2.0 * v));
        // 1,000 rows whose classes follow `honest` exactly (to a row).
        let mut truth = Vec::new();
        for (c, p) in honest.iter().enumerate() {
            truth.extend(std::iter::repeat_n(
                c,
                (f64::from(*p) * 1000.0).round() as usize,
            ));
        }
        let proba = vec![sharp.clone(); truth.len()];
        let t = fit_temperature(&proba, &truth);
        assert!((t - 2.0).abs() < 0.01, "fitted {t}");
        // The class order, and so accuracy, does not change.
        let mut row = sharp.clone();
        apply_temperature(&mut row, t);
        let argmax = |r: &[f32]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b]));
        assert_eq!(argmax(&row), argmax(&sharp));
    }

    #[test]
    fn under_confidence_is_sharpened_and_no_rows_leave_the_model_alone() {
        // Always right, at 60 %: the sharpest temperature searched does best.
        let proba = vec![vec![0.6f32, 0.4]; 50];
        let truth = vec![0; 50];
        let t = fit_temperature(&proba, &truth);
        assert!((t - 0.2).abs() < 1e-3, "fitted {t}");
        assert_eq!(fit_temperature(&[], &[]), 1.0);
        // A class out of range is left out (here: every row, so nothing is fitted).
        assert_eq!(fit_temperature(&[vec![0.5, 0.5]], &[7]), 1.0);
    }

    #[test]
    fn label_temperature_recovers_an_over_confident_sigmoid_and_keeps_the_order() {
        // Label 0 true in 80 % of rows and label 1 in 30 %, reported at twice the confidence
        // (logits doubled); each label's rate is matched to a row.
        let sharpen = |p: f64| 1.0 / (1.0 + (-2.0 * (p / (1.0 - p)).ln()).exp());
        let reported = vec![sharpen(0.8) as f32, sharpen(0.3) as f32];
        let truth: Vec<Vec<usize>> = (0..100)
            .map(|i| {
                let mut labels = Vec::new();
                if i < 80 {
                    labels.push(0);
                }
                if i >= 70 {
                    labels.push(1);
                }
                labels
            })
            .collect();
        let proba = vec![reported.clone(); truth.len()];
        let t = fit_label_temperature(&proba, &truth);
        assert!((t - 2.0).abs() < 0.01, "fitted {t}");
        let mut row = reported.clone();
        apply_label_temperature(&mut row, t);
        assert!(
            (row[0] - 0.8).abs() < 1e-3 && (row[1] - 0.3).abs() < 1e-3,
            "{row:?}"
        );
        // Increasing in each probability: a threshold's decisions carry over.
        let (mut low, mut high) = ([0.2f32, 0.41], [0.21f32, 0.9]);
        apply_label_temperature(&mut low, t);
        apply_label_temperature(&mut high, t);
        assert!(low[0] < high[0] && low[1] < high[1], "{low:?} {high:?}");
        // 1, zero, negative and non-finite temperatures leave the row alone; no rows, T = 1.
        for t in [1.0, 0.0, -2.0, f64::NAN] {
            let mut same = reported.clone();
            apply_label_temperature(&mut same, t);
            assert_eq!(same, reported);
        }
        assert_eq!(fit_label_temperature(&[], &[]), 1.0);
    }

    #[test]
    fn label_temperature_sharpens_an_under_confident_sigmoid_and_survives_certainty() {
        // Always right at 0.6 / 0.4: the sharpest temperature searched does best. Rows at exactly
        // 0 and 1 are clamped, not turned into infinities.
        let proba = vec![vec![0.6f32, 0.4]; 50];
        let truth = vec![vec![0]; 50];
        let t = fit_label_temperature(&proba, &truth);
        assert!((t - 0.2).abs() < 1e-3, "fitted {t}");
        let mut certain = [0.0f32, 1.0];
        apply_label_temperature(&mut certain, 0.5);
        assert!(certain.iter().all(|q| q.is_finite()), "{certain:?}");
        assert!(certain[0] < 1e-6 && certain[1] > 1.0 - 1e-6, "{certain:?}");
    }

    #[test]
    fn a_calibrated_model_keeps_a_temperature_near_one() {
        // Classes drawn at exactly the rates the model states.
        let proba = vec![vec![0.7f32, 0.2, 0.1]; 100];
        let truth: Vec<usize> = (0..100)
            .map(|i| match i {
                i if i < 70 => 0,
                i if i < 90 => 1,
                _ => 2,
            })
            .collect();
        let t = fit_temperature(&proba, &truth);
        assert!((t - 1.0).abs() < 0.01, "fitted {t}");
    }
}
