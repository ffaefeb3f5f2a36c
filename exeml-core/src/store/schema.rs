//! The index's tables and their versioning through `PRAGMA user_version`.

use super::{store_error, BUSY_TIMEOUT};
use crate::{Error, Result};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;

/// The schema version this build writes and reads; a workspace with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[i]` upgrades a workspace from schema version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [r#"
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    step TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- numbers are never reused, even after a version is deleted
    next_dataset_version INTEGER NOT NULL DEFAULT 1,
    next_model_version INTEGER NOT NULL DEFAULT 1
);
-- unique regardless of case, so project folders cannot collide on case-insensitive file systems
CREATE UNIQUE INDEX projects_name_nocase ON projects(name COLLATE NOCASE);

CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    labelled_by TEXT,
    labelled_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, source)
);

CREATE TABLE sample_labels (
    sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    PRIMARY KEY (sample_id, label)
) WITHOUT ROWID;
CREATE INDEX sample_labels_label ON sample_labels(label, sample_id);

CREATE TABLE dataset_versions (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    n_samples INTEGER NOT NULL,
    n_train INTEGER NOT NULL,
    n_validation INTEGER NOT NULL,
    label_counts TEXT NOT NULL,
    split TEXT NOT NULL,
    checks TEXT NOT NULL,
    snapshot_files TEXT NOT NULL,
    meta TEXT NOT NULL,
    UNIQUE (project_id, seq),
    UNIQUE (project_id, content_hash)
);

-- data-folder files a published version refers to (not snapshotted): never deleted or replaced
CREATE TABLE version_sources (
    version_id INTEGER NOT NULL REFERENCES dataset_versions(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    PRIMARY KEY (version_id, source)
) WITHOUT ROWID;
CREATE INDEX version_sources_source ON version_sources(source);

CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    dataset_version TEXT,
    parent TEXT,
    params TEXT NOT NULL,
    search_history TEXT NOT NULL,
    metrics TEXT NOT NULL,
    duration_secs REAL NOT NULL,
    summary TEXT NOT NULL,
    deployed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_id, seq)
);
"#];

/// Configure a fresh connection and bring the schema up to [`SCHEMA_VERSION`].
pub(super) fn prepare(conn: &Connection, db: &Path) -> Result<()> {
    let sql = |e: rusqlite::Error| store_error(db, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sql)?;
    // Switching to WAL needs a moment of exclusive access, and SQLite answers `database is
    // locked` at once (without the busy handler) while another connection opens the same new
    // workspace: retry for a while instead of failing.
    let mut attempts = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(_) => break,
            Err(e) if attempts < 400 && is_busy(&e) => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => return Err(sql(e)),
        }
    }
    if supported(user_version(conn, db)?, db)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be creating the schema right now: re-read under the write lock.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(sql)?;
    let found = supported(user_version(&tx, db)?, db)?;
    let from = usize::try_from(found).unwrap_or(0);
    for migration in &MIGRATIONS[from..] {
        tx.execute_batch(migration).map_err(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

fn user_version(conn: &Connection, db: &Path) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| store_error(db, e))
}

fn supported(found: i64, db: &Path) -> Result<i64> {
    if (0..=SCHEMA_VERSION).contains(&found) {
        Ok(found)
    } else {
        Err(Error::Format {
            path: db.to_path_buf(),
            message: format!(
                "workspace schema version {found}; this exeml reads versions up to \
                 {SCHEMA_VERSION}: upgrade exeml to open this workspace"
            ),
        })
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
