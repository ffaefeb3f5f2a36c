//! The project store from Python: projects, dataset versions and model versions in the same
//! workspace the `exeml` command uses.

use crate::errors::{guard, to_json, to_py};
use crate::image::{image_predictor, ImageModel, ImageSettings};
use crate::tabular::{predictor, warn_interrupted, TabularModel};
use crate::training::run_job;
use exeml::core::store::{DeleteLabelMode, ProjectFilter, SampleFilter, Store};
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

    /// Train an image project's model version with the image search's settings: its record as
    /// JSON.
    #[pyo3(signature = (
        *, version=None, time_limit=60.0, preference="balance", seed=0, train_ratio=0.8,
        parent=None, progress=None, backbones=None, resolution=None, fine_tune=true,
        ensemble=true, device="cpu", weights=None, fine_tune_arms=None, max_latency_ms=None,
        max_model_mb=None, refit_full=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn train_image(
        &self,
        py: Python<'_>,
        version: Option<String>,
        time_limit: f64,
        preference: &str,
        seed: u64,
        train_ratio: f64,
        parent: Option<String>,
        progress: Option<&Bound<'_, PyAny>>,
        backbones: Option<Vec<String>>,
        resolution: Option<u32>,
        fine_tune: bool,
        ensemble: bool,
        device: &str,
        weights: Option<Vec<(String, PathBuf)>>,
        fine_tune_arms: Option<String>,
        max_latency_ms: Option<f64>,
        max_model_mb: Option<f64>,
        refit_full: Option<bool>,
    ) -> PyResult<String> {
        exeml::allocator::keep_freed_memory();
        let config = image_predictor(ImageSettings {
            time_limit,
            preference,
            seed,
            train_ratio,
            backbones,
            resolution,
            fine_tune,
            ensemble,
            refit_full,
            max_latency_ms,
            max_model_mb,
            device,
            weights,
            fine_tune_arms,
        })?;
        let budget = Budget::new(config.time_limit);
        let job_budget = budget.clone();
        let inner = Arc::clone(&self.inner);
        let finished = run_job(py, &budget, progress, move |progress| {
            let project = lock_project(&inner)?;
            project.train_images(
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

    /// Load a registered model version of an image project.
    fn load_image_model(&self, py: Python<'_>, version: &str) -> PyResult<ImageModel> {
        let inner = Arc::clone(&self.inner);
        let version = version.to_string();
        let model = crate::errors::guard_detached(py, move || {
            let project = lock_project(&inner)?;
            project.load_image_model(&version)
        })?;
        Ok(ImageModel {
            inner: Arc::new(model),
        })
    }

    /// The project's task: `tabular`, `image`…
    fn task(&self) -> PyResult<String> {
        let project = self.lock()?;
        Ok(guard(|| project.task())?.to_string())
    }

    /// Import a folder of images (class folders, label files or a manifest): what was imported,
    /// as JSON.
    fn import_images(&self, py: Python<'_>, folder: PathBuf) -> PyResult<String> {
        let inner = Arc::clone(&self.inner);
        let report = crate::errors::guard_detached(py, move || {
            let project = lock_project(&inner)?;
            project.import_images(&folder)
        })?;
        to_json(&report)
    }

    /// The samples matching `which` (`all`, `labelled`, `unlabelled`) or carrying `label`, as
    /// JSON.
    #[pyo3(signature = (which="all", *, label=None))]
    fn samples(&self, which: &str, label: Option<String>) -> PyResult<String> {
        let filter = match (which, label) {
            (_, Some(label)) => SampleFilter::WithLabel(label),
            ("all", None) => SampleFilter::All,
            ("labelled", None) => SampleFilter::Labelled,
            ("unlabelled", None) => SampleFilter::Unlabelled,
            (other, None) => {
                return Err(to_py(Error::invalid(
                    "which",
                    format!("`{other}`: expected all, labelled or unlabelled"),
                )))
            }
        };
        let project = self.lock()?;
        to_json(&guard(|| project.samples(filter))?)
    }

    /// Labelled samples per label, as JSON.
    fn label_counts(&self) -> PyResult<String> {
        let project = self.lock()?;
        to_json(&guard(|| project.label_counts())?)
    }

    /// Add `label` to the samples `ids`; how many did not carry it yet.
    fn add_label(&self, ids: Vec<i64>, label: &str) -> PyResult<usize> {
        let project = self.lock()?;
        guard(|| project.add_label(&ids, label))
    }

    /// Replace one sample's labels.
    fn set_labels(&self, id: i64, labels: Vec<String>) -> PyResult<()> {
        let project = self.lock()?;
        guard(|| project.set_labels(id, &labels))
    }

    /// Rename a label everywhere; how many samples changed.
    fn rename_label(&self, old: &str, new: &str) -> PyResult<usize> {
        let project = self.lock()?;
        guard(|| project.rename_label(old, new))
    }

    /// What deleting `label` in `mode` removes (`confirm=False`: nothing is deleted) or removed,
    /// as JSON.
    #[pyo3(signature = (label, *, mode="label", confirm=false))]
    fn delete_label(&self, label: &str, mode: &str, confirm: bool) -> PyResult<String> {
        let mode = match mode {
            "label" => DeleteLabelMode::LabelOnly,
            "samples" => DeleteLabelMode::LabelAndOnlyLabelledSamples,
            "files" => DeleteLabelMode::SamplesAndFiles,
            other => {
                return Err(to_py(Error::invalid(
                    "mode",
                    format!("`{other}`: expected label, samples or files"),
                )))
            }
        };
        let project = self.lock()?;
        let plan = if confirm {
            guard(|| project.delete_label(label, mode))?
        } else {
            guard(|| project.plan_delete_label(label, mode))?
        };
        to_json(&plan)
    }

    /// Delete samples by id; how many were deleted.
    fn delete_samples(&self, ids: Vec<i64>) -> PyResult<usize> {
        let project = self.lock()?;
        guard(|| project.delete_samples(&ids))
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
