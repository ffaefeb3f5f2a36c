//! Metrics on predicted scores and probabilities: ROC AUC and log loss.

use crate::metrics::input;
use crate::{Error, Result};

/// Area under the ROC curve of a binary problem, like scikit-learn's `roc_auc_score`.
///
/// Tied scores count as half a correct ordering (the trapezoid rule, equal to the
/// Mann-Whitney U statistic with average ranks). Errors when only one class is present,
/// where the area is undefined (scikit-learn returns NaN with a warning).
pub fn roc_auc_binary(y_true_is_positive: &[bool], score: &[f64]) -> Result<f64> {
    input::same_len_nonempty(y_true_is_positive.len(), score.len(), "y_true", "score")?;
    input::finite("score", score)?;
    let positives = y_true_is_positive.iter().filter(|&&p| p).count();
    let negatives = y_true_is_positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::invalid(
            "y_true",
            "only one class is present: ROC AUC is not defined in that case",
        ));
    }
    let auc = auc_from_counts(y_true_is_positive, score, positives, negatives);
    Ok(auc)
}

/// ROC AUC of two classes present in `is_positive`; scores are finite.
fn auc_from_counts(is_positive: &[bool], score: &[f64], positives: usize, negatives: usize) -> f64 {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_unstable_by(|&a, &b| score[b].total_cmp(&score[a]));
    // Walk thresholds from the highest score down; each group of tied scores is one ROC point.
    // Twice the area is accumulated in integers, so the only rounding is the final division.
    let (mut tp, mut fp) = (0u128, 0u128);
    let mut twice_area = 0u128;
    let mut i = 0;
    while i < order.len() {
        let (tp_before, fp_before) = (tp, fp);
        let threshold = score[order[i]];
        while i < order.len() && score[order[i]] == threshold {
            if is_positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        twice_area += (fp - fp_before) * (tp + tp_before);
    }
    twice_area as f64 / (2.0 * positives as f64 * negatives as f64)
}

/// Macro-averaged one-vs-rest ROC AUC of `k` classes, like scikit-learn's
/// `roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=range(k))`.
///
/// `proba` is row-major `n × k`. With `k == 2` it is the binary AUC of column 1, as
/// scikit-learn does for binary targets. With `k > 2` every row must sum to 1 (within
/// numpy's `allclose` tolerance) and every class must occur in `y_true`: otherwise its AUC
/// is undefined and this errors (scikit-learn returns NaN with a warning).
pub fn roc_auc_ovr(y_true: &[usize], proba: &[f64], k: usize) -> Result<f64> {
    let n = check_probabilistic(y_true, proba, k)?;
    if k == 2 {
        let positive: Vec<bool> = y_true.iter().map(|&c| c == 1).collect();
        let score: Vec<f64> = proba.chunks_exact(2).map(|row| row[1]).collect();
        return roc_auc_binary(&positive, &score);
    }
    if let Some(r) = proba
        .chunks_exact(k)
        .position(|row| !sums_to_one(row.iter().sum()))
    {
        return Err(Error::invalid(
            "proba",
            format!(
                "row {r} sums to {}: one-vs-rest ROC AUC needs probabilities that sum to 1",
                proba[r * k..(r + 1) * k].iter().sum::<f64>()
            ),
        ));
    }
    let mut total = 0.0;
    for class in 0..k {
        let positive: Vec<bool> = y_true.iter().map(|&c| c == class).collect();
        let positives = positive.iter().filter(|&&p| p).count();
        if positives == 0 || positives == n {
            let which = if positives == 0 { "no" } else { "every" };
            return Err(Error::invalid(
                "y_true",
                format!("{which} sample is of class {class}: its one-vs-rest ROC AUC is undefined"),
            ));
        }
        let score: Vec<f64> = proba.iter().skip(class).step_by(k).copied().collect();
        total += auc_from_counts(&positive, &score, positives, n - positives);
    }
    Ok(total / k as f64)
}

/// numpy's `allclose(1, s)`: `|1 - s| <= 1e-8 + 1e-5 * |s|`.
fn sums_to_one(s: f64) -> bool {
    (1.0 - s).abs() <= 1e-8 + 1e-5 * s.abs()
}

/// Mean negative log-likelihood of the true classes, like scikit-learn's
/// `log_loss(y_true, proba, labels=range(k))`.
///
/// Probabilities are clipped to `[ε, 1 − ε]` with `ε = f64::EPSILON` so that a confident
/// mistake costs `-ln ε ≈ 36` instead of infinity. As in scikit-learn ≥ 1.5, rows are not
/// renormalised (scikit-learn only warns when they do not sum to 1).
pub fn log_loss(y_true: &[usize], proba: &[f64], k: usize) -> Result<f64> {
    let n = check_probabilistic(y_true, proba, k)?;
    let total: f64 = y_true
        .iter()
        .zip(proba.chunks_exact(k))
        .map(|(&c, row)| -row[c].clamp(f64::EPSILON, 1.0 - f64::EPSILON).ln())
        .sum();
    Ok(total / n as f64)
}

/// Checks class indices and an `n × k` probability matrix with `k >= 2`; returns `n`.
fn check_probabilistic(y_true: &[usize], proba: &[f64], k: usize) -> Result<usize> {
    if k < 2 {
        return Err(Error::invalid(
            "k",
            format!("found {k} classes, a probabilistic metric needs at least 2"),
        ));
    }
    let n = y_true.len();
    if n == 0 {
        return Err(Error::invalid(
            "y_true",
            "no samples: a metric needs at least one",
        ));
    }
    input::class_indices("y_true", y_true, k)?;
    input::probabilities(proba, n, k)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn positives(y: &[usize]) -> Vec<bool> {
        y.iter().map(|&c| c == 1).collect()
    }

    #[test]
    fn roc_auc_binary_counts_ties_as_half() -> Result<()> {
        // sklearn: roc_auc_score(BINARY_TRUE, BINARY_SCORE)
        assert_close(
            roc_auc_binary(&positives(&BINARY_TRUE), &BINARY_SCORE)?,
            0.75,
        );
        // sklearn: roc_auc_score([1,0,1,1,0,0,1,0,0,1,0],
        //     [0.3,0.3,0.9,0.3,0.1,0.6,0.6,0.2,0.3,0.75,0.05])
        let y = positives(&[1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0]);
        let s = [0.3, 0.3, 0.9, 0.3, 0.1, 0.6, 0.6, 0.2, 0.3, 0.75, 0.05];
        assert_close(roc_auc_binary(&y, &s)?, 0.8500000000000001);
        Ok(())
    }

    #[test]
    fn roc_auc_binary_is_one_zero_and_half_at_the_extremes() -> Result<()> {
        // sklearn: roc_auc_score([0,0,1,1], ...) = 1.0, 0.0 and, all tied, 0.5
        let y = positives(&[0, 0, 1, 1]);
        assert_close(roc_auc_binary(&y, &[0.1, 0.2, 0.3, 0.4])?, 1.0);
        assert_close(roc_auc_binary(&y, &[0.4, 0.3, 0.2, 0.1])?, 0.0);
        assert_close(roc_auc_binary(&positives(&[0, 1, 0, 1]), &[0.5; 4])?, 0.5);
        Ok(())
    }

    #[test]
    fn roc_auc_ovr_matches_sklearn_with_a_class_never_predicted() -> Result<()> {
        // sklearn: roc_auc_score(MULTI_TRUE, proba, multi_class="ovr", average="macro",
        //     labels=[0, 1, 2, 3])
        let proba = proba_from_counts(&MULTI_COUNTS);
        assert_close(roc_auc_ovr(&MULTI_TRUE, &proba, 4)?, 0.9804545454545455);
        Ok(())
    }

    #[test]
    fn roc_auc_ovr_matches_sklearn_on_imbalanced_classes() -> Result<()> {
        // sklearn: roc_auc_score(IMBAL_TRUE, proba, multi_class="ovr", average="macro",
        //     labels=[0, 1, 2])
        let proba = proba_from_counts(&imbal_counts());
        assert_close(roc_auc_ovr(&IMBAL_TRUE, &proba, 3)?, 0.9713031045751634);
        Ok(())
    }

    #[test]
    fn roc_auc_ovr_with_two_classes_is_the_binary_auc_of_column_one() -> Result<()> {
        assert_close(roc_auc_ovr(&BINARY_TRUE, &binary_proba(), 2)?, 0.75);
        Ok(())
    }

    #[test]
    fn log_loss_matches_sklearn() -> Result<()> {
        // sklearn: log_loss(y_true, proba, labels=range(k))
        assert_close(
            log_loss(&BINARY_TRUE, &binary_proba(), 2)?,
            0.5501470569239122,
        );
        let multi = proba_from_counts(&MULTI_COUNTS);
        assert_close(log_loss(&MULTI_TRUE, &multi, 4)?, 0.8404528923565484);
        let imbal = proba_from_counts(&imbal_counts());
        assert_close(log_loss(&IMBAL_TRUE, &imbal, 3)?, 0.41293806952138273);
        Ok(())
    }

    #[test]
    fn log_loss_clips_zero_and_one_probabilities_to_epsilon() -> Result<()> {
        // sklearn: log_loss([0, 1, 1, 1], [[1, 0], [0, 1], [0.3, 0.7], [1, 0]], labels=[0, 1])
        let proba = [1.0, 0.0, 0.0, 1.0, 0.3, 0.7, 1.0, 0.0];
        assert_close(log_loss(&[0, 1, 1, 1], &proba, 2)?, 9.100082083263972);
        Ok(())
    }

    #[test]
    fn log_loss_does_not_renormalise_rows() -> Result<()> {
        // sklearn (warns "do not sum to one"): log_loss([0, 1, 2],
        //     [[0.5, 0.25, 0.0], [0.1, 0.7, 0.1], [0.2, 0.2, 0.3]], labels=[0, 1, 2])
        let proba = [0.5, 0.25, 0.0, 0.1, 0.7, 0.1, 0.2, 0.2, 0.3];
        assert_close(log_loss(&[0, 1, 2], &proba, 3)?, 0.7512649762748712);
        Ok(())
    }

    #[test]
    fn roc_auc_rejects_a_single_class() {
        assert!(is_invalid(
            roc_auc_binary(&[true, true], &[0.1, 0.2]),
            "y_true"
        ));
        assert!(is_invalid(roc_auc_binary(&[false], &[0.1]), "y_true"));
    }

    #[test]
    fn roc_auc_ovr_rejects_a_class_missing_from_y_true() {
        // sklearn returns nan with an UndefinedMetricWarning for the same input.
        let proba = [0.5, 0.3, 0.2, 0.2, 0.6, 0.2, 0.1, 0.1, 0.8, 0.6, 0.2, 0.2];
        assert!(is_invalid(roc_auc_ovr(&[0, 1, 1, 0], &proba, 3), "y_true"));
    }

    #[test]
    fn roc_auc_ovr_rejects_rows_that_do_not_sum_to_one() {
        let proba = [0.5, 0.3, 0.3, 0.2, 0.6, 0.2, 0.1, 0.1, 0.8];
        assert!(is_invalid(roc_auc_ovr(&[0, 1, 2], &proba, 3), "proba"));
    }

    #[test]
    fn rejects_nan_and_out_of_range_scores() {
        assert!(is_invalid(
            roc_auc_binary(&[true, false], &[f64::NAN, 0.1]),
            "score"
        ));
        assert!(is_invalid(
            roc_auc_binary(&[true, false], &[f64::INFINITY, 0.1]),
            "score"
        ));
        assert!(is_invalid(log_loss(&[0], &[f64::NAN, 0.5], 2), "proba"));
        assert!(is_invalid(log_loss(&[0], &[1.5, -0.5], 2), "proba"));
        assert!(is_invalid(
            roc_auc_ovr(&[0, 1], &[0.5, 0.5, f64::NAN, 0.5], 2),
            "proba"
        ));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(is_invalid(roc_auc_binary(&[true, false], &[0.1]), "score"));
        assert!(is_invalid(roc_auc_binary(&[], &[]), "y_true"));
        assert!(is_invalid(log_loss(&[0, 1], &[0.5, 0.5, 0.5], 2), "proba"));
        assert!(is_invalid(log_loss(&[], &[], 2), "y_true"));
        assert!(is_invalid(log_loss(&[0, 2], &[0.5; 4], 2), "y_true"));
        assert!(is_invalid(log_loss(&[0, 0], &[1.0, 1.0], 1), "k"));
        assert!(is_invalid(roc_auc_ovr(&[0, 3], &[0.5; 6], 3), "y_true"));
    }
}
