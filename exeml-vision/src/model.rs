//! A trained image classifier: backbone + head, saved as a self-contained folder
//! (`manifest.json`, `backbone.safetensors`, `head.safetensors`, `tuned.safetensors` for
//! fine-tuned blocks) and loaded back. A fine-tuned ensemble adds, per further member, its own
//! top blocks and head (`tuned_1.safetensors`, `head_1.safetensors`, …); the members share the
//! blocks below the tuned ones, so they run once per image.

use crate::backbone::{Backbone, BackboneKind};
use crate::data::{decode_bytes, decode_file, preprocess};
use crate::evaluate::{argmax, predicted_set, ImageEvaluation};
use crate::finetune::FineTuneParams;
use crate::head::{HeadParams, LinearHead};
use crate::nn::{candle_error, on_workers, Tensors};
use crate::search::ImageTrial;
use candle_core::Tensor;
use exeml_core::calibration::{apply_label_temperature, apply_temperature};
use exeml_core::checks::CheckReport;
use exeml_core::fsio::{read_json, write_json_atomic, StagingDir};
use exeml_core::{
    measure_speed, Constraints, Device, Error, Preference, ProblemType, Result, SpeedOptions,
    SpeedReport, TaskKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The `format` field of an image model's manifest.
pub const FORMAT: &str = "exeml-image-model";
/// The layout version this build writes (2: fine-tuned ensembles). Version 1 folders still load.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout version this build reads.
const OLDEST_FORMAT_VERSION: u32 = 1;
const MANIFEST_FILE: &str = "manifest.json";
const BACKBONE_FILE: &str = "backbone.safetensors";
const HEAD_FILE: &str = "head.safetensors";
const TUNED_FILE: &str = "tuned.safetensors";
/// Rescale one row of a model's probabilities at its `temperature`: as a softmax row, or label
/// by label as sigmoids for a `multilabel` model (see [`exeml_core::calibration`]).
pub(crate) fn rescale(row: &mut [f32], temperature: f64, multilabel: bool) {
    if multilabel {
        apply_label_temperature(row, temperature);
    } else {
        apply_temperature(row, temperature);
    }
}

/// A multi-label model's per-label thresholds on the probabilities it reports: its `thresholds`,
/// tuned on the unscaled probabilities, carried through the same rescaling at `temperature`.
/// The rescaling is increasing, so a label is predicted exactly when it was before calibration.
pub(crate) fn decision_thresholds(thresholds: &[f32], temperature: Option<f64>) -> Vec<f32> {
    let mut rescaled = thresholds.to_vec();
    if let Some(t) = temperature {
        apply_label_temperature(&mut rescaled, t);
    }
    rescaled
}

/// How many labels a prediction's `scores` lists (SPEC: top 5).
pub const TOP_SCORES: usize = 5;

/// Where an image model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageLineage {
    /// The data folder it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The dataset version, when trained from the project store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<String>,
    /// The model it was warm-started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The seed of the run.
    pub seed: u64,
    /// The training share of the split.
    pub train_ratio: f64,
    /// Images used for training and validation.
    pub images: (usize, usize),
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

/// Everything about an image model except its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The exeml version that wrote it.
    pub exeml_version: String,
    /// Always `image`.
    pub task: TaskKind,
    /// Binary, multiclass or multilabel.
    pub problem: ProblemType,
    /// Class names in model order.
    pub classes: Vec<String>,
    /// The backbone.
    pub backbone: BackboneKind,
    /// Square input size in pixels.
    pub resolution: u32,
    /// The head's hyper-parameters (of the linear probe the fine-tuning started from).
    pub head: HeadParams,
    /// The fine-tuning configuration, when the backbone's top blocks were trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTuneParams>,
    /// The first fine-tuned block: the blocks from it on are read from `tuned.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned_from: Option<usize>,
    /// The members of a fine-tuned ensemble, the model above (`fine_tune`) first; empty for a
    /// single model. Their probabilities are averaged with these weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<EnsembleEntry>,
    /// Steps of the final head refit on training + validation images (after the validation
    /// metrics were taken), when the chosen model is a linear probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_steps: Option<usize>,
    /// Epochs each fine-tuned model (the chosen one, then the ensemble's other members) was
    /// refitted for on training + validation images, 0 where the budget left did not afford
    /// it; empty when there was none to make (`ImagePredictor::refits`: off, or the chosen
    /// model is a linear probe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refit_epochs: Vec<usize>,
    /// Per-label decision thresholds (multi-label only), on the probabilities before
    /// `temperature` rescales them (so an exeml that ignores it predicts the same labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f32>,
    /// The temperature its probabilities are rescaled at, fitted on the validation part to
    /// lower their log loss (see [`exeml_core::calibration`]): the softmax row's for one label
    /// per image, each label's sigmoid for multi-label (its decisions unchanged: see
    /// `thresholds`); none: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Evaluation on the validation part.
    pub validation: ImageEvaluation,
    /// Every configuration tried (the white box).
    pub leaderboard: Vec<ImageTrial>,
    /// The data checks' findings.
    pub checks: CheckReport,
    /// Where the model came from.
    pub lineage: ImageLineage,
}

/// One member of a fine-tuned ensemble, as the manifest describes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleEntry {
    /// The fine-tuning configuration that trained its top blocks and head.
    pub fine_tune: FineTuneParams,
    /// Its weight in the average (the weights sum to 1).
    pub weight: f64,
    /// Its row in the leaderboard.
    pub trial: usize,
}

/// A further member of a fine-tuned ensemble: the model's backbone with its own tuned top
/// blocks (from the same first block), and its own head.
#[derive(Debug, Clone)]
pub struct EnsembleMember {
    /// The backbone with this member's tuned blocks.
    pub backbone: Backbone,
    /// Its head.
    pub head: LinearHead,
}

/// A trained image classifier.
#[derive(Debug, Clone)]
pub struct ImageModel {
    /// Its manifest.
    pub manifest: ImageManifest,
    backbone: Backbone,
    head: LinearHead,
    /// Members after the first of a fine-tuned ensemble (`manifest.ensemble[1..]`).
    members: Vec<EnsembleMember>,
}

impl ImageModel {
    /// Assemble a model from its parts (the trainer's last step).
    pub fn new(manifest: ImageManifest, backbone: Backbone, head: LinearHead) -> Self {
        ImageModel {
            manifest,
            backbone,
            head,
            members: Vec::new(),
        }
    }

    /// Assemble a fine-tuned ensemble: `members` follow the first member (`backbone`, `head`),
    /// in the order of `manifest.ensemble[1..]`, and share its first tuned block.
    pub fn new_ensemble(
        manifest: ImageManifest,
        backbone: Backbone,
        head: LinearHead,
        members: Vec<EnsembleMember>,
    ) -> Result<Self> {
        check_ensemble(&manifest, &backbone, &members)?;
        Ok(ImageModel {
            manifest,
            backbone,
            head,
            members,
        })
    }

    /// The class names in model order.
    pub fn classes(&self) -> &[String] {
        &self.manifest.classes
    }

    /// True when an image may carry several labels.
    pub fn multilabel(&self) -> bool {
        self.manifest.problem == ProblemType::Multilabel
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The head.
    pub fn head(&self) -> &LinearHead {
        &self.head
    }

    /// The members after the first of a fine-tuned ensemble (empty for a single model).
    pub fn ensemble_members(&self) -> &[EnsembleMember] {
        &self.members
    }

    /// A one-line description: backbone, resolution, validation accuracy.
    pub fn summary(&self) -> String {
        let ensemble = match self.manifest.ensemble.len() {
            0 => String::new(),
            n => format!(" (ensemble of {n} fine-tuned models)"),
        };
        let epochs = &self.manifest.refit_epochs;
        let refitted = epochs.iter().filter(|&&e| e > 0).count();
        let refit = match (refitted, epochs.len()) {
            (0, _) => String::new(),
            (r, n) if r == n => ", refitted on every image".to_string(),
            (r, n) => format!(", {r} of {n} models refitted on every image"),
        };
        format!(
            "{} image classifier ({} classes): {} at {} px{ensemble}{refit}, validation accuracy {:.3}, macro F1 {:.3}",
            self.manifest.problem,
            self.manifest.classes.len(),
            self.manifest.backbone,
            self.manifest.resolution,
            self.manifest.validation.accuracy(),
            self.manifest.validation.macro_f1(),
        )
    }

    /// Write the model into the folder `dir` (replaced atomically).
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let staging = StagingDir::new(dir)?;
        self.write_into(staging.path())?;
        staging.commit()
    }

    /// Write the model's files into an existing, empty folder (e.g. a store's model draft,
    /// which the store renames into place).
    pub fn write_into(&self, dir: &Path) -> Result<()> {
        let backbone_to = dir.join(BACKBONE_FILE);
        std::fs::copy(self.backbone.weights_path(), &backbone_to)
            .map_err(|e| Error::io(self.backbone.weights_path(), e))?;
        let parts = std::iter::once((&self.backbone, &self.head))
            .chain(self.members.iter().map(|m| (&m.backbone, &m.head)));
        for (i, (backbone, head)) in parts.enumerate() {
            let head_path = dir.join(member_file(HEAD_FILE, i));
            let tensors: std::collections::HashMap<String, Tensor> = head
                .tensors()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            candle_core::safetensors::save(&tensors, &head_path)
                .map_err(|e| Error::data(&head_path, e.to_string()))?;
            let tuned = backbone.tuned_tensors();
            if !tuned.is_empty() {
                let tuned_path = dir.join(member_file(TUNED_FILE, i));
                candle_core::safetensors::save(&tuned, &tuned_path)
                    .map_err(|e| Error::data(&tuned_path, e.to_string()))?;
            }
        }
        write_json_atomic(&dir.join(MANIFEST_FILE), &self.manifest)
    }

    /// Load a model folder onto the CPU.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, Device::Cpu)
    }

    /// Load a model folder onto `device`.
    pub fn load_on(dir: &Path, device: Device) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                message: format!("not an exeml model folder: no {MANIFEST_FILE}"),
            });
        }
        let manifest: ImageManifest = read_json(&path)?;
        if manifest.format != FORMAT
            || !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&manifest.format_version)
        {
            return Err(Error::Format {
                path,
                message: format!(
                    "{} version {}; this build reads {FORMAT} versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION} (a newer exeml wrote it: upgrade exeml)",
                    manifest.format, manifest.format_version
                ),
            });
        }
        if let Some(t) = manifest
            .temperature
            .filter(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(Error::Format {
                path,
                message: format!("temperature {t}: expected a positive number"),
            });
        }
        let device = device.to_candle()?;
        let original = Backbone::load(manifest.backbone, Some(&dir.join(BACKBONE_FILE)), &device)?;
        let tuned = |i: usize| -> Result<Backbone> {
            match manifest.tuned_from {
                Some(first) => original
                    .clone()
                    .load_tuned(&dir.join(member_file(TUNED_FILE, i)), first),
                None => Ok(original.clone()),
            }
        };
        let backbone = tuned(0)?;
        let head = load_head(&dir.join(HEAD_FILE), &manifest, &device)?;
        let mut members = Vec::new();
        for i in 1..manifest.ensemble.len() {
            members.push(EnsembleMember {
                backbone: tuned(i)?,
                head: load_head(&dir.join(member_file(HEAD_FILE, i)), &manifest, &device)?,
            });
        }
        check_ensemble(&manifest, &backbone, &members).map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(ImageModel {
            manifest,
            backbone,
            head,
            members,
        })
    }

    /// Class scores of decoded images (each already preprocessed to the model's resolution).
    fn scores_of(&self, pixels: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>> {
        let side = self.manifest.resolution as usize;
        let x = Tensor::from_vec(pixels, (n, 3, side, side), self.backbone.device())
            .map_err(candle_error)?;
        // One hand-off to the CPU pool for the whole forward, not one per op.
        let proba = on_workers(|| self.proba(&x))?;
        let mut rows = proba.to_vec2::<f32>().map_err(candle_error)?;
        if let Some(t) = self.manifest.temperature {
            for row in &mut rows {
                rescale(row, t, self.multilabel());
            }
        }
        Ok(rows)
    }

    /// Class probabilities of a preprocessed batch: the backbone and head, or the ensemble's
    /// weighted members.
    fn proba(&self, x: &Tensor) -> Result<Tensor> {
        Ok(
            match (self.members.is_empty(), self.backbone.tuned_from()) {
                (false, Some(first)) => {
                    // The members share the blocks below `first`: run them once.
                    let shared = self.backbone.activations_until(first, x)?;
                    let weights = self.manifest.ensemble.iter().map(|e| e.weight);
                    let parts = std::iter::once((&self.backbone, &self.head))
                        .chain(self.members.iter().map(|m| (&m.backbone, &m.head)));
                    let mut sum: Option<Tensor> = None;
                    for ((backbone, head), weight) in parts.zip(weights) {
                        let p = (head.proba(&backbone.features_from(first, &shared)?)? * weight)
                            .map_err(candle_error)?;
                        sum = Some(match sum {
                            Some(s) => (s + p).map_err(candle_error)?,
                            None => p,
                        });
                    }
                    sum.ok_or_else(|| Error::invalid("ensemble", "no member"))?
                }
                _ => self.head.proba(&self.backbone.features(x)?)?,
            },
        )
    }

    /// Class scores of one decoded image.
    pub fn predict_image(&self, image: &image::RgbImage) -> Result<Vec<f32>> {
        let mut rows = self.predict_images(std::slice::from_ref(image))?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// Class scores of decoded images, one row each, run 32 at a time.
    pub fn predict_images(&self, images: &[image::RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.rows_of_images(images, |pixels, n| self.scores_of(pixels, n))
    }

    /// Class scores of image files, batched; a file that cannot be decoded gets its error.
    pub fn predict_files(&self, paths: &[PathBuf]) -> Result<Vec<Result<Vec<f32>>>> {
        self.rows_of_files(paths, |pixels, n| self.scores_of(pixels, n))
    }

    /// The length of an [embedding](Self::embed_image): the backbone's feature count.
    pub fn embedding_dim(&self) -> usize {
        self.manifest.backbone.feature_dim()
    }

    /// The embedding of one decoded image: the pooled features of the model's backbone, fine-tuned
    /// blocks included, that its head reads (for an ensemble, those of its first member). Raw,
    /// not normalised: divide by the L2 norm for cosine similarity.
    pub fn embed_image(&self, image: &image::RgbImage) -> Result<Vec<f32>> {
        let mut rows = self.embed_images(std::slice::from_ref(image))?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// [Embeddings](Self::embed_image) of decoded images, one row each, run 32 at a time.
    pub fn embed_images(&self, images: &[image::RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.rows_of_images(images, |pixels, n| self.embeddings_of(pixels, n))
    }

    /// [Embeddings](Self::embed_image) of image files, batched; a file that cannot be decoded
    /// gets its error.
    pub fn embed_files(&self, paths: &[PathBuf]) -> Result<Vec<Result<Vec<f32>>>> {
        self.rows_of_files(paths, |pixels, n| self.embeddings_of(pixels, n))
    }

    /// Embeddings of decoded images (each already preprocessed to the model's resolution).
    fn embeddings_of(&self, pixels: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>> {
        let side = self.manifest.resolution as usize;
        let x = Tensor::from_vec(pixels, (n, 3, side, side), self.backbone.device())
            .map_err(candle_error)?;
        let features = on_workers(|| self.backbone.features(&x))?;
        features.to_vec2::<f32>().map_err(candle_error)
    }

    /// One row of `rows_of` per decoded image, preprocessed in parallel and run 32 at a time;
    /// an image without pixels is an error naming its position.
    fn rows_of_images(
        &self,
        images: &[image::RgbImage],
        rows_of: impl Fn(Vec<f32>, usize) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Vec<Vec<f32>>> {
        use rayon::prelude::*;
        if let Some(at) = images
            .iter()
            .position(|i| i.width() == 0 || i.height() == 0)
        {
            let (w, h) = images[at].dimensions();
            return Err(Error::invalid(
                format!("images[{at}]"),
                format!("a {w}×{h} image has no pixels"),
            ));
        }
        let resolution = self.manifest.resolution;
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(32) {
            let pixels = match chunk {
                // One image (a request to the service): on this thread, without a hand-off to
                // the pool.
                [image] => preprocess(image, resolution),
                _ => chunk
                    .par_iter()
                    .map(|image| preprocess(image, resolution))
                    .collect::<Vec<Vec<f32>>>()
                    .concat(),
            };
            out.extend(rows_of(pixels, chunk.len())?);
        }
        Ok(out)
    }

    /// One row of `rows_of` per image file, decoded and preprocessed in parallel and run 32 at
    /// a time; a file that cannot be decoded gets its error instead.
    fn rows_of_files(
        &self,
        paths: &[PathBuf],
        rows_of: impl Fn(Vec<f32>, usize) -> Result<Vec<Vec<f32>>>,
    ) -> Result<Vec<Result<Vec<f32>>>> {
        use rayon::prelude::*;
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(32) {
            let decoded: Vec<Result<Vec<f32>>> = chunk
                .par_iter()
                .map(|p| decode_file(p).map(|img| preprocess(&img, self.manifest.resolution)))
                .collect();
            let ok: Vec<f32> = decoded
                .iter()
                .filter_map(|d| d.as_ref().ok())
                .flatten()
                .copied()
                .collect();
            let n_ok = decoded.iter().filter(|d| d.is_ok()).count();
            let mut rows = if n_ok > 0 {
                rows_of(ok, n_ok)?.into_iter()
            } else {
                Vec::new().into_iter()
            };
            for d in decoded {
                out.push(match d {
                    Ok(_) => rows.next().ok_or_else(|| Error::Backend {
                        backend: "candle",
                        message: "fewer result rows than images".into(),
                    }),
                    Err(e) => Err(e),
                });
            }
        }
        Ok(out)
    }

    /// Evaluate on labelled images (images that cannot be decoded are left out); labels the
    /// model does not know are an error naming them.
    pub fn evaluate(&self, data: &crate::data::ImageDataset) -> Result<ImageEvaluation> {
        let classes = self.classes();
        let mut truth = Vec::with_capacity(data.samples.len());
        for sample in &data.samples {
            let known: Option<Vec<usize>> = sample
                .labels
                .iter()
                .map(|l| classes.iter().position(|c| c == l))
                .collect();
            truth.push(known.ok_or_else(|| {
                Error::data(
                    &sample.path,
                    format!(
                        "label(s) {:?} unknown to the model, which knows {classes:?}",
                        sample.labels
                    ),
                )
            })?);
        }
        let paths: Vec<PathBuf> = data.samples.iter().map(|s| s.path.clone()).collect();
        let (mut ids, mut kept_truth, mut proba) = (Vec::new(), Vec::new(), Vec::new());
        let mut skipped = Vec::new();
        for ((sample, t), scores) in data
            .samples
            .iter()
            .zip(truth)
            .zip(self.predict_files(&paths)?)
        {
            match scores {
                Ok(scores) => {
                    ids.push(sample.id.clone());
                    kept_truth.push(t);
                    proba.push(scores);
                }
                Err(e) => skipped.push(crate::evaluate::SkippedImage {
                    id: sample.id.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        if ids.is_empty() {
            return Err(Error::data(
                &data.root,
                "no readable labelled image to evaluate",
            ));
        }
        let mut evaluation = crate::evaluate::evaluate(
            classes,
            self.multilabel(),
            &self.decision_thresholds(),
            &ids,
            &kept_truth,
            &proba,
        )?;
        evaluation.skipped = skipped;
        Ok(evaluation)
    }

    /// How fast this model predicts the images at `paths`: single-image latency (each call
    /// decodes, resizes and classifies one file's bytes read beforehand, as the HTTP service
    /// does) and the throughput of one batched call on the first `options.batch_size` files
    /// (reading included). The single calls cycle over at most 50 files.
    pub fn speed(&self, paths: &[PathBuf], options: SpeedOptions) -> Result<SpeedReport> {
        let singles: Vec<(String, Vec<u8>)> = paths
            .iter()
            .take(options.single_runs.clamp(1, 50))
            .map(|p| {
                std::fs::read(p)
                    .map(|bytes| (p.display().to_string(), bytes))
                    .map_err(|e| Error::io(p, e))
            })
            .collect::<Result<_>>()?;
        let batch = &paths[..paths.len().min(options.batch_size)];
        measure_speed(
            singles.len(),
            batch.len(),
            options,
            |i| self.predict_bytes(&singles[i].0, &singles[i].1).map(drop),
            || {
                for scores in self.predict_files(batch)? {
                    scores?;
                }
                Ok(())
            },
        )
    }

    /// The [embedding](Self::embed_image) of an uploaded file's bytes.
    pub fn embed_bytes(&self, name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        self.embed_image(&decode_bytes(name, bytes)?)
    }

    /// Write the model as one ONNX file at `path` (see [`crate::onnx`]): the same probabilities
    /// and embeddings from any ONNX runtime, given [`ImageModel::onnx_input`]s.
    pub fn export_onnx(&self, path: &Path, options: crate::onnx::OnnxOptions) -> Result<()> {
        crate::onnx::export_onnx(self, path, options)
    }

    /// The input of the exported ONNX model for `image`: its centre crop at the model's
    /// resolution, `value / 255`, channels first (`3×R×R` values).
    pub fn onnx_input(&self, image: &image::RgbImage) -> Vec<f32> {
        crate::data::onnx_input(image, self.manifest.resolution)
    }

    /// Class scores of an uploaded file's bytes.
    pub fn predict_bytes(&self, name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        self.predict_image(&decode_bytes(name, bytes)?)
    }

    /// Per-label thresholds on the probabilities this model reports (multi-label only): see
    /// [`ImageManifest::thresholds`].
    fn decision_thresholds(&self) -> Vec<f32> {
        decision_thresholds(&self.manifest.thresholds, self.manifest.temperature)
    }

    /// The predicted label set of a score row (one label unless multi-label).
    pub fn predicted(&self, scores: &[f32]) -> Vec<usize> {
        if self.multilabel() {
            predicted_set(scores, &self.decision_thresholds())
        } else {
            vec![argmax(scores)]
        }
    }

    /// The SPEC response of one score row: `predicted_label` and the top-5 `scores` as
    /// 3-decimal strings (plus `predicted_labels` for multi-label models).
    pub fn response(&self, scores: &[f32]) -> Value {
        let classes = &self.manifest.classes;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let top: Vec<Value> = order
            .iter()
            .take(TOP_SCORES)
            .map(|&c| json!([classes[c], format!("{:.3}", scores[c])]))
            .collect();
        let mut predicted = self.predicted(scores);
        predicted.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let mut body = json!({
            "predicted_label": classes[predicted[0]],
            "scores": top,
        });
        if self.multilabel() {
            body["predicted_labels"] = json!(predicted
                .iter()
                .map(|&c| classes[c].as_str())
                .collect::<Vec<_>>());
        }
        body
    }
}

/// `name` for member `i` of an ensemble: the name itself for the first, `stem_i.ext` after it.
fn member_file(name: &str, i: usize) -> String {
    match (i, name.split_once('.')) {
        (0, _) | (_, None) => name.to_string(),
        (_, Some((stem, ext))) => format!("{stem}_{i}.{ext}"),
    }
}

/// Read a linear head for `manifest`'s classes and backbone from `path`; shapes are checked.
fn load_head(
    path: &Path,
    manifest: &ImageManifest,
    device: &candle_core::Device,
) -> Result<LinearHead> {
    let t = Tensors::load(path, device)?;
    let (k, d) = (manifest.classes.len(), manifest.backbone.feature_dim());
    Ok(LinearHead {
        weight: t.get_dims("weight", &[k, d])?,
        bias: t.get_dims("bias", &[k])?,
        mean: t.get_dims("mean", &[d])?,
        inv_std: t.get_dims("inv_std", &[d])?,
        multilabel: manifest.problem == ProblemType::Multilabel,
    })
}

/// An ensemble's members must match its manifest entries, share the first tuned block and have
/// weights that sum to 1.
fn check_ensemble(
    manifest: &ImageManifest,
    backbone: &Backbone,
    members: &[EnsembleMember],
) -> Result<()> {
    let entries = &manifest.ensemble;
    if entries.is_empty() && members.is_empty() {
        return Ok(());
    }
    let invalid = |why: String| -> Result<()> { Err(Error::invalid("ensemble", why)) };
    if entries.len() != members.len() + 1 {
        return invalid(format!(
            "the manifest lists {} members, the model has {}",
            entries.len(),
            members.len() + 1
        ));
    }
    let first = backbone.tuned_from();
    if first.is_none() || members.iter().any(|m| m.backbone.tuned_from() != first) {
        return invalid("every member must fine-tune the same top blocks".into());
    }
    let total: f64 = entries.iter().map(|e| e.weight).sum();
    if entries.iter().any(|e| e.weight.is_nan() || e.weight <= 0.0) || (total - 1.0).abs() > 1e-6 {
        return invalid(format!(
            "member weights must be positive and sum to 1, not {total}"
        ));
    }
    Ok(())
}

/// The [`exeml_core::Evaluator`] of image models: [`ImageModel::evaluate`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageEvaluator;

impl exeml_core::Evaluator for ImageEvaluator {
    type Model = ImageModel;
    type Data = crate::data::ImageDataset;
    type Report = ImageEvaluation;

    fn evaluate(&self, model: &ImageModel, data: &Self::Data) -> Result<ImageEvaluation> {
        model.evaluate(data)
    }
}

/// The [`exeml_core::Exporter`] of image models: the self-contained folder of [`ImageModel::save`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageExporter;

impl exeml_core::Exporter for ImageExporter {
    type Model = ImageModel;

    fn export(&self, model: &ImageModel, dir: &Path) -> Result<PathBuf> {
        model.save(dir)?;
        Ok(dir.join(MANIFEST_FILE))
    }
}
