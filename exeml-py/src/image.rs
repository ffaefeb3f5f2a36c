//! Image classification from Python: training on a folder and the trained model.

use crate::batch::{run_batch, BatchSummary};
use crate::errors::{guard, guard_detached, to_json, to_py};
use crate::tabular::warn_interrupted;
use crate::training::run_job;
use exeml::vision::finetune::FineTuneParams;
use exeml::vision::{BackboneKind, ImageDataset, ImagePredictor, ImportFormat};
use exeml_core::{Budget, Constraints, Error, Preference};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The settings of an image training run as Python passes them (checked by
/// [`image_predictor`]).
pub(crate) struct ImageSettings<'a> {
    pub(crate) time_limit: f64,
    pub(crate) preference: &'a str,
    pub(crate) seed: u64,
    pub(crate) train_ratio: f64,
    pub(crate) backbones: Option<Vec<String>>,
    pub(crate) resolution: Option<u32>,
    pub(crate) fine_tune: bool,
    pub(crate) ensemble: bool,
    pub(crate) refit_full: Option<bool>,
    pub(crate) max_latency_ms: Option<f64>,
    pub(crate) max_model_mb: Option<f64>,
    pub(crate) device: &'a str,
    pub(crate) weights: Option<Vec<(String, PathBuf)>>,
    pub(crate) fine_tune_arms: Option<String>,
}

/// The image predictor `settings` describe, each checked with a typed error.
pub(crate) fn image_predictor(settings: ImageSettings<'_>) -> PyResult<ImagePredictor> {
    let ImageSettings {
        time_limit,
        preference,
        seed,
        train_ratio,
        backbones,
        resolution,
        fine_tune,
        ensemble,
        refit_full,
        max_latency_ms,
        max_model_mb,
        device,
        weights,
        fine_tune_arms,
    } = settings;
    let device: exeml_core::Device = guard(|| device.parse())?;
    guard(|| device.check_available())?;
    let constraints = guard(|| {
        Constraints {
            max_latency_ms,
            max_model_mb,
        }
        .check()
    })?;
    if !(time_limit.is_finite() && time_limit > 0.0) {
        return Err(to_py(Error::invalid(
            "time_limit",
            format!("{time_limit}: expected a positive number of seconds"),
        )));
    }
    let preference: Preference = guard(|| preference.parse())?;
    let backbones = backbones
        .unwrap_or_default()
        .iter()
        .map(|b| guard(|| b.parse::<BackboneKind>()))
        .collect::<PyResult<Vec<_>>>()?;
    let weights = weights
        .unwrap_or_default()
        .into_iter()
        .map(|(name, file)| Ok((guard(|| name.parse::<BackboneKind>())?, file)))
        .collect::<PyResult<Vec<_>>>()?;
    let fine_tune_arms = fine_tune_arms
        .map(|json| guard(|| FineTuneParams::list_from_json(&json)))
        .transpose()?;
    Ok(ImagePredictor {
        time_limit: Duration::from_secs_f64(time_limit),
        device,
        preference,
        seed,
        train_ratio,
        backbones,
        resolution,
        weights,
        fine_tune,
        ensemble,
        fine_tune_arms,
        constraints,
        refit_full,
        ..ImagePredictor::default()
    })
}

/// Train an image classifier on a labelled folder (the engine of `exeml.ImagePredictor.fit`);
/// `data_name`, when given, is what the model's lineage records as its data instead of `path`.
#[pyfunction]
#[pyo3(signature = (
    *, path, time_limit=600.0, preference="balance", seed=0, train_ratio=0.8, backbones=None,
    resolution=None, fine_tune=true, ensemble=true, refit_full=None, parent=None, parent_name=None, progress=None,
    max_latency_ms=None, max_model_mb=None, device="cpu", weights=None, fine_tune_arms=None, data_name=None
))]
#[allow(clippy::too_many_arguments)]
pub fn fit_image(
    py: Python<'_>,
    path: PathBuf,
    time_limit: f64,
    preference: &str,
    seed: u64,
    train_ratio: f64,
    backbones: Option<Vec<String>>,
    resolution: Option<u32>,
    fine_tune: bool,
    ensemble: bool,
    refit_full: Option<bool>,
    parent: Option<PyRef<'_, ImageModel>>,
    parent_name: Option<String>,
    progress: Option<&Bound<'_, PyAny>>,
    max_latency_ms: Option<f64>,
    max_model_mb: Option<f64>,
    device: &str,
    weights: Option<Vec<(String, PathBuf)>>,
    fine_tune_arms: Option<String>,
    data_name: Option<String>,
) -> PyResult<ImageModel> {
    exeml::allocator::keep_freed_memory();
    let mut predictor = image_predictor(ImageSettings {
        time_limit,
        preference,
        seed,
        train_ratio,
        backbones,
        resolution,
        fine_tune,
        ensemble,
        refit_full,
        max_latency_ms,
        max_model_mb,
        device,
        weights,
        fine_tune_arms,
    })?;
    if let Some(parent) = parent {
        let name = parent_name.unwrap_or_else(|| "python model".into());
        predictor = predictor.warm_start(name, &parent.inner);
    }
    let data = guard_detached(py, move || ImageDataset::import(&path, ImportFormat::Auto))?;
    let budget = Budget::new(predictor.time_limit);
    let job_budget = budget.clone();
    let finished = run_job(py, &budget, progress, move |progress| {
        predictor.fit(&data, &job_budget, progress)
    })?;
    if finished.interrupted {
        warn_interrupted(py)?;
    }
    let mut model = finished.value;
    if let Some(name) = data_name {
        // The lineage names what the caller gave, not a temporary folder that is gone.
        model.manifest.lineage.data = Some(name);
    }
    Ok(ImageModel {
        inner: Arc::new(model),
    })
}

/// Write 8-bit RGB pixels (`height·width·3` bytes, row by row, as for
/// `ImageModel.predict_pixels`) as a PNG file at `path` (how `ImagePredictor.fit` hands images
/// in memory to the folder import).
#[pyfunction]
pub fn write_png(
    py: Python<'_>,
    path: PathBuf,
    pixels: Bound<'_, PyBytes>,
    height: u32,
    width: u32,
) -> PyResult<()> {
    let image = rgb_images(&[(pixels, height, width)])?.remove(0);
    guard_detached(py, move || {
        image
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| Error::data(&path, format!("cannot write PNG: {e}")))
    })
}

/// A trained image classifier (wrapped by `exeml.ImagePredictor`).
#[derive(Debug)]
#[pyclass(module = "exeml._exeml", name = "ImageModel", frozen)]
pub struct ImageModel {
    pub(crate) inner: Arc<exeml::vision::ImageModel>,
}

#[pymethods]
impl ImageModel {
    /// Load a model folder written by `save` or the CLI.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<ImageModel> {
        let model = guard_detached(py, || exeml::vision::ImageModel::load(&path))?;
        Ok(ImageModel {
            inner: Arc::new(model),
        })
    }

    /// Write the model as a self-contained folder (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.save(&path).map(|_| ()))
    }

    /// Class scores of image files: one `(scores, error)` pair per file, `scores` in class
    /// order (empty when the file cannot be read) and `error` naming the file's problem.
    fn predict_files(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
    ) -> PyResult<Vec<(Vec<f32>, Option<String>)>> {
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.predict_files(&paths)).map(with_errors)
    }

    /// Class scores of decoded images, each `(pixels, height, width)`: `height·width·3` bytes of
    /// 8-bit RGB, row by row (what `numpy.ascontiguousarray(a, numpy.uint8).tobytes()` gives
    /// for an `height×width×3` array). One row per image, in class order.
    fn predict_pixels(
        &self,
        py: Python<'_>,
        images: Vec<(Bound<'_, PyBytes>, u32, u32)>,
    ) -> PyResult<Vec<Vec<f32>>> {
        let images = rgb_images(&images)?;
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.predict_images(&images))
    }

    /// Embeddings of decoded images given as in `predict_pixels`.
    fn embed_pixels(
        &self,
        py: Python<'_>,
        images: Vec<(Bound<'_, PyBytes>, u32, u32)>,
    ) -> PyResult<Vec<Vec<f32>>> {
        let images = rgb_images(&images)?;
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.embed_images(&images))
    }

    /// Predict every image under `folder` into `output` (`.csv` as `exeml predict` writes it,
    /// or `.jsonl`), checkpointed every `chunk_images` images; unreadable images go to
    /// `OUTPUT.errors.csv` with their reason. `resume=True` continues an interrupted run.
    #[pyo3(signature = (folder, output, *, resume=false, chunk_images=64, progress=None))]
    fn predict_folder<'py>(
        &self,
        py: Python<'py>,
        folder: PathBuf,
        output: PathBuf,
        resume: bool,
        chunk_images: usize,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let run = FolderRun {
            folder,
            output,
            resume,
            chunk_images,
        };
        run.start(
            py,
            &self.inner,
            progress,
            exeml::vision::batch::predict_folder,
        )
    }

    /// Embeddings of image files (the pooled backbone features the head reads): one
    /// `(embedding, error)` pair per file, `embedding` empty when the file cannot be read and
    /// `error` naming the file's problem.
    fn embed_files(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
    ) -> PyResult<Vec<(Vec<f32>, Option<String>)>> {
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || model.embed_files(&paths)).map(with_errors)
    }

    /// Write the embedding of every image under `folder` into `output` (`.csv`: `id,emb_0,…`;
    /// `.jsonl`: `{"id", "embedding"}` per line), checkpointed like `predict_folder`.
    #[pyo3(signature = (folder, output, *, resume=false, chunk_images=64, progress=None))]
    fn embed_folder<'py>(
        &self,
        py: Python<'py>,
        folder: PathBuf,
        output: PathBuf,
        resume: bool,
        chunk_images: usize,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let run = FolderRun {
            folder,
            output,
            resume,
            chunk_images,
        };
        run.start(
            py,
            &self.inner,
            progress,
            exeml::vision::batch::embed_folder,
        )
    }

    /// Write the model as one ONNX file at `path` (probabilities and embeddings as exeml
    /// computes them, from `onnx_input_*` pixels); `int8`: weights as 8-bit integers.
    #[pyo3(signature = (path, *, int8=false))]
    fn export_onnx(&self, py: Python<'_>, path: PathBuf, int8: bool) -> PyResult<()> {
        let model = Arc::clone(&self.inner);
        let options = exeml::vision::onnx::OnnxOptions { int8_weights: int8 };
        guard_detached(py, move || model.export_onnx(&path, options))
    }

    /// The exported ONNX model's inputs for image files (`3·R·R` values each, `value / 255`,
    /// channels first): one `(values, error)` pair per file, as `embed_files`.
    fn onnx_input_files(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
    ) -> PyResult<Vec<(Vec<f32>, Option<String>)>> {
        let model = Arc::clone(&self.inner);
        guard_detached(py, move || {
            Ok(paths
                .iter()
                .map(|p| exeml::vision::data::decode_file(p).map(|img| model.onnx_input(&img)))
                .collect::<Vec<_>>())
        })
        .map(with_errors)
    }

    /// The exported ONNX model's inputs for decoded images given as in `predict_pixels`.
    fn onnx_input_pixels(
        &self,
        images: Vec<(Bound<'_, PyBytes>, u32, u32)>,
    ) -> PyResult<Vec<Vec<f32>>> {
        let images = rgb_images(&images)?;
        Ok(images.iter().map(|i| self.inner.onnx_input(i)).collect())
    }

    /// The side in pixels of the square the model reads.
    #[getter]
    fn resolution(&self) -> u32 {
        self.inner.manifest.resolution
    }

    /// The length of an embedding.
    #[getter]
    fn embedding_dim(&self) -> usize {
        self.inner.embedding_dim()
    }

    /// The SPEC response (`predicted_label`, top-5 `scores`) of one score row, as JSON.
    fn response(&self, scores: Vec<f32>) -> PyResult<String> {
        if scores.len() != self.inner.classes().len() {
            return Err(to_py(Error::invalid(
                "scores",
                format!(
                    "{} values for {} classes",
                    scores.len(),
                    self.inner.classes().len()
                ),
            )));
        }
        to_json(&self.inner.response(&scores))
    }

    /// The predicted class indices of one score row (several for multi-label models).
    fn predicted(&self, scores: Vec<f32>) -> Vec<usize> {
        self.inner.predicted(&scores)
    }

    /// Evaluate on a labelled folder: the evaluation as JSON.
    fn evaluate(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        let model = Arc::clone(&self.inner);
        let evaluation = guard_detached(py, move || {
            let data = ImageDataset::import(&path, ImportFormat::Auto)?;
            model.evaluate(&data)
        })?;
        to_json(&evaluation)
    }

    /// The manifest (classes, backbone, fine-tuning, validation, leaderboard, lineage) as JSON.
    fn manifest(&self) -> PyResult<String> {
        to_json(&self.inner.manifest)
    }

    /// One line: backbone, resolution, validation accuracy.
    fn summary(&self) -> String {
        self.inner.summary()
    }

    /// `binary`, `multiclass` or `multilabel`.
    #[getter]
    fn problem(&self) -> &'static str {
        self.inner.manifest.problem.as_str()
    }

    /// The class names, in score order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    fn __repr__(&self) -> String {
        format!("ImageModel({})", self.inner.summary())
    }
}

/// One `(values, error)` pair per file: the values, or nothing and the file's problem.
fn with_errors(rows: Vec<exeml_core::Result<Vec<f32>>>) -> Vec<(Vec<f32>, Option<String>)> {
    rows.into_iter()
        .map(|r| match r {
            Ok(values) => (values, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        })
        .collect()
}

/// The library's signature of a checkpointed run over a folder of images.
type FolderJob = fn(
    &exeml::vision::ImageModel,
    &std::path::Path,
    &std::path::Path,
    &exeml::vision::batch::ImageBatchOptions,
    &dyn exeml_core::Progress,
) -> exeml_core::Result<exeml::vision::batch::ImageBatchReport>;

/// The arguments of `predict_folder` and `embed_folder`.
struct FolderRun {
    folder: PathBuf,
    output: PathBuf,
    resume: bool,
    chunk_images: usize,
}

impl FolderRun {
    /// Run `job` off the interpreter's lock, cancellable by Ctrl-C, reporting to `progress`.
    fn start<'py>(
        self,
        py: Python<'py>,
        model: &Arc<exeml::vision::ImageModel>,
        progress: Option<Bound<'py, PyAny>>,
        job: FolderJob,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = exeml::vision::batch::ImageBatchOptions {
            chunk_images: self.chunk_images,
            resume: self.resume,
            budget: Budget::unlimited(),
        };
        let budget = options.budget.clone();
        let model = Arc::clone(model);
        let (folder, out) = (self.folder, self.output.clone());
        run_batch(
            py,
            &self.output,
            &budget,
            progress.as_ref(),
            move |progress| job(&model, &folder, &out, &options, progress).map(BatchSummary::from),
        )
    }
}

/// `(pixels, height, width)` triples as RGB images; a wrong byte count or an empty image is an
/// error naming its position.
fn rgb_images(images: &[(Bound<'_, PyBytes>, u32, u32)]) -> PyResult<Vec<image::RgbImage>> {
    images
        .iter()
        .enumerate()
        .map(|(i, (pixels, height, width))| {
            let bytes = pixels.as_bytes();
            let expected = u64::from(*height) * u64::from(*width) * 3;
            if expected == 0 || bytes.len() as u64 != expected {
                return Err(to_py(Error::invalid(
                    format!("images[{i}]"),
                    format!(
                        "{} bytes for a {height}×{width} RGB image (expected {expected}, at least one pixel)",
                        bytes.len()
                    ),
                )));
            }
            image::RgbImage::from_raw(*width, *height, bytes.to_vec()).ok_or_else(|| {
                to_py(Error::invalid(format!("images[{i}]"), "not an RGB image"))
            })
        })
        .collect()
}
