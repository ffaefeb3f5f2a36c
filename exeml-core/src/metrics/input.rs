//! Checks shared by the metric functions; each returns the error a user can act on.

use crate::{Error, Result};

/// Both slices have the same, non-zero length; returns that length.
pub(crate) fn same_len_nonempty(a: usize, b: usize, what_a: &str, what_b: &str) -> Result<usize> {
    if a != b {
        return Err(Error::invalid(
            what_b,
            format!("{what_a} has {a} values but {what_b} has {b}"),
        ));
    }
    if a == 0 {
        return Err(Error::invalid(
            what_a,
            "no samples: a metric needs at least one",
        ));
    }
    Ok(a)
}

/// At least one class.
pub(crate) fn classes(k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::invalid(
            "k",
            "the number of classes must be at least 1",
        ));
    }
    Ok(())
}

/// Every class index is below `k`.
pub(crate) fn class_indices(name: &str, y: &[usize], k: usize) -> Result<()> {
    match y.iter().enumerate().find(|(_, &c)| c >= k) {
        Some((row, c)) => Err(Error::invalid(
            name,
            format!("sample {row} has class index {c}, but there are only {k} classes"),
        )),
        None => Ok(()),
    }
}

/// Every value is finite (no NaN, no infinity).
pub(crate) fn finite(name: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::invalid(
            name,
            format!("value {i} is {}, expected a finite number", values[i]),
        )),
        None => Ok(()),
    }
}

/// `proba` is an `n × k` row-major matrix of probabilities in `[0, 1]`.
pub(crate) fn probabilities(proba: &[f64], n: usize, k: usize) -> Result<()> {
    if n.checked_mul(k) != Some(proba.len()) {
        return Err(Error::invalid(
            "proba",
            format!(
                "expected {n} samples × {k} classes = {} values, found {}",
                n.saturating_mul(k),
                proba.len()
            ),
        ));
    }
    if let Some(i) = proba.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::invalid(
            "proba",
            format!(
                "sample {} class {} has probability {}, expected a value in [0, 1]",
                i / k,
                i % k,
                proba[i]
            ),
        ));
    }
    Ok(())
}
