//! Batch prediction of a file or folder into an output file, as seen from Python: streamed,
//! checkpointed and resumable like `exeml predict`, interruptible with Ctrl-C.

use crate::training::run_job;
use exeml_core::{Budget, Progress, Result};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// What a batch run did, in the terms both tasks share.
pub struct BatchSummary {
    /// Inputs read (rows or images).
    pub inputs: u64,
    /// Inputs predicted (this run's and the resumed run's).
    pub predicted: u64,
    /// Inputs skipped, each listed with its reason in the errors file.
    pub skipped: u64,
    /// Inputs the interrupted run had done (0 for a fresh run).
    pub resumed_at: u64,
    /// The errors file, when something was skipped.
    pub errors_file: Option<PathBuf>,
}

impl From<exeml_tabular::BatchReport> for BatchSummary {
    fn from(r: exeml_tabular::BatchReport) -> Self {
        BatchSummary {
            inputs: r.rows,
            predicted: r.predicted,
            skipped: r.skipped,
            resumed_at: r.resumed_at,
            errors_file: r.errors_file,
        }
    }
}

impl From<exeml::vision::ImageBatchReport> for BatchSummary {
    fn from(r: exeml::vision::ImageBatchReport) -> Self {
        let count = |n: usize| n as u64;
        BatchSummary {
            inputs: count(r.images),
            predicted: count(r.predicted),
            skipped: count(r.skipped),
            resumed_at: count(r.resumed_at),
            errors_file: r.errors_file,
        }
    }
}

/// Run `job` (a batch prediction into `output` under `budget`) on a worker thread, Ctrl-C
/// cancelling it after the current chunk (the run stays resumable), and return its summary as a
/// dict: `output`, `inputs`, `predicted`, `skipped`, `resumed_at`, `errors_file`.
pub fn run_batch<'py, F>(
    py: Python<'py>,
    output: &Path,
    budget: &Budget,
    progress: Option<&Bound<'py, PyAny>>,
    job: F,
) -> PyResult<Bound<'py, PyDict>>
where
    F: FnOnce(&dyn Progress) -> Result<BatchSummary> + Send + 'static,
{
    let summary = run_job(py, budget, progress, job)?.value;
    let dict = PyDict::new(py);
    dict.set_item("output", output)?;
    dict.set_item("inputs", summary.inputs)?;
    dict.set_item("predicted", summary.predicted)?;
    dict.set_item("skipped", summary.skipped)?;
    dict.set_item("resumed_at", summary.resumed_at)?;
    dict.set_item("errors_file", summary.errors_file)?;
    Ok(dict)
}
