//! Tabular training and the trained model, as seen from Python.

use crate::batch::{run_batch, BatchSummary};
use crate::columns::{predictions_to_py, table_from_columns, ColumnPayload};
use crate::errors::{guard, guard_detached, to_json, to_py};
use crate::training::run_job;
use exeml_core::{Budget, Constraints, Error, Preference, ProblemType, Usage};
use exeml_tabular::{HeaderMode, ReadOptions, Table, TabularPredictor};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where Python's data comes from: a file path or columns.
pub fn read_data(
    path: Option<PathBuf>,
    columns: Option<Vec<ColumnPayload<'_>>>,
    source: &str,
) -> PyResult<Table> {
    match (path, columns) {
        (Some(path), None) => guard(|| Table::read(&path, ReadOptions::default())),
        (None, Some(columns)) => table_from_columns(columns, source),
        _ => Err(to_py(Error::invalid(
            "data",
            "give exactly one of a path or columns",
        ))),
    }
}

fn parse_header(header: &str) -> PyResult<HeaderMode> {
    match header {
        "auto" => Ok(HeaderMode::Auto),
        "present" => Ok(HeaderMode::Present),
        "absent" => Ok(HeaderMode::Absent),
        other => Err(to_py(Error::invalid(
            "header",
            format!("`{other}`: expected auto, present or absent"),
        ))),
    }
}

fn seconds(name: &str, secs: f64) -> PyResult<Duration> {
    if secs.is_finite() && secs > 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(to_py(Error::invalid(
            name,
            format!("{secs}: expected a positive number of seconds"),
        )))
    }
}

/// Settings of a training run, shared by `fit_tabular` and `Project.train`.
pub fn predictor(
    label: Option<String>,
    problem: Option<&str>,
    preference: &str,
    seed: u64,
    train_ratio: f64,
) -> PyResult<TabularPredictor> {
    let preference: Preference = guard(|| preference.parse())?;
    let problem: Option<ProblemType> = match problem {
        Some(p) => Some(guard(|| p.parse())?),
        None => None,
    };
    Ok(TabularPredictor {
        label,
        problem,
        preference,
        seed,
        train_ratio,
        ..TabularPredictor::default()
    })
}

/// Warn that Ctrl-C stopped training early.
pub fn warn_interrupted(py: Python<'_>) -> PyResult<()> {
    let category = py
        .import("exeml.errors")
        .and_then(|m| m.getattr("TrainingInterruptedWarning"))
        .unwrap_or_else(|_| py.get_type::<PyUserWarning>().into_any());
    PyErr::warn(
        py,
        &category,
        c"training was interrupted: returning the best model found so far",
        1,
    )
}

/// Train a tabular model (the engine of `exeml.TabularPredictor.fit`).
#[pyfunction]
#[pyo3(signature = (
    *, path=None, columns=None, tuning_path=None, tuning_columns=None, label=None, problem=None,
    time_limit=60.0, preference="balance", seed=0, train_ratio=0.8, header="auto",
    parent=None, parent_name=None, families=None, progress=None, max_latency_ms=None,
    max_model_mb=None, deterministic=false, search_rows=None, bag_folds=None, refit_full=None,
    stack=None, parallel_trials=None
))]
#[allow(clippy::too_many_arguments)]
pub fn fit_tabular(
    py: Python<'_>,
    path: Option<PathBuf>,
    columns: Option<Vec<ColumnPayload<'_>>>,
    tuning_path: Option<PathBuf>,
    tuning_columns: Option<Vec<ColumnPayload<'_>>>,
    label: Option<String>,
    problem: Option<&str>,
    time_limit: f64,
    preference: &str,
    seed: u64,
    train_ratio: f64,
    header: &str,
    parent: Option<PyRef<'_, TabularModel>>,
    parent_name: Option<String>,
    families: Option<Vec<String>>,
    progress: Option<&Bound<'_, PyAny>>,
    max_latency_ms: Option<f64>,
    max_model_mb: Option<f64>,
    deterministic: bool,
    search_rows: Option<usize>,
    bag_folds: Option<usize>,
    refit_full: Option<bool>,
    stack: Option<bool>,
    parallel_trials: Option<usize>,
) -> PyResult<TabularModel> {
    let limit = seconds("time_limit", time_limit)?;
    let mut config = predictor(label, problem, preference, seed, train_ratio)?;
    config.families = families.unwrap_or_default();
    config.deterministic = deterministic;
    config.search_rows = search_rows;
    config.bag_folds = bag_folds;
    config.refit_full = refit_full;
    config.stack = stack;
    config.parallel_trials = parallel_trials;
    config.constraints = guard(|| {
        Constraints {
            max_latency_ms,
            max_model_mb,
        }
        .check()
    })?;
    config.header = parse_header(header)?;
    if let Some(parent) = parent {
        let name = parent_name.unwrap_or_else(|| "python model".into());
        config = config.warm_start(name, &parent.inner);
    }
    let table = match (path, columns) {
        (Some(path), None) => guard(|| {
            Table::read(
                &path,
                ReadOptions {
                    header: config.header,
                },
            )
        })?,
        (path, columns) => read_data(path, columns, "<training data>")?,
    };
    let tuning = match (tuning_path, tuning_columns) {
        (None, None) => None,
        (Some(path), None) => Some(guard(|| {
            Table::read(
                &path,
                ReadOptions {
                    header: config.header,
                },
            )
        })?),
        (None, Some(columns)) => Some(table_from_columns(columns, "<tuning data>")?),
        (Some(_), Some(_)) => {
            return Err(to_py(Error::invalid(
                "tuning_data",
                "give a path or columns, not both",
            )))
        }
    };
    let (table, usage) = match tuning {
        Some(tuning) => {
            let rows = (table.n_rows(), tuning.n_rows());
            let both = guard(|| table.append(&tuning))?;
            let usage: Vec<Usage> = std::iter::repeat_n(Usage::Train, rows.0)
                .chain(std::iter::repeat_n(Usage::Validation, rows.1))
                .collect();
            (both, Some(usage))
        }
        None => (table, None),
    };
    let budget = Budget::new(limit);
    let job_budget = budget.clone();
    let finished = run_job(py, &budget, progress, move |progress| {
        config.fit_with(&table, usage.as_deref(), &job_budget, progress)
    })?;
    if finished.interrupted {
        warn_interrupted(py)?;
    }
    Ok(TabularModel {
        inner: Arc::new(finished.value),
    })
}

/// A trained tabular model (wrapped by `exeml.TabularModel`).
#[derive(Debug)]
#[pyclass(module = "exeml._exeml", name = "TabularModel", frozen)]
pub struct TabularModel {
    pub(crate) inner: Arc<exeml_tabular::TabularModel>,
}

#[pymethods]
impl TabularModel {
    /// Load a model folder written by `save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<TabularModel> {
        let model = guard_detached(py, || exeml_tabular::TabularModel::load(&path))?;
        Ok(TabularModel {
            inner: Arc::new(model),
        })
    }

    /// Write the model as a self-contained folder (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.save(&path))
    }

    /// Predict rows: a dict with `problem`, `classes`, `proba` and `values` buffers.
    #[pyo3(signature = (*, path=None, columns=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        path: Option<PathBuf>,
        columns: Option<Vec<ColumnPayload<'py>>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let table = read_data(path, columns, "<data>")?;
        let model = Arc::clone(&self.inner);
        let predictions = guard_detached(py, move || model.predict(&table))?;
        predictions_to_py(py, &predictions)
    }

    /// Predict every row of a CSV (streamed) or Parquet file into `output` (`.csv`, or `.jsonl`
    /// for SPEC JSON lines), checkpointed every `chunk_rows` rows; rows that cannot be predicted
    /// go to `OUTPUT.errors.csv` with their reason. `resume=True` continues an interrupted run.
    #[pyo3(signature = (input, output, *, resume=false, chunk_rows=50_000, header="auto", progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn predict_file<'py>(
        &self,
        py: Python<'py>,
        input: PathBuf,
        output: PathBuf,
        resume: bool,
        chunk_rows: usize,
        header: &str,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = exeml_tabular::batch::BatchOptions {
            header: parse_header(header)?,
            chunk_rows,
            resume,
            budget: Budget::unlimited(),
        };
        let budget = options.budget.clone();
        let model = Arc::clone(&self.inner);
        let out = output.clone();
        run_batch(py, &output, &budget, progress.as_ref(), move |progress| {
            exeml_tabular::batch::predict_file(&model, &input, &out, &options, progress)
                .map(BatchSummary::from)
        })
    }

    /// Evaluate on labelled rows: the evaluation as JSON.
    #[pyo3(signature = (*, path=None, columns=None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        path: Option<PathBuf>,
        columns: Option<Vec<ColumnPayload<'_>>>,
    ) -> PyResult<String> {
        let table = read_data(path, columns, "<data>")?;
        let model = Arc::clone(&self.inner);
        let evaluation = guard_detached(py, move || model.evaluate(&table))?;
        to_json(&evaluation)
    }

    /// Single-row latency and batch throughput on these rows, as JSON
    /// (`exeml::core::SpeedReport`).
    #[pyo3(signature = (*, path=None, columns=None, runs=200, batch_size=10_000, batch_runs=3))]
    #[allow(clippy::too_many_arguments)]
    fn speed(
        &self,
        py: Python<'_>,
        path: Option<PathBuf>,
        columns: Option<Vec<ColumnPayload<'_>>>,
        runs: usize,
        batch_size: usize,
        batch_runs: usize,
    ) -> PyResult<String> {
        let table = read_data(path, columns, "<data>")?;
        let model = Arc::clone(&self.inner);
        let options = exeml_core::SpeedOptions {
            single_runs: runs,
            batch_size,
            batch_runs,
            ..exeml_core::SpeedOptions::default()
        };
        let report = guard_detached(py, move || model.speed(&table, options))?;
        to_json(&report)
    }

    /// Permutation importance on labelled rows, as JSON (most important first).
    #[pyo3(signature = (*, path=None, columns=None, shuffles=3, seed=0))]
    fn feature_importance(
        &self,
        py: Python<'_>,
        path: Option<PathBuf>,
        columns: Option<Vec<ColumnPayload<'_>>>,
        shuffles: usize,
        seed: u64,
    ) -> PyResult<String> {
        let table = read_data(path, columns, "<data>")?;
        let model = Arc::clone(&self.inner);
        let importance =
            guard_detached(py, move || model.feature_importance(&table, shuffles, seed))?;
        to_json(&importance)
    }

    /// The manifest (schema, classes, chosen configuration, validation, leaderboard, lineage)
    /// as JSON.
    fn manifest(&self) -> PyResult<String> {
        to_json(&self.inner.manifest)
    }

    /// Every trial of the search, best first, as JSON.
    fn leaderboard(&self) -> PyResult<String> {
        to_json(&self.inner.leaderboard())
    }

    /// One line: family, validation score, problem.
    fn summary(&self) -> String {
        self.inner.summary()
    }

    /// `binary`, `multiclass` or `regression`.
    #[getter]
    fn problem(&self) -> &'static str {
        self.inner.problem().as_str()
    }

    /// The label column.
    #[getter]
    fn label(&self) -> String {
        self.inner.label().to_string()
    }

    /// The class names (empty for regression).
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    fn __repr__(&self) -> String {
        format!("TabularModel({})", self.inner.summary())
    }
}
