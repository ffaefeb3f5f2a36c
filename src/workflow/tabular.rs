//! The steps of a tabular project: import a table, check it, publish a version with a snapshot
//! of the table, train a [`TabularPredictor`] on a version.

use super::{json_value, Project};
use exeml_core::checks::CheckReport;
use exeml_core::fsio::{read_json, write_json_atomic};
use exeml_core::store::{
    DatasetVersion, ManifestEntry, ModelVersion, NewModelVersion, NewSample, ProjectStatus,
    PublishRequest, SampleFilter, WorkflowStep,
};
use exeml_core::{Budget, Dataset, Error, Progress, Result, SplitSpec, TaskKind, Usage};
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

impl Project {
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
        self.require(TaskKind::Tabular, "importing a table")?;
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

    pub(super) fn check_table(&self) -> Result<CheckReport> {
        let (settings, table) = self.current_table()?;
        Ok(check_tabular(&table, settings.label.as_deref())?.0)
    }

    pub(super) fn publish_table(&self, split: SplitSpec) -> Result<DatasetVersion> {
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

    /// The table and split of a dataset version of a tabular project.
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

    /// Train a new model version of a tabular project on a dataset version (default: the
    /// current data, published now unless the latest version holds it already; see
    /// [`Project::publish`]), optionally warm-started from an earlier model version.
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
        self.require(TaskKind::Tabular, "training a tabular predictor")?;
        let version = self.version_to_train(
            version,
            SplitSpec {
                train_ratio: predictor.train_ratio,
                seed: predictor.seed,
            },
        )?;
        let (table, usage, label) = self.version_data(&version)?;
        let mut config = predictor.clone();
        config.label = Some(label);
        if let Some(parent) = parent {
            let parent_model = self.load_model(parent)?;
            config = config.warm_start(parent, &parent_model);
        }
        let mut model =
            self.training(|| config.fit_with(&table, Some(&usage), budget, progress))?;
        model.manifest.lineage.dataset_version = Some(version.name.clone());
        model.manifest.lineage.data = Some(
            version
                .source_path(&version.snapshot_files.first().cloned().unwrap_or_default())
                .display()
                .to_string(),
        );
        let at = self.store.project_dir(&self.name);
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
            search_history: json_value(&model.manifest.leaderboard, &at)?,
            metrics: json_value(model.validation(), &at)?,
            duration_secs: model.manifest.lineage.fit_secs,
            summary: model.summary(),
        };
        self.register(|dir| model.write_into(dir), record)
    }

    /// Load a registered model version of a tabular project.
    pub fn load_model(&self, version: &str) -> Result<TabularModel> {
        let record = self.store.model_version(&self.name, version)?;
        TabularModel::load(&record.artifact_dir)
    }
}

/// Run the tabular checks on a table; returns the report and the label column used.
pub fn check_tabular(table: &Table, label: Option<&str>) -> Result<(CheckReport, String)> {
    let dataset = TabularDataset::new(table.clone(), label, None)?;
    Ok((dataset.check(), dataset.label().to_string()))
}
