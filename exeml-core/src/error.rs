//! The one error type of exeml: each variant carries what a user needs to fix the problem.

use std::path::PathBuf;

/// Result with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in exeml, with the file, field or value that caused it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Input data is malformed: a ragged CSV row, a bad label, an unreadable value.
    #[error("{path}: {message}")]
    Data {
        /// The file the data came from (or a description such as `<request>`).
        path: PathBuf,
        /// What is wrong and where (row, column, field).
        message: String,
    },
    /// The data checks refused the data set; the report lists every finding.
    #[error("{path}: data check failed: {summary}")]
    CheckFailed {
        /// The data that was checked.
        path: PathBuf,
        /// The errors of the report, joined.
        summary: String,
    },
    /// A parameter or option is invalid.
    #[error("invalid {name}: {message}")]
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Something named does not exist: a project, a version, a label, a column.
    #[error("{kind} not found: {name}")]
    NotFound {
        /// What kind of thing (`project`, `model version`, `column`…).
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Something with that name already exists.
    #[error("{kind} already exists: {name}")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A saved model or workspace was written in a format this version cannot read.
    #[error("{path}: unsupported format: {message}")]
    Format {
        /// The file or folder.
        path: PathBuf,
        /// Which format version was found and which are supported.
        message: String,
    },
    /// A feature was requested that this build does not include (e.g. `cuda`).
    #[error("{what} is not compiled into this build: rebuild with the `{feature}` feature")]
    NotCompiled {
        /// What was asked for.
        what: String,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// The time budget ran out before any model could be trained.
    #[error("the time budget of {budget_secs:.1} s ran out before {what}")]
    BudgetExhausted {
        /// The budget in seconds.
        budget_secs: f64,
        /// What could not be finished.
        what: String,
    },
    /// Training was interrupted (Ctrl-C, a cancel flag) before any model existed.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// The embedded project store (SQLite) failed.
    #[error("workspace store {path}: {message}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// A model library failed (a training or prediction error reported by the backend).
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend (e.g. `gbdt`, `candle`).
        backend: &'static str,
        /// Its message.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::InvalidParameter`].
    pub fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name: name.into(),
            message: message.into(),
        }
    }

    /// An [`Error::NotFound`].
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }
}
