//! The project workflow of SPEC §1 over the embedded store: import → label → check → publish a
//! dataset version → train → register a model version → evaluate/predict. Every step is callable
//! on its own; each records the project's status and step.
//!
//! Tabular projects import a table ([`Project::import_table`]); image projects import folders of
//! images in any SPEC layout ([`Project::import_images`]) and are labelled sample by sample
//! ([`Project::add_label`] and the other label operations). Checks, publishing and training
//! dispatch on the project's task.

mod images;
mod labels;
mod tabular;

pub use images::{ImageImport, SkippedFile};
pub use tabular::{check_tabular, TableSettings};

use exeml_core::checks::CheckReport;
use exeml_core::store::{
    DatasetVersion, ModelVersion, NewModelVersion, NewProject, ProjectStatus, Store, WorkflowStep,
};
use exeml_core::{Error, Result, SplitSpec, TaskKind};
use std::path::Path;

/// A project of the workspace, with the workflow steps as methods.
///
/// ```no_run
/// use exeml::core::store::Store;
/// use exeml::{Project, SplitSpec, TabularPredictor, TaskKind};
/// # fn main() -> exeml::Result<()> {
/// let project = Project::create(Store::open_default()?, "churn", TaskKind::Tabular, "")?;
/// project.import_table("customers.csv".as_ref(), Some("churn"), Default::default())?;
/// let version = project.publish(SplitSpec::default())?;
/// let model = project.train(Some(&version.name), &TabularPredictor::default(), None,
///                           &exeml::Budget::new(std::time::Duration::from_secs(30)),
///                           &exeml::core::Silent)?;
/// println!("model version {}", model.version);
/// # Ok(()) }
/// ```
///
/// An image project, with a label fixed by hand before the first version:
///
/// ```no_run
/// use exeml::core::store::{SampleFilter, Store};
/// use exeml::vision::ImagePredictor;
/// use exeml::{Project, SplitSpec, TaskKind};
/// # fn main() -> exeml::Result<()> {
/// let project = Project::create(Store::open_default()?, "flowers", TaskKind::Image, "")?;
/// let import = project.import_images("photos/".as_ref())?;
/// println!("{} images, {} without a label", import.imported, import.unlabelled);
/// let todo = project.samples(SampleFilter::Unlabelled)?;
/// project.add_label(&todo.iter().map(|s| s.id).collect::<Vec<_>>(), "tulip")?;
/// let model = project.train_images(None, &ImagePredictor::new(), None,
///                                  &exeml::Budget::new(std::time::Duration::from_secs(120)),
///                                  &exeml::core::Silent)?;
/// println!("model version {}: {}", model.version, model.summary);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Project {
    store: Store,
    name: String,
}

impl Project {
    /// Create a project in the store.
    pub fn create(store: Store, name: &str, task: TaskKind, description: &str) -> Result<Self> {
        store.create_project(&NewProject::new(name, task).description(description))?;
        Ok(Project {
            store,
            name: name.to_string(),
        })
    }

    /// Open an existing project.
    pub fn open(store: Store, name: &str) -> Result<Self> {
        store.project(name)?;
        Ok(Project {
            store,
            name: name.to_string(),
        })
    }

    /// Open the project, creating it if it does not exist yet.
    pub fn open_or_create(store: Store, name: &str, task: TaskKind) -> Result<Self> {
        match store.project(name) {
            Ok(p) if p.task != task => Err(Error::invalid(
                "project",
                format!("`{name}` is a {} project, not {task}", p.task),
            )),
            Ok(_) => Self::open(store, name),
            Err(Error::NotFound { .. }) => Self::create(store, name, task, ""),
            Err(e) => Err(e),
        }
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store it lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The project's record (task, status, step).
    pub fn info(&self) -> Result<exeml_core::store::Project> {
        self.store.project(&self.name)
    }

    /// The project's task.
    pub fn task(&self) -> Result<TaskKind> {
        Ok(self.info()?.task)
    }

    /// Refuse a step meant for `task` on a project of another task, naming both.
    fn require(&self, task: TaskKind, step: &str) -> Result<()> {
        let actual = self.task()?;
        if actual == task {
            Ok(())
        } else {
            Err(Error::invalid(
                "project",
                format!(
                    "`{}` is a {actual} project; {step} is for {task} projects",
                    self.name
                ),
            ))
        }
    }

    /// The error for a step this build cannot do on the project's task yet.
    fn unsupported(&self, task: TaskKind, step: &str) -> Error {
        Error::invalid(
            "project",
            format!(
                "`{}` is a {task} project; {step} supports tabular and image projects so far",
                self.name
            ),
        )
    }

    /// Run the data checks on the current data (the table, or the labelled images).
    pub fn check(&self) -> Result<CheckReport> {
        match self.task()? {
            TaskKind::Tabular => self.check_table(),
            TaskKind::Image => Ok(self.check_images()?.0),
            task => Err(self.unsupported(task, "checking")),
        }
    }

    /// Publish an immutable dataset version of the current data: checks (refusing on errors)
    /// and a seeded stratified split; a table is snapshotted, images are referenced (the store
    /// keeps every file a version uses).
    pub fn publish(&self, split: SplitSpec) -> Result<DatasetVersion> {
        match self.task()? {
            TaskKind::Tabular => self.publish_table(split),
            TaskKind::Image => self.publish_images(split),
            task => Err(self.unsupported(task, "publishing")),
        }
    }

    /// The dataset version to train on: the one named, or else the project's data as it is
    /// now, published with the latest version's split (`split` for the first version). SPEC §1
    /// publishes a version when training starts; publishing what an existing version already
    /// holds returns that version, so unchanged data trains on the latest version and changed
    /// data (new images, new labels, a new table) on a new one.
    fn version_to_train(&self, version: Option<&str>, split: SplitSpec) -> Result<DatasetVersion> {
        if let Some(v) = version {
            return self.store.dataset_version(&self.name, v);
        }
        let split = match self.store.dataset_versions(&self.name)?.pop() {
            Some(latest) => latest.split,
            None => split,
        };
        self.publish(split)
    }

    /// Register the model that `write` writes into a fresh draft folder as the next model
    /// version. A run that fails or is killed registers nothing; the project's state says
    /// whether training completed.
    fn register(
        &self,
        write: impl FnOnce(&Path) -> Result<()>,
        record: NewModelVersion,
    ) -> Result<ModelVersion> {
        let draft = self.store.begin_model_version(&self.name)?;
        write(draft.path())?;
        let registered = self
            .store
            .register_model_version(&self.name, draft, record)?;
        self.set_state(ProjectStatus::Completed, WorkflowStep::Evaluate)?;
        Ok(registered)
    }

    /// Mark the project as training, run `fit`, and mark it failed if `fit` does.
    fn training<T>(&self, fit: impl FnOnce() -> Result<T>) -> Result<T> {
        self.set_state(ProjectStatus::Running, WorkflowStep::Train)?;
        fit().inspect_err(|_| {
            // The training error is the one to report; a failure to record it is secondary.
            let _ = self.set_state(ProjectStatus::Failed, WorkflowStep::Train);
        })
    }

    fn set_state(&self, status: ProjectStatus, step: WorkflowStep) -> Result<()> {
        self.store.set_project_state(&self.name, status, step)
    }
}

/// A JSON value of a model's record, or a data error naming the draft folder.
fn json_value<T: serde::Serialize>(value: &T, at: &Path) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::data(at, e.to_string()))
}
