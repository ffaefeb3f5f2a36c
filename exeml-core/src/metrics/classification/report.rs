//! The classification report a model version stores: every metric at once, keyed by label.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{confusion_matrix, log_loss, per_class, roc_auc_ovr, ClassMetrics};
use crate::{Error, Result};

/// A confusion matrix with the label of each row and column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Class labels; index `i` names row `i` and column `i`.
    pub labels: Vec<String>,
    /// `matrix[t][p]`: samples of true class `t` predicted as class `p`.
    pub matrix: Vec<Vec<usize>>,
}

/// Every classification metric of one evaluation, as written to a model's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Number of samples evaluated.
    pub n: usize,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean of the per-class precisions, over all classes.
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recalls, over all classes.
    pub macro_recall: f64,
    /// Unweighted mean of the per-class F1 scores, over all classes.
    pub macro_f1: f64,
    /// Per-class precisions weighted by support.
    pub weighted_precision: f64,
    /// Per-class recalls weighted by support.
    pub weighted_recall: f64,
    /// Per-class F1 scores weighted by support.
    pub weighted_f1: f64,
    /// Precision, recall, F1 and support of each class, by label.
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// The labelled confusion matrix.
    pub confusion_matrix: ConfusionMatrix,
    /// ROC AUC (binary: of `labels[1]`; more classes: one-vs-rest macro), when probabilities
    /// were given and every class occurs in `y_true`.
    pub roc_auc: Option<f64>,
    /// Log loss, when probabilities were given.
    pub log_loss: Option<f64>,
}

impl ClassificationReport {
    /// Computes the report for class indices into `labels` and, optionally, the row-major
    /// `n × k` predicted probabilities.
    ///
    /// Averages run over all `k` classes, like scikit-learn with `labels=range(k)`, so a
    /// class absent from the data counts as 0 in the macro averages. An undefined ROC AUC (a
    /// class that never occurs in `y_true`) is `None`, not an error.
    ///
    /// ```
    /// use exeml_core::metrics::ClassificationReport;
    /// let labels = ["no".to_string(), "yes".to_string()];
    /// let proba = [0.8, 0.2, 0.3, 0.7, 0.6, 0.4];
    /// let report = ClassificationReport::compute(&labels, &[0, 1, 1], &[0, 1, 0], Some(&proba))?;
    /// assert_eq!(report.roc_auc, Some(1.0));
    /// assert_eq!(report.per_class["yes"].recall, 0.5);
    /// # Ok::<(), exeml_core::Error>(())
    /// ```
    pub fn compute(
        labels: &[String],
        y_true: &[usize],
        y_pred: &[usize],
        proba: Option<&[f64]>,
    ) -> Result<ClassificationReport> {
        let k = labels.len();
        if k < 2 {
            return Err(Error::invalid(
                "labels",
                format!("found {k} classes, a classification report needs at least 2"),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(Error::invalid(
                "labels",
                format!("label {dup:?} appears more than once"),
            ));
        }
        let matrix = confusion_matrix(y_true, y_pred, k)?;
        let n = y_true.len();
        let classes = per_class(&matrix);
        let correct: usize = (0..k).map(|c| matrix[c][c]).sum();

        let macro_of = |f: fn(&ClassMetrics) -> f64| classes.iter().map(f).sum::<f64>() / k as f64;
        // The supports sum to n > 0, so the weighted mean is always defined.
        let weighted_of = |f: fn(&ClassMetrics) -> f64| {
            classes.iter().map(|m| f(m) * m.support as f64).sum::<f64>() / n as f64
        };

        let (roc_auc, log_loss) = match proba {
            None => (None, None),
            Some(p) => {
                let loss = log_loss(y_true, p, k)?;
                let auc = if classes.iter().any(|m| m.support == 0) {
                    None
                } else {
                    Some(roc_auc_ovr(y_true, p, k)?)
                };
                (auc, Some(loss))
            }
        };

        Ok(ClassificationReport {
            n,
            accuracy: correct as f64 / n as f64,
            macro_precision: macro_of(|m| m.precision),
            macro_recall: macro_of(|m| m.recall),
            macro_f1: macro_of(|m| m.f1),
            weighted_precision: weighted_of(|m| m.precision),
            weighted_recall: weighted_of(|m| m.recall),
            weighted_f1: weighted_of(|m| m.f1),
            per_class: labels
                .iter()
                .cloned()
                .zip(classes.iter().cloned())
                .collect(),
            confusion_matrix: ConfusionMatrix {
                labels: labels.to_vec(),
                matrix,
            },
            roc_auc,
            log_loss,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// sklearn's `precision_recall_fscore_support(..., labels=range(k), average=...,
    /// zero_division=0)` for "macro" and "weighted": (precision, recall, f1) each.
    fn assert_averages(r: &ClassificationReport, macro_: [f64; 3], weighted: [f64; 3]) {
        assert_close(r.macro_precision, macro_[0]);
        assert_close(r.macro_recall, macro_[1]);
        assert_close(r.macro_f1, macro_[2]);
        assert_close(r.weighted_precision, weighted[0]);
        assert_close(r.weighted_recall, weighted[1]);
        assert_close(r.weighted_f1, weighted[2]);
    }

    #[test]
    fn binary_report_matches_sklearn() -> Result<()> {
        let proba = binary_proba();
        let names = labels(&["neg", "pos"]);
        let r = ClassificationReport::compute(&names, &BINARY_TRUE, &BINARY_PRED, Some(&proba))?;
        assert_eq!(r.n, 12);
        assert_close(r.accuracy, 0.6666666666666666);
        assert_averages(
            &r,
            [0.6875, 0.6666666666666667, 0.6571428571428571],
            [0.6875, 0.6666666666666666, 0.6571428571428571],
        );
        assert_close(r.per_class["pos"].f1, 0.6);
        assert_eq!(r.per_class["neg"].support, 6);
        assert_eq!(r.confusion_matrix.matrix, vec![vec![5, 1], vec![3, 3]]);
        assert_eq!(r.confusion_matrix.labels, names);
        // sklearn: roc_auc_score(y, proba[:, 1]) and log_loss(y, proba, labels=[0, 1])
        assert_close(r.roc_auc.unwrap_or(f64::NAN), 0.75);
        assert_close(r.log_loss.unwrap_or(f64::NAN), 0.5501470569239122);
        Ok(())
    }

    #[test]
    fn multiclass_report_counts_a_never_predicted_class_in_the_averages() -> Result<()> {
        let proba = proba_from_counts(&MULTI_COUNTS);
        let names = labels(&["a", "b", "c", "d"]);
        let r = ClassificationReport::compute(&names, &MULTI_TRUE, &MULTI_PRED, Some(&proba))?;
        assert_close(r.accuracy, 0.6666666666666666);
        assert_averages(
            &r,
            [0.5125, 0.575, 0.5375],
            [0.6, 0.6666666666666666, 0.6266666666666667],
        );
        assert_eq!(r.per_class["d"].precision, 0.0);
        assert_close(r.roc_auc.unwrap_or(f64::NAN), 0.9804545454545455);
        assert_close(r.log_loss.unwrap_or(f64::NAN), 0.8404528923565484);
        Ok(())
    }

    #[test]
    fn imbalanced_report_matches_sklearn() -> Result<()> {
        let proba = proba_from_counts(&imbal_counts());
        let names = labels(&["common", "rare", "very rare"]);
        let r = ClassificationReport::compute(&names, &IMBAL_TRUE, &IMBAL_PRED, Some(&proba))?;
        assert_close(r.accuracy, 0.8);
        assert_averages(
            &r,
            [0.4444444444444445, 0.4236111111111111, 0.42745098039215684],
            [0.7416666666666667, 0.8, 0.7658823529411765],
        );
        assert_close(r.roc_auc.unwrap_or(f64::NAN), 0.9713031045751634);
        assert_close(r.log_loss.unwrap_or(f64::NAN), 0.41293806952138273);
        Ok(())
    }

    #[test]
    fn roc_auc_is_none_when_a_class_is_missing_from_y_true() -> Result<()> {
        let proba = [0.5, 0.3, 0.2, 0.2, 0.6, 0.2, 0.1, 0.1, 0.8, 0.6, 0.2, 0.2];
        let names = labels(&["a", "b", "c"]);
        let r = ClassificationReport::compute(&names, &[0, 1, 1, 0], &[0, 1, 2, 0], Some(&proba))?;
        assert_eq!(r.roc_auc, None);
        assert!(r.log_loss.is_some());
        Ok(())
    }

    #[test]
    fn probability_metrics_are_none_without_probabilities() -> Result<()> {
        let r = ClassificationReport::compute(&labels(&["x", "y"]), &[0, 1], &[1, 1], None)?;
        assert_eq!((r.roc_auc, r.log_loss), (None, None));
        assert_eq!(r.accuracy, 0.5);
        Ok(())
    }

    #[test]
    fn report_round_trips_through_json() -> Result<()> {
        let proba = binary_proba();
        let names = labels(&["neg", "pos"]);
        let r = ClassificationReport::compute(&names, &BINARY_TRUE, &BINARY_PRED, Some(&proba))?;
        let json = serde_json::to_string(&r).map_err(|e| Error::invalid("json", e.to_string()))?;
        let back: ClassificationReport =
            serde_json::from_str(&json).map_err(|e| Error::invalid("json", e.to_string()))?;
        assert_eq!(back, r);
        Ok(())
    }

    #[test]
    fn rejects_duplicate_and_too_few_labels() {
        let r = ClassificationReport::compute(&labels(&["a", "a"]), &[0], &[0], None);
        assert!(is_invalid(r, "labels"));
        let r = ClassificationReport::compute(&labels(&["a"]), &[0], &[0], None);
        assert!(is_invalid(r, "labels"));
    }

    #[test]
    fn rejects_bad_inputs() {
        let names = labels(&["a", "b"]);
        let r = ClassificationReport::compute(&names, &[0, 1], &[0], None);
        assert!(is_invalid(r, "y_pred"));
        let r = ClassificationReport::compute(&names, &[], &[], None);
        assert!(is_invalid(r, "y_true"));
        let r = ClassificationReport::compute(&names, &[0, 2], &[0, 1], None);
        assert!(is_invalid(r, "y_true"));
        let r = ClassificationReport::compute(&names, &[0, 1], &[0, 1], Some(&[0.5, 0.5]));
        assert!(is_invalid(r, "proba"));
    }
}
