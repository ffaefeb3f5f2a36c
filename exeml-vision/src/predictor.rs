//! The entry point of image classification: `ImagePredictor::new().fit_folder(path)` imports,
//! checks, splits, searches backbone configurations and heads under the budget, evaluates on
//! the validation part and returns an [`ImageModel`].

use crate::backbone::{Backbone, BackboneKind};
use crate::data::{ImageDataset, ImportFormat};
use crate::evaluate::{evaluate, tune_thresholds};
use crate::features::{extract, ExtractOptions, Features};
use crate::head::{fit_head, HeadData, LinearHead};
use crate::model::{ImageLineage, ImageManifest, ImageModel, FORMAT, FORMAT_VERSION};
use crate::nn::candle_error;
use crate::search::{candidates, head_grid, Candidate, ImageTrial};
use exeml_core::checks::at;
use exeml_core::split::stratified_split;
use exeml_core::{
    Budget, Device, Error, Preference, ProblemType, Progress, Result, Silent, SplitSpec, TaskKind,
    Usage,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Trains image classifiers automatically.
#[derive(Debug, Clone)]
pub struct ImagePredictor {
    /// Wall-clock budget of a fit.
    pub time_limit: Duration,
    /// Speed/size versus accuracy.
    pub preference: Preference,
    /// The one seed of the run.
    pub seed: u64,
    /// Share of images used for training (when the data has no split of its own).
    pub train_ratio: f64,
    /// Where to compute.
    pub device: Device,
    /// Restrict the search to these backbones (empty: all of the preference's plan).
    pub backbones: Vec<BackboneKind>,
    /// Fix the input resolution (default: the plan's, 160–256 px).
    pub resolution: Option<u32>,
    /// Explicit weight files per backbone (default: the installed ImageNet weights).
    pub weights: Vec<(BackboneKind, PathBuf)>,
    /// How the data folder is laid out.
    pub format: ImportFormat,
}

impl Default for ImagePredictor {
    fn default() -> Self {
        ImagePredictor {
            time_limit: Duration::from_secs(600),
            preference: Preference::Balance,
            seed: 0,
            train_ratio: 0.8,
            device: Device::Cpu,
            backbones: Vec::new(),
            resolution: None,
            weights: Vec::new(),
            format: ImportFormat::Auto,
        }
    }
}

/// A configuration's best head and its validation outcome.
struct Fitted {
    candidate: Candidate,
    backbone: Backbone,
    head: LinearHead,
    trial: usize,
    score: f64,
    loss: f64,
}

impl ImagePredictor {
    /// A predictor with the defaults (10 minutes, `balance`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the time budget.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Set the preference.
    pub fn preference(mut self, preference: Preference) -> Self {
        self.preference = preference;
        self
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Restrict the backbones searched.
    pub fn backbones(mut self, backbones: Vec<BackboneKind>) -> Self {
        self.backbones = backbones;
        self
    }

    /// Fix the input resolution.
    pub fn resolution(mut self, pixels: u32) -> Self {
        self.resolution = Some(pixels);
        self
    }

    /// Import the folder `root` and fit on it.
    pub fn fit_folder(&self, root: &Path) -> Result<ImageModel> {
        let data = ImageDataset::import(root, self.format.clone())?;
        self.fit(&data, &Budget::new(self.time_limit), &Silent)
    }

    /// Fit on `data` within `budget`: the best model found when it runs out is returned.
    pub fn fit(
        &self,
        data: &ImageDataset,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<ImageModel> {
        let started = Instant::now();
        SplitSpec {
            train_ratio: self.train_ratio,
            seed: self.seed,
        }
        .check()?;
        if self.resolution.is_some_and(|r| !(32..=1024).contains(&r)) {
            return Err(Error::invalid("resolution", "expected 32 to 1024 pixels"));
        }
        let mut checks = crate::data::check(data).into_result(&data.root)?;
        let labels = data.label_indices();
        let usage = self.split(data, &labels);
        let part = |u: Usage| -> (Vec<PathBuf>, Vec<Vec<usize>>, Vec<String>) {
            let idx: Vec<usize> = (0..labels.len()).filter(|&i| usage[i] == u).collect();
            (
                idx.iter().map(|&i| data.samples[i].path.clone()).collect(),
                idx.iter().map(|&i| labels[i].clone()).collect(),
                idx.iter().map(|&i| data.samples[i].id.clone()).collect(),
            )
        };
        let (train_paths, train_labels, _) = part(Usage::Train);
        let (valid_paths, valid_labels, valid_ids) = part(Usage::Validation);
        let device = self.device.to_candle()?;
        let k = data.classes.len();
        let mut leaderboard = Vec::new();
        let mut best: Option<Fitted> = None;
        let mut reported = std::collections::BTreeSet::new();
        let plan = candidates(self.preference, &self.backbones, self.resolution);
        let mut first_cost: Option<(Duration, f64)> = None;
        for candidate in plan {
            let heads = head_grid(self.preference);
            if let (Some(_), Some((secs, pixels))) = (&best, first_cost) {
                let scale = cost(&candidate) / pixels;
                if !budget.allows(secs.mul_f64(scale)) {
                    leaderboard.push(skipped(
                        candidate,
                        &heads[0],
                        "skipped: not enough budget left",
                    ));
                    continue;
                }
            }
            let t0 = Instant::now();
            let weights = self
                .weights
                .iter()
                .find(|(b, _)| *b == candidate.backbone)
                .map(|(_, p)| p.as_path());
            let backbone = match Backbone::load(candidate.backbone, weights, &device) {
                Ok(b) => b,
                Err(e) if best.is_some() || matches!(e, Error::NotFound { .. }) => {
                    leaderboard.push(skipped(candidate, &heads[0], &format!("skipped: {e}")));
                    continue;
                }
                Err(e) => return Err(e),
            };
            progress.phase(&format!(
                "{} at {} px: extracting features",
                candidate.backbone, candidate.resolution
            ));
            let finish = best.is_none();
            let options = |views| ExtractOptions {
                resolution: candidate.resolution,
                augmented_views: views,
                seed: self.seed,
                ..ExtractOptions::default()
            };
            let extracted = extract(
                &backbone,
                &train_paths,
                &options(candidate.augmented_views),
                budget,
                finish,
                progress,
            )
            .and_then(|t| {
                extract(
                    &backbone,
                    &valid_paths,
                    &options(0),
                    budget,
                    finish,
                    progress,
                )
                .map(|v| (t, v))
            });
            let (train, valid) = match extracted {
                Ok(tv) => tv,
                Err(Error::BudgetExhausted { .. }) => {
                    leaderboard.push(skipped(candidate, &heads[0], "stopped: budget ran out"));
                    break;
                }
                Err(e) => return Err(e),
            };
            for (path, reason) in train.failed.iter().chain(&valid.failed) {
                if reported.insert(path.clone()) {
                    checks.warn(
                        "unreadable_image",
                        format!("left out: {reason}"),
                        at().file(path.display().to_string()),
                    );
                }
            }
            let rows_labels = |f: &Features, l: &[Vec<usize>]| -> Vec<Vec<usize>> {
                f.image_of_row.iter().map(|&i| l[i].clone()).collect()
            };
            let (train_rows, valid_rows) = (
                rows_labels(&train, &train_labels),
                rows_labels(&valid, &valid_labels),
            );
            if first_cost.is_none() {
                first_cost = Some((t0.elapsed(), cost(&candidate)));
            }
            let extract_secs = t0.elapsed().as_secs_f64();
            for (h, params) in heads.iter().enumerate() {
                if h > 0 && budget.exhausted() {
                    break;
                }
                let t1 = Instant::now();
                let train_data = HeadData {
                    x: &train.x,
                    labels: &train_rows,
                };
                let valid_data = HeadData {
                    x: &valid.x,
                    labels: &valid_rows,
                };
                let has_valid = !valid_rows.is_empty();
                let head = fit_head(
                    &train_data,
                    has_valid.then_some(&valid_data),
                    k,
                    data.multilabel,
                    params,
                )?;
                let (score, loss) = if has_valid {
                    validation_score(&head, &valid.x, &valid_rows, data.multilabel)?
                } else {
                    (0.0, 0.0)
                };
                let secs = t1.elapsed().as_secs_f64() + if h == 0 { extract_secs } else { 0.0 };
                leaderboard.push(ImageTrial {
                    candidate,
                    head: *params,
                    score: Some(score),
                    loss: Some(loss),
                    seconds: secs,
                    status: "ok".into(),
                });
                let better = best.as_ref().is_none_or(|b| {
                    score > b.score + 1e-9 || (score > b.score - 1e-9 && loss < b.loss)
                });
                if better {
                    best = Some(Fitted {
                        candidate,
                        backbone: backbone.clone(),
                        head,
                        trial: leaderboard.len() - 1,
                        score,
                        loss,
                    });
                }
            }
            progress.fraction(budget.fraction_used());
        }
        let best = best.ok_or_else(|| Error::BudgetExhausted {
            budget_secs: budget.limit().as_secs_f64(),
            what: "any image model could be trained".into(),
        })?;
        // Validation metrics of the chosen model, per image (not per augmented view).
        let valid_features = extract(
            &best.backbone,
            &valid_paths,
            &ExtractOptions {
                resolution: best.candidate.resolution,
                ..ExtractOptions::default()
            },
            budget,
            true,
            &Silent,
        )?;
        let proba: Vec<Vec<f32>> = best
            .head
            .proba(&valid_features.x)?
            .to_vec2()
            .map_err(candle_error)?;
        let rows = &valid_features.image_of_row;
        let truth: Vec<Vec<usize>> = rows.iter().map(|&i| valid_labels[i].clone()).collect();
        let ids: Vec<String> = rows.iter().map(|&i| valid_ids[i].clone()).collect();
        let thresholds = if data.multilabel {
            tune_thresholds(&truth, &proba, k)
        } else {
            Vec::new()
        };
        let validation = if truth.is_empty() {
            return Err(Error::invalid(
                "train ratio",
                "no image is left for validation: lower the train ratio or add images",
            ));
        } else {
            evaluate(
                &data.classes,
                data.multilabel,
                &thresholds,
                &ids,
                &truth,
                &proba,
            )?
        };
        leaderboard[best.trial].status = "chosen".into();
        let problem = if data.multilabel {
            ProblemType::Multilabel
        } else if k == 2 {
            ProblemType::Binary
        } else {
            ProblemType::Multiclass
        };
        let manifest = ImageManifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            exeml_version: env!("CARGO_PKG_VERSION").into(),
            task: TaskKind::Image,
            problem,
            classes: data.classes.clone(),
            backbone: best.candidate.backbone,
            resolution: best.candidate.resolution,
            head: leaderboard[best.trial].head,
            thresholds,
            validation,
            leaderboard,
            checks,
            lineage: ImageLineage {
                data: Some(data.root.display().to_string()),
                dataset_version: None,
                parent: None,
                seed: self.seed,
                train_ratio: self.train_ratio,
                images: (train_paths.len(), valid_paths.len()),
                preference: self.preference,
                time_limit_secs: budget.limit().as_secs_f64(),
                fit_secs: started.elapsed().as_secs_f64(),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
        };
        Ok(ImageModel::new(manifest, best.backbone, best.head))
    }

    /// The data's own split when every sample has one, else a seeded stratified split by the
    /// first label.
    fn split(&self, data: &ImageDataset, labels: &[Vec<usize>]) -> Vec<Usage> {
        let own: Option<Vec<Usage>> = data.samples.iter().map(|s| s.usage).collect();
        match own {
            Some(u) if u.contains(&Usage::Train) && u.contains(&Usage::Validation) => u,
            _ => {
                let strata: Vec<usize> = labels
                    .iter()
                    .map(|l| l.first().copied().unwrap_or(0))
                    .collect();
                stratified_split(
                    &strata,
                    SplitSpec {
                        train_ratio: self.train_ratio,
                        seed: self.seed,
                    },
                )
            }
        }
    }
}

/// Relative cost of a candidate: pixels × views (the backbones cost about the same per pixel).
fn cost(c: &Candidate) -> f64 {
    let lite = if c.backbone == BackboneKind::EfficientnetLite0 {
        1.35
    } else {
        1.0
    };
    f64::from(c.resolution).powi(2) * (1 + c.augmented_views) as f64 * lite
}

fn skipped(candidate: Candidate, head: &crate::head::HeadParams, why: &str) -> ImageTrial {
    ImageTrial {
        candidate,
        head: *head,
        score: None,
        loss: None,
        seconds: 0.0,
        status: why.into(),
    }
}

/// Validation accuracy (or macro F1 for multi-label, at threshold 0.5) and mean loss.
fn validation_score(
    head: &LinearHead,
    x: &candle_core::Tensor,
    labels: &[Vec<usize>],
    multilabel: bool,
) -> Result<(f64, f64)> {
    let proba: Vec<Vec<f32>> = head.proba(x)?.to_vec2().map_err(candle_error)?;
    let n = labels.len().max(1) as f64;
    if multilabel {
        let k = proba.first().map_or(0, Vec::len);
        let predicted: Vec<Vec<usize>> = proba
            .iter()
            .map(|p| crate::evaluate::predicted_set(p, &vec![0.5; k]))
            .collect();
        let names: Vec<String> = (0..k).map(|c| c.to_string()).collect();
        let report = crate::evaluate::multilabel_report(&names, labels, &predicted);
        let loss = proba
            .iter()
            .zip(labels)
            .map(|(p, l)| {
                (0..k)
                    .map(|c| {
                        let q = f64::from(p[c]).clamp(1e-7, 1.0 - 1e-7);
                        if l.contains(&c) {
                            -q.ln()
                        } else {
                            -(1.0 - q).ln()
                        }
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n;
        Ok((report.macro_f1, loss))
    } else {
        let mut correct = 0usize;
        let mut loss = 0f64;
        for (p, l) in proba.iter().zip(labels) {
            let truth = l.first().copied().unwrap_or(0);
            if crate::evaluate::argmax(p) == truth {
                correct += 1;
            }
            loss -= f64::from(p[truth]).clamp(1e-7, 1.0).ln();
        }
        Ok((correct as f64 / n, loss / n))
    }
}
