//! The entry point of image classification: `ImagePredictor::new().fit_folder(path)` imports,
//! checks, splits, searches backbone configurations and heads under the budget, evaluates on
//! the validation part and returns an [`ImageModel`].

use crate::backbone::{Backbone, BackboneKind};
use crate::data::{ImageDataset, ImportFormat};
use crate::ensemble::{select, Selection};
use crate::evaluate::validation_score;
use crate::evaluate::{evaluate, tune_thresholds};
use crate::features::{extract, rows_per_image, ExtractOptions, Features};
use crate::finetune::{pooled_through, Activations, FineTuneParams, Snapshot};
use crate::first_fit::{plan_first, FirstFitData};
use crate::footprint::{
    ensemble_latency_ms, ensemble_megabytes, measure, model_megabytes, smaller_resolutions,
    Footprint,
};
use crate::head::{fit_head_counted, HeadData, LinearHead};
use crate::model::{
    decision_thresholds, rescale, EnsembleEntry, EnsembleMember, ImageLineage, ImageManifest,
    ImageModel, FORMAT, FORMAT_VERSION,
};
use crate::nn::candle_error;
use crate::refit::{concat_rows, refit_models, RefitPlan};
use crate::search::{
    candidates, ensemble_limits, fine_tune_arms, head_grid, stretch_limit, Candidate, ImageTrial,
};
use crate::tuning::{successive_halving, Fitting, RefitCost};
use exeml_core::calibration::{fit_label_temperature, fit_temperature};
use exeml_core::checks::at;
use exeml_core::split::stratified_split;
use exeml_core::{
    Budget, Constraints, Device, Error, Preference, ProblemType, Progress, Result, Silent,
    SplitSpec, TaskKind, Usage,
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
    /// Fine-tune the backbone's top blocks after the linear probe (when the budget allows).
    pub fine_tune: bool,
    /// Average fine-tuned arms into an ensemble when it lowers the validation log loss and
    /// keeps accuracy within half a standard error (the preference bounds its size;
    /// `performance_first` never does).
    pub ensemble: bool,
    /// The fine-tuning configurations successive halving starts from, instead of the
    /// preference's plan ([`fine_tune_arms`]; `None`, the default, uses the plan).
    pub fine_tune_arms: Option<Vec<FineTuneParams>>,
    /// An earlier model to warm-start from, with how to name it in the lineage: its backbone
    /// (fine-tuned blocks included) and configuration are tried first. New classes are allowed.
    pub warm_start: Option<(String, ImageModel)>,
    /// Limits on single-image latency (on the training device) and model size that the
    /// returned model meets; a too-slow configuration is retried at lower resolutions.
    pub constraints: Constraints,
    /// Refit the chosen fine-tuned model (each member of an ensemble) on training and
    /// validation images together, for the epochs its validation chose, so that it learns
    /// from every image (AutoGluon's `refit_full`). The fine-tuning search then sizes the runs
    /// that go on to their end so as to leave their refits the time they need, unless that
    /// would halve them (a short budget): a model the time left cannot afford is kept as
    /// searched. The validation metrics stay the search's. `None` (the default): on under
    /// `balance` and `accuracy_first`, off under `performance_first` (see
    /// [`ImagePredictor::refits`]).
    pub refit_full: Option<bool>,
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
            fine_tune: true,
            ensemble: true,
            fine_tune_arms: None,
            warm_start: None,
            constraints: Constraints::default(),
            refit_full: None,
        }
    }
}

/// Rows a refit on every image trains on: the `train_rows` of the search (all views) and the
/// plain view and `views` augmented views of each of the `valid_images`.
fn refit_rows(train_rows: usize, valid_images: usize, views: usize) -> usize {
    train_rows + valid_images * rows_per_image(views)
}

/// The validation probabilities rescaled at the temperature fitted on them (see
/// [`exeml_core::calibration`]: the softmax's for one label per image, the sigmoids' for
/// multi-label), and that temperature; none when it is within 0.001 of 1.
fn calibrated(
    mut proba: Vec<Vec<f32>>,
    truth: &[Vec<usize>],
    multilabel: bool,
) -> (Vec<Vec<f32>>, Option<f64>) {
    let temperature = if multilabel {
        fit_label_temperature(&proba, truth)
    } else {
        let classes: Vec<usize> = truth
            .iter()
            .map(|t| t.first().copied().unwrap_or(usize::MAX))
            .collect();
        fit_temperature(&proba, &classes)
    };
    if (temperature - 1.0).abs() < 1e-3 {
        return (proba, None);
    }
    for row in &mut proba {
        rescale(row, temperature, multilabel);
    }
    (proba, Some(temperature))
}

/// Estimated seconds to extract the plain view and `views` augmented views of each of the
/// `valid_images` for a refit, from the `extract_secs` the search took for its `train_rows`
/// (all views) and one plain view of each validation image.
fn view_extraction_seconds(
    extract_secs: f64,
    train_rows: usize,
    valid_images: usize,
    views: usize,
) -> f64 {
    let extracted = (train_rows + valid_images).max(1) as f64;
    extract_secs * (valid_images * rows_per_image(views)) as f64 / extracted
}

/// What refitting the chosen fine-tuned models on every image needs from the search.
struct RefitSource {
    /// The backbone before fine-tuning.
    base: Backbone,
    /// The linear probe fine-tuning started from.
    probe: LinearHead,
    /// Training activations entering the split block (all views).
    train: Activations,
    /// The chosen model, then the ensemble's other members.
    plans: Vec<RefitPlan>,
}

/// The best model so far and what is needed to fine-tune and evaluate it.
struct Fitted {
    candidate: Candidate,
    backbone: Backbone,
    head: LinearHead,
    /// Its leaderboard row.
    trial: usize,
    score: f64,
    loss: f64,
    /// Pooled validation features (plain view) through the model's backbone.
    valid_x: candle_core::Tensor,
    /// The validation image of each row of `valid_x`.
    valid_rows: Vec<usize>,
    /// The block the cached activations enter.
    split: usize,
    /// Cached training and validation activations entering block `split`.
    activations: Option<(Activations, Activations)>,
    /// The fine-tuning configuration, when the backbone's top blocks were trained.
    fine_tune: Option<FineTuneParams>,
    /// Latency and size of the configuration (before fine-tuning).
    footprint: Footprint,
    /// Pooled training features (all views) and each row's labels, for the final refit.
    train_x: candle_core::Tensor,
    train_rows: Vec<Vec<usize>>,
    /// Seconds the probe head took to fit, and its features to extract.
    head_secs: f64,
    extract_secs: f64,
    /// A fine-tuned ensemble's members after the first, and every member's entry (empty for a
    /// single model).
    members: Vec<EnsembleMember>,
    ensemble: Vec<EnsembleEntry>,
    /// The ensemble's validation probabilities (rows of `valid_x`), when it is one.
    valid_proba: Option<Vec<Vec<f32>>>,
    /// For a fine-tuned model: what a refit on every image needs.
    refit: Option<RefitSource>,
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

    /// Compute on `device` (`Device::Cuda(n)` needs the `cuda` feature, `Device::Metal` the
    /// `metal` feature; the saved model predicts on the CPU either way).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Restrict the backbones searched.
    pub fn backbones(mut self, backbones: Vec<BackboneKind>) -> Self {
        self.backbones = backbones;
        self
    }

    /// Load `backbone` from `file` (safetensors, or a PyTorch `.pth` converted once) instead of
    /// its default weights (the installed pip package or the Hugging Face hub cache).
    pub fn weights(mut self, backbone: BackboneKind, file: impl Into<PathBuf>) -> Self {
        self.weights.retain(|(kind, _)| *kind != backbone);
        self.weights.push((backbone, file.into()));
        self
    }

    /// Fix the input resolution.
    pub fn resolution(mut self, pixels: u32) -> Self {
        self.resolution = Some(pixels);
        self
    }

    /// Fine-tune the backbone's top blocks (`true`, the default) or only train a linear head.
    pub fn fine_tune(mut self, fine_tune: bool) -> Self {
        self.fine_tune = fine_tune;
        self
    }

    /// Allow an ensemble of fine-tuned arms (`true`, the default) or keep one model.
    pub fn ensemble(mut self, ensemble: bool) -> Self {
        self.ensemble = ensemble;
        self
    }

    /// Fine-tune with these configurations (best guess first) instead of the preference's
    /// plan: the white-box way to rerun a search with the arms of its leaderboard edited. Each
    /// is checked when fitting starts.
    pub fn fine_tune_arms(mut self, arms: Vec<FineTuneParams>) -> Self {
        self.fine_tune_arms = Some(arms);
        self
    }

    /// Refit the chosen fine-tuned model(s) on training and validation images together (see
    /// [`ImagePredictor::refit_full`]).
    pub fn refit_full(mut self, refit: bool) -> Self {
        self.refit_full = Some(refit);
        self
    }

    /// Whether the chosen fine-tuned models are refitted on every image: as asked, else under
    /// `balance` and `accuracy_first` (measured on 10,000 test images: +0.1 to +1.2 points at
    /// 10 and 30 minutes; at 2 minutes the refit is skipped and the model is the same), not
    /// under `performance_first`, whose short runs would be shortened further.
    pub fn refits(&self) -> bool {
        self.refit_full
            .unwrap_or(self.preference != Preference::PerformanceFirst)
    }

    /// Only return a model whose median single-image latency on the training device is at most
    /// `ms` milliseconds (decoding excluded); too-slow configurations are retried at lower
    /// resolutions unless the resolution is fixed.
    pub fn max_latency_ms(mut self, ms: f64) -> Self {
        self.constraints.max_latency_ms = Some(ms);
        self
    }

    /// Only return a model whose saved folder is at most `mb` megabytes.
    pub fn max_model_mb(mut self, mb: f64) -> Self {
        self.constraints.max_model_mb = Some(mb);
        self
    }

    /// Warm-start from an earlier model (`label` names it in the new model's lineage).
    pub fn warm_start(mut self, label: impl Into<String>, parent: &ImageModel) -> Self {
        self.warm_start = Some((label.into(), parent.clone()));
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
        let constraints = self.constraints.check()?;
        SplitSpec {
            train_ratio: self.train_ratio,
            seed: self.seed,
        }
        .check()?;
        if self.resolution.is_some_and(|r| !(32..=1024).contains(&r)) {
            return Err(Error::invalid("resolution", "expected 32 to 1024 pixels"));
        }
        for arm in self.fine_tune_arms.iter().flatten() {
            arm.check()?;
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
        if valid_paths.is_empty() {
            return Err(Error::invalid(
                "train ratio",
                "no image is left for validation: lower the train ratio or add images",
            ));
        }
        let device = self.device.to_candle()?;
        let k = data.classes.len();
        let parent = self.warm_start.as_ref().map(|(_, m)| m);
        let mut arms = match (&self.fine_tune_arms, self.fine_tune) {
            (_, false) => Vec::new(),
            (Some(arms), true) => arms.clone(),
            (None, true) => fine_tune_arms(self.preference, !device.is_cpu()),
        };
        let mut plan = candidates(self.preference, &self.backbones, self.resolution);
        if let Some(parent) = parent {
            // The parent's configuration first: its backbone carries what it learnt.
            plan.retain(|c| *c != parent_candidate(parent));
            plan.insert(0, parent_candidate(parent));
            if let (true, Some(p)) = (self.fine_tune, parent.manifest.fine_tune) {
                arms.retain(|a| *a != p);
                arms.insert(0, p);
            }
        }
        let most_unfrozen = arms.iter().map(|a| a.unfrozen_blocks).max().unwrap_or(0);
        let mut leaderboard = Vec::new();
        let mut best: Option<Fitted> = None;
        // The first backbone whose weights could not be loaded (reported if none could).
        let mut missing_weights: Option<Error> = None;
        let mut reported = std::collections::BTreeSet::new();
        let mut first_cost: Option<(Duration, f64)> = None;
        let mut tried: Vec<Candidate> = Vec::new();
        for mut candidate in plan {
            let heads = head_grid(self.preference);
            if let (Some(_), Some((secs, pixels))) = (&best, first_cost) {
                let needed = secs.mul_f64(cost(&candidate) / pixels);
                if !budget.allows(needed) {
                    leaderboard.push(skipped(
                        candidate,
                        &heads[0],
                        "skipped: not enough budget left",
                    ));
                    continue;
                }
                if !arms.is_empty()
                    && device.is_cpu()
                    && !budget.allows(needed * PROBE_SHARE_INVERSE)
                {
                    // Fine-tuning the best probe gains more than probing one more backbone.
                    leaderboard.push(skipped(
                        candidate,
                        &heads[0],
                        &format!(
                            "skipped: its features would take more than 1/{PROBE_SHARE_INVERSE} \
                             of the budget left for fine-tuning"
                        ),
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
            let inherited = parent
                .filter(|p| parent_candidate(p) == candidate)
                .map(|p| p.backbone().clone());
            let loaded = match inherited {
                Some(b) => Ok(b),
                None => Backbone::load(candidate.backbone, weights, &device),
            };
            let backbone = match loaded {
                Ok(b) => b,
                Err(e) if best.is_some() || matches!(e, Error::NotFound { .. }) => {
                    leaderboard.push(skipped(candidate, &heads[0], &format!("skipped: {e}")));
                    missing_weights.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut footprint = match self.within_constraints(
                &mut candidate,
                &backbone,
                k,
                &constraints,
                &mut leaderboard,
                &heads[0],
            )? {
                Some(f) if !tried.contains(&candidate) => f,
                _ => continue,
            };
            let finish = best.is_none();
            // The first configuration must finish: make it cheaper if it would not fit.
            let (cand_paths, cand_labels) = if finish {
                let first_labels: Vec<usize> = train_labels
                    .iter()
                    .map(|l| l.first().copied().unwrap_or(0))
                    .collect();
                let data = FirstFitData {
                    train: &train_paths,
                    labels: &first_labels,
                    validation_images: valid_paths.len(),
                    fixed_resolution: self.resolution.is_some(),
                    seed: self.seed,
                };
                let fit = plan_first(&backbone, candidate, &data, budget)?;
                if let Some(note) = &fit.note {
                    progress.phase(note);
                    let mut row = skipped(candidate, &heads[0], &format!("changed: {note}"));
                    row.latency_ms = Some(footprint.latency_ms);
                    row.size_mb = Some(footprint.size_mb);
                    leaderboard.push(row);
                }
                if fit.candidate.resolution != candidate.resolution {
                    footprint = measure(&backbone, fit.candidate.resolution, k)?;
                }
                candidate = fit.candidate;
                match fit.subset {
                    Some(keep) => (
                        keep.iter().map(|&i| train_paths[i].clone()).collect(),
                        keep.iter().map(|&i| train_labels[i].clone()).collect(),
                    ),
                    None => (train_paths.clone(), train_labels.clone()),
                }
            } else {
                (train_paths.clone(), train_labels.clone())
            };
            tried.push(candidate);
            progress.phase(&format!(
                "{} at {} px: extracting features",
                candidate.backbone, candidate.resolution
            ));
            let split = backbone.blocks().len().saturating_sub(most_unfrozen);
            let options = |views| ExtractOptions {
                resolution: candidate.resolution,
                augmented_views: views,
                seed: self.seed,
                keep_activations_at: (most_unfrozen > 0).then_some(split),
                ..ExtractOptions::default()
            };
            let extracted = extract(
                &backbone,
                &cand_paths,
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
                Err(Error::Interrupted(_)) if best.is_none() => {
                    return Err(Error::Interrupted(
                        "training was cancelled before any image model was trained".into(),
                    ));
                }
                Err(Error::BudgetExhausted { .. } | Error::Interrupted(_)) => {
                    let status = format!("stopped: {}", budget.stop_reason());
                    leaderboard.push(skipped(candidate, &heads[0], &status));
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
                rows_labels(&train, &cand_labels),
                rows_labels(&valid, &valid_labels),
            );
            if valid_rows.is_empty() {
                return Err(Error::data(
                    &data.root,
                    "no validation image could be decoded: see the unreadable_image warnings",
                ));
            }
            if first_cost.is_none() {
                // Scaled to all training images when a subset was used.
                let all = train_paths.len() as f64 / cand_paths.len().max(1) as f64;
                first_cost = Some((t0.elapsed().mul_f64(all), cost(&candidate)));
            }
            let extract_secs = t0.elapsed().as_secs_f64();
            let activations = match (&train.activations, &valid.activations) {
                (Some(t), Some(v)) => Some((
                    Activations {
                        x: t.clone(),
                        labels: train_rows.clone(),
                    },
                    Activations {
                        x: v.clone(),
                        labels: valid_rows.clone(),
                    },
                )),
                _ => None,
            };
            for (h, params) in heads.iter().enumerate() {
                if h > 0 && budget.exhausted() {
                    break;
                }
                let t1 = Instant::now();
                let (head, _) = fit_head_counted(
                    &HeadData {
                        x: &train.x,
                        labels: &train_rows,
                    },
                    k,
                    data.multilabel,
                    params,
                )?;
                let (score, loss) =
                    validation_score(&head, &valid.x, &valid_rows, data.multilabel)?;
                let secs = t1.elapsed().as_secs_f64() + if h == 0 { extract_secs } else { 0.0 };
                leaderboard.push(ImageTrial {
                    candidate,
                    head: *params,
                    score: Some(score),
                    loss: Some(loss),
                    seconds: secs,
                    status: "ok".into(),
                    fine_tune: None,
                    epochs: None,
                    latency_ms: Some(footprint.latency_ms),
                    size_mb: Some(footprint.size_mb),
                    members: Vec::new(),
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
                        valid_x: valid.x.clone(),
                        valid_rows: valid.image_of_row.clone(),
                        split,
                        activations: activations.clone(),
                        fine_tune: None,
                        footprint,
                        train_x: train.x.clone(),
                        train_rows: train_rows.clone(),
                        head_secs: t1.elapsed().as_secs_f64(),
                        extract_secs,
                        members: Vec::new(),
                        ensemble: Vec::new(),
                        valid_proba: None,
                        refit: None,
                    });
                }
            }
            progress.fraction(budget.fraction_used());
        }
        let Some(mut best) = best else {
            if let Some(closest) = closest_to_constraints(&leaderboard) {
                return Err(constraints.unmet(&closest));
            }
            if let Some(e) = missing_weights {
                // No backbone's weights were found: say which and where they were looked for.
                return Err(e);
            }
            return Err(Error::BudgetExhausted {
                budget_secs: budget.limit().as_secs_f64(),
                what: "any image model could be trained".into(),
            });
        };
        // A whole-network arm names the chosen backbone's own block count from here on.
        let blocks = best.backbone.blocks().len();
        for arm in &mut arms {
            arm.unfrozen_blocks = arm.unfrozen_blocks.min(blocks);
        }
        if let Some(limit) = constraints.max_model_mb {
            // Fine-tuned blocks are saved beside the backbone: drop arms that would not fit.
            let mut fitting = Vec::new();
            for arm in arms {
                let size = model_megabytes(&best.backbone, k, arm.unfrozen_blocks)?;
                if size <= limit {
                    fitting.push(arm);
                } else {
                    let mut row = skipped(
                        best.candidate,
                        &leaderboard[best.trial].head,
                        &format!("excluded: size {size:.2} MB > {limit} MB"),
                    );
                    row.fine_tune = Some(arm);
                    row.size_mb = Some(size);
                    leaderboard.push(row);
                }
            }
            arms = fitting;
        }
        if !arms.is_empty() {
            // Fine-tuning leaves time for the final refit of a probe (about two head fits); the
            // refit of a fine-tuned model, view extraction included, is planned by the search
            // (and its time spent on training when the search skips it).
            let reserve = 2.0 * best.head_secs + 1.0;
            let left = budget.remaining().as_secs_f64();
            let share = if left > 0.0 {
                1.0 - reserve / left
            } else {
                0.0
            };
            let tuning = budget.slice(share);
            self.fine_tune_best(
                &mut best,
                &arms,
                k,
                &constraints,
                &mut leaderboard,
                &tuning,
                progress,
            )?;
        }
        // Validation metrics of the chosen model, per image (not per augmented view).
        let proba: Vec<Vec<f32>> = match best.valid_proba.take() {
            Some(p) => p,
            None => best
                .head
                .proba(&best.valid_x)?
                .to_vec2()
                .map_err(candle_error)?,
        };
        let rows = &best.valid_rows;
        let truth: Vec<Vec<usize>> = rows.iter().map(|&i| valid_labels[i].clone()).collect();
        let ids: Vec<String> = rows.iter().map(|&i| valid_ids[i].clone()).collect();
        // Thresholds are tuned on the unscaled probabilities: calibration changes no decision.
        let thresholds = if data.multilabel {
            tune_thresholds(&truth, &proba, k)
        } else {
            Vec::new()
        };
        let (proba, temperature) = calibrated(proba, &truth, data.multilabel);
        let validation = evaluate(
            &data.classes,
            data.multilabel,
            &decision_thresholds(&thresholds, temperature),
            &ids,
            &truth,
            &proba,
        )?;
        leaderboard[best.trial].status = "chosen".into();
        let mut refit_epochs = Vec::new();
        if let (true, Some(source)) = (self.refits(), best.refit.take()) {
            refit_epochs = self.refit_fine_tuned(
                &mut best,
                source,
                &valid_paths,
                &valid_labels,
                budget,
                progress,
            )?;
        }
        // The validation metrics above are the honest estimate; the model that is returned
        // learns from the validation images too (a linear probe refits in seconds).
        let mut refit_steps = None;
        if best.fine_tune.is_none() && !budget.exhausted() {
            let x = candle_core::Tensor::cat(&[&best.train_x, &best.valid_x], 0)
                .map_err(candle_error)?;
            let labels: Vec<Vec<usize>> = best.train_rows.iter().chain(&truth).cloned().collect();
            let params = leaderboard[best.trial].head;
            progress.phase("refitting the head on training and validation images");
            let (head, steps) = fit_head_counted(
                &HeadData {
                    x: &x,
                    labels: &labels,
                },
                k,
                data.multilabel,
                &params,
            )?;
            best.head = head;
            refit_steps = Some(steps);
        }
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
            fine_tune: best.fine_tune,
            tuned_from: best.backbone.tuned_from(),
            ensemble: best.ensemble,
            refit_steps,
            refit_epochs,
            thresholds,
            temperature,
            validation,
            leaderboard,
            checks,
            lineage: ImageLineage {
                data: Some(data.root.display().to_string()),
                dataset_version: None,
                parent: self.warm_start.as_ref().map(|(label, _)| label.clone()),
                seed: self.seed,
                train_ratio: self.train_ratio,
                images: (train_paths.len(), valid_paths.len()),
                preference: self.preference,
                time_limit_secs: budget.limit().as_secs_f64(),
                fit_secs: started.elapsed().as_secs_f64(),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                constraints,
            },
        };
        if best.members.is_empty() {
            Ok(ImageModel::new(manifest, best.backbone, best.head))
        } else {
            ImageModel::new_ensemble(manifest, best.backbone, best.head, best.members)
        }
    }

    /// Measure `candidate`; when it is too slow and its resolution is not fixed, lower the
    /// resolution until it meets the constraints. `None` when nothing does (the leaderboard
    /// records why).
    fn within_constraints(
        &self,
        candidate: &mut Candidate,
        backbone: &Backbone,
        classes: usize,
        constraints: &Constraints,
        leaderboard: &mut Vec<ImageTrial>,
        head: &crate::head::HeadParams,
    ) -> Result<Option<Footprint>> {
        let measured = measure(backbone, candidate.resolution, classes)?;
        let Some(why) = constraints.violation(Some(measured.latency_ms), Some(measured.size_mb))
        else {
            return Ok(Some(measured));
        };
        let mut row = skipped(*candidate, head, &why);
        row.latency_ms = Some(measured.latency_ms);
        row.size_mb = Some(measured.size_mb);
        leaderboard.push(row);
        let only_too_slow = constraints
            .violation(None, Some(measured.size_mb))
            .is_none();
        if self.resolution.is_some() || !only_too_slow {
            return Ok(None);
        }
        for resolution in smaller_resolutions(candidate.resolution) {
            let footprint = measure(backbone, resolution, classes)?;
            if constraints
                .violation(Some(footprint.latency_ms), Some(footprint.size_mb))
                .is_none()
            {
                candidate.resolution = resolution;
                return Ok(Some(footprint));
            }
        }
        Ok(None)
    }

    /// Fine-tune the chosen backbone's top blocks by successive halving over `arms`; replaces
    /// `best` when a fine-tuned model validates better than the linear probe, and then with an
    /// ensemble of fine-tuned models when [`ensemble_members`] keeps one.
    #[allow(clippy::too_many_arguments)]
    fn fine_tune_best(
        &self,
        best: &mut Fitted,
        arms: &[FineTuneParams],
        classes: usize,
        constraints: &Constraints,
        leaderboard: &mut Vec<ImageTrial>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<()> {
        let (candidate, head) = (best.candidate, leaderboard[best.trial].head);
        let latency_ms = best.footprint.latency_ms;
        let base = best.backbone.clone();
        let probe = best.head.clone();
        let row = |params: FineTuneParams, status: &str| ImageTrial {
            candidate,
            head,
            score: None,
            loss: None,
            seconds: 0.0,
            status: status.into(),
            fine_tune: Some(params),
            epochs: None,
            latency_ms: Some(latency_ms),
            size_mb: model_megabytes(&base, classes, params.unfrozen_blocks).ok(),
            members: Vec::new(),
        };
        if budget.exhausted() {
            let status = format!("skipped: {}", budget.stop_reason());
            leaderboard.extend(arms.iter().map(|a| row(*a, &status)));
            return Ok(());
        }
        let Some((train, valid)) = best.activations.take() else {
            leaderboard.extend(arms.iter().map(|a| {
                row(
                    *a,
                    "skipped: the activations to fine-tune on do not fit in memory",
                )
            }));
            return Ok(());
        };
        let fitting = Fitting {
            // Arms given by the caller run as given; the plan's may use a generous budget.
            stretch: match self.fine_tune_arms {
                Some(_) => 1,
                None => stretch_limit(self.preference),
            },
            refit: if self.refits() {
                let views = best.candidate.augmented_views;
                let rows = refit_rows(train.len(), valid.len(), views);
                RefitCost {
                    per_epoch: rows as f64 / train.len().max(1) as f64,
                    setup: view_extraction_seconds(
                        best.extract_secs,
                        train.len(),
                        valid.len(),
                        views,
                    ),
                }
            } else {
                RefitCost::NONE
            },
        };
        let outcomes = successive_halving(
            &best.backbone,
            &best.head,
            arms,
            best.split,
            &train,
            &valid,
            classes,
            self.seed,
            fitting,
            budget,
            progress,
        )?;
        // Every arm's best state, with its leaderboard row: candidates for an ensemble.
        let mut trained: Vec<Trained> = Vec::new();
        for outcome in outcomes {
            let mut trial = row(outcome.params, &outcome.status);
            trial.seconds = outcome.seconds;
            trial.epochs = Some(outcome.epochs);
            if let Some(snapshot) = &outcome.best {
                trial.score = Some(snapshot.score);
                trial.loss = Some(snapshot.loss);
            }
            leaderboard.push(trial);
            let Some(snapshot) = outcome.best else {
                continue;
            };
            trained.push(Trained {
                trial: leaderboard.len() - 1,
                params: outcome.params,
                first_block: outcome.first_block,
                snapshot: snapshot.clone(),
                seconds_per_epoch: outcome.seconds / outcome.epochs.max(1) as f64,
            });
            let chosen_plan = trained[trained.len() - 1].refit_plan();
            let better = snapshot.score > best.score + 1e-9
                || (snapshot.score > best.score - 1e-9 && snapshot.loss < best.loss);
            if !better {
                continue;
            }
            // Activations entering a deeper block go through the (original) blocks in between.
            let deeper;
            let valid_act = if outcome.first_block == best.split {
                &valid
            } else {
                deeper = valid.advance(&base, best.split, outcome.first_block)?;
                &deeper
            };
            let dim = best.head.mean.dim(0).map_err(candle_error)?;
            best.valid_x =
                pooled_through(&snapshot.blocks, &valid_act.x, dim).map_err(candle_error)?;
            best.backbone = base.with_tuned_blocks(outcome.first_block, snapshot.blocks)?;
            best.head = snapshot.head;
            best.score = snapshot.score;
            best.loss = snapshot.loss;
            best.trial = leaderboard.len() - 1;
            best.fine_tune = Some(outcome.params);
            // Kept only when asked for: the activations are the largest thing in memory.
            best.refit = self.refits().then(|| RefitSource {
                base: base.clone(),
                probe: probe.clone(),
                train: train.clone(),
                plans: vec![chosen_plan],
            });
        }
        self.ensemble_best(
            best,
            &base,
            &trained,
            classes,
            constraints,
            leaderboard,
            &valid,
        )
    }

    /// When fine-tuning won, average the chosen model with other arms that tuned the same
    /// blocks (see [`ensemble_members`]), if the ensemble meets the constraints.
    #[allow(clippy::too_many_arguments)]
    fn ensemble_best(
        &self,
        best: &mut Fitted,
        base: &Backbone,
        trained: &[Trained],
        classes: usize,
        constraints: &Constraints,
        leaderboard: &mut Vec<ImageTrial>,
        valid: &Activations,
    ) -> Result<()> {
        let (Some(params), true) = (best.fine_tune, self.ensemble) else {
            return Ok(());
        };
        let Some(considered) = ensemble_members(
            best.trial,
            best.score,
            trained,
            &valid.labels,
            best.head.multilabel,
            self.preference,
        ) else {
            return Ok(());
        };
        let size_mb =
            |members: usize| ensemble_megabytes(base, classes, params.unfrozen_blocks, members);
        let ConsideredEnsemble {
            picked,
            selection,
            refused,
        } = considered;
        if let Some(why) = refused {
            // Shown (white box), not measured: its latency is only timed when it is kept.
            leaderboard.push(ImageTrial {
                candidate: best.candidate,
                head: leaderboard[best.trial].head,
                score: Some(selection.score),
                loss: Some(selection.loss),
                seconds: 0.0,
                status: why,
                fine_tune: Some(params),
                epochs: None,
                latency_ms: None,
                size_mb: size_mb(picked.len()).ok(),
                members: picked.iter().map(|(t, _)| t.trial).collect(),
            });
            return Ok(());
        }
        let first = picked[0].0.first_block;
        let member_backbones: Vec<Backbone> = picked[1..]
            .iter()
            .map(|(t, _)| base.with_tuned_blocks(first, t.snapshot.blocks.clone()))
            .collect::<Result<_>>()?;
        let all: Vec<&Backbone> = std::iter::once(&best.backbone)
            .chain(&member_backbones)
            .collect();
        // Blocks a warm-start parent tuned below `first` are shared as well.
        let shared = best.backbone.tuned_from().unwrap_or(first);
        let latency_ms = ensemble_latency_ms(&all, shared, best.candidate.resolution)?;
        let size_mb = size_mb(picked.len())?;
        let mut trial = ImageTrial {
            candidate: best.candidate,
            head: leaderboard[best.trial].head,
            score: Some(selection.score),
            loss: Some(selection.loss),
            seconds: 0.0,
            status: "ok".into(),
            fine_tune: Some(params),
            epochs: None,
            latency_ms: Some(latency_ms),
            size_mb: Some(size_mb),
            members: picked.iter().map(|(t, _)| t.trial).collect(),
        };
        if let Some(why) = constraints.violation(Some(latency_ms), Some(size_mb)) {
            trial.status = why;
            leaderboard.push(trial);
            return Ok(());
        }
        leaderboard.push(trial);
        let mut valid_proba = vec![vec![0f32; classes]; valid.len()];
        for (t, weight) in &picked {
            for (sum, row) in valid_proba.iter_mut().zip(&t.snapshot.valid_proba) {
                for (s, p) in sum.iter_mut().zip(row) {
                    *s += *weight as f32 * p;
                }
            }
        }
        best.ensemble = picked
            .iter()
            .map(|(t, weight)| EnsembleEntry {
                fine_tune: t.params,
                weight: *weight,
                trial: t.trial,
            })
            .collect();
        best.members = picked[1..]
            .iter()
            .zip(member_backbones)
            .map(|((t, _), backbone)| EnsembleMember {
                backbone,
                head: t.snapshot.head.clone(),
            })
            .collect();
        best.valid_proba = Some(valid_proba);
        if let Some(source) = &mut best.refit {
            source.plans = picked.iter().map(|(t, _)| t.refit_plan()).collect();
        }
        best.score = selection.score;
        best.loss = selection.loss;
        best.trial = leaderboard.len() - 1;
        Ok(())
    }

    /// Refit the chosen fine-tuned model and the ensemble's other members on training and
    /// validation images together (the validation images' augmented views are extracted
    /// first), each as far as the budget left affords; returns the epochs each was refitted
    /// for (0: kept as searched).
    fn refit_fine_tuned(
        &self,
        best: &mut Fitted,
        source: RefitSource,
        valid_paths: &[PathBuf],
        valid_labels: &[Vec<usize>],
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<Vec<usize>> {
        let kept = vec![0; source.plans.len()];
        let views = best.candidate.augmented_views;
        let rows = refit_rows(source.train.len(), valid_paths.len(), views);
        let setup = view_extraction_seconds(
            best.extract_secs,
            source.train.len(),
            valid_paths.len(),
            views,
        );
        let affordable = |plan: &RefitPlan| {
            let seconds = budget.remaining().as_secs_f64() - setup;
            plan.affordable_epochs(rows, source.train.len(), seconds) > 0
        };
        if budget.exhausted() || !source.plans.iter().any(affordable) {
            // The search took the time (a short budget): nothing to extract the views for.
            if let Some(chosen) = source.plans.first().filter(|p| p.epochs > 0) {
                progress.phase(&format!(
                    "not refitted: the {:.0} s left afford less than half of the refit (~{:.0} s)",
                    budget.remaining().as_secs_f64(),
                    setup + chosen.estimated_seconds(rows, source.train.len())
                ));
            }
            return Ok(kept);
        }
        progress.phase("refitting: augmenting the validation images");
        let options = ExtractOptions {
            resolution: best.candidate.resolution,
            augmented_views: best.candidate.augmented_views,
            // Other augmented views than the training images' own seed would give.
            seed: self.seed ^ 0x72_6566_6974,
            keep_activations_at: Some(best.split),
            ..ExtractOptions::default()
        };
        let valid = match extract(&source.base, valid_paths, &options, budget, false, progress) {
            Ok(features) => features,
            Err(Error::BudgetExhausted { .. } | Error::Interrupted(_)) => return Ok(kept),
            Err(e) => return Err(e),
        };
        let Some(x) = valid.activations else {
            return Ok(kept); // beyond the memory kept for activations
        };
        let labels = valid
            .image_of_row
            .iter()
            .map(|&i| valid_labels[i].clone())
            .collect();
        let rows = concat_rows(&source.train, &Activations { x, labels })?;
        let refitted = refit_models(
            &source.base,
            &source.probe,
            &source.plans,
            best.split,
            &rows,
            source.train.len(),
            best.head.weight.dim(0).map_err(candle_error)?,
            self.seed,
            budget,
            progress,
        )?;
        let mut epochs = kept;
        for (i, (plan, model)) in source.plans.iter().zip(refitted).enumerate() {
            let Some(((blocks, head), refit_epochs)) = model else {
                continue;
            };
            let backbone = source.base.with_tuned_blocks(plan.first_block, blocks)?;
            if i == 0 {
                best.backbone = backbone;
                best.head = head;
            } else {
                best.members[i - 1] = EnsembleMember { backbone, head };
            }
            epochs[i] = refit_epochs;
        }
        Ok(epochs)
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

/// A fine-tuning arm's best state and its leaderboard row.
struct Trained {
    trial: usize,
    params: FineTuneParams,
    first_block: usize,
    snapshot: Snapshot,
    seconds_per_epoch: f64,
}

impl Trained {
    /// How to train this arm again on every image: its configuration, for the epochs after
    /// which its best state was taken.
    fn refit_plan(&self) -> RefitPlan {
        RefitPlan {
            params: self.params,
            first_block: self.first_block,
            epochs: self.snapshot.epoch,
            seconds_per_epoch: self.seconds_per_epoch,
        }
    }
}

/// How far an ensemble's validation accuracy may fall below the chosen model's and the ensemble
/// still be kept, in standard errors of that accuracy over the validation rows. Greedy
/// selection only adds members that lower the validation log loss, and on a few hundred images
/// a fall of under half a standard error is noise: replayed on the arms of seven benchmark runs,
/// keeping such ensembles tested no worse than refusing them and with a lower log loss
/// (docs/benchmarks.md, "Keeping an ensemble within half a standard error").
const ENSEMBLE_SLACK_STANDARD_ERRORS: f64 = 0.5;

/// [`ENSEMBLE_SLACK_STANDARD_ERRORS`] as a score: the binomial standard error of accuracy
/// `score` over `rows` images. Zero for multi-label models, whose macro F1 has no such error
/// (and which the measurement did not cover).
fn ensemble_slack(score: f64, rows: usize, multilabel: bool) -> f64 {
    if multilabel {
        return 0.0;
    }
    let variance = (score * (1.0 - score)).max(0.0) / rows.max(1) as f64;
    ENSEMBLE_SLACK_STANDARD_ERRORS * variance.sqrt()
}

/// An ensemble that greedy selection built around the chosen model.
struct ConsideredEnsemble<'a> {
    /// Its members with their weights, the chosen model first when it is one.
    picked: Vec<(&'a Trained, f64)>,
    /// The members' picks and the validation score and loss of their weighted average.
    selection: Selection,
    /// Why it is not kept (a leaderboard status); `None` when it is.
    refused: Option<String>,
}

/// The ensemble around the chosen fine-tuned model (leaderboard row `chosen`, validation score
/// `chosen_score`), chosen first: greedy selection on the validation rows (`labels`) among the
/// arms that tuned the same blocks, within the preference's limits. `None` when the preference
/// keeps one model or no other arm tuned the same blocks (nothing to consider). It is refused
/// unless it has two or more members, the chosen model among them, and its score is at most
/// [`ensemble_slack`] below the chosen model's (its validation loss is lower by construction).
fn ensemble_members<'a>(
    chosen: usize,
    chosen_score: f64,
    trained: &'a [Trained],
    labels: &[Vec<usize>],
    multilabel: bool,
    preference: Preference,
) -> Option<ConsideredEnsemble<'a>> {
    let (rounds, max_members) = ensemble_limits(preference);
    let first = trained.iter().find(|t| t.trial == chosen)?;
    let mut pool = vec![first];
    pool.extend(
        trained
            .iter()
            .filter(|t| t.trial != chosen && t.first_block == first.first_block),
    );
    if max_members < 2 || pool.len() < 2 {
        return None;
    }
    let probas: Vec<Vec<Vec<f32>>> = pool
        .iter()
        .map(|t| t.snapshot.valid_proba.clone())
        .collect();
    let selection = select(&probas, labels, multilabel, rounds, max_members);
    let slack = ensemble_slack(chosen_score, labels.len(), multilabel);
    let (metric, allowed) = if multilabel {
        ("macro F1", "a multi-label ensemble may not score lower")
    } else {
        ("accuracy", "half a standard error")
    };
    let refused = if selection.members() < 2 {
        Some("not kept: no other arm lowered the validation log loss".to_string())
    } else if selection.counts[0] == 0 {
        Some("not kept: greedy selection left the chosen model out".to_string())
    } else if selection.score < chosen_score - slack - 1e-9 {
        Some(format!(
            "not kept: validation {metric} {:.4}, {:.4} below the chosen model's {:.4} \
             (more than the {:.4} allowed: {allowed})",
            selection.score,
            chosen_score - selection.score,
            chosen_score,
            slack
        ))
    } else {
        None
    };
    let weights = selection.weights();
    let picked = pool
        .into_iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0.0)
        .collect();
    Some(ConsideredEnsemble {
        picked,
        selection,
        refused,
    })
}

/// The configuration an earlier model chose.
fn parent_candidate(parent: &ImageModel) -> Candidate {
    let m = &parent.manifest;
    m.leaderboard
        .iter()
        .find(|t| t.status == "chosen")
        .map(|t| t.candidate)
        .filter(|c| c.backbone == m.backbone && c.resolution == m.resolution)
        .unwrap_or(Candidate {
            backbone: m.backbone,
            resolution: m.resolution,
            augmented_views: 1,
        })
}

/// On the CPU, a backbone configuration after the first is probed only if its features take
/// at most 1/this of the budget left, when fine-tuning follows: there an epoch of fine-tuning
/// takes minutes, and a short budget is better spent fine-tuning the first probe than probing
/// more backbones. (On a GPU the fine-tuning plan finishes early, and the first extraction's
/// time, which includes compiling kernels, overstates the next one's.)
const PROBE_SHARE_INVERSE: u32 = 8;

/// Relative cost of a candidate: pixels × views × the backbone's cost per pixel.
fn cost(c: &Candidate) -> f64 {
    f64::from(c.resolution).powi(2)
        * rows_per_image(c.augmented_views) as f64
        * c.backbone.relative_cost()
}

fn skipped(candidate: Candidate, head: &crate::head::HeadParams, why: &str) -> ImageTrial {
    ImageTrial {
        candidate,
        head: *head,
        score: None,
        loss: None,
        seconds: 0.0,
        status: why.into(),
        fine_tune: None,
        epochs: None,
        latency_ms: None,
        size_mb: None,
        members: Vec::new(),
    }
}

/// For the error when every configuration broke a constraint: the fastest and the smallest.
fn closest_to_constraints(leaderboard: &[ImageTrial]) -> Option<String> {
    let excluded: Vec<&ImageTrial> = leaderboard
        .iter()
        .filter(|t| t.status.starts_with("excluded"))
        .collect();
    let fastest = excluded
        .iter()
        .filter_map(|t| t.latency_ms.map(|ms| (ms, t)))
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    let smallest = excluded
        .iter()
        .filter_map(|t| t.size_mb)
        .min_by(f64::total_cmp)
        .unwrap_or(f64::NAN);
    Some(format!(
        "the fastest configuration ({} at {} px) took {:.1} ms, the smallest is {smallest:.1} MB",
        fastest.1.candidate.backbone, fastest.1.candidate.resolution, fastest.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::argmax;
    use candle_core::{DType, Tensor};

    #[test]
    fn refit_full_is_on_by_default_except_under_performance_first() {
        let with = |p: Preference| ImagePredictor::new().preference(p);
        assert!(with(Preference::Balance).refits());
        assert!(with(Preference::AccuracyFirst).refits());
        assert!(!with(Preference::PerformanceFirst).refits());
        assert!(!with(Preference::Balance).refit_full(false).refits());
        assert!(with(Preference::PerformanceFirst).refit_full(true).refits());
    }

    #[test]
    fn a_refit_counts_the_plain_and_augmented_views_of_the_validation_images() {
        // 1,600 training images with one augmented view each; 400 validation images.
        assert_eq!(refit_rows(3_200, 400, 1), 4_000);
        assert_eq!(refit_rows(1_600, 400, 0), 2_000);
        // The search extracted 3,600 views in 36 s; the refit extracts 800 more.
        assert!((view_extraction_seconds(36.0, 3_200, 400, 1) - 8.0).abs() < 1e-9);
        assert!((view_extraction_seconds(20.0, 1_600, 400, 0) - 4.0).abs() < 1e-9);
    }

    /// The validation rows' classes of every test here.
    fn labels() -> Vec<Vec<usize>> {
        vec![vec![1], vec![1], vec![0], vec![0]]
    }

    /// An arm's state with only what ensemble selection reads: its row, first block and
    /// validation probabilities (two classes, from the probability of class 1).
    fn arm(trial: usize, first_block: usize, p1: &[f32]) -> Trained {
        arm_scored_on(trial, first_block, p1, &labels())
    }

    /// [`arm`] scored on validation rows of classes `labels`.
    fn arm_scored_on(
        trial: usize,
        first_block: usize,
        p1: &[f32],
        labels: &[Vec<usize>],
    ) -> Trained {
        let zeros = |n: usize| Tensor::zeros(n, DType::F32, &candle_core::Device::Cpu).expect("t");
        let valid_proba: Vec<Vec<f32>> = p1.iter().map(|&p| vec![1.0 - p, p]).collect();
        let (score, loss) = crate::evaluate::proba_score(&valid_proba, labels, false);
        Trained {
            trial,
            params: FineTuneParams::default(),
            first_block,
            snapshot: Snapshot {
                blocks: Vec::new(),
                head: LinearHead {
                    weight: zeros(2),
                    bias: zeros(2),
                    mean: zeros(1),
                    inv_std: zeros(1),
                    multilabel: false,
                },
                score,
                loss,
                valid_proba,
                epoch: 1,
            },
            seconds_per_epoch: 1.0,
        }
    }

    #[test]
    fn an_ensemble_joins_arms_that_tuned_the_same_blocks_when_it_validates_better() {
        let labels = labels();
        // Row 7 is chosen (right on the first pair); row 8 tuned the same blocks and is right on
        // the second pair; row 9 would complement it as well but tuned other blocks.
        let trained = [
            arm(9, 3, &[0.4, 0.4, 0.1, 0.1]),
            arm(7, 5, &[0.9, 0.9, 0.6, 0.6]),
            arm(8, 5, &[0.4, 0.4, 0.1, 0.1]),
        ];
        let score = trained[1].snapshot.score;
        let ConsideredEnsemble {
            picked,
            selection,
            refused,
        } = ensemble_members(7, score, &trained, &labels, false, Preference::Balance)
            .expect("an ensemble");
        assert_eq!(refused, None);
        let rows: Vec<usize> = picked.iter().map(|(t, _)| t.trial).collect();
        assert_eq!(
            rows,
            [7, 8],
            "the chosen model first, the other block's arm left out"
        );
        assert_eq!(selection.score, 1.0);
        let total: f64 = picked.iter().map(|(_, w)| w).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // performance_first keeps one model; a chosen row that is not a fine-tuned arm (the
        // probe won) has no ensemble.
        assert!(ensemble_members(
            7,
            score,
            &trained,
            &labels,
            false,
            Preference::PerformanceFirst
        )
        .is_none());
        assert!(
            ensemble_members(3, score, &trained, &labels, false, Preference::Balance).is_none()
        );
    }

    #[test]
    fn validation_probabilities_are_calibrated_single_label_or_multi_label() {
        // Right on every row at 70 %: under-confident, sharpened (T < 1), classes kept.
        let proba = vec![
            vec![0.7f32, 0.3],
            vec![0.3, 0.7],
            vec![0.7, 0.3],
            vec![0.3, 0.7],
        ];
        let truth = vec![vec![0], vec![1], vec![0], vec![1]];
        let (sharpened, temperature) = calibrated(proba.clone(), &truth, false);
        let t = temperature.expect("a temperature");
        assert!(t < 1.0, "{t}");
        for (row, before) in sharpened.iter().zip(&proba) {
            assert_eq!(argmax(row), argmax(before));
            assert!(row[argmax(row)] > before[argmax(before)], "{row:?}");
        }
        // As independent labels, each right at 70 % (true) or 30 % (false): every sigmoid is
        // sharpened, each label on its side of 0.5.
        let (sharpened, temperature) = calibrated(proba.clone(), &truth, true);
        assert!(temperature.expect("a label temperature") < 1.0);
        for (row, before) in sharpened.iter().zip(&proba) {
            for (q, p) in row.iter().zip(before) {
                assert!((q - 0.5).abs() > (p - 0.5).abs() && (q > &0.5) == (p > &0.5));
            }
        }
        // Already calibrated (right at the rate it says): left as it is, either way.
        let honest = vec![vec![0.75f32, 0.25]; 4];
        let truth = vec![vec![0], vec![0], vec![0], vec![1]];
        assert_eq!(calibrated(honest.clone(), &truth, false), (honest, None));
        let honest = vec![vec![0.75f32, 0.5]; 4];
        let truth = vec![vec![0, 1], vec![0], vec![0, 1], vec![1]];
        assert_eq!(calibrated(honest.clone(), &truth, true), (honest, None));
    }

    #[test]
    fn an_ensemble_the_others_add_nothing_to_is_refused_and_says_so() {
        let labels = labels();
        let trained = [
            arm(1, 5, &[0.9, 0.9, 0.1, 0.1]),
            arm(2, 5, &[0.6, 0.4, 0.6, 0.4]),
        ];
        let score = trained[0].snapshot.score;
        let considered = ensemble_members(
            1,
            score,
            &trained,
            &labels,
            false,
            Preference::AccuracyFirst,
        )
        .expect("considered");
        assert_eq!(
            considered.refused.as_deref(),
            Some("not kept: no other arm lowered the validation log loss")
        );
        let rows: Vec<usize> = considered.picked.iter().map(|(t, _)| t.trial).collect();
        assert_eq!(rows, [1], "the chosen model alone");
        // With no other arm on the same blocks there is nothing to consider.
        assert!(ensemble_members(
            1,
            score,
            &trained[..1],
            &labels,
            false,
            Preference::AccuracyFirst
        )
        .is_none());
    }

    #[test]
    fn an_ensemble_that_loses_less_than_half_a_standard_error_of_accuracy_is_kept() {
        // 100 rows of class 1. The chosen arm is right on 90 (a standard error of 3 points);
        // the other is more confident where both are right and wrong on `misses` rows the
        // chosen one gets, so ensembles lean towards it: lower loss, `misses` rows lost.
        let labels = vec![vec![1]; 100];
        let chosen: Vec<f32> = (0..100).map(|i| if i < 90 { 0.9 } else { 0.45 }).collect();
        let with_misses = |misses: usize| -> Vec<Trained> {
            let other: Vec<f32> = (0..100)
                .map(|i| match i {
                    i if i < 90 - misses => 0.99,
                    i if i < 90 => 0.1,
                    _ => 0.45,
                })
                .collect();
            vec![
                arm_scored_on(1, 5, &chosen, &labels),
                arm_scored_on(2, 5, &other, &labels),
            ]
        };
        let considered = |trained: &[Trained]| {
            let c = ensemble_members(1, 0.9, trained, &labels, false, Preference::Balance)
                .expect("considered");
            (c.selection, c.refused)
        };
        // One row lost (1 point) is within half a standard error (1.5 points)...
        let (selection, refused) = considered(&with_misses(1));
        assert_eq!(refused, None);
        assert!((selection.score - 0.89).abs() < 1e-9, "{selection:?}");
        assert!(selection.loss < with_misses(1)[0].snapshot.loss);
        // ...two (2 points) are not, and the leaderboard says why.
        let (selection, refused) = considered(&with_misses(2));
        assert!((selection.score - 0.88).abs() < 1e-9, "{selection:?}");
        assert_eq!(
            refused.as_deref(),
            Some(
                "not kept: validation accuracy 0.8800, 0.0200 below the chosen model's 0.9000 \
                 (more than the 0.0150 allowed: half a standard error)"
            )
        );
        // Macro F1 has no binomial standard error: multi-label ensembles may lose nothing.
        assert_eq!(ensemble_slack(0.9, 100, true), 0.0);
        assert!((ensemble_slack(0.9, 100, false) - 0.015).abs() < 1e-12);
    }
}
