//! Samples: the imported files of a project and their labels.

use super::{count, files, names, now, Store};
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension, ToSql};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A sample to add: a file already in the project's data folder and its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSample {
    /// Path relative to the project's data folder (see [`Store::import_file`]).
    pub source: String,
    /// Its labels (none for an unlabelled sample or a table file).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Who labelled it (a person or a model), if labelled.
    #[serde(default)]
    pub labelled_by: Option<String>,
}

impl NewSample {
    /// An unlabelled sample.
    pub fn new(source: impl Into<String>) -> Self {
        NewSample {
            source: source.into(),
            ..NewSample::default()
        }
    }

    /// A sample with labels.
    pub fn labelled<S: Into<String>>(
        source: impl Into<String>,
        labels: impl IntoIterator<Item = S>,
    ) -> Self {
        NewSample {
            source: source.into(),
            labels: labels.into_iter().map(Into::into).collect(),
            labelled_by: None,
        }
    }
}

/// A stored sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Its id, unique in the workspace.
    pub id: i64,
    /// Path relative to the project's data folder.
    pub source: String,
    /// Its labels, sorted.
    pub labels: Vec<String>,
    /// Who labelled it.
    pub labelled_by: Option<String>,
    /// When its labels last changed (Unix seconds); `None` while unlabelled.
    pub labelled_at: Option<i64>,
    /// When it was added (Unix seconds).
    pub created_at: i64,
}

/// Which samples to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SampleFilter {
    /// Every sample.
    #[default]
    All,
    /// Samples with at least one label.
    Labelled,
    /// Samples without labels.
    Unlabelled,
    /// Samples carrying this label.
    WithLabel(String),
}

impl Store {
    /// Copy `source` into the project's data folder as `rel_name` (atomically) and return the
    /// stored path. `rel_name` must stay inside the folder: `..` and absolute paths are
    /// [`Error::InvalidParameter`]. Importing identical bytes again is a no-op; replacing a file
    /// that a published dataset version uses is refused.
    pub fn import_file(&self, project: &str, source: &Path, rel_name: &str) -> Result<PathBuf> {
        let project_id = self.project_id(&self.conn, project)?;
        let rel = names::relative_path(rel_name, "file name")?;
        let meta = std::fs::metadata(source).map_err(|e| Error::io(source, e))?;
        if !meta.is_file() {
            return Err(Error::data(source, "not a regular file"));
        }
        let target = self.data_dir(project).join(&rel);
        if target.exists() {
            if files::same_content(source, &target)? {
                return Ok(target);
            }
            if let Some(version) = self.version_using(&self.conn, project_id, &rel)? {
                return Err(Error::invalid(
                    "file name",
                    format!(
                        "`{rel}` is part of published dataset version {version} and cannot be \
                         replaced; import the new file under another name"
                    ),
                ));
            }
        }
        files::copy_atomic(source, &target, None)?;
        Ok(target)
    }

    /// Add samples in one transaction and return their ids. Each source must be a file in the
    /// data folder, not yet a sample ([`Error::AlreadyExists`]); labels must be valid.
    pub fn add_samples(&self, project: &str, samples: &[NewSample]) -> Result<Vec<i64>> {
        self.project_id(&self.conn, project)?;
        let data_dir = self.data_dir(project);
        let mut checked = Vec::with_capacity(samples.len());
        let mut seen = BTreeSet::new();
        for sample in samples {
            let source = names::relative_path(&sample.source, "source")?;
            if !data_dir.join(&source).is_file() {
                return Err(Error::not_found(
                    "file",
                    data_dir.join(&source).display().to_string(),
                ));
            }
            if !seen.insert(source.clone()) {
                return Err(Error::invalid(
                    "samples",
                    format!("`{source}` is listed twice"),
                ));
            }
            let labels = names::normalize_labels(&sample.labels)?;
            checked.push((source, labels, sample.labelled_by.clone()));
        }
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let t = now();
        let mut ids = Vec::with_capacity(checked.len());
        for (source, labels, labelled_by) in &checked {
            ids.push(self.insert_sample(&tx, project_id, source, labels, labelled_by, t)?);
        }
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        Ok(ids)
    }

    /// The project's samples matching `filter`, by id.
    pub fn samples(&self, project: &str, filter: SampleFilter) -> Result<Vec<Sample>> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let (condition, label) = match &filter {
            SampleFilter::All => ("", None),
            SampleFilter::Labelled => (
                "AND EXISTS (SELECT 1 FROM sample_labels x WHERE x.sample_id = s.id)",
                None,
            ),
            SampleFilter::Unlabelled => (
                "AND NOT EXISTS (SELECT 1 FROM sample_labels x WHERE x.sample_id = s.id)",
                None,
            ),
            SampleFilter::WithLabel(label) => (
                "AND EXISTS (SELECT 1 FROM sample_labels x WHERE x.sample_id = s.id AND x.label = ?2)",
                Some(label),
            ),
        };
        let mut args: Vec<&dyn ToSql> = vec![&project_id];
        if let Some(label) = &label {
            args.push(label);
        }
        self.query_samples(&tx, condition, &args)
    }

    /// One sample of the project, or [`Error::NotFound`].
    pub fn sample(&self, project: &str, id: i64) -> Result<Sample> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        self.query_samples(&tx, "AND s.id = ?2", &[&project_id, &id])?
            .pop()
            .ok_or_else(|| Error::not_found("sample", format!("{project}/{id}")))
    }

    /// How many samples carry each label.
    pub fn label_counts(&self, project: &str) -> Result<BTreeMap<String, usize>> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let mut stmt = tx
            .prepare(
                "SELECT l.label, count(*) FROM sample_labels l JOIN samples s ON s.id = l.sample_id
                 WHERE s.project_id = ?1 GROUP BY l.label",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([project_id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(self.sql())?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let (label, n) = row.map_err(self.sql())?;
            counts.insert(label, count(n));
        }
        Ok(counts)
    }

    /// Delete samples (and their labels) by id; their files stay. An id that is not a sample of
    /// the project is [`Error::NotFound`] and nothing is deleted. Returns how many were deleted.
    pub fn delete_samples(&self, project: &str, ids: &[i64]) -> Result<usize> {
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let ids: BTreeSet<i64> = ids.iter().copied().collect();
        self.check_sample_ids(&tx, project, project_id, &ids)?;
        for id in &ids {
            tx.execute("DELETE FROM samples WHERE id = ?1", [id])
                .map_err(self.sql())?;
        }
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        Ok(ids.len())
    }

    /// Insert one checked sample (source normalized, labels valid and sorted).
    pub(super) fn insert_sample(
        &self,
        conn: &Connection,
        project_id: i64,
        source: &str,
        labels: &[String],
        labelled_by: &Option<String>,
        t: i64,
    ) -> Result<i64> {
        if self.sample_with_source(conn, project_id, source)?.is_some() {
            return Err(Error::AlreadyExists {
                kind: "sample",
                name: source.to_string(),
            });
        }
        let labelled_at = (!labels.is_empty()).then_some(t);
        conn.execute(
            "INSERT INTO samples (project_id, source, labelled_by, labelled_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            (project_id, source, labelled_by, labelled_at, t),
        )
        .map_err(self.sql())?;
        let id = conn.last_insert_rowid();
        for label in labels {
            conn.execute(
                "INSERT INTO sample_labels (sample_id, label) VALUES (?1, ?2)",
                (id, label),
            )
            .map_err(self.sql())?;
        }
        Ok(id)
    }

    /// The id of the project's sample with this source, if any.
    pub(super) fn sample_with_source(
        &self,
        conn: &Connection,
        project_id: i64,
        source: &str,
    ) -> Result<Option<i64>> {
        conn.query_row(
            "SELECT id FROM samples WHERE project_id = ?1 AND source = ?2",
            (project_id, source),
            |row| row.get(0),
        )
        .optional()
        .map_err(self.sql())
    }

    /// The first published dataset version that refers to this data-folder file, if any.
    pub(super) fn version_using(
        &self,
        conn: &Connection,
        project_id: i64,
        source: &str,
    ) -> Result<Option<String>> {
        conn.query_row(
            "SELECT v.name FROM version_sources f JOIN dataset_versions v ON v.id = f.version_id
             WHERE v.project_id = ?1 AND f.source = ?2 ORDER BY v.seq LIMIT 1",
            (project_id, source),
            |row| row.get(0),
        )
        .optional()
        .map_err(self.sql())
    }

    /// [`Error::NotFound`] for the first id that is not a sample of the project.
    pub(super) fn check_sample_ids(
        &self,
        conn: &Connection,
        project: &str,
        project_id: i64,
        ids: &BTreeSet<i64>,
    ) -> Result<()> {
        let mut stmt = conn
            .prepare("SELECT 1 FROM samples WHERE id = ?1 AND project_id = ?2")
            .map_err(self.sql())?;
        for &id in ids {
            if !stmt.exists((id, project_id)).map_err(self.sql())? {
                return Err(Error::not_found("sample", format!("{project}/{id}")));
            }
        }
        Ok(())
    }

    /// Samples of `args[0]`'s project matching an extra SQL `condition`, with their labels.
    fn query_samples(
        &self,
        conn: &Connection,
        condition: &str,
        args: &[&dyn ToSql],
    ) -> Result<Vec<Sample>> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT s.id, s.source, s.labelled_by, s.labelled_at, s.created_at, l.label
                 FROM samples s LEFT JOIN sample_labels l ON l.sample_id = s.id
                 WHERE s.project_id = ?1 {condition}
                 ORDER BY s.id, l.label"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(args, |row| {
                Ok((
                    Sample {
                        id: row.get(0)?,
                        source: row.get(1)?,
                        labels: Vec::new(),
                        labelled_by: row.get(2)?,
                        labelled_at: row.get(3)?,
                        created_at: row.get(4)?,
                    },
                    row.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(self.sql())?;
        let mut samples: Vec<Sample> = Vec::new();
        for row in rows {
            let (sample, label) = row.map_err(self.sql())?;
            if samples.last().is_none_or(|last| last.id != sample.id) {
                samples.push(sample);
            }
            if let (Some(label), Some(last)) = (label, samples.last_mut()) {
                last.labels.push(label);
            }
        }
        Ok(samples)
    }
}
