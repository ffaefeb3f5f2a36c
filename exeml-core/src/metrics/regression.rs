//! Regression metrics, with scikit-learn's definitions.

use serde::{Deserialize, Serialize};

use super::input;
use crate::{Error, Result};

/// Every regression metric of one evaluation, as written to a model's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Number of samples evaluated.
    pub n: usize,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean squared error.
    pub mse: f64,
    /// Root of the mean squared error.
    pub rmse: f64,
    /// Coefficient of determination, see [`r2`].
    pub r2: f64,
}

impl RegressionReport {
    /// Computes every metric; needs at least two samples (for R²).
    pub fn compute(y_true: &[f64], y_pred: &[f64]) -> Result<RegressionReport> {
        let n = check(y_true, y_pred)?;
        let mse = mse(y_true, y_pred)?;
        Ok(RegressionReport {
            n,
            mae: mae(y_true, y_pred)?,
            mse,
            rmse: mse.sqrt(),
            r2: r2(y_true, y_pred)?,
        })
    }
}

/// Same non-zero length and finite values; returns the length.
fn check(y_true: &[f64], y_pred: &[f64]) -> Result<usize> {
    let n = input::same_len_nonempty(y_true.len(), y_pred.len(), "y_true", "y_pred")?;
    input::finite("y_true", y_true)?;
    input::finite("y_pred", y_pred)?;
    Ok(n)
}

/// Mean of `f(true, predicted)` over the samples.
fn mean_of(y_true: &[f64], y_pred: &[f64], f: impl Fn(f64, f64) -> f64) -> Result<f64> {
    let n = check(y_true, y_pred)?;
    let total: f64 = y_true.iter().zip(y_pred).map(|(&t, &p)| f(t, p)).sum();
    Ok(total / n as f64)
}

/// Mean absolute error.
pub fn mae(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    mean_of(y_true, y_pred, |t, p| (t - p).abs())
}

/// Mean squared error.
pub fn mse(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    mean_of(y_true, y_pred, |t, p| (t - p) * (t - p))
}

/// Root mean squared error.
pub fn rmse(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    mse(y_true, y_pred).map(f64::sqrt)
}

/// Coefficient of determination `1 − SS_res / SS_tot`, like scikit-learn's `r2_score`.
///
/// With a constant `y_true` it is 1.0 for a perfect prediction and 0.0 otherwise
/// (scikit-learn's `force_finite=True`). Needs at least two samples: scikit-learn returns
/// NaN for one, this errors.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    let n = check(y_true, y_pred)?;
    if n < 2 {
        return Err(Error::invalid(
            "y_true",
            "R² is not defined for fewer than two samples",
        ));
    }
    let mean = y_true.iter().sum::<f64>() / n as f64;
    let residual: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(t, p)| (t - p) * (t - p))
        .sum();
    let total: f64 = y_true.iter().map(|t| (t - mean) * (t - mean)).sum();
    Ok(match (residual == 0.0, total == 0.0) {
        (true, _) => 1.0,
        (false, true) => 0.0,
        (false, false) => 1.0 - residual / total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y_TRUE: [f64; 8] = [3.0, -0.5, 2.0, 7.0, 4.25, 10.5, -3.75, 0.1];
    const Y_PRED: [f64; 8] = [2.5, 0.0, 2.0, 8.0, 3.9, 12.0, -2.5, 0.3];

    fn assert_close(found: f64, expected: f64) {
        assert!(
            (found - expected).abs() <= 1e-12,
            "found {found:?}, expected {expected:?}"
        );
    }

    fn is_invalid<T: std::fmt::Debug>(r: Result<T>, name: &str) -> bool {
        matches!(r, Err(Error::InvalidParameter { name: n, .. }) if n == name)
    }

    #[test]
    fn metrics_match_sklearn() -> Result<()> {
        // sklearn 1.9.1: mean_absolute_error, mean_squared_error, root_mean_squared_error
        // and r2_score on (Y_TRUE, Y_PRED)
        assert_close(mae(&Y_TRUE, &Y_PRED)?, 0.6625);
        assert_close(mse(&Y_TRUE, &Y_PRED)?, 0.684375);
        assert_close(rmse(&Y_TRUE, &Y_PRED)?, 0.8272696053887149);
        assert_close(r2(&Y_TRUE, &Y_PRED)?, 0.9611122949073088);
        Ok(())
    }

    #[test]
    fn report_matches_the_single_metrics() -> Result<()> {
        let r = RegressionReport::compute(&Y_TRUE, &Y_PRED)?;
        assert_eq!(r.n, 8);
        assert_close(r.mae, 0.6625);
        assert_close(r.mse, 0.684375);
        assert_close(r.rmse, 0.8272696053887149);
        assert_close(r.r2, 0.9611122949073088);
        Ok(())
    }

    #[test]
    fn r2_of_a_constant_target_is_one_if_perfect_else_zero() -> Result<()> {
        // sklearn: r2_score([2, 2, 2], [2, 2, 2]) = 1.0; r2_score([2, 2, 2], [2, 2, 2.5]) = 0.0
        assert_eq!(r2(&[2.0, 2.0, 2.0], &[2.0, 2.0, 2.0])?, 1.0);
        assert_eq!(r2(&[2.0, 2.0, 2.0], &[2.0, 2.0, 2.5])?, 0.0);
        Ok(())
    }

    #[test]
    fn r2_can_be_negative() -> Result<()> {
        // sklearn: r2_score([1, 2, 3], [3, 2, 1]) = -3.0
        assert_close(r2(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0])?, -3.0);
        Ok(())
    }

    #[test]
    fn report_round_trips_through_json() -> Result<()> {
        let r = RegressionReport::compute(&Y_TRUE, &Y_PRED)?;
        let json = serde_json::to_string(&r).map_err(|e| Error::invalid("json", e.to_string()))?;
        let back: RegressionReport =
            serde_json::from_str(&json).map_err(|e| Error::invalid("json", e.to_string()))?;
        assert_eq!(back, r);
        Ok(())
    }

    #[test]
    fn rejects_length_mismatch_and_empty_input() {
        assert!(is_invalid(mae(&[1.0], &[1.0, 2.0]), "y_pred"));
        assert!(is_invalid(mse(&[], &[]), "y_true"));
        assert!(is_invalid(rmse(&[1.0, 2.0], &[1.0]), "y_pred"));
        assert!(is_invalid(RegressionReport::compute(&[], &[]), "y_true"));
    }

    #[test]
    fn rejects_non_finite_values() {
        assert!(is_invalid(mae(&[f64::NAN], &[1.0]), "y_true"));
        assert!(is_invalid(mse(&[1.0], &[f64::INFINITY]), "y_pred"));
        assert!(is_invalid(r2(&[1.0, 2.0], &[f64::NAN, 1.0]), "y_pred"));
    }

    #[test]
    fn r2_rejects_a_single_sample() {
        // sklearn returns nan with an UndefinedMetricWarning.
        assert!(is_invalid(r2(&[1.0], &[2.0]), "y_true"));
        assert!(is_invalid(
            RegressionReport::compute(&[1.0], &[1.0]),
            "y_true"
        ));
    }
}
