//! `manifest.json` of a saved tabular model: format version, schema, classes, the chosen
//! pipeline, metrics, the leaderboard and lineage. Plain JSON, readable by a person.

use crate::evaluate::Evaluation;
use crate::schema::{ColumnSchema, Target};
use crate::stacking::StackerManifest;
use exeml_core::search::{ParamPoint, TrialRecord};
use exeml_core::{CheckReport, Constraints, Error, Preference, ProblemType, Result, TaskKind};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Marks a folder as an exeml model.
pub const FORMAT: &str = "exeml-model";
/// The newest manifest layout this version writes and reads. 5: a stacking layer (`stacker`,
/// members' `input`); 4: network weights in f16,
/// boosters' categorical splits (a `categories` table);
/// 3: tree and row files are zstd-compressed (`forest.safetensors.zst`); 2: weighted
/// ensembles; 1: a single model.
pub const FORMAT_VERSION: u32 = 5;
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
    /// True when the final model(s) were refitted on the training and validation rows together
    /// after the search (the validation metrics are those of the models before the refit).
    #[serde(default)]
    pub refit: bool,
    /// True when trained with `deterministic` (counts, not the clock, sized the work).
    #[serde(default)]
    pub deterministic: bool,
    /// True when the time limit ended the search before it finished by itself.
    #[serde(default)]
    pub stopped_by_budget: bool,
    /// Training and validation rows the search used, when it ran on a sample of a large table
    /// (`rows` counts all of them; the refit, when `refit` is true, used all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_rows: Option<(usize, usize)>,
    /// Rows the final model was refitted on, when it was (all training + validation rows, or
    /// the largest sample of them the time left covered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
    /// Folds of a bagged model: each chosen configuration was fitted this many times, each on
    /// all rows but one fold, and the validation metrics are out of fold over every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bagged_folds: Option<usize>,
    /// Folds of the bagged model this one was refitted from (`refit_full`): its configurations
    /// and weights were chosen on k-fold out-of-fold predictions, which also give the
    /// validation metrics; each configuration was then fitted once on all rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_of_folds: Option<usize>,
    /// Trials the search fitted at the same time (absent: one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_trials: Option<usize>,
}

/// One model of the final ensemble (a single model is an ensemble of one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberManifest {
    /// Its family.
    pub family: String,
    /// Its hyper-parameters.
    pub params: ParamPoint,
    /// Its weight in the average of predictions (weights sum to one).
    pub weight: f64,
    /// The search trial it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<usize>,
    /// The sub-folder holding its files (empty: the model folder itself).
    #[serde(default)]
    pub folder: String,
    /// The file of the feature pipeline it reads.
    #[serde(default = "default_pipeline_file")]
    pub pipeline: String,
    /// For a bagged model: the fold this fit left out (it was trained on all other rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    /// For a stacked model: the stacker input this fit's predictions go to (averaged, with
    /// `weight`, with the other fits of the same input). `None` without a stacker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<usize>,
}

/// A file or folder name that stays inside the model folder: letters, digits, `.`, `_`, `-`,
/// not starting with a dot.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The pipeline file of models written before ensembles.
pub fn default_pipeline_file() -> String {
    "pipeline.json".into()
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
    /// The chosen model family (`ensemble` for a weighted average of several models).
    pub family: String,
    /// Its hyper-parameters (for an ensemble: a summary of the members).
    pub params: ParamPoint,
    /// The models whose predictions are averaged. Empty in models written before ensembles:
    /// then `family` and `params` describe the only model, stored in the folder itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<MemberManifest>,
    /// The stacking layer, when the members' predictions are combined by a fitted model
    /// instead of averaged (see [`crate::stacking`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacker: Option<StackerManifest>,
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
        for (i, member) in manifest.ensemble.iter().enumerate() {
            let problem = if !(member.folder.is_empty() || is_plain_name(&member.folder)) {
                Some(format!(
                    "folder `{}` is not a plain sub-folder name",
                    member.folder
                ))
            } else if !is_plain_name(&member.pipeline) {
                Some(format!(
                    "pipeline `{}` is not a plain file name",
                    member.pipeline
                ))
            } else if !(member.weight.is_finite() && member.weight >= 0.0) {
                Some(format!(
                    "weight {} is not a non-negative number",
                    member.weight
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Error::Format {
                    path,
                    message: format!("ensemble member {i}: {problem}"),
                });
            }
        }
        if let Some(problem) = manifest.stacking_problem() {
            return Err(Error::Format {
                path,
                message: problem,
            });
        }
        Ok(manifest)
    }

    /// What is wrong with the stacking layer's description, if anything: every member must feed
    /// an existing input, and every input be fed, exactly when there is a stacker.
    fn stacking_problem(&self) -> Option<String> {
        let Some(stacker) = &self.stacker else {
            return self
                .ensemble
                .iter()
                .position(|m| m.input.is_some())
                .map(|i| {
                    format!("ensemble member {i} names a stacker input, but there is no stacker")
                });
        };
        if !is_plain_name(&stacker.folder) {
            return Some(format!(
                "stacker folder `{}` is not a plain sub-folder name",
                stacker.folder
            ));
        }
        let mut fed = vec![false; stacker.inputs];
        for (i, member) in self.ensemble.iter().enumerate() {
            match member.input {
                Some(input) if input < stacker.inputs => fed[input] = true,
                Some(input) => {
                    return Some(format!(
                        "ensemble member {i} feeds stacker input {input}, but the stacker reads {}",
                        stacker.inputs
                    ))
                }
                None => return Some(format!("ensemble member {i} feeds no stacker input")),
            }
        }
        fed.iter()
            .position(|f| !f)
            .map(|input| format!("no ensemble member feeds stacker input {input}"))
    }

    /// The models of the ensemble; for a model written before ensembles, its only model.
    pub fn members(&self) -> Vec<MemberManifest> {
        if !self.ensemble.is_empty() {
            return self.ensemble.clone();
        }
        vec![MemberManifest {
            family: self.family.clone(),
            params: self.params.clone(),
            weight: 1.0,
            trial: None,
            folder: String::new(),
            pipeline: default_pipeline_file(),
            fold: None,
            input: None,
        }]
    }
}
