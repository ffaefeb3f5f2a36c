//! `manifest.json` of a saved tabular model: format version, schema, classes, the chosen
//! pipeline, metrics, the leaderboard and lineage. Plain JSON, readable by a person.

use crate::evaluate::Evaluation;
use crate::schema::{ColumnSchema, Target};
use exeml_core::search::{ParamPoint, TrialRecord};
use exeml_core::{CheckReport, Constraints, Error, Preference, ProblemType, Result, TaskKind};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Marks a folder as an exeml model.
pub const FORMAT: &str = "exeml-model";
/// The newest manifest layout this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside a model folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where a model came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The data file it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The dataset version, when trained from the project store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<String>,
    /// The model it was warm-started from (`--from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The seed of the run.
    pub seed: u64,
    /// The training share of the split.
    pub train_ratio: f64,
    /// Rows used for training and validation.
    pub rows: (usize, usize),
    /// The preference of the run.
    pub preference: Preference,
    /// The time limit in seconds.
    pub time_limit_secs: f64,
    /// Seconds the whole fit took.
    pub fit_secs: f64,
    /// Unix time of creation.
    pub created_at: u64,
    /// The latency and size limits the model was chosen under.
    #[serde(default, skip_serializing_if = "Constraints::is_empty")]
    pub constraints: Constraints,
}

/// Everything needed to load and explain a tabular model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The exeml version that wrote it.
    pub exeml_version: String,
    /// Always `tabular`.
    pub task: TaskKind,
    /// Binary, multiclass or regression.
    pub problem: ProblemType,
    /// The label column and classes.
    pub target: Target,
    /// Every input column with its kind, and why dropped ones are not used.
    pub columns: Vec<ColumnSchema>,
    /// The chosen model family.
    pub family: String,
    /// Its hyper-parameters.
    pub params: ParamPoint,
    /// Files of the model besides this manifest.
    pub files: Vec<String>,
    /// Evaluation on the validation part.
    pub validation: Evaluation,
    /// Every trial of the search (the white box).
    pub leaderboard: Vec<TrialRecord>,
    /// The data checks' findings.
    pub checks: CheckReport,
    /// Where the model came from.
    pub lineage: Lineage,
}

impl Manifest {
    /// Read and validate the manifest of the model folder `dir`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                message: format!("not an exeml model folder: no {MANIFEST_FILE}"),
            });
        }
        let value: serde_json::Value = exeml_core::fsio::read_json(&path)?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if format != FORMAT {
            return Err(Error::Format {
                path,
                message: format!("`format` is `{format}`, expected `{FORMAT}`"),
            });
        }
        if version == 0 || version > u64::from(FORMAT_VERSION) {
            return Err(Error::Format {
                path,
                message: format!(
                    "format_version {version} is not supported by exeml {} (reads 1..={FORMAT_VERSION}); upgrade exeml",
                    env!("CARGO_PKG_VERSION")
                ),
            });
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::data(&path, format!("invalid manifest: {e}")))?;
        if manifest.task != TaskKind::Tabular {
            return Err(Error::Format {
                path,
                message: format!("a {} model, not a tabular one", manifest.task),
            });
        }
        Ok(manifest)
    }
}
