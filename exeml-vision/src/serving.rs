//! Serving an image model: an uploaded JPG/PNG/BMP is decoded (with the decoder's size limits,
//! so an image bomb is refused) and answered with the SPEC JSON
//! `{"predicted_label": …, "scores": [[label, "0.972"], …]}`, or with its embedding
//! `{"embedding": [...]}` (`POST /v1/embed`).

use crate::model::ImageModel;
use exeml_core::serving::{upload_file_name, Answer, InputKind, Servable, ServeInfo, ServeInput};
use exeml_core::{Error, Result, TaskKind};
use serde_json::json;

impl Servable for ImageModel {
    fn serve_info(&self) -> ServeInfo {
        ServeInfo {
            task: TaskKind::Image,
            problem: self.manifest.problem,
            input: InputKind::File,
            labels: self.classes().to_vec(),
            fields: Vec::new(),
            example: json!({"file": "an image: JPG, PNG or BMP"}),
            embedding_dim: Some(self.embedding_dim()),
        }
    }

    fn respond(&self, input: ServeInput<'_>) -> Result<Answer> {
        let (name, bytes) = uploaded(input)?;
        let scores = self.predict_bytes(name, bytes)?;
        let body = self.response(&scores);
        let predicted = self
            .predicted(&scores)
            .into_iter()
            .map(|c| self.classes()[c].clone())
            .collect();
        Ok(Answer { body, predicted })
    }

    fn embed(&self, input: ServeInput<'_>) -> Result<Answer> {
        let (name, bytes) = uploaded(input)?;
        let embedding = self.embed_bytes(name, bytes)?;
        Ok(Answer {
            body: json!({ "embedding": embedding }),
            predicted: Vec::new(),
        })
    }
}

/// The uploaded file of a request (its name reduced to the last component), or the error that
/// an image model takes no JSON.
fn uploaded<'a>(input: ServeInput<'a>) -> Result<(&'a str, &'a [u8])> {
    match input {
        ServeInput::File { name, bytes } => Ok((upload_file_name(name), bytes)),
        ServeInput::Json(_) => Err(Error::invalid(
            "file",
            "an image model takes an uploaded file (multipart/form-data field `file`), not JSON",
        )),
    }
}
