//! How fast a saved model predicts: one-input latency (median and 90th percentile of many
//! single-input calls) and batch throughput (inputs per second). Every task measures the same
//! way, through its public predict call, so `exeml speed` reports comparable numbers.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How much to measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeedOptions {
    /// Single-input calls timed (after the warm-up calls).
    pub single_runs: usize,
    /// Untimed single-input calls first (caches, lazy initialisation, allocator).
    pub warmup_runs: usize,
    /// The batch holds at most this many inputs (the first ones of the data).
    pub batch_size: usize,
    /// Batch calls timed; the median is reported.
    pub batch_runs: usize,
}

impl Default for SpeedOptions {
    fn default() -> Self {
        Self {
            single_runs: 200,
            warmup_runs: 5,
            batch_size: 10_000,
            batch_runs: 3,
        }
    }
}

impl SpeedOptions {
    /// The options, or an error naming a count that is zero.
    pub fn check(self) -> Result<Self> {
        for (name, value) in [
            ("single_runs", self.single_runs),
            ("batch_size", self.batch_size),
            ("batch_runs", self.batch_runs),
        ] {
            if value == 0 {
                return Err(Error::invalid(name, "expected at least 1"));
            }
        }
        Ok(self)
    }
}

/// What [`measure_speed`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    /// Distinct inputs the single-input calls cycled over.
    pub inputs: usize,
    /// Single-input calls timed.
    pub single_runs: usize,
    /// Median wall time of one single-input call, in milliseconds.
    pub single_ms_median: f64,
    /// 90th percentile of the single-input calls, in milliseconds.
    pub single_ms_p90: f64,
    /// Inputs in each batch call.
    pub batch_size: usize,
    /// Batch calls timed.
    pub batch_runs: usize,
    /// Median wall time of one batch call, in milliseconds.
    pub batch_ms_median: f64,
    /// `batch_size` divided by the median batch time: inputs predicted per second.
    pub batch_per_second: f64,
}

impl SpeedReport {
    /// Two lines in words, e.g. `one row: median 0.021 ms, p90 0.034 ms (200 calls)`.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "one {unit}: median {:.4} ms, p90 {:.4} ms ({} calls over {} {unit}s)\n\
             batch of {}: median {:.2} ms, {:.0} {unit}s/s ({} calls)",
            self.single_ms_median,
            self.single_ms_p90,
            self.single_runs,
            self.inputs,
            self.batch_size,
            self.batch_ms_median,
            self.batch_per_second,
            self.batch_runs,
        )
    }
}

/// Time `predict_one(i)` on inputs `i` cycling over `0..inputs`, then `predict_batch()`, a call
/// on `batch_size` inputs (the caller's batch). Only the calls themselves are timed: the caller
/// prepares every input beforehand, so building a one-row table or reading a file is not counted
/// unless the caller's closure does it on purpose.
pub fn measure_speed(
    inputs: usize,
    batch_size: usize,
    options: SpeedOptions,
    mut predict_one: impl FnMut(usize) -> Result<()>,
    mut predict_batch: impl FnMut() -> Result<()>,
) -> Result<SpeedReport> {
    let options = options.check()?;
    if inputs == 0 || batch_size == 0 {
        return Err(Error::invalid("data", "no inputs to time predictions on"));
    }
    for i in 0..options.warmup_runs {
        predict_one(i % inputs)?;
    }
    let mut single = Vec::with_capacity(options.single_runs);
    for i in 0..options.single_runs {
        let started = Instant::now();
        predict_one(i % inputs)?;
        single.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut batch = Vec::with_capacity(options.batch_runs);
    for _ in 0..options.batch_runs {
        let started = Instant::now();
        predict_batch()?;
        batch.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let batch_ms_median = quantile(&mut batch, 0.5);
    Ok(SpeedReport {
        inputs,
        single_runs: single.len(),
        single_ms_median: quantile(&mut single, 0.5),
        single_ms_p90: quantile(&mut single, 0.9),
        batch_size,
        batch_runs: batch.len(),
        batch_ms_median,
        batch_per_second: batch_size as f64 / (batch_ms_median / 1e3).max(1e-9),
    })
}

/// The `q` quantile of `values` (nearest rank: the median of an even count is the lower middle
/// value), sorting them; `values` must not be empty. Every latency exeml reports or compares
/// with a constraint is taken this way.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_call_and_batch_call_is_made_on_the_inputs_asked_for() {
        let mut seen = Vec::new();
        let mut batches = 0;
        let options = SpeedOptions {
            single_runs: 7,
            warmup_runs: 2,
            batch_size: 2,
            batch_runs: 4,
        };
        let report = measure_speed(
            3,
            2,
            options,
            |i| {
                seen.push(i);
                Ok(())
            },
            || {
                batches += 1;
                Ok(())
            },
        )
        .expect("measured");
        assert_eq!(seen, vec![0, 1, 0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(batches, 4);
        assert_eq!((report.inputs, report.single_runs), (3, 7));
        assert_eq!((report.batch_size, report.batch_runs), (2, 4));
        assert!(report.single_ms_median <= report.single_ms_p90);
        assert!(report.batch_per_second > 0.0);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.9), 5.0);
        assert_eq!(quantile(&mut [7.0], 0.9), 7.0);
    }

    #[test]
    fn no_inputs_a_zero_count_and_a_failing_call_are_errors() {
        let (ok, batch_ok) = (|_: usize| Ok(()), || Ok(()));
        assert!(measure_speed(0, 1, SpeedOptions::default(), ok, batch_ok).is_err());
        let zero = SpeedOptions {
            single_runs: 0,
            ..SpeedOptions::default()
        };
        assert!(measure_speed(3, 3, zero, ok, batch_ok)
            .expect_err("zero runs")
            .to_string()
            .contains("single_runs"));
        let failing = |_: usize| Err(Error::invalid("row", "bad"));
        assert!(measure_speed(3, 3, SpeedOptions::default(), failing, batch_ok).is_err());
    }
}
