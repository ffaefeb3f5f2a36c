//! A trained tabular model: the feature pipeline, the fitted estimator and its manifest.
//! It predicts, evaluates, saves to a self-contained folder and loads back.

use crate::evaluate::{argmax, evaluate_classification, evaluate_regression, Evaluation};
use crate::family::{Estimator, Problem};
use crate::features::FeaturePipeline;
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::schema::{label_numbers, label_texts};
use crate::table::{format_number, Table};
use exeml_core::fsio::{read_json, write_json_atomic, StagingDir};
use exeml_core::search::TrialRecord;
use exeml_core::{Error, ProblemType, Result};
use std::path::Path;

const PIPELINE_FILE: &str = "pipeline.json";

/// What a model predicts for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Binary, multiclass or regression.
    pub problem: ProblemType,
    /// Class names (empty for regression).
    pub classes: Vec<String>,
    /// Class probabilities, row-major `rows × classes` (empty for regression).
    pub proba: Vec<f64>,
    /// Predicted values (regression only).
    pub values: Vec<f64>,
}

impl Predictions {
    /// Number of predicted rows.
    pub fn len(&self) -> usize {
        if self.problem == ProblemType::Regression {
            self.values.len()
        } else {
            self.proba.len() / self.classes.len().max(1)
        }
    }

    /// True if no rows were predicted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The probabilities of row `r` (classification).
    pub fn proba_row(&self, r: usize) -> &[f64] {
        let k = self.classes.len();
        &self.proba[r * k..(r + 1) * k]
    }

    /// The prediction of row `r` as text: the class name, or the number.
    pub fn label(&self, r: usize) -> String {
        if self.problem == ProblemType::Regression {
            format!("{}", self.values[r])
        } else {
            self.classes[argmax(self.proba_row(r))].clone()
        }
    }

    /// Every prediction as text.
    pub fn labels(&self) -> Vec<String> {
        (0..self.len()).map(|r| self.label(r)).collect()
    }
}

/// A trained tabular model.
#[derive(Debug)]
pub struct TabularModel {
    /// Schema, metrics, leaderboard and lineage.
    pub manifest: Manifest,
    pipeline: FeaturePipeline,
    estimator: Estimator,
}

impl TabularModel {
    /// Assemble a model from its parts (used by the search).
    pub fn new(manifest: Manifest, pipeline: FeaturePipeline, estimator: Estimator) -> Self {
        TabularModel {
            manifest,
            pipeline,
            estimator,
        }
    }

    /// The problem it solves.
    pub fn problem(&self) -> ProblemType {
        self.manifest.problem
    }

    /// The class names (empty for regression).
    pub fn classes(&self) -> &[String] {
        &self.manifest.target.classes
    }

    /// The label column's name.
    pub fn label(&self) -> &str {
        &self.manifest.target.column
    }

    /// Every trial of the search, best score first.
    pub fn leaderboard(&self) -> Vec<TrialRecord> {
        let mut rows = self.manifest.leaderboard.clone();
        rows.sort_by(|a, b| {
            let score = |r: &TrialRecord| r.outcome.score.unwrap_or(f64::NEG_INFINITY);
            score(b).total_cmp(&score(a))
        });
        rows
    }

    /// The fitted feature pipeline: the used input columns, their kinds and encodings.
    pub fn pipeline(&self) -> &FeaturePipeline {
        &self.pipeline
    }

    /// The validation evaluation made at training time.
    pub fn validation(&self) -> &Evaluation {
        &self.manifest.validation
    }

    /// Predict every row of `table` (extra columns, the label included, are ignored).
    pub fn predict(&self, table: &Table) -> Result<Predictions> {
        let x = self.pipeline.transform(table)?;
        let out = self.estimator.predict(&x);
        let problem = self.problem();
        Ok(if problem == ProblemType::Regression {
            Predictions {
                problem,
                classes: Vec::new(),
                proba: Vec::new(),
                values: out,
            }
        } else {
            Predictions {
                problem,
                classes: self.classes().to_vec(),
                proba: out,
                values: Vec::new(),
            }
        })
    }

    /// Evaluate on a table that has the label column.
    pub fn evaluate(&self, table: &Table) -> Result<Evaluation> {
        let label = table.column(self.label())?;
        let predictions = self.predict(table)?;
        if self.problem() == ProblemType::Regression {
            let truth = label_numbers(&label.values);
            if let Some(row) = truth.iter().position(|v| v.is_nan()) {
                return Err(Error::data(
                    &table.source,
                    format!(
                        "label `{}` is missing or not a number in data row {}",
                        self.label(),
                        row + 1
                    ),
                ));
            }
            return evaluate_regression(&truth, &predictions.values);
        }
        let texts = label_texts(&label.values);
        let mut truth = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let text = text.as_deref().ok_or_else(|| {
                Error::data(
                    &table.source,
                    format!(
                        "label `{}` is missing in data row {}",
                        self.label(),
                        row + 1
                    ),
                )
            })?;
            let index = self
                .classes()
                .iter()
                .position(|c| c == text)
                .ok_or_else(|| {
                    Error::data(
                        &table.source,
                        format!(
                            "unknown label `{text}` in data row {}: the model knows {}",
                            row + 1,
                            self.classes().join(", ")
                        ),
                    )
                })?;
            truth.push(index);
        }
        evaluate_classification(self.problem(), self.classes(), &truth, &predictions.proba)
    }

    /// Write the model as a self-contained folder, atomically (a half-written folder never
    /// appears at `dir`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let staging = StagingDir::new(dir)?;
        self.write_into(staging.path())?;
        staging.commit()?;
        Ok(())
    }

    /// Write the model's files into an existing folder (e.g. a store's model draft).
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let mut manifest = self.manifest.clone();
        manifest.files = self.estimator.save(dir)?;
        write_json_atomic(&dir.join(PIPELINE_FILE), &self.pipeline)?;
        manifest.files.push(PIPELINE_FILE.into());
        write_json_atomic(&dir.join(MANIFEST_FILE), &manifest)
    }

    /// Load a model folder written by [`TabularModel::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let pipeline: FeaturePipeline = read_json(&dir.join(PIPELINE_FILE))?;
        let problem = Problem {
            kind: manifest.problem,
            n_classes: manifest.target.classes.len().max(1),
        };
        let estimator = Estimator::load(&manifest.family, dir, problem)?;
        Ok(TabularModel {
            manifest,
            pipeline,
            estimator,
        })
    }

    /// Permutation importance of each used column on labelled `table`, most important first
    /// (see [`crate::importance::permutation_importance`]).
    pub fn feature_importance(
        &self,
        table: &Table,
        shuffles: usize,
        seed: u64,
    ) -> Result<Vec<crate::importance::FeatureImportance>> {
        crate::importance::permutation_importance(self, table, shuffles, seed)
    }

    /// A one-line description: family, validation score, problem.
    pub fn summary(&self) -> String {
        let (metric, value) = self.validation().headline();
        format!(
            "{} ({}), validation {metric} {}",
            self.manifest.family,
            self.problem(),
            format_number((value * 10_000.0).round() / 10_000.0)
        )
    }
}
