//! Classification metrics on class indices (`0..k`), with scikit-learn's conventions.
//!
//! Counting metrics live here; those on predicted probabilities (ROC AUC, log loss) in
//! [`probability`], and the summary a model version stores in [`report`].

mod probability;
mod report;

pub use probability::{log_loss, roc_auc_binary, roc_auc_ovr};
pub use report::{ClassificationReport, ConfusionMatrix};

use serde::{Deserialize, Serialize};

use super::input;
use crate::Result;

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Share of the samples predicted as this class that belong to it (0 when none is predicted).
    pub precision: f64,
    /// Share of the samples of this class that are predicted as it (0 when the class is absent).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of samples whose true class is this one.
    pub support: usize,
}

/// Share of samples whose predicted class equals the true one.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    let n = input::same_len_nonempty(y_true.len(), y_pred.len(), "y_true", "y_pred")?;
    let correct = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(correct as f64 / n as f64)
}

/// The `k × k` confusion matrix: `m[t][p]` counts samples of true class `t` predicted as `p`
/// (rows are true classes, columns predictions, as in scikit-learn).
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], k: usize) -> Result<Vec<Vec<usize>>> {
    input::same_len_nonempty(y_true.len(), y_pred.len(), "y_true", "y_pred")?;
    input::classes(k)?;
    input::class_indices("y_true", y_true, k)?;
    input::class_indices("y_pred", y_pred, k)?;
    let mut m = vec![vec![0usize; k]; k];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[t][p] += 1;
    }
    Ok(m)
}

/// Per-class precision, recall and F1 for classes `0..k`, like scikit-learn's
/// `precision_recall_fscore_support(labels=range(k), zero_division=0)`.
///
/// A ratio whose denominator is zero is 0.0; F1 is computed as `2·tp / (2·tp + fp + fn)`,
/// scikit-learn's formula, so it is 0 whenever `tp` is 0.
pub fn precision_recall_f1(
    y_true: &[usize],
    y_pred: &[usize],
    k: usize,
) -> Result<Vec<ClassMetrics>> {
    let m = confusion_matrix(y_true, y_pred, k)?;
    Ok(per_class(&m))
}

/// Per-class metrics from a confusion matrix (rows true, columns predicted).
fn per_class(m: &[Vec<usize>]) -> Vec<ClassMetrics> {
    (0..m.len())
        .map(|c| {
            let tp = m[c][c];
            let support: usize = m[c].iter().sum();
            let predicted: usize = m.iter().map(|row| row[c]).sum();
            ClassMetrics {
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                f1: ratio(2 * tp, support + predicted),
                support,
            }
        })
        .collect()
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    // Inputs shared with the report tests; the expected values come from scikit-learn 1.9.1.
    pub(super) const BINARY_TRUE: [usize; 12] = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0];
    pub(super) const BINARY_SCORE: [f64; 12] = [
        0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9, 0.35, 0.7, 0.55, 0.1,
    ];
    /// `score >= 0.5`.
    pub(super) const BINARY_PRED: [usize; 12] = [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0];

    /// Four classes; class 3 is never predicted.
    pub(super) const MULTI_TRUE: [usize; 15] = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 2];
    pub(super) const MULTI_PRED: [usize; 15] = [0, 1, 1, 0, 0, 2, 2, 1, 0, 1, 2, 1, 1, 0, 2];

    /// Three classes, 16/3/1 samples; class 2 is never predicted.
    pub(super) const IMBAL_TRUE: [usize; 20] =
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
    pub(super) const IMBAL_PRED: [usize; 20] =
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0];

    /// Probabilities of [`MULTI_TRUE`] as counts out of 20 (row r = sample r).
    pub(super) const MULTI_COUNTS: [[u32; 4]; 15] = [
        [12, 3, 3, 2],
        [2, 9, 6, 3],
        [4, 5, 8, 3],
        [6, 4, 4, 6],
        [11, 2, 4, 3],
        [3, 6, 8, 3],
        [2, 3, 12, 3],
        [5, 8, 2, 5],
        [9, 4, 4, 3],
        [4, 10, 4, 2],
        [3, 3, 10, 4],
        [6, 9, 3, 2],
        [2, 11, 5, 2],
        [10, 3, 3, 4],
        [4, 4, 9, 3],
    ];

    /// Probabilities of [`IMBAL_TRUE`] as counts out of 20.
    pub(super) fn imbal_counts() -> Vec<[u32; 3]> {
        let mut rows = vec![[17, 2, 1]; 14];
        rows.extend([
            [8, 10, 2],
            [15, 3, 2],
            [6, 12, 2],
            [14, 4, 2],
            [11, 7, 2],
            [13, 3, 4],
        ]);
        rows
    }

    /// Flat row-major probabilities `count / 20`, computed as numpy does in the reference.
    pub(super) fn proba_from_counts<const K: usize>(rows: &[[u32; K]]) -> Vec<f64> {
        rows.iter()
            .flat_map(|row| row.iter().map(|&c| f64::from(c) / 20.0))
            .collect()
    }

    /// Flat `[1 - s, s]` rows of [`BINARY_SCORE`].
    pub(super) fn binary_proba() -> Vec<f64> {
        BINARY_SCORE.iter().flat_map(|&s| [1.0 - s, s]).collect()
    }

    pub(super) fn assert_close(found: f64, expected: f64) {
        assert!(
            (found - expected).abs() <= 1e-12,
            "found {found:?}, expected {expected:?}"
        );
    }

    /// Compares with sklearn's `precision_recall_fscore_support(y, p, labels=range(k),
    /// zero_division=0)` rows given as (precision, recall, f1, support).
    fn assert_per_class(found: &[ClassMetrics], expected: &[(f64, f64, f64, usize)]) {
        assert_eq!(found.len(), expected.len());
        for (f, &(p, r, f1, s)) in found.iter().zip(expected) {
            assert_close(f.precision, p);
            assert_close(f.recall, r);
            assert_close(f.f1, f1);
            assert_eq!(f.support, s);
        }
    }

    #[test]
    fn accuracy_matches_sklearn() -> Result<()> {
        // sklearn: accuracy_score(y_true, y_pred)
        assert_close(accuracy(&BINARY_TRUE, &BINARY_PRED)?, 0.6666666666666666);
        assert_close(accuracy(&MULTI_TRUE, &MULTI_PRED)?, 0.6666666666666666);
        assert_close(accuracy(&IMBAL_TRUE, &IMBAL_PRED)?, 0.8);
        Ok(())
    }

    #[test]
    fn confusion_matrix_has_true_rows_and_predicted_columns() -> Result<()> {
        // sklearn: confusion_matrix(y_true, y_pred, labels=range(k))
        assert_eq!(
            confusion_matrix(&BINARY_TRUE, &BINARY_PRED, 2)?,
            vec![vec![5, 1], vec![3, 3]]
        );
        assert_eq!(
            confusion_matrix(&MULTI_TRUE, &MULTI_PRED, 4)?,
            vec![
                vec![4, 1, 0, 0],
                vec![0, 3, 1, 0],
                vec![0, 1, 3, 0],
                vec![1, 1, 0, 0]
            ]
        );
        assert_eq!(
            confusion_matrix(&IMBAL_TRUE, &IMBAL_PRED, 3)?,
            vec![vec![15, 1, 0], vec![2, 1, 0], vec![1, 0, 0]]
        );
        Ok(())
    }

    #[test]
    fn precision_recall_f1_matches_sklearn_binary() -> Result<()> {
        let found = precision_recall_f1(&BINARY_TRUE, &BINARY_PRED, 2)?;
        assert_per_class(
            &found,
            &[
                (0.625, 0.8333333333333334, 0.7142857142857143, 6),
                (0.75, 0.5, 0.6, 6),
            ],
        );
        Ok(())
    }

    #[test]
    fn precision_recall_f1_is_zero_for_a_class_never_predicted() -> Result<()> {
        let found = precision_recall_f1(&MULTI_TRUE, &MULTI_PRED, 4)?;
        assert_per_class(
            &found,
            &[
                (0.8, 0.8, 0.8, 5),
                (0.5, 0.75, 0.6, 4),
                (0.75, 0.75, 0.75, 4),
                (0.0, 0.0, 0.0, 2),
            ],
        );
        let found = precision_recall_f1(&IMBAL_TRUE, &IMBAL_PRED, 3)?;
        assert_per_class(
            &found,
            &[
                (0.8333333333333334, 0.9375, 0.8823529411764706, 16),
                (0.5, 0.3333333333333333, 0.4, 3),
                (0.0, 0.0, 0.0, 1),
            ],
        );
        Ok(())
    }

    #[test]
    fn precision_recall_f1_is_zero_for_a_class_absent_from_both() -> Result<()> {
        let found = precision_recall_f1(&[0, 1, 1], &[0, 1, 0], 3)?;
        assert_eq!(
            found[2],
            ClassMetrics {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 0
            }
        );
        Ok(())
    }

    pub(super) fn is_invalid<T: std::fmt::Debug>(r: Result<T>, name: &str) -> bool {
        matches!(r, Err(Error::InvalidParameter { name: n, .. }) if n == name)
    }

    #[test]
    fn rejects_length_mismatch() {
        assert!(is_invalid(accuracy(&[0, 1], &[0]), "y_pred"));
        assert!(is_invalid(confusion_matrix(&[0, 1], &[0], 2), "y_pred"));
        assert!(is_invalid(precision_recall_f1(&[0], &[0, 1], 2), "y_pred"));
    }

    #[test]
    fn rejects_empty_input() {
        assert!(is_invalid(accuracy(&[], &[]), "y_true"));
        assert!(is_invalid(confusion_matrix(&[], &[], 2), "y_true"));
        assert!(is_invalid(precision_recall_f1(&[], &[], 2), "y_true"));
    }

    #[test]
    fn rejects_class_index_out_of_range() {
        assert!(is_invalid(confusion_matrix(&[0, 2], &[0, 1], 2), "y_true"));
        assert!(is_invalid(
            precision_recall_f1(&[0, 1], &[0, 5], 2),
            "y_pred"
        ));
    }

    #[test]
    fn rejects_zero_classes() {
        assert!(is_invalid(confusion_matrix(&[0], &[0], 0), "k"));
    }
}
