//! Batch prediction over a folder of images: every image under the folder (sorted by relative
//! path) gets a row of CSV or a SPEC JSON line ([`predict_folder`]), or its embedding
//! ([`embed_folder`]); unreadable images are skipped and listed with
//! their reason in `OUT.errors.csv`. Output goes to `OUT.partial` and is renamed into place at
//! the end, so a stopped run never leaves a half file under the final name; after every chunk
//! a checkpoint records how far it got, so an interrupted run continues with
//! [`ImageBatchOptions::resume`] (see [`exeml_core::batch`]).

use crate::data::list_images;
use crate::model::ImageModel;
use exeml_core::batch::ResumableOutput;
use exeml_core::{Budget, Error, Progress, Result};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How the predictions are written, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOutput {
    /// `id,prediction,proba_<label>…` (labels of a multi-label prediction joined by `;`).
    Csv,
    /// One SPEC response object per line, with `id`.
    JsonLines,
}

impl ImageOutput {
    /// The format of `path`: `.jsonl`/`.json` → JSON lines, else CSV.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json") => {
                ImageOutput::JsonLines
            }
            _ => ImageOutput::Csv,
        }
    }
}

/// Options of a folder run.
#[derive(Debug, Clone)]
pub struct ImageBatchOptions {
    /// Images predicted (and checkpointed) at a time.
    pub chunk_images: usize,
    /// Continue an interrupted run of the same folder, model and output from its checkpoint.
    pub resume: bool,
    /// Cancelling it stops the run after the current chunk, resumable.
    pub budget: Budget,
}

impl Default for ImageBatchOptions {
    fn default() -> Self {
        ImageBatchOptions {
            chunk_images: 64,
            resume: false,
            budget: Budget::unlimited(),
        }
    }
}

/// What a batch run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBatchReport {
    /// Images found.
    pub images: usize,
    /// Images predicted (by this run and the one it resumed).
    pub predicted: usize,
    /// Images skipped (listed in the errors file).
    pub skipped: usize,
    /// Images the interrupted run this one resumed had done (0 for a fresh run).
    pub resumed_at: usize,
    /// The errors file, when something was skipped.
    pub errors_file: Option<PathBuf>,
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// What a folder run writes for each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// The prediction: label(s) and class probabilities, or the SPEC response.
    Predictions,
    /// The [embedding](ImageModel::embed_image).
    Embeddings,
}

/// Predict every image under `root` into `output` (CSV or JSON lines by extension).
pub fn predict_folder(
    model: &ImageModel,
    root: &Path,
    output: &Path,
    options: &ImageBatchOptions,
    progress: &dyn Progress,
) -> Result<ImageBatchReport> {
    run_folder(model, root, output, options, progress, Rows::Predictions)
}

/// Write the [embedding](ImageModel::embed_image) of every image under `root` into `output`:
/// CSV `id,emb_0,…` (one column per feature, values as exact decimals) or, for `.jsonl`, one
/// `{"id": …, "embedding": […]}` per line. Checkpointed and resumable like [`predict_folder`].
pub fn embed_folder(
    model: &ImageModel,
    root: &Path,
    output: &Path,
    options: &ImageBatchOptions,
    progress: &dyn Progress,
) -> Result<ImageBatchReport> {
    run_folder(model, root, output, options, progress, Rows::Embeddings)
}

fn run_folder(
    model: &ImageModel,
    root: &Path,
    output: &Path,
    options: &ImageBatchOptions,
    progress: &dyn Progress,
    rows: Rows,
) -> Result<ImageBatchReport> {
    if options.chunk_images == 0 {
        return Err(Error::invalid("chunk_images", "must be at least 1"));
    }
    let images = list_images(root)?;
    if images.is_empty() {
        return Err(Error::data(root, "no JPG, PNG or BMP image found"));
    }
    let format = ImageOutput::of(output);
    let mut header = String::new();
    if format == ImageOutput::Csv {
        let mut names = vec!["id".to_string()];
        match rows {
            Rows::Predictions => {
                names.push("prediction".to_string());
                names.extend(model.classes().iter().map(|c| quote(&format!("proba_{c}"))));
            }
            Rows::Embeddings => {
                names.extend((0..model.embedding_dim()).map(|i| format!("emb_{i}")));
            }
        }
        header = names.join(",") + "\n";
    }
    let mut identity = serde_json::json!({
        "folder": root,
        "images": listing_fingerprint(&images),
        "model": model_fingerprint(model),
    });
    if rows == Rows::Embeddings {
        // A checkpoint of predictions into the same file is not resumed as embeddings.
        identity["rows"] = Value::from("embeddings");
    }
    let mut run = ResumableOutput::open(
        output,
        identity,
        options.resume,
        header.as_bytes(),
        b"id,reason\n",
    )?;
    let resumed_at = (run.resumed_at() as usize).min(images.len());
    let (verb, noun) = match rows {
        Rows::Predictions => ("predicting", "batch prediction"),
        Rows::Embeddings => ("embedding", "embedding"),
    };
    progress.phase(&format!("{verb} {} images", images.len() - resumed_at));
    for chunk in images[resumed_at..].chunks(options.chunk_images) {
        let done = run.counts().done as usize;
        if done > resumed_at && options.budget.is_cancelled() {
            return Err(Error::Interrupted(format!(
                "{noun} stopped after {done} of {} images; run again with --resume to continue",
                images.len()
            )));
        }
        let paths: Vec<PathBuf> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let (mut predicted, mut skipped) = (0, 0);
        let results = match rows {
            Rows::Predictions => model.predict_files(&paths)?,
            Rows::Embeddings => model.embed_files(&paths)?,
        };
        let (mut text, mut errors) = (String::new(), String::new());
        for ((id, _), values) in chunk.iter().zip(results) {
            match values {
                Ok(values) => {
                    predicted += 1;
                    text.push_str(&match rows {
                        Rows::Predictions => row(model, id, &values, format)?,
                        Rows::Embeddings => embedding_row(id, &values, format)?,
                    });
                }
                Err(e) => {
                    skipped += 1;
                    errors.push_str(&format!("{},{}\n", quote(id), quote(&e.to_string())));
                }
            }
        }
        run.append(text.as_bytes(), errors.as_bytes(), predicted, skipped)?;
        progress.fraction(run.counts().done as f64 / images.len() as f64);
    }
    let counts = run.counts();
    let errors_file = run.finish()?;
    Ok(ImageBatchReport {
        images: images.len(),
        predicted: counts.predicted as usize,
        skipped: counts.skipped as usize,
        resumed_at,
        errors_file,
    })
}

/// Identifies a folder's images (names, sizes, modification times), so that a run over a
/// changed folder is not resumed.
fn listing_fingerprint(images: &[(String, PathBuf)]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (id, path) in images {
        id.hash(&mut hasher);
        if let Ok(meta) = std::fs::metadata(path) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    format!("{}:{:016x}", images.len(), hasher.finish())
}

/// Identifies a trained model well enough to refuse resuming another model's run.
fn model_fingerprint(model: &ImageModel) -> String {
    let m = &model.manifest;
    format!(
        "{}:{}:{}:{}",
        m.backbone, m.resolution, m.lineage.created_at, m.lineage.fit_secs
    )
}

/// One output row (with its newline) for the image `id`.
fn row(model: &ImageModel, id: &str, scores: &[f32], format: ImageOutput) -> Result<String> {
    let mut out = Vec::new();
    match format {
        ImageOutput::JsonLines => {
            let mut body = model.response(scores);
            if let Value::Object(map) = &mut body {
                map.insert("id".into(), Value::String(id.to_string()));
            }
            serde_json::to_writer(&mut out, &body).map_err(|e| Error::data(id, e.to_string()))?;
            out.push(b'\n');
        }
        ImageOutput::Csv => {
            let labels: Vec<&str> = model
                .predicted(scores)
                .into_iter()
                .map(|c| model.classes()[c].as_str())
                .collect();
            let mut fields = vec![quote(id), quote(&labels.join(";"))];
            fields.extend(scores.iter().map(|p| format!("{p:.6}")));
            writeln!(out, "{}", fields.join(",")).map_err(|e| Error::io(id, e))?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::data(id, e.to_string()))
}

/// One output row (with its newline) of the embedding of the image `id`.
fn embedding_row(id: &str, values: &[f32], format: ImageOutput) -> Result<String> {
    let mut out = Vec::new();
    match format {
        ImageOutput::JsonLines => {
            let body = serde_json::json!({ "id": id, "embedding": values });
            serde_json::to_writer(&mut out, &body).map_err(|e| Error::data(id, e.to_string()))?;
            out.push(b'\n');
        }
        ImageOutput::Csv => {
            // `Display` of an `f32` is its shortest exact decimal: the value reads back as is.
            let mut fields = vec![quote(id)];
            fields.extend(values.iter().map(f32::to_string));
            writeln!(out, "{}", fields.join(",")).map_err(|e| Error::io(id, e))?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::data(id, e.to_string()))
}
