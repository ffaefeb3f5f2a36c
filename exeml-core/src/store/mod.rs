//! The embedded project store: one workspace folder with a SQLite index and the files of every
//! project.
//!
//! ```text
//! <root>/exeml.sqlite                         the index (projects, samples, labels, versions)
//! <root>/projects/<name>/data/…               imported source files, copied in
//! <root>/projects/<name>/versions/V001/       manifest.jsonl, checks.json, version.json, data/<snapshots>
//! <root>/projects/<name>/models/0.0.1/        model artifacts
//! ```
//!
//! Several processes may use one workspace at once: SQLite runs in WAL mode with a busy timeout,
//! every multi-row change is one transaction, and writes that allocate version numbers take the
//! write lock first (`BEGIN IMMEDIATE`), so two processes never get the same number. Folders are
//! built under a hidden `.exeml-staging-*` name and renamed into place inside the transaction
//! that registers them, so a killed process leaves at most a staging folder, which readers never
//! see and [`Store::cleanup_stale`] removes once its owner is gone.
//!
//! ```
//! use exeml_core::store::{NewProject, Store};
//! use exeml_core::TaskKind;
//! # fn main() -> exeml_core::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| exeml_core::Error::io("tmp", e))?;
//! let store = Store::open(dir.path())?;
//! store.create_project(&NewProject::new("flowers", TaskKind::Image))?;
//! assert_eq!(store.project("flowers")?.task, TaskKind::Image);
//! # Ok(()) }
//! ```

mod dataset_version;
mod files;
mod label;
mod manifest;
mod model_version;
mod names;
mod project;
mod sample;
mod schema;

pub use dataset_version::{DatasetVersion, PublishRequest};
pub use label::{DeleteLabelMode, DeletionPlan, SampleRef};
pub use manifest::{read_manifest, to_json_lines, ManifestEntry};
pub use model_version::{ModelDraft, ModelVersion, NewModelVersion};
pub use names::{
    validate_label, validate_project_name, MAX_DESCRIPTION_CHARS, MAX_LABEL_CHARS,
    MAX_PROJECT_NAME_CHARS,
};
pub use project::{NewProject, Project, ProjectFilter, ProjectStatus, WorkflowStep};
pub use sample::{NewSample, Sample, SampleFilter};
pub use schema::SCHEMA_VERSION;

use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the index inside the workspace folder.
pub const DB_FILE: &str = "exeml.sqlite";
/// Environment variable that overrides the default workspace folder.
pub const HOME_ENV: &str = "EXEML_HOME";
/// The default workspace folder, relative to the current directory.
pub const DEFAULT_ROOT: &str = "exeml-workspace";
/// How long a write waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open workspace: its folder and a connection to its index.
///
/// One `Store` is one SQLite connection; open one per thread (it is `Send`, not `Sync`).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    db_path: PathBuf,
    conn: Connection,
}

impl Store {
    /// The workspace folder to use when none is given: `$EXEML_HOME`, else `./exeml-workspace`.
    pub fn default_root() -> PathBuf {
        match std::env::var_os(HOME_ENV) {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            _ => PathBuf::from(DEFAULT_ROOT),
        }
    }

    /// Open the workspace at [`Store::default_root`].
    pub fn open_default() -> Result<Store> {
        Store::open(&Store::default_root())
    }

    /// Open the workspace at `root`, creating the folder and the index if they are missing.
    ///
    /// A workspace written by a newer exeml (a higher schema version) is refused with
    /// [`Error::Format`].
    pub fn open(root: &Path) -> Result<Store> {
        let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
        let projects = root.join("projects");
        std::fs::create_dir_all(&projects).map_err(|e| Error::io(&projects, e))?;
        let db_path = root.join(DB_FILE);
        let conn = Connection::open(&db_path).map_err(|e| store_error(&db_path, e))?;
        schema::prepare(&conn, &db_path)?;
        Ok(Store {
            root,
            db_path,
            conn,
        })
    }

    /// The workspace folder (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The folder that holds everything a project produces.
    pub fn project_dir(&self, project: &str) -> PathBuf {
        self.root.join("projects").join(project)
    }

    /// The folder of a project's imported source files; sample sources are relative to it.
    pub fn data_dir(&self, project: &str) -> PathBuf {
        self.project_dir(project).join("data")
    }

    fn versions_dir(&self, project: &str) -> PathBuf {
        self.project_dir(project).join("versions")
    }

    fn models_dir(&self, project: &str) -> PathBuf {
        self.project_dir(project).join("models")
    }

    /// Maps a SQLite error to [`Error::Store`] naming the index file.
    fn sql(&self) -> impl Fn(rusqlite::Error) -> Error + Copy + '_ {
        move |e| store_error(&self.db_path, e)
    }

    /// A write transaction that holds the write lock from its start, so that what it reads
    /// (next version numbers, existing names) is still true when it writes.
    fn write_tx(&self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(self.sql())
    }

    /// A read transaction: a consistent view across several queries.
    fn read_tx(&self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred).map_err(self.sql())
    }

    /// The row id of a project, or [`Error::NotFound`].
    fn project_id(&self, conn: &Connection, project: &str) -> Result<i64> {
        conn.query_row(
            "SELECT id FROM projects WHERE name = ?1",
            [project],
            |row| row.get(0),
        )
        .optional()
        .map_err(self.sql())?
        .ok_or_else(|| Error::not_found("project", project))
    }

    /// Record that a project changed.
    fn touch(&self, conn: &Connection, project_id: i64) -> Result<()> {
        conn.execute(
            "UPDATE projects SET updated_at = ?2 WHERE id = ?1",
            (project_id, now()),
        )
        .map_err(self.sql())?;
        Ok(())
    }

    /// Serialize a value for a JSON column.
    fn json_text<T: serde::Serialize>(&self, value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| Error::Store {
            path: self.db_path.clone(),
            message: format!("cannot serialize JSON: {e}"),
        })
    }

    /// Parse a JSON column, naming the column if the index holds something unreadable.
    fn parse_json<T: serde::de::DeserializeOwned>(&self, text: &str, column: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| Error::Store {
            path: self.db_path.clone(),
            message: format!("corrupt `{column}` column: {e}"),
        })
    }
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn store_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A count read from the index (never negative) as `usize`.
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}
