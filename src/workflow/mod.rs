//! The project workflow of SPEC §1 over the embedded store: import → check → publish a dataset
//! version → train → register a model version → evaluate/predict. Every step is callable on its
//! own; each records the project's status and step.

use exeml_core::checks::CheckReport;
use exeml_core::fsio::{read_json, write_json_atomic};
use exeml_core::store::{
    DatasetVersion, ManifestEntry, ModelVersion, NewModelVersion, NewProject, NewSample,
    ProjectStatus, PublishRequest, SampleFilter, Store, WorkflowStep,
};
use exeml_core::Dataset;
use exeml_core::{Budget, Error, Progress, Result, SplitSpec, TaskKind, Usage};
use exeml_tabular::split_rows;
use exeml_tabular::TabularDataset;
use exeml_tabular::{HeaderMode, ReadOptions, Table, TabularModel, TabularPredictor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const TABLE_SETTINGS: &str = "tabular.json";

/// Which table of a tabular project is its data, and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSettings {
    /// The table's file name inside the project's data folder.
    pub table: String,
    /// The label column (`None`: the last column).
    pub label: Option<String>,
    /// Whether the CSV has a header: `auto`, `present` or `absent`.
    pub header: String,
}

impl TableSettings {
    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            header: match self.header.as_str() {
                "present" => HeaderMode::Present,
                "absent" => HeaderMode::Absent,
                _ => HeaderMode::Auto,
            },
        }
    }
}

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

    fn require_tabular(&self) -> Result<()> {
        let task = self.info()?.task;
        if task == TaskKind::Tabular {
            Ok(())
        } else {
            Err(Error::invalid(
                "project",
                format!(
                    "`{}` is a {task} project; this step supports tabular projects only so far",
                    self.name
                ),
            ))
        }
    }

    fn settings_path(&self) -> PathBuf {
        self.store.project_dir(&self.name).join(TABLE_SETTINGS)
    }

    /// The table settings of a tabular project (after [`Project::import_table`]).
    pub fn table_settings(&self) -> Result<TableSettings> {
        let path = self.settings_path();
        if !path.exists() {
            return Err(Error::not_found(
                "table",
                format!(
                    "project `{}` has no data yet: import a table first",
                    self.name
                ),
            ));
        }
        read_json(&path)
    }

    /// Import a table into a tabular project (copied into the workspace) and set its label.
    /// Importing again replaces the current table; published versions keep their own copies.
    pub fn import_table(
        &self,
        path: &Path,
        label: Option<&str>,
        header: HeaderMode,
    ) -> Result<Table> {
        self.require_tabular()?;
        let options = ReadOptions { header };
        let table = Table::read(path, options)?;
        if let Some(label) = label {
            table.column(label)?;
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::data(path, "not a file"))?;
        self.store.import_file(&self.name, path, &file_name)?;
        let known = self.store.samples(&self.name, SampleFilter::All)?;
        if !known.iter().any(|s| s.source == file_name) {
            self.store
                .add_samples(&self.name, &[NewSample::new(file_name.clone())])?;
        }
        let settings = TableSettings {
            table: file_name,
            label: label.map(str::to_string),
            header: match header {
                HeaderMode::Auto => "auto",
                HeaderMode::Present => "present",
                HeaderMode::Absent => "absent",
            }
            .into(),
        };
        write_json_atomic(&self.settings_path(), &settings)?;
        self.set_state(ProjectStatus::Created, WorkflowStep::Check)?;
        Ok(table)
    }

    fn current_table(&self) -> Result<(TableSettings, Table)> {
        let settings = self.table_settings()?;
        let path = self.store.data_dir(&self.name).join(&settings.table);
        let table = Table::read(&path, settings.read_options())?;
        Ok((settings, table))
    }

    /// Run the data checks on the current data.
    pub fn check(&self) -> Result<CheckReport> {
        self.require_tabular()?;
        let (settings, table) = self.current_table()?;
        Ok(check_tabular(&table, settings.label.as_deref())?.0)
    }

    /// Publish an immutable dataset version of the current data: checks (refusing on errors),
    /// a seeded stratified split, and a snapshot of the table.
    pub fn publish(&self, split: SplitSpec) -> Result<DatasetVersion> {
        self.require_tabular()?;
        let split = split.check()?;
        let (settings, table) = self.current_table()?;
        let dataset = TabularDataset::new(table, settings.label.as_deref(), None)?;
        let report = dataset.check().into_result(&dataset.table.source)?;
        let usage = split_rows(&dataset.table, &dataset.target, split)?;
        let label = dataset.label().to_string();
        let texts = &dataset.labels;
        let entries = usage
            .iter()
            .enumerate()
            .map(|(row, &usage)| ManifestEntry {
                source: settings.table.clone(),
                row: Some(row as u64),
                labels: texts[row].clone().into_iter().collect(),
                usage,
            })
            .collect();
        let request = PublishRequest {
            entries,
            split,
            checks: report,
            snapshot_files: vec![PathBuf::from(&settings.table)],
            meta: serde_json::json!({ "label": label, "table": settings.table, "header": settings.header }),
        };
        let version = self.store.publish_version(&self.name, request)?;
        self.set_state(ProjectStatus::Created, WorkflowStep::Train)?;
        Ok(version)
    }

    /// The table and split of a dataset version.
    pub fn version_data(&self, version: &DatasetVersion) -> Result<(Table, Vec<Usage>, String)> {
        let table_name = version.meta["table"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let label = version.meta["label"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let header = version.meta["header"]
            .as_str()
            .unwrap_or("auto")
            .to_string();
        let settings = TableSettings {
            table: table_name.clone(),
            label: Some(label.clone()),
            header,
        };
        let table = Table::read(&version.source_path(&table_name), settings.read_options())?;
        let entries = self.store.version_entries(&self.name, &version.name)?;
        let mut usage = vec![Usage::Train; table.n_rows()];
        for entry in entries {
            let row = entry.row.unwrap_or(u64::MAX) as usize;
            let slot = usage.get_mut(row).ok_or_else(|| {
                Error::data(
                    version.manifest_path(),
                    format!("row {row} is outside the table"),
                )
            })?;
            *slot = entry.usage;
        }
        Ok((table, usage, label))
    }

    /// Train a new model version on a dataset version (default: the latest, published now if
    /// there is none), optionally warm-started from an earlier model version.
    ///
    /// The model is written into a staging folder and registered in one transaction: a run
    /// that fails or is killed registers nothing.
    pub fn train(
        &self,
        version: Option<&str>,
        predictor: &TabularPredictor,
        parent: Option<&str>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<ModelVersion> {
        self.require_tabular()?;
        let version = match version {
            Some(v) => self.store.dataset_version(&self.name, v)?,
            None => match self.store.dataset_versions(&self.name)?.pop() {
                Some(v) => v,
                None => self.publish(SplitSpec {
                    train_ratio: predictor.train_ratio,
                    seed: predictor.seed,
                })?,
            },
        };
        let (table, usage, label) = self.version_data(&version)?;
        let mut config = predictor.clone();
        config.label = Some(label);
        if let Some(parent) = parent {
            let parent_model = self.load_model(parent)?;
            config = config.warm_start(parent, &parent_model);
        }
        self.set_state(ProjectStatus::Running, WorkflowStep::Train)?;
        let result = config.fit_with(&table, Some(&usage), budget, progress);
        let mut model = match result {
            Ok(m) => m,
            Err(e) => {
                self.set_state(ProjectStatus::Failed, WorkflowStep::Train)?;
                return Err(e);
            }
        };
        model.manifest.lineage.dataset_version = Some(version.name.clone());
        model.manifest.lineage.data = Some(
            version
                .source_path(&version.snapshot_files.first().cloned().unwrap_or_default())
                .display()
                .to_string(),
        );
        let draft = self.store.begin_model_version(&self.name)?;
        model.write_into(draft.path())?;
        let record = NewModelVersion {
            dataset_version: Some(version.name.clone()),
            parent: parent.map(str::to_string),
            params: serde_json::json!({
                "family": model.manifest.family,
                "params": model.manifest.params,
                "preference": predictor.preference,
                "seed": predictor.seed,
                "time_limit_secs": budget.limit().as_secs_f64(),
            }),
            search_history: serde_json::to_value(&model.manifest.leaderboard)
                .map_err(|e| Error::data(draft.path(), e.to_string()))?,
            metrics: serde_json::to_value(model.validation())
                .map_err(|e| Error::data(draft.path(), e.to_string()))?,
            duration_secs: model.manifest.lineage.fit_secs,
            summary: model.summary(),
        };
        let registered = self
            .store
            .register_model_version(&self.name, draft, record)?;
        self.set_state(ProjectStatus::Completed, WorkflowStep::Evaluate)?;
        Ok(registered)
    }

    /// Load a registered model version.
    pub fn load_model(&self, version: &str) -> Result<TabularModel> {
        let record = self.store.model_version(&self.name, version)?;
        TabularModel::load(&record.artifact_dir)
    }

    fn set_state(&self, status: ProjectStatus, step: WorkflowStep) -> Result<()> {
        self.store.set_project_state(&self.name, status, step)
    }
}

/// Run the tabular checks on a table; returns the report and the label column used.
pub fn check_tabular(table: &Table, label: Option<&str>) -> Result<(CheckReport, String)> {
    let dataset = TabularDataset::new(table.clone(), label, None)?;
    Ok((dataset.check(), dataset.label().to_string()))
}
