//! Dataset versions: immutable, numbered snapshots of samples, labels and their split.

use super::manifest::{read_manifest, to_json_lines, ManifestEntry};
use super::{count, files, names, now, SampleFilter, Store};
use crate::checks::CheckReport;
use crate::split::{stratified_split, SplitSpec, Usage};
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Manifest file name inside a version folder.
const MANIFEST: &str = "manifest.jsonl";
/// Folder of snapshot files inside a version folder.
const SNAPSHOT_DIR: &str = "data";

/// What to publish as a new dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// One entry per sample (or table row), with its usage already drawn.
    pub entries: Vec<ManifestEntry>,
    /// The split the usages came from, recorded with the version.
    pub split: SplitSpec,
    /// The data check report, recorded with the version.
    pub checks: CheckReport,
    /// Files copied into the version (e.g. a table), relative to the project's data folder.
    /// Entries whose source is one of them refer to the copy; others to the data folder.
    #[serde(default)]
    pub snapshot_files: Vec<PathBuf>,
    /// Task-specific facts (e.g. the label column).
    #[serde(default)]
    pub meta: serde_json::Value,
}

impl PublishRequest {
    /// A request with no checks, no snapshot files and no meta.
    pub fn new(entries: Vec<ManifestEntry>, split: SplitSpec) -> Self {
        PublishRequest {
            entries,
            split,
            checks: CheckReport::default(),
            snapshot_files: Vec::new(),
            meta: serde_json::Value::Null,
        }
    }
}

/// A published dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    /// Its project.
    pub project: String,
    /// `V001`, `V002`, …
    pub name: String,
    /// Publication time, Unix seconds.
    pub created_at: i64,
    /// SHA-256 (hex) of the manifest, the snapshot files (with their names) and the meta.
    pub content_hash: String,
    /// Number of entries.
    pub n_samples: usize,
    /// Entries used for training.
    pub n_train: usize,
    /// Entries held out for validation.
    pub n_validation: usize,
    /// Entries per label.
    pub label_counts: BTreeMap<String, usize>,
    /// The split recorded with it.
    pub split: SplitSpec,
    /// The data check report recorded with it.
    pub checks: CheckReport,
    /// Files copied into it, relative to the data folder (found under `dir/data/`).
    pub snapshot_files: Vec<String>,
    /// Its folder: `manifest.jsonl`, `checks.json`, `version.json`, `data/`.
    pub dir: PathBuf,
    /// Task-specific facts.
    pub meta: serde_json::Value,
}

impl DatasetVersion {
    /// The version's manifest file.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// Where an entry's source lives: the version's own copy for snapshot files, else the
    /// project's data folder.
    pub fn source_path(&self, source: &str) -> PathBuf {
        if self.snapshot_files.iter().any(|f| f == source) {
            return self.dir.join(SNAPSHOT_DIR).join(source);
        }
        // dir is <project>/versions/<name>
        let project_dir = self
            .dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        project_dir.join("data").join(source)
    }
}

/// Counts of a manifest, computed once while checking it.
struct Tally {
    n_train: usize,
    n_validation: usize,
    label_counts: BTreeMap<String, usize>,
    /// Data-folder files the version refers to (not snapshotted).
    referenced: BTreeSet<String>,
}

const VERSION_COLUMNS: &str = "name, created_at, content_hash, n_samples, n_train, n_validation,
     label_counts, split, checks, snapshot_files, meta";

pub(super) type VersionRow = (
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
);

fn version_row(row: &Row<'_>) -> rusqlite::Result<VersionRow> {
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
        row.get(10)?,
    ))
}

impl Store {
    /// Publish an immutable dataset version: the folder is built under a staging name, then in
    /// one write transaction the next number is allocated, the folder renamed to it and the row
    /// inserted; if anything fails the folder is removed. Publishing content identical to an
    /// existing version (same hash) returns that version instead of a duplicate.
    pub fn publish_version(
        &self,
        project: &str,
        request: PublishRequest,
    ) -> Result<DatasetVersion> {
        let project_id = self.project_id(&self.conn, project)?;
        let split = request.split.check()?;
        if request.entries.is_empty() {
            return Err(Error::invalid(
                "dataset version",
                format!("project `{project}` has no samples to publish"),
            ));
        }
        let data_dir = self.data_dir(project);
        let mut snapshots = BTreeSet::new();
        for file in &request.snapshot_files {
            let text = file.to_str().ok_or_else(|| {
                Error::invalid(
                    "snapshot file",
                    format!("{} is not valid UTF-8", file.display()),
                )
            })?;
            let rel = names::relative_path(text, "snapshot file")?;
            if !data_dir.join(&rel).is_file() {
                return Err(Error::not_found(
                    "file",
                    data_dir.join(&rel).display().to_string(),
                ));
            }
            snapshots.insert(rel);
        }
        let mut entries = request.entries;
        let tally = tally(&mut entries, &snapshots)?;
        for source in &tally.referenced {
            if !data_dir.join(source).is_file() {
                return Err(Error::not_found(
                    "file",
                    data_dir.join(source).display().to_string(),
                ));
            }
        }

        // Build the folder and its hash outside any transaction: copies may be large.
        let versions_dir = self.versions_dir(project);
        let staging = files::Staging::new_in(&versions_dir)?;
        let mut hasher = Sha256::new();
        let manifest = to_json_lines(&entries)?;
        files::hash_part(&mut hasher, MANIFEST, &manifest);
        write_file(&staging.path().join(MANIFEST), &manifest)?;
        for rel in &snapshots {
            let source = data_dir.join(rel);
            let len = std::fs::metadata(&source)
                .map_err(|e| Error::io(&source, e))?
                .len();
            files::hash_header(&mut hasher, rel, len);
            let target = staging.path().join(SNAPSHOT_DIR).join(rel);
            files::copy_atomic(&source, &target, Some(&mut hasher))?;
        }
        let meta_json = self.json_text(&request.meta)?;
        files::hash_part(&mut hasher, "meta", meta_json.as_bytes());
        let content_hash = format!("{:x}", hasher.finalize());
        let checks_json = serde_json::to_vec_pretty(&request.checks)
            .map_err(|e| Error::data(staging.path(), format!("cannot serialize checks: {e}")))?;
        write_file(&staging.path().join("checks.json"), &checks_json)?;

        let tx = self.write_tx()?;
        let project_id_now = self.project_id(&tx, project)?;
        if project_id_now != project_id {
            return Err(Error::not_found("project", project));
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT name FROM dataset_versions WHERE project_id = ?1 AND content_hash = ?2",
                (project_id, &content_hash),
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        if let Some(name) = existing {
            drop(tx);
            return self.dataset_version(project, &name);
        }
        let seq: i64 = tx
            .query_row(
                "SELECT next_dataset_version FROM projects WHERE id = ?1",
                [project_id],
                |row| row.get(0),
            )
            .map_err(self.sql())?;
        let name = format!("V{seq:03}");
        let target = versions_dir.join(&name);
        // A folder without a row is what a killed publisher left: we hold the lock, so remove it.
        files::remove_tree(&target)?;
        let version = DatasetVersion {
            project: project.to_string(),
            name: name.clone(),
            created_at: now(),
            content_hash,
            n_samples: entries.len(),
            n_train: tally.n_train,
            n_validation: tally.n_validation,
            label_counts: tally.label_counts,
            split,
            checks: request.checks,
            snapshot_files: snapshots.into_iter().collect(),
            dir: target.clone(),
            meta: request.meta,
        };
        crate::fsio::write_json_atomic(&staging.path().join("version.json"), &version)?;
        staging.publish(&target)?;
        let cleanup = files::RemoveOnDrop::new(vec![target]);
        tx.execute(
            "INSERT INTO dataset_versions (project_id, seq, name, created_at, content_hash,
                n_samples, n_train, n_validation, label_counts, split, checks, snapshot_files, meta)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            rusqlite::params![
                project_id,
                seq,
                &version.name,
                version.created_at,
                &version.content_hash,
                version.n_samples as i64,
                version.n_train as i64,
                version.n_validation as i64,
                self.json_text(&version.label_counts)?,
                self.json_text(&version.split)?,
                self.json_text(&version.checks)?,
                self.json_text(&version.snapshot_files)?,
                meta_json,
            ],
        )
        .map_err(self.sql())?;
        let version_id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare("INSERT INTO version_sources (version_id, source) VALUES (?1, ?2)")
                .map_err(self.sql())?;
            for source in &tally.referenced {
                insert.execute((version_id, source)).map_err(self.sql())?;
            }
        }
        tx.execute(
            "UPDATE projects SET next_dataset_version = ?2, updated_at = ?3 WHERE id = ?1",
            (project_id, seq + 1, version.created_at),
        )
        .map_err(self.sql())?;
        tx.commit().map_err(self.sql())?;
        cleanup.disarm();
        Ok(version)
    }

    /// Publish every labelled sample (a file task): usages come from a stratified split by each
    /// sample's sorted label set, so every label combination keeps the training ratio.
    pub fn publish_labelled_samples(
        &self,
        project: &str,
        split: SplitSpec,
        checks: CheckReport,
    ) -> Result<DatasetVersion> {
        let split = split.check()?;
        let samples = self.samples(project, SampleFilter::Labelled)?;
        if samples.is_empty() {
            return Err(Error::invalid(
                "dataset version",
                format!("project `{project}` has no labelled samples to publish"),
            ));
        }
        let strata: Vec<String> = samples.iter().map(|s| s.labels.join(",")).collect();
        let usages = stratified_split(&strata, split);
        let entries = samples
            .into_iter()
            .zip(usages)
            .map(|(sample, usage)| ManifestEntry {
                source: sample.source,
                row: None,
                labels: sample.labels,
                usage,
            })
            .collect();
        let request = PublishRequest {
            checks,
            ..PublishRequest::new(entries, split)
        };
        self.publish_version(project, request)
    }

    /// The project's dataset versions, oldest first.
    pub fn dataset_versions(&self, project: &str) -> Result<Vec<DatasetVersion>> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE project_id = ?1 ORDER BY seq"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([project_id], version_row)
            .map_err(self.sql())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|row| self.version_from_row(project, row))
            .collect()
    }

    /// One dataset version by name (`V003`; `v3` and `3` also work), or [`Error::NotFound`].
    pub fn dataset_version(&self, project: &str, version: &str) -> Result<DatasetVersion> {
        let tx = self.read_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let row = self
            .find_version(&tx, project_id, version)?
            .ok_or_else(|| Error::not_found("dataset version", format!("{project}/{version}")))?;
        self.version_from_row(project, row)
    }

    /// The entries of a version, read from its manifest.
    pub fn version_entries(&self, project: &str, version: &str) -> Result<Vec<ManifestEntry>> {
        read_manifest(&self.dataset_version(project, version)?.manifest_path())
    }

    pub(super) fn find_version(
        &self,
        conn: &Connection,
        project_id: i64,
        version: &str,
    ) -> Result<Option<VersionRow>> {
        let seq = version
            .strip_prefix(['V', 'v'])
            .unwrap_or(version)
            .parse::<i64>()
            .ok();
        conn.query_row(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM dataset_versions
                 WHERE project_id = ?1 AND (name = ?2 OR seq = ?3)"
            ),
            (project_id, version, seq),
            version_row,
        )
        .optional()
        .map_err(self.sql())
    }

    fn version_from_row(&self, project: &str, row: VersionRow) -> Result<DatasetVersion> {
        let (
            name,
            created_at,
            content_hash,
            n,
            n_train,
            n_validation,
            labels,
            split,
            checks,
            snaps,
            meta,
        ) = row;
        Ok(DatasetVersion {
            project: project.to_string(),
            dir: self.versions_dir(project).join(&name),
            name,
            created_at,
            content_hash,
            n_samples: count(n),
            n_train: count(n_train),
            n_validation: count(n_validation),
            label_counts: self.parse_json(&labels, "label_counts")?,
            split: self.parse_json(&split, "split")?,
            checks: self.parse_json(&checks, "checks")?,
            snapshot_files: self.parse_json(&snaps, "snapshot_files")?,
            meta: self.parse_json(&meta, "meta")?,
        })
    }
}

/// Check entries (normalizing their sources) and count them.
fn tally(entries: &mut [ManifestEntry], snapshots: &BTreeSet<String>) -> Result<Tally> {
    let mut tally = Tally {
        n_train: 0,
        n_validation: 0,
        label_counts: BTreeMap::new(),
        referenced: BTreeSet::new(),
    };
    for (i, entry) in entries.iter_mut().enumerate() {
        entry.source = names::relative_path(&entry.source, "source")
            .map_err(|e| Error::invalid("manifest entry", format!("entry {}: {e}", i + 1)))?;
        for label in &entry.labels {
            names::validate_label(label)
                .map_err(|e| Error::invalid("manifest entry", format!("entry {}: {e}", i + 1)))?;
            *tally.label_counts.entry(label.clone()).or_default() += 1;
        }
        match entry.usage {
            Usage::Train => tally.n_train += 1,
            Usage::Validation => tally.n_validation += 1,
        }
        if !snapshots.contains(&entry.source) {
            tally.referenced.insert(entry.source.clone());
        }
    }
    Ok(tally)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
