//! Batch prediction over a folder of images: every image under the folder (sorted by relative
//! path) gets a row of CSV or a SPEC JSON line; unreadable images are skipped and listed with
//! their reason in `OUT.errors.csv`. Output goes to `OUT.partial` and is renamed into place at
//! the end, so a stopped run never leaves a half file under the final name.

use crate::data::list_images;
use crate::model::ImageModel;
use exeml_core::fsio::write_atomic;
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

/// What a batch run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBatchReport {
    /// Images found.
    pub images: usize,
    /// Images predicted.
    pub predicted: usize,
    /// Images skipped (listed in the errors file).
    pub skipped: usize,
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

/// Predict every image under `root` into `output` (CSV or JSON lines by extension).
pub fn predict_folder(
    model: &ImageModel,
    root: &Path,
    output: &Path,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<ImageBatchReport> {
    let images = list_images(root)?;
    if images.is_empty() {
        return Err(Error::data(root, "no JPG, PNG or BMP image found"));
    }
    let format = ImageOutput::of(output);
    let mut text = String::new();
    if format == ImageOutput::Csv {
        let mut header = vec!["id".to_string(), "prediction".to_string()];
        header.extend(model.classes().iter().map(|c| quote(&format!("proba_{c}"))));
        text.push_str(&header.join(","));
        text.push('\n');
    }
    let mut errors = String::from("id,reason\n");
    let (mut predicted, mut skipped) = (0, 0);
    progress.phase(&format!("predicting {} images", images.len()));
    for (done, chunk) in images.chunks(64).enumerate() {
        if budget.is_cancelled() {
            return Err(Error::Interrupted(format!(
                "batch prediction stopped after {} of {} images; nothing was written to {}",
                done * 64,
                images.len(),
                output.display()
            )));
        }
        let paths: Vec<PathBuf> = chunk.iter().map(|(_, p)| p.clone()).collect();
        for ((id, _), scores) in chunk.iter().zip(model.predict_files(&paths)?) {
            match scores {
                Ok(scores) => {
                    predicted += 1;
                    text.push_str(&row(model, id, &scores, format)?);
                }
                Err(e) => {
                    skipped += 1;
                    errors.push_str(&format!("{},{}\n", quote(id), quote(&e.to_string())));
                }
            }
        }
        progress.fraction(((done + 1) * 64).min(images.len()) as f64 / images.len() as f64);
    }
    let errors_file = if skipped > 0 {
        let path = PathBuf::from(format!("{}.errors.csv", output.display()));
        write_atomic(&path, errors.as_bytes())?;
        Some(path)
    } else {
        None
    };
    write_atomic(output, text.as_bytes())?;
    Ok(ImageBatchReport {
        images: images.len(),
        predicted,
        skipped,
        errors_file,
    })
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
