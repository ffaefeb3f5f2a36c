//! Label operations of SPEC §1: add, change, rename and delete (with a plan of what goes).

use super::{names, now, Store};
use crate::{Error, Result};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// What deleting a label removes besides the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteLabelMode {
    /// Only the label: its samples stay (some become unlabelled).
    LabelOnly,
    /// The label, and the samples whose only label it was (their files stay).
    LabelAndOnlyLabelledSamples,
    /// As above, and those samples' files too (except files a published version uses).
    SamplesAndFiles,
}

/// A sample named in a [`DeletionPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRef {
    /// Its id.
    pub id: i64,
    /// Its source, relative to the data folder.
    pub source: String,
}

/// What deleting a label removes (or removed): deletions cannot be undone, so they say first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionPlan {
    /// The label.
    pub label: String,
    /// The mode.
    pub mode: DeleteLabelMode,
    /// Samples that stay but lose the label.
    pub label_removed_from: Vec<i64>,
    /// Samples deleted (they carried only this label).
    pub samples_deleted: Vec<SampleRef>,
    /// Files deleted.
    pub files_deleted: Vec<PathBuf>,
    /// Files of deleted samples that stay because a published dataset version uses them.
    pub files_kept: Vec<PathBuf>,
}

impl fmt::Display for DeletionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "label `{}`: removed from {} sample(s), {} sample(s) deleted, {} file(s) deleted",
            self.label,
            self.label_removed_from.len(),
            self.samples_deleted.len(),
            self.files_deleted.len()
        )?;
        if !self.files_kept.is_empty() {
            write!(
                f,
                ", {} file(s) kept because a published dataset version uses them",
                self.files_kept.len()
            )?;
        }
        Ok(())
    }
}

impl Store {
    /// Add `label` to samples; returns how many did not have it yet.
    pub fn add_label(&self, project: &str, sample_ids: &[i64], label: &str) -> Result<usize> {
        names::validate_label(label)?;
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let ids: BTreeSet<i64> = sample_ids.iter().copied().collect();
        self.check_sample_ids(&tx, project, project_id, &ids)?;
        let t = now();
        let mut added = 0;
        for id in ids {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO sample_labels (sample_id, label) VALUES (?1, ?2)",
                    (id, label),
                )
                .map_err(self.sql())?;
            if n > 0 {
                tx.execute("UPDATE samples SET labelled_at = ?2 WHERE id = ?1", (id, t))
                    .map_err(self.sql())?;
                added += 1;
            }
        }
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        Ok(added)
    }

    /// Replace a sample's labels (an empty list makes it unlabelled).
    pub fn set_labels(&self, project: &str, sample_id: i64, labels: &[String]) -> Result<()> {
        let labels = names::normalize_labels(labels)?;
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        self.check_sample_ids(&tx, project, project_id, &BTreeSet::from([sample_id]))?;
        tx.execute(
            "DELETE FROM sample_labels WHERE sample_id = ?1",
            [sample_id],
        )
        .map_err(self.sql())?;
        for label in &labels {
            tx.execute(
                "INSERT INTO sample_labels (sample_id, label) VALUES (?1, ?2)",
                (sample_id, label),
            )
            .map_err(self.sql())?;
        }
        let labelled_at = (!labels.is_empty()).then(now);
        tx.execute(
            "UPDATE samples SET labelled_at = ?2 WHERE id = ?1",
            (sample_id, labelled_at),
        )
        .map_err(self.sql())?;
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())
    }

    /// Rename a label on every sample of the project; renaming onto a label in use merges the two.
    /// Returns how many samples carried `old`; [`Error::NotFound`] if none did.
    pub fn rename_label(&self, project: &str, old: &str, new: &str) -> Result<usize> {
        names::validate_label(new)?;
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let carriers: i64 = tx
            .query_row(
                "SELECT count(*) FROM sample_labels l JOIN samples s ON s.id = l.sample_id
                 WHERE s.project_id = ?1 AND l.label = ?2",
                (project_id, old),
                |row| row.get(0),
            )
            .map_err(self.sql())?;
        if carriers == 0 {
            return Err(Error::not_found("label", old));
        }
        if old != new {
            let in_project = "sample_id IN (SELECT id FROM samples WHERE project_id = ?1)";
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO sample_labels (sample_id, label)
                     SELECT sample_id, ?3 FROM sample_labels WHERE label = ?2 AND {in_project}"
                ),
                (project_id, old, new),
            )
            .map_err(self.sql())?;
            tx.execute(
                &format!("DELETE FROM sample_labels WHERE label = ?2 AND {in_project}"),
                (project_id, old),
            )
            .map_err(self.sql())?;
            self.touch(&tx, project_id)?;
        }
        tx.commit().map_err(self.sql())?;
        Ok(super::count(carriers))
    }

    /// What [`Store::delete_label`] would remove, without removing anything.
    pub fn plan_delete_label(
        &self,
        project: &str,
        label: &str,
        mode: DeleteLabelMode,
    ) -> Result<DeletionPlan> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        self.deletion_plan(&tx, project, project_id, label, mode)
    }

    /// Delete a label (see [`DeleteLabelMode`]) and return what was removed. Rows go in one
    /// transaction; files are removed after it commits, so a crash can leave a stray file but
    /// never a sample without its file. [`Error::NotFound`] if no sample carries the label.
    pub fn delete_label(
        &self,
        project: &str,
        label: &str,
        mode: DeleteLabelMode,
    ) -> Result<DeletionPlan> {
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let plan = self.deletion_plan(&tx, project, project_id, label, mode)?;
        tx.execute(
            "DELETE FROM sample_labels WHERE label = ?2
             AND sample_id IN (SELECT id FROM samples WHERE project_id = ?1)",
            (project_id, label),
        )
        .map_err(self.sql())?;
        for sample in &plan.samples_deleted {
            tx.execute("DELETE FROM samples WHERE id = ?1", [sample.id])
                .map_err(self.sql())?;
        }
        for id in &plan.label_removed_from {
            tx.execute(
                "UPDATE samples SET labelled_at = CASE
                    WHEN EXISTS (SELECT 1 FROM sample_labels WHERE sample_id = ?1) THEN ?2
                 END WHERE id = ?1",
                (id, now()),
            )
            .map_err(self.sql())?;
        }
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        let mut first_error = None;
        for file in &plan.files_deleted {
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    first_error.get_or_insert(Error::io(file, e));
                }
                _ => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(plan),
        }
    }

    fn deletion_plan(
        &self,
        conn: &Connection,
        project: &str,
        project_id: i64,
        label: &str,
        mode: DeleteLabelMode,
    ) -> Result<DeletionPlan> {
        let mut stmt = conn
            .prepare(
                "SELECT s.id, s.source,
                        (SELECT count(*) FROM sample_labels x WHERE x.sample_id = s.id)
                 FROM samples s JOIN sample_labels l ON l.sample_id = s.id
                 WHERE s.project_id = ?1 AND l.label = ?2 ORDER BY s.id",
            )
            .map_err(self.sql())?;
        let carriers = stmt
            .query_map((project_id, label), |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        if carriers.is_empty() {
            return Err(Error::not_found("label", label));
        }
        let data_dir = self.data_dir(project);
        let mut plan = DeletionPlan {
            label: label.to_string(),
            mode,
            label_removed_from: Vec::new(),
            samples_deleted: Vec::new(),
            files_deleted: Vec::new(),
            files_kept: Vec::new(),
        };
        for (id, source, n_labels) in carriers {
            if mode == DeleteLabelMode::LabelOnly || n_labels > 1 {
                plan.label_removed_from.push(id);
                continue;
            }
            if mode == DeleteLabelMode::SamplesAndFiles {
                let file = data_dir.join(&source);
                if self.version_using(conn, project_id, &source)?.is_some() {
                    plan.files_kept.push(file);
                } else if file.is_file() {
                    plan.files_deleted.push(file);
                }
            }
            plan.samples_deleted.push(SampleRef { id, source });
        }
        Ok(plan)
    }
}
