//! The project store from Python: projects, dataset versions and model versions in the same
//! workspace the `exeml` command uses.

use crate::errors::{guard, to_json, to_py};
use crate::tabular::{predictor, warn_interrupted, TabularModel};
use crate::training::run_job;
use exeml::core::store::{ProjectFilter, Store};
use exeml::{Budget, Error, SplitSpec, TaskKind};
use exeml_tabular::HeaderMode;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

fn open_store(home: Option<PathBuf>) -> exeml::Result<Store> {
    match home {
        Some(home) => Store::open(&home),
        None => Store::open_default(),
    }
}

/// Every project of the workspace at `home` (default: `$EXEML_HOME` or `./exeml-workspace`),
/// as JSON.
#[pyfunction]
#[pyo3(signature = (home=None))]
pub fn list_projects(home: Option<PathBuf>) -> PyResult<String> {
    let projects = guard(|| open_store(home)?.list_projects(&ProjectFilter::default()))?;
    to_json(&projects)
}

/// Lock the shared project; a poisoned lock (a panic in another thread) is a typed error.
fn lock_project(project: &Mutex<exeml::Project>) -> exeml::Result<MutexGuard<'_, exeml::Project>> {
    project.lock().map_err(|_| Error::Backend {
        backend: "python",
        message: "the project is unusable after a crash in another thread".into(),
    })
}

/// A project of the workspace (wrapped by `exeml.Project`).
#[derive(Debug)]
#[pyclass(module = "exeml._exeml", name = "Project", frozen)]
pub struct Project {
    // The store is one SQLite connection (`Send`, not `Sync`); training moves it to a worker.
    inner: Arc<Mutex<exeml::Project>>,
}

impl Project {
    fn lock(&self) -> PyResult<MutexGuard<'_, exeml::Project>> {
        lock_project(&self.inner).map_err(to_py)
    }
}

#[pymethods]
impl Project {
    /// Open the project `name`, creating it (for `task`) if `create` and it does not exist.
    #[new]
    #[pyo3(signature = (name, *, task="tabular", home=None, create=true, description=""))]
    fn new(
        name: &str,
        task: &str,
        home: Option<PathBuf>,
        create: bool,
        description: &str,
    ) -> PyResult<Self> {
        let project = guard(|| {
            let task: TaskKind = task.parse()?;
            let store = open_store(home)?;
            if create {
                match store.project(name) {
                    Err(Error::NotFound { .. }) => {
                        exeml::Project::create(store, name, task, description)
                    }
                    _ => exeml::Project::open_or_create(store, name, task),
                }
            } else {
                exeml::Project::open(store, name)
            }
        })?;
        Ok(Project {
            inner: Arc::new(Mutex::new(project)),
        })
    }

    /// The project's name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.lock()?.name().to_string())
    }

    /// The workspace folder.
    #[getter]
    fn home(&self) -> PyResult<String> {
        Ok(self.lock()?.store().root().display().to_string())
    }

    /// The project's record (task, status, step, times) as JSON.
    fn info(&self) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.info())?)
    }

    /// Copy a table into the project and set its label column.
    #[pyo3(signature = (path, *, label=None, header="auto"))]
    fn import_table(&self, path: PathBuf, label: Option<&str>, header: &str) -> PyResult<()> {
        let header = match header {
            "present" => HeaderMode::Present,
            "absent" => HeaderMode::Absent,
            _ => HeaderMode::Auto,
        };
        let project = self.lock()?;
        guard(|| project.import_table(&path, label, header).map(|_| ()))
    }

    /// Run the data checks on the current data: the report as JSON.
    fn check(&self) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.check())?)
    }

    /// Publish an immutable dataset version (checks, seeded split, snapshot), as JSON.
    #[pyo3(signature = (*, train_ratio=0.8, seed=0))]
    fn publish(&self, train_ratio: f64, seed: u64) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.publish(SplitSpec { train_ratio, seed }))?)
    }

    /// Every dataset version, oldest first, as JSON.
    fn dataset_versions(&self) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.store().dataset_versions(project.name()))?)
    }

    /// Every model version, oldest first, as JSON.
    fn model_versions(&self) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.store().model_versions(project.name()))?)
    }

    /// Train and register a new model version: its record as JSON.
    #[pyo3(signature = (
        *, version=None, time_limit=60.0, preference="balance", seed=0, parent=None, progress=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        py: Python<'_>,
        version: Option<String>,
        time_limit: f64,
        preference: &str,
        seed: u64,
        parent: Option<String>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        if !(time_limit.is_finite() && time_limit > 0.0) {
            return Err(to_py(Error::invalid(
                "time_limit",
                format!("{time_limit}: expected a positive number of seconds"),
            )));
        }
        let config = predictor(None, None, preference, seed, 0.8)?;
        let budget = Budget::new(Duration::from_secs_f64(time_limit));
        let job_budget = budget.clone();
        let inner = Arc::clone(&self.inner);
        let finished = run_job(py, &budget, progress, move |progress| {
            let project = lock_project(&inner)?;
            project.train(
                version.as_deref(),
                &config,
                parent.as_deref(),
                &job_budget,
                progress,
            )
        })?;
        if finished.interrupted {
            warn_interrupted(py)?;
        }
        to_json(&finished.value)
    }

    /// Load a registered model version.
    fn load_model(&self, py: Python<'_>, version: &str) -> PyResult<TabularModel> {
        let inner = Arc::clone(&self.inner);
        let version = version.to_string();
        let model = crate::errors::guard_detached(py, move || {
            let project = lock_project(&inner)?;
            project.load_model(&version)
        })?;
        Ok(TabularModel {
            inner: Arc::new(model),
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        let project = self.lock()?;
        Ok(format!(
            "Project({:?}, home={:?})",
            project.name(),
            project.store().root().display().to_string()
        ))
    }
}
