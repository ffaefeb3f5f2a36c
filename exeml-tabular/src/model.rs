//! A trained tabular model: the feature pipeline, the fitted estimator and its manifest.
//! It predicts, evaluates, saves to a self-contained folder and loads back.

use crate::evaluate::{argmax, evaluate_classification, evaluate_regression, Evaluation};
use crate::family::{Estimator, Problem};
use crate::features::FeaturePipeline;
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::schema::{label_numbers, label_texts};
use crate::stacking::Stacker;
use crate::table::{format_number, Table};
use exeml_core::fsio::{read_json, write_json_atomic, StagingDir};
use exeml_core::search::TrialRecord;
use exeml_core::{measure_speed, Error, ProblemType, Result, SpeedOptions, SpeedReport};
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

/// A trained tabular model: one or more fitted estimators whose predictions are averaged with
/// the weights of the manifest's `ensemble` (or, for a stacked model, averaged per stacker
/// input and combined by the stacker), each reading the features of one pipeline.
#[derive(Debug)]
pub struct TabularModel {
    /// Schema, metrics, leaderboard and lineage.
    pub manifest: Manifest,
    pipelines: Vec<FeaturePipeline>,
    members: Vec<Member>,
    stacker: Option<Stacker>,
}

/// A fitted estimator of the ensemble and the pipeline it reads.
#[derive(Debug)]
pub struct Member {
    /// Index into the model's pipelines.
    pub pipeline: usize,
    /// The fitted estimator.
    pub estimator: Estimator,
    /// Its weight in the average (of its stacker input, for a stacked model).
    pub weight: f64,
    /// The stacker input it feeds, for a stacked model.
    pub input: Option<usize>,
}

impl TabularModel {
    /// Assemble a model from its parts (used by the search). `members` are in the order of
    /// `manifest.members()`, whose weights and stacker inputs they take; `stacker` is the
    /// fitted stacker the manifest's `stacker` describes, if any.
    pub fn new(
        manifest: Manifest,
        pipelines: Vec<FeaturePipeline>,
        members: Vec<(usize, Estimator)>,
        stacker: Option<Stacker>,
    ) -> Result<Self> {
        let described = manifest.members();
        let stacker_inputs = manifest.stacker.as_ref().map(|s| s.inputs);
        if stacker_inputs != stacker.as_ref().map(Stacker::inputs) {
            return Err(Error::invalid(
                "model",
                "the fitted stacker does not match the stacker the manifest describes",
            ));
        }
        if members.is_empty()
            || described.len() != members.len()
            || members.iter().any(|(p, _)| *p >= pipelines.len())
        {
            return Err(Error::invalid(
                "model",
                format!(
                    "{} fitted models and {} pipelines do not match the {} models the manifest describes",
                    members.len(),
                    pipelines.len(),
                    described.len()
                ),
            ));
        }
        let members = members
            .into_iter()
            .zip(&described)
            .map(|((pipeline, estimator), d)| Member {
                pipeline,
                estimator,
                weight: d.weight,
                input: d.input,
            })
            .collect();
        Ok(TabularModel {
            manifest,
            pipelines,
            members,
            stacker,
        })
    }

    /// The fitted models whose predictions are averaged (one unless the search chose an
    /// ensemble).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The stacking layer that combines the members' predictions, if the model has one.
    pub fn stacker(&self) -> Option<&Stacker> {
        self.stacker.as_ref()
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

    /// The chosen model first, then every other trial of the search, best score first.
    pub fn leaderboard(&self) -> Vec<TrialRecord> {
        let mut rows = self.manifest.leaderboard.clone();
        rows.sort_by(|a, b| {
            let score = |r: &TrialRecord| r.outcome.score.unwrap_or(f64::NEG_INFINITY);
            score(b).total_cmp(&score(a))
        });
        // The chosen model leads even when its score is not comparable with the trials' (a
        // bagged model is scored out of fold on every row, the trials on the validation split).
        let chosen = rows.iter().position(|r| {
            r.trial.family == self.manifest.family
                && r.trial.params == self.manifest.params
                && r.outcome.note.is_none()
        });
        if let Some(i) = chosen {
            rows[..=i].rotate_right(1);
        }
        rows
    }

    /// The first fitted feature pipeline: the used input columns, their kinds and encodings
    /// (every pipeline of a model reads the same columns).
    pub fn pipeline(&self) -> &FeaturePipeline {
        &self.pipelines[0]
    }

    /// Every fitted feature pipeline (one per encoding the members need).
    pub fn pipelines(&self) -> &[FeaturePipeline] {
        &self.pipelines
    }

    /// The validation evaluation made at training time.
    pub fn validation(&self) -> &Evaluation {
        &self.manifest.validation
    }

    /// Predict every row of `table` (extra columns, the label included, are ignored).
    pub fn predict(&self, table: &Table) -> Result<Predictions> {
        let out = self.raw_predictions(table)?;
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

    /// The weighted average of the members' predictions, or the stacker's combination of the
    /// per-input averages (row-major, as [`Estimator::predict`]).
    fn raw_predictions(&self, table: &Table) -> Result<Vec<f64>> {
        let mut features: Vec<Option<crate::features::Matrix>> = vec![None; self.pipelines.len()];
        for member in &self.members {
            if features[member.pipeline].is_none() {
                features[member.pipeline] = Some(self.pipelines[member.pipeline].transform(table)?);
            }
        }
        // One weighted sum per stacker input; a single sum without a stacker.
        let sums = self.stacker.as_ref().map_or(1, Stacker::inputs);
        let mut outs: Vec<Vec<f64>> = vec![Vec::new(); sums];
        for member in &self.members {
            let Some(x) = &features[member.pipeline] else {
                continue;
            };
            let predicted = member.estimator.predict(x);
            if self.members.len() == 1 && self.stacker.is_none() {
                return Ok(predicted);
            }
            let out = &mut outs[member.input.unwrap_or(0).min(sums - 1)];
            if out.is_empty() {
                *out = vec![0.0; predicted.len()];
            }
            for (o, p) in out.iter_mut().zip(&predicted) {
                *o += member.weight * p;
            }
        }
        let mut out = match &self.stacker {
            Some(stacker) => {
                let refs: Vec<&[f64]> = outs.iter().map(Vec::as_slice).collect();
                stacker.predict(&refs)
            }
            None => outs.swap_remove(0),
        };
        let problem = Problem {
            kind: self.problem(),
            n_classes: self.classes().len().max(1),
        };
        crate::family::clamp_probabilities(problem, &mut out);
        Ok(out)
    }

    /// How fast this model predicts rows of `table`: single-row latency (each call predicts a
    /// one-row table prepared beforehand, through the whole feature pipeline) and the
    /// throughput of one call on the first `options.batch_size` rows.
    pub fn speed(&self, table: &Table, options: SpeedOptions) -> Result<SpeedReport> {
        let n = table.n_rows();
        let distinct = n.min(options.single_runs.max(1));
        let singles: Vec<Table> = (0..distinct).map(|r| table.take(&[r])).collect();
        let batch_size = n.min(options.batch_size);
        let batch = table.take(&(0..batch_size).collect::<Vec<_>>());
        measure_speed(
            distinct,
            batch_size,
            options,
            |i| self.predict(&singles[i]).map(drop),
            || self.predict(&batch).map(drop),
        )
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

    /// Write the model's files into an existing folder (e.g. a store's model draft). A single
    /// model is written into the folder itself; the members of an ensemble into `member_N/`.
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let mut manifest = self.manifest.clone();
        let mut described = manifest.members();
        manifest.files.clear();
        let pipeline_files: Vec<String> = (0..self.pipelines.len())
            .map(|i| match i {
                0 => PIPELINE_FILE.to_string(),
                i => format!("pipeline_{i}.json"),
            })
            .collect();
        for (pipeline, file) in self.pipelines.iter().zip(&pipeline_files) {
            write_json_atomic(&dir.join(file), pipeline)?;
            manifest.files.push(file.clone());
        }
        let single = self.members.len() == 1;
        for (i, (member, description)) in self.members.iter().zip(&mut described).enumerate() {
            description.folder = if single {
                String::new()
            } else {
                format!("member_{i}")
            };
            description.pipeline = pipeline_files[member.pipeline].clone();
            let folder = dir.join(&description.folder);
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            for file in member.estimator.save(&folder)? {
                manifest.files.push(if single {
                    file
                } else {
                    format!("{}/{file}", description.folder)
                });
            }
        }
        manifest.ensemble = described;
        if let (Some(stacker), Some(described)) = (&self.stacker, &mut manifest.stacker) {
            described.folder = crate::stacking::STACKER_FOLDER.into();
            for file in stacker.save(&dir.join(&described.folder))? {
                manifest.files.push(format!("{}/{file}", described.folder));
            }
        }
        write_json_atomic(&dir.join(MANIFEST_FILE), &manifest)
    }

    /// Load a model folder written by [`TabularModel::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let problem = Problem {
            kind: manifest.problem,
            n_classes: manifest.target.classes.len().max(1),
        };
        let mut pipeline_files: Vec<String> = Vec::new();
        let mut pipelines: Vec<FeaturePipeline> = Vec::new();
        let mut members = Vec::new();
        for member in manifest.members() {
            let pipeline = match pipeline_files.iter().position(|f| *f == member.pipeline) {
                Some(i) => i,
                None => {
                    let path = dir.join(&member.pipeline);
                    let pipeline: FeaturePipeline = read_json(&path)?;
                    pipeline.check(&path)?;
                    pipelines.push(pipeline);
                    pipeline_files.push(member.pipeline.clone());
                    pipelines.len() - 1
                }
            };
            let folder = dir.join(&member.folder);
            let estimator = Estimator::load(&member.family, &folder, problem)?;
            let width = estimator.input_width();
            let features = pipelines[pipeline].n_features();
            if !width.accepts(features) {
                return Err(Error::Format {
                    path: folder,
                    message: format!(
                        "the {} model reads {width} features, but its pipeline `{}` makes {features}",
                        member.family, member.pipeline
                    ),
                });
            }
            members.push((pipeline, estimator));
        }
        let stacker = match &manifest.stacker {
            Some(described) => Some(Stacker::load(
                &dir.join(&described.folder),
                problem,
                described,
            )?),
            None => None,
        };
        TabularModel::new(manifest, pipelines, members, stacker)
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

    /// What was chosen: the family, or the ensemble's members and weights.
    pub fn description(&self) -> String {
        let members = self.manifest.members();
        if let Some(stacker) = &self.manifest.stacker {
            let inputs: Vec<String> = (0..stacker.inputs)
                .map(|input| {
                    members
                        .iter()
                        .find(|m| m.input == Some(input))
                        .map_or_else(|| "?".into(), |m| m.family.clone())
                })
                .collect();
            let stacked = format!("{}, stacked by {}", inputs.join(" + "), stacker.final_model);
            let lineage = &self.manifest.lineage;
            return match (lineage.bagged_folds, lineage.refit_of_folds) {
                (Some(folds), _) => format!("{folds}-fold bagged {stacked}"),
                (None, Some(folds)) => {
                    format!("{stacked} (chosen by {folds}-fold bagging, refitted on all rows)")
                }
                _ => stacked,
            };
        }
        if members.len() == 1 {
            return self.manifest.family.clone();
        }
        if let Some(folds) = self.manifest.lineage.bagged_folds {
            // One part per configuration: its k fits share its weight.
            let mut parts: Vec<(Option<usize>, String, f64)> = Vec::new();
            for m in &members {
                match parts
                    .iter_mut()
                    .find(|(t, f, _)| *t == m.trial && *f == m.family)
                {
                    Some(part) => part.2 += m.weight,
                    None => parts.push((m.trial, m.family.clone(), m.weight)),
                }
            }
            let parts: Vec<String> = parts
                .iter()
                .map(|(_, family, w)| format!("{family} {w:.2}"))
                .collect();
            return format!("{folds}-fold bagged {}", parts.join(" + "));
        }
        let parts: Vec<String> = members
            .iter()
            .map(|m| format!("{} {:.2}", m.family, m.weight))
            .collect();
        match self.manifest.lineage.refit_of_folds {
            Some(folds) => format!(
                "{} (chosen by {folds}-fold bagging, refitted on all rows)",
                parts.join(" + ")
            ),
            None => format!("ensemble of {}", parts.join(" + ")),
        }
    }

    /// A one-line description: family, validation score, problem.
    pub fn summary(&self) -> String {
        let (metric, value) = self.validation().headline();
        format!(
            "{} ({}), validation {metric} {}",
            self.description(),
            self.problem(),
            format_number((value * 10_000.0).round() / 10_000.0)
        )
    }
}
