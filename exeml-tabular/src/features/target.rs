//! Target encoding of categories: each level becomes the smoothed mean of the target over the
//! training rows that have it (the class frequencies for classification), as scikit-learn's
//! `TargetEncoder` and AutoGluon's and H2O's target encoders do.
//!
//! The training rows are encoded out of fold: a row's value comes from the statistics of the
//! other folds only, so a model cannot learn the row's own label through its category (the
//! leak that makes naive target encoding overfit rare levels). New rows use the statistics of
//! all training rows.

use crate::family::Problem;
use exeml_core::ProblemType;
use serde::{Deserialize, Serialize};

/// Pseudo-rows of the prior mixed into every level's statistics (m-estimate smoothing): a level
/// seen a few times stays close to the overall mean.
const SMOOTHING: f64 = 10.0;
/// Folds of the out-of-fold encoding of the training rows.
const FOLDS: u64 = 5;

/// The fitted statistics of one categorical column.
///
/// Level codes are `0..levels` for the kept levels, `levels` for any other level and
/// `levels + 1` for a missing value; each has its own statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStats {
    /// Values per level: 1 (regression mean, binary positive rate) or the number of classes.
    pub width: usize,
    /// The training mean (class frequencies): the value of a level with no rows.
    pub prior: Vec<f64>,
    /// `values[code * width + j]`: the smoothed statistic `j` of level `code`.
    pub values: Vec<f64>,
}

/// Values per level for `problem`.
pub fn width(problem: Problem) -> usize {
    match problem.kind {
        ProblemType::Regression | ProblemType::Binary => 1,
        // Tables are binary, multiclass or regression; other kinds count as multiclass.
        _ => problem.n_classes,
    }
}

/// What one row adds to its level's sums (`None` for a missing target).
fn contribution(problem: Problem, y: f64, out: &mut [f64]) -> bool {
    if y.is_nan() {
        return false;
    }
    match problem.kind {
        ProblemType::Regression => out[0] = y,
        ProblemType::Binary => out[0] = if y >= 0.5 { 1.0 } else { 0.0 },
        _ => {
            out.fill(0.0);
            if let Some(slot) = out.get_mut(y as usize) {
                *slot = 1.0;
            }
        }
    }
    true
}

/// Per-level sums and counts of `rows` (all rows when `fold` is `None`).
struct Sums {
    sums: Vec<f64>,
    counts: Vec<f64>,
}

impl Sums {
    fn new(n_codes: usize, width: usize) -> Self {
        Sums {
            sums: vec![0.0; n_codes * width],
            counts: vec![0.0; n_codes],
        }
    }

    fn add(&mut self, code: usize, row: &[f64]) {
        let w = row.len();
        for (s, v) in self.sums[code * w..(code + 1) * w].iter_mut().zip(row) {
            *s += v;
        }
        self.counts[code] += 1.0;
    }
}

fn smoothed(sum: f64, count: f64, prior: f64) -> f64 {
    (sum + SMOOTHING * prior) / (count + SMOOTHING)
}

/// The fold of training row `row`: a fixed hash of the row and the seed, so the folds are the
/// same on every run and do not follow the table's order.
fn fold_of(row: usize, seed: u64) -> usize {
    let mut z = (row as u64)
        .wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % FOLDS) as usize
}

impl TargetStats {
    /// Fit on the level codes of the training rows (`n_codes` = kept levels + 2) and their
    /// targets (class index, or the value for regression; `NaN` rows are ignored).
    pub fn fit(codes: &[usize], n_codes: usize, y: &[f64], problem: Problem) -> Self {
        let width = width(problem);
        let mut all = Sums::new(n_codes, width);
        let mut row = vec![0.0; width];
        let mut prior = vec![0.0; width];
        let mut n = 0.0;
        for (&code, &target) in codes.iter().zip(y) {
            if contribution(problem, target, &mut row) {
                all.add(code, &row);
                for (p, v) in prior.iter_mut().zip(&row) {
                    *p += v;
                }
                n += 1.0;
            }
        }
        for p in &mut prior {
            *p /= f64::max(n, 1.0);
        }
        let values = (0..n_codes * width)
            .map(|i| smoothed(all.sums[i], all.counts[i / width], prior[i % width]))
            .collect();
        TargetStats {
            width,
            prior,
            values,
        }
    }

    /// Encode new rows: `width` columns of `codes.len()` values each (column-major).
    pub fn apply(&self, codes: &[usize]) -> Vec<f64> {
        let n_codes = self.values.len() / self.width.max(1);
        let mut out = Vec::with_capacity(codes.len() * self.width);
        for j in 0..self.width {
            out.extend(codes.iter().map(|&code| {
                if code < n_codes {
                    self.values[code * self.width + j]
                } else {
                    self.prior[j]
                }
            }));
        }
        out
    }

    /// Encode the training rows this was fitted on, each from the other folds' statistics
    /// (column-major, like [`TargetStats::apply`]).
    pub fn out_of_fold(&self, codes: &[usize], y: &[f64], problem: Problem, seed: u64) -> Vec<f64> {
        let width = self.width;
        let n_codes = self.values.len() / width.max(1);
        let folds: Vec<usize> = (0..codes.len()).map(|r| fold_of(r, seed)).collect();
        let mut all = Sums::new(n_codes, width);
        let mut per_fold: Vec<Sums> = (0..FOLDS).map(|_| Sums::new(n_codes, width)).collect();
        let mut row = vec![0.0; width];
        for ((&code, &target), &fold) in codes.iter().zip(y).zip(&folds) {
            if code < n_codes && contribution(problem, target, &mut row) {
                all.add(code, &row);
                per_fold[fold].add(code, &row);
            }
        }
        let mut out = Vec::with_capacity(codes.len() * width);
        for j in 0..width {
            out.extend(codes.iter().zip(&folds).map(|(&code, &fold)| {
                if code >= n_codes {
                    return self.prior[j];
                }
                let own = &per_fold[fold];
                let sum = all.sums[code * width + j] - own.sums[code * width + j];
                let count = all.counts[code] - own.counts[code];
                smoothed(sum, count, self.prior[j])
            }));
        }
        out
    }

    /// Whether the stored shapes agree (checked when a saved pipeline is loaded).
    pub fn is_consistent(&self, n_codes: usize) -> bool {
        self.width >= 1
            && self.prior.len() == self.width
            && self.values.len() == n_codes * self.width
            && self.values.iter().chain(&self.prior).all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINARY: Problem = Problem {
        kind: ProblemType::Binary,
        n_classes: 2,
    };

    #[test]
    fn levels_get_smoothed_positive_rates_and_unseen_get_the_prior() {
        // Level 0: 20 rows all positive; level 1: 20 rows all negative; codes 2, 3 unused.
        let codes: Vec<usize> = (0..40).map(|i| usize::from(i >= 20)).collect();
        let y: Vec<f64> = (0..40).map(|i| if i < 20 { 1.0 } else { 0.0 }).collect();
        let stats = TargetStats::fit(&codes, 4, &y, BINARY);
        assert_eq!(stats.prior, vec![0.5]);
        let encoded = stats.apply(&[0, 1, 2, 9]);
        assert!((encoded[0] - (20.0 + 5.0) / 30.0).abs() < 1e-12);
        assert!((encoded[1] - 5.0 / 30.0).abs() < 1e-12);
        assert_eq!(encoded[2], 0.5, "a level with no rows is the prior");
        assert_eq!(encoded[3], 0.5, "an out-of-range code is the prior");
        assert!(stats.is_consistent(4));
    }

    #[test]
    fn out_of_fold_values_do_not_see_the_rows_own_label() {
        // Every row its own level: in-fold statistics would reproduce each label exactly, out
        // of fold every row only sees the prior.
        let n = 50;
        let codes: Vec<usize> = (0..n).collect();
        let y: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let stats = TargetStats::fit(&codes, n + 2, &y, BINARY);
        let oof = stats.out_of_fold(&codes, &y, BINARY, 7);
        assert!(oof.iter().all(|v| (v - stats.prior[0]).abs() < 1e-12));
        let in_fold = stats.apply(&codes);
        assert!(in_fold[1] > in_fold[0], "full statistics do use the label");
    }

    #[test]
    fn multiclass_gives_one_column_per_class_and_regression_the_mean() {
        let problem = Problem {
            kind: ProblemType::Multiclass,
            n_classes: 3,
        };
        let stats = TargetStats::fit(&[0, 0, 1], 4, &[2.0, 2.0, 0.0], problem);
        assert_eq!(stats.width, 3);
        let encoded = stats.apply(&[0]);
        assert!(encoded[2] > encoded[0] && encoded[2] > encoded[1]);
        assert!((encoded.iter().sum::<f64>() - 1.0).abs() < 1e-12);

        let regression = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let stats = TargetStats::fit(&[0, 1], 4, &[10.0, f64::NAN], regression);
        assert_eq!(stats.prior, vec![10.0], "a missing target is ignored");
    }

    #[test]
    fn folds_are_balanced_and_seeded() {
        let mut counts = [0usize; FOLDS as usize];
        for r in 0..10_000 {
            counts[fold_of(r, 3)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (1_800..2_200).contains(&c)),
            "{counts:?}"
        );
        let a: Vec<usize> = (0..20).map(|r| fold_of(r, 1)).collect();
        let b: Vec<usize> = (0..20).map(|r| fold_of(r, 2)).collect();
        assert_ne!(a, b);
    }
}
