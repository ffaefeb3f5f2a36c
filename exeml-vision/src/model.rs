//! A trained image classifier: backbone + head, saved as a self-contained folder
//! (`manifest.json`, `backbone.safetensors`, `head.safetensors`) and loaded back.

use crate::backbone::{Backbone, BackboneKind};
use crate::data::{decode_bytes, decode_file, preprocess};
use crate::evaluate::{argmax, predicted_set, ImageEvaluation};
use crate::finetune::FineTuneParams;
use crate::head::{HeadParams, LinearHead};
use crate::nn::{candle_error, Tensors};
use crate::search::ImageTrial;
use candle_core::Tensor;
use exeml_core::checks::CheckReport;
use exeml_core::fsio::{read_json, write_json_atomic, StagingDir};
use exeml_core::{Constraints, Device, Error, Preference, ProblemType, Result, TaskKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The `format` field of an image model's manifest.
pub const FORMAT: &str = "exeml-image-model";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST_FILE: &str = "manifest.json";
const BACKBONE_FILE: &str = "backbone.safetensors";
const HEAD_FILE: &str = "head.safetensors";
const TUNED_FILE: &str = "tuned.safetensors";
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
    /// Steps of the final head refit on training + validation images (after the validation
    /// metrics were taken), when the chosen model is a linear probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_steps: Option<usize>,
    /// Per-label decision thresholds (multi-label only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f32>,
    /// Evaluation on the validation part.
    pub validation: ImageEvaluation,
    /// Every configuration tried (the white box).
    pub leaderboard: Vec<ImageTrial>,
    /// The data checks' findings.
    pub checks: CheckReport,
    /// Where the model came from.
    pub lineage: ImageLineage,
}

/// A trained image classifier.
#[derive(Debug, Clone)]
pub struct ImageModel {
    /// Its manifest.
    pub manifest: ImageManifest,
    backbone: Backbone,
    head: LinearHead,
}

impl ImageModel {
    /// Assemble a model from its parts (the trainer's last step).
    pub fn new(manifest: ImageManifest, backbone: Backbone, head: LinearHead) -> Self {
        ImageModel {
            manifest,
            backbone,
            head,
        }
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

    /// A one-line description: backbone, resolution, validation accuracy.
    pub fn summary(&self) -> String {
        format!(
            "{} image classifier ({} classes): {} at {} px, validation accuracy {:.3}, macro F1 {:.3}",
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
        let backbone_to = staging.path().join(BACKBONE_FILE);
        std::fs::copy(self.backbone.weights_path(), &backbone_to)
            .map_err(|e| Error::io(self.backbone.weights_path(), e))?;
        let head_path = staging.path().join(HEAD_FILE);
        let tensors: std::collections::HashMap<String, Tensor> = self
            .head
            .tensors()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        candle_core::safetensors::save(&tensors, &head_path)
            .map_err(|e| Error::data(&head_path, e.to_string()))?;
        let tuned = self.backbone.tuned_tensors();
        if !tuned.is_empty() {
            let tuned_path = staging.path().join(TUNED_FILE);
            candle_core::safetensors::save(&tuned, &tuned_path)
                .map_err(|e| Error::data(&tuned_path, e.to_string()))?;
        }
        write_json_atomic(&staging.path().join(MANIFEST_FILE), &self.manifest)?;
        staging.commit()
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
        if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
            return Err(Error::Format {
                path,
                message: format!(
                    "{} version {}; this build reads {FORMAT} version {FORMAT_VERSION}",
                    manifest.format, manifest.format_version
                ),
            });
        }
        let device = device.to_candle()?;
        let mut backbone =
            Backbone::load(manifest.backbone, Some(&dir.join(BACKBONE_FILE)), &device)?;
        if let Some(first) = manifest.tuned_from {
            backbone = backbone.load_tuned(&dir.join(TUNED_FILE), first)?;
        }
        let t = Tensors::load(&dir.join(HEAD_FILE), &device)?;
        let (k, d) = (manifest.classes.len(), manifest.backbone.feature_dim());
        let head = LinearHead {
            weight: t.get_dims("weight", &[k, d])?,
            bias: t.get_dims("bias", &[k])?,
            mean: t.get_dims("mean", &[d])?,
            inv_std: t.get_dims("inv_std", &[d])?,
            multilabel: manifest.problem == ProblemType::Multilabel,
        };
        Ok(ImageModel {
            manifest,
            backbone,
            head,
        })
    }

    /// Class scores of decoded images (each already preprocessed to the model's resolution).
    fn scores_of(&self, pixels: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>> {
        let side = self.manifest.resolution as usize;
        let x = Tensor::from_vec(pixels, (n, 3, side, side), self.backbone.device())
            .map_err(candle_error)?;
        let features = self.backbone.features(&x)?;
        self.head
            .proba(&features)?
            .to_vec2::<f32>()
            .map_err(candle_error)
    }

    /// Class scores of one decoded image.
    pub fn predict_image(&self, image: &image::RgbImage) -> Result<Vec<f32>> {
        let pixels = preprocess(image, self.manifest.resolution);
        let mut rows = self.scores_of(pixels, 1)?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// Class scores of image files, batched; a file that cannot be decoded gets its error.
    pub fn predict_files(&self, paths: &[PathBuf]) -> Result<Vec<Result<Vec<f32>>>> {
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
            let mut scores = if n_ok > 0 {
                self.scores_of(ok, n_ok)?.into_iter()
            } else {
                Vec::new().into_iter()
            };
            for d in decoded {
                out.push(match d {
                    Ok(_) => scores.next().ok_or_else(|| Error::Backend {
                        backend: "candle",
                        message: "fewer score rows than images".into(),
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
        for ((sample, t), scores) in data
            .samples
            .iter()
            .zip(truth)
            .zip(self.predict_files(&paths)?)
        {
            if let Ok(scores) = scores {
                ids.push(sample.id.clone());
                kept_truth.push(t);
                proba.push(scores);
            }
        }
        if ids.is_empty() {
            return Err(Error::data(
                &data.root,
                "no readable labelled image to evaluate",
            ));
        }
        crate::evaluate::evaluate(
            classes,
            self.multilabel(),
            &self.manifest.thresholds,
            &ids,
            &kept_truth,
            &proba,
        )
    }

    /// Class scores of an uploaded file's bytes.
    pub fn predict_bytes(&self, name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        self.predict_image(&decode_bytes(name, bytes)?)
    }

    /// The predicted label set of a score row (one label unless multi-label).
    pub fn predicted(&self, scores: &[f32]) -> Vec<usize> {
        if self.multilabel() {
            predicted_set(scores, &self.manifest.thresholds)
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
