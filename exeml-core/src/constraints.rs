//! Deployment constraints a returned model must meet (`--max-latency-ms`, `--max-model-mb`),
//! and how candidates are measured against them. Every task's search measures each candidate's
//! single-input latency on the training device and its artifact size, records both in the
//! leaderboard, and never returns a candidate that breaks a constraint.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Limits on what the search may return; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Median latency of one prediction (one row, one image…), in milliseconds, measured on
    /// the device the model was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Size of the saved model folder, in megabytes (10^6 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_mb: Option<f64>,
}

impl Constraints {
    /// True when nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.max_latency_ms.is_none() && self.max_model_mb.is_none()
    }

    /// The constraints, or an error naming a limit that is not a positive, finite number.
    pub fn check(self) -> Result<Self> {
        for (name, value) in [
            ("max_latency_ms", self.max_latency_ms),
            ("max_model_mb", self.max_model_mb),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::invalid(
                        name,
                        format!("expected a positive number, got {v}"),
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Why a candidate with this measured latency and size breaks the constraints, or `None`
    /// if it meets them (an unmeasured quantity is not held against it).
    pub fn violation(&self, latency_ms: Option<f64>, size_mb: Option<f64>) -> Option<String> {
        let mut why = Vec::new();
        if let (Some(limit), Some(v)) = (self.max_latency_ms, latency_ms) {
            if v > limit {
                why.push(format!("latency {v:.3} ms > {limit} ms"));
            }
        }
        if let (Some(limit), Some(v)) = (self.max_model_mb, size_mb) {
            if v > limit {
                why.push(format!("size {v:.2} MB > {limit} MB"));
            }
        }
        (!why.is_empty()).then(|| format!("excluded: {}", why.join(", ")))
    }

    /// The limits in words, e.g. `latency ≤ 2 ms, size ≤ 10 MB` (empty when unconstrained).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.max_latency_ms {
            parts.push(format!("latency ≤ {v} ms"));
        }
        if let Some(v) = self.max_model_mb {
            parts.push(format!("size ≤ {v} MB"));
        }
        parts.join(", ")
    }

    /// The error when no candidate met the constraints; `best` describes the closest ones.
    pub fn unmet(&self, best: &str) -> Error {
        Error::invalid(
            if self.max_latency_ms.is_some() {
                "max_latency_ms"
            } else {
                "max_model_mb"
            },
            format!(
                "no model met the constraints ({}): {best}; relax them or allow more time",
                self.describe()
            ),
        )
    }
}

/// The median (nearest rank, as [`crate::speed::quantile`] takes it) wall time of `runs` calls
/// of `predict_one`, in milliseconds, after one warm-up call. Stops early (keeping at least
/// three calls) once `max_total_secs` is spent, so a slow candidate costs little to measure.
pub fn median_latency_ms(
    runs: usize,
    max_total_secs: f64,
    mut predict_one: impl FnMut() -> Result<()>,
) -> Result<f64> {
    predict_one()?;
    let started = Instant::now();
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        predict_one()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if times.len() >= 3 && started.elapsed().as_secs_f64() > max_total_secs {
            break;
        }
    }
    Ok(crate::speed::quantile(&mut times, 0.5))
}

/// The total size of the files under `dir`, in megabytes (10^6 bytes).
pub fn folder_megabytes(dir: &Path) -> Result<f64> {
    fn walk(dir: &Path, total: &mut u64) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let meta = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
            if meta.is_dir() {
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(dir, &mut total)?;
    Ok(total as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_must_be_positive_numbers() {
        let bad = Constraints {
            max_latency_ms: Some(0.0),
            max_model_mb: None,
        };
        assert!(bad
            .check()
            .expect_err("an error")
            .to_string()
            .contains("max_latency_ms"));
        let bad = Constraints {
            max_latency_ms: None,
            max_model_mb: Some(f64::NAN),
        };
        assert!(bad
            .check()
            .expect_err("an error")
            .to_string()
            .contains("max_model_mb"));
        assert!(Constraints::default().check().expect("ok").is_empty());
    }

    #[test]
    fn a_violation_names_every_broken_limit() {
        let c = Constraints {
            max_latency_ms: Some(2.0),
            max_model_mb: Some(10.0),
        };
        assert_eq!(c.violation(Some(1.0), Some(9.0)), None);
        assert_eq!(c.violation(None, None), None);
        let why = c.violation(Some(3.5), Some(12.0)).expect("ok");
        assert!(why.contains("latency 3.500 ms > 2 ms"), "{why}");
        assert!(why.contains("size 12.00 MB > 10 MB"), "{why}");
        assert_eq!(c.describe(), "latency ≤ 2 ms, size ≤ 10 MB");
    }

    #[test]
    fn latency_is_the_median_of_the_timed_calls() {
        let mut calls = 0;
        let ms = median_latency_ms(5, 10.0, || {
            calls += 1;
            Ok(())
        })
        .expect("ok");
        assert_eq!(calls, 6, "one warm-up call and five timed calls");
        assert!(ms >= 0.0);
        let failing = median_latency_ms(5, 10.0, || Err(Error::invalid("x", "boom")));
        assert!(failing.is_err());
    }

    #[test]
    fn folder_size_counts_nested_files() {
        let dir = std::env::temp_dir().join(format!("exeml-size-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("ok");
        std::fs::write(dir.join("a"), vec![0u8; 1000]).expect("ok");
        std::fs::write(dir.join("sub/b"), vec![0u8; 500]).expect("ok");
        let mb = folder_megabytes(&dir).expect("ok");
        std::fs::remove_dir_all(&dir).expect("ok");
        assert!((mb - 0.0015).abs() < 1e-12);
    }
}
