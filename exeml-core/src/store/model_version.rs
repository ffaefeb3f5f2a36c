//! Model versions 0.0.1, 0.0.2, … with their lineage, metrics, parameters and artifacts.

use super::{files, now, Store};
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A model version being written: a hidden staging folder under the project's `models/`.
///
/// Write the artifacts into [`ModelDraft::path`], then hand the draft to
/// [`Store::register_model_version`]. Dropping it unregistered removes the folder; a process
/// killed mid-training leaves only the staging folder, which no listing shows and
/// [`Store::cleanup_stale`] removes.
#[derive(Debug)]
pub struct ModelDraft {
    project: String,
    staging: files::Staging,
}

impl ModelDraft {
    /// The folder to write the artifacts into.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// The project it belongs to.
    pub fn project(&self) -> &str {
        &self.project
    }
}

/// What a training run records with its model version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewModelVersion {
    /// The dataset version it was trained on.
    pub dataset_version: Option<String>,
    /// The model version it started from (incremental training).
    pub parent: Option<String>,
    /// The chosen configuration.
    pub params: serde_json::Value,
    /// The trials of the search.
    pub search_history: serde_json::Value,
    /// Its validation metrics.
    pub metrics: serde_json::Value,
    /// Training wall-clock time in seconds.
    pub duration_secs: f64,
    /// One line for listings, e.g. `gbdt, accuracy 0.93`.
    pub summary: String,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Its project.
    pub project: String,
    /// `0.0.N`.
    pub version: String,
    /// Registration time, Unix seconds.
    pub created_at: i64,
    /// The dataset version it was trained on.
    pub dataset_version: Option<String>,
    /// The model version it started from.
    pub parent: Option<String>,
    /// The chosen configuration.
    pub params: serde_json::Value,
    /// The trials of the search.
    pub search_history: serde_json::Value,
    /// Its validation metrics.
    pub metrics: serde_json::Value,
    /// Training wall-clock time in seconds.
    pub duration_secs: f64,
    /// One line for listings.
    pub summary: String,
    /// The folder of its artifacts.
    pub artifact_dir: PathBuf,
    /// Whether it is deployed.
    pub deployed: bool,
}

const MODEL_COLUMNS: &str = "version, created_at, dataset_version, parent, params, search_history,
     metrics, duration_secs, summary, deployed";

type ModelRow = (
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    f64,
    String,
    bool,
);

fn model_row(row: &Row<'_>) -> rusqlite::Result<ModelRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

/// The number N of `0.0.N` (or of a bare `N`).
fn model_seq(version: &str) -> Option<i64> {
    version
        .strip_prefix("0.0.")
        .unwrap_or(version)
        .parse::<i64>()
        .ok()
        .filter(|&n| n > 0)
}

impl Store {
    /// Start a model version: a staging folder under the project's `models/`. No number is
    /// allocated until [`Store::register_model_version`]. Also removes what killed runs of this
    /// project left behind.
    pub fn begin_model_version(&self, project: &str) -> Result<ModelDraft> {
        self.project_id(&self.conn, project)?;
        // Best effort: a failed clean-up must not stop a training run.
        let _ = self.cleanup_project(project);
        Ok(ModelDraft {
            project: project.to_string(),
            staging: files::Staging::new_in(&self.models_dir(project))?,
        })
    }

    /// Register a draft as the next version `0.0.N`: in one write transaction the number is
    /// allocated, the folder renamed to `models/0.0.N` and the row inserted. On any failure
    /// nothing is registered and the folder is removed. Numbers are never reused.
    pub fn register_model_version(
        &self,
        project: &str,
        draft: ModelDraft,
        record: NewModelVersion,
    ) -> Result<ModelVersion> {
        if draft.project != project {
            return Err(Error::invalid(
                "model draft",
                format!(
                    "the draft was begun for project `{}`, not `{project}`",
                    draft.project
                ),
            ));
        }
        if !(record.duration_secs.is_finite() && record.duration_secs >= 0.0) {
            return Err(Error::invalid(
                "duration",
                format!("{} s is not a duration", record.duration_secs),
            ));
        }
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let dataset_version = match &record.dataset_version {
            Some(v) => Some(
                self.find_version(&tx, project_id, v)?
                    .ok_or_else(|| Error::not_found("dataset version", format!("{project}/{v}")))?
                    .0,
            ),
            None => None,
        };
        let parent = match &record.parent {
            Some(p) => Some(
                self.find_model(&tx, project_id, p)?
                    .ok_or_else(|| Error::not_found("model version", format!("{project}/{p}")))?
                    .0,
            ),
            None => None,
        };
        let seq: i64 = tx
            .query_row(
                "SELECT next_model_version FROM projects WHERE id = ?1",
                [project_id],
                |row| row.get(0),
            )
            .map_err(self.sql())?;
        let version = format!("0.0.{seq}");
        let target = self.models_dir(project).join(&version);
        // A folder without a row is what a killed registration left: we hold the lock.
        files::remove_tree(&target)?;
        draft.staging.publish(&target)?;
        let cleanup = files::RemoveOnDrop::new(vec![target.clone()]);
        let created_at = now();
        tx.execute(
            "INSERT INTO model_versions (project_id, seq, version, created_at, dataset_version,
                parent, params, search_history, metrics, duration_secs, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![
                project_id,
                seq,
                &version,
                created_at,
                &dataset_version,
                &parent,
                self.json_text(&record.params)?,
                self.json_text(&record.search_history)?,
                self.json_text(&record.metrics)?,
                record.duration_secs,
                &record.summary,
            ],
        )
        .map_err(self.sql())?;
        tx.execute(
            "UPDATE projects SET next_model_version = ?2, updated_at = ?3 WHERE id = ?1",
            (project_id, seq + 1, created_at),
        )
        .map_err(self.sql())?;
        tx.commit().map_err(self.sql())?;
        cleanup.disarm();
        Ok(ModelVersion {
            project: project.to_string(),
            version,
            created_at,
            dataset_version,
            parent,
            params: record.params,
            search_history: record.search_history,
            metrics: record.metrics,
            duration_secs: record.duration_secs,
            summary: record.summary,
            artifact_dir: target,
            deployed: false,
        })
    }

    /// The project's model versions, in version order (0.0.9 before 0.0.10).
    pub fn model_versions(&self, project: &str) -> Result<Vec<ModelVersion>> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {MODEL_COLUMNS} FROM model_versions WHERE project_id = ?1 ORDER BY seq"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([project_id], model_row)
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|row| self.model_from_row(project, row))
            .collect()
    }

    /// One model version (`0.0.3`, or `3`), or [`Error::NotFound`].
    pub fn model_version(&self, project: &str, version: &str) -> Result<ModelVersion> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let row = self
            .find_model(&tx, project_id, version)?
            .ok_or_else(|| Error::not_found("model version", format!("{project}/{version}")))?;
        self.model_from_row(project, row)
    }

    /// Delete a model version and its artifacts. A deployed version must be undeployed first.
    pub fn delete_model_version(&self, project: &str, version: &str) -> Result<()> {
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let (name, deployed) = self
            .find_model(&tx, project_id, version)?
            .map(|row| (row.0, row.9))
            .ok_or_else(|| Error::not_found("model version", format!("{project}/{version}")))?;
        if deployed {
            return Err(Error::invalid(
                "model version",
                format!("{project}/{name} is deployed; undeploy it before deleting it"),
            ));
        }
        tx.execute(
            "DELETE FROM model_versions WHERE project_id = ?1 AND version = ?2",
            (project_id, &name),
        )
        .map_err(self.sql())?;
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        files::remove_tree(&self.models_dir(project).join(&name))
    }

    /// Mark a model version as deployed or not.
    pub fn set_deployed(&self, project: &str, version: &str, deployed: bool) -> Result<()> {
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let name = self
            .find_model(&tx, project_id, version)?
            .map(|row| row.0)
            .ok_or_else(|| Error::not_found("model version", format!("{project}/{version}")))?;
        tx.execute(
            "UPDATE model_versions SET deployed = ?3 WHERE project_id = ?1 AND version = ?2",
            (project_id, &name, deployed),
        )
        .map_err(self.sql())?;
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())
    }

    fn find_model(
        &self,
        conn: &Connection,
        project_id: i64,
        version: &str,
    ) -> Result<Option<ModelRow>> {
        let Some(seq) = model_seq(version) else {
            return Ok(None);
        };
        conn.query_row(
            &format!(
                "SELECT {MODEL_COLUMNS} FROM model_versions WHERE project_id = ?1 AND seq = ?2"
            ),
            (project_id, seq),
            model_row,
        )
        .optional()
        .map_err(self.sql())
    }

    fn model_from_row(&self, project: &str, row: ModelRow) -> Result<ModelVersion> {
        let (
            version,
            created_at,
            dataset_version,
            parent,
            params,
            history,
            metrics,
            secs,
            summary,
            deployed,
        ) = row;
        Ok(ModelVersion {
            project: project.to_string(),
            artifact_dir: self.models_dir(project).join(&version),
            version,
            created_at,
            dataset_version,
            parent,
            params: self.parse_json(&params, "params")?,
            search_history: self.parse_json(&history, "search_history")?,
            metrics: self.parse_json(&metrics, "metrics")?,
            duration_secs: secs,
            summary,
            deployed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_numbers() {
        assert_eq!(model_seq("0.0.10"), Some(10));
        assert_eq!(model_seq("7"), Some(7));
        assert_eq!(model_seq("0.0.0"), None);
        assert_eq!(model_seq("1.2.3"), None);
        assert_eq!(model_seq("0.0.x"), None);
    }
}
