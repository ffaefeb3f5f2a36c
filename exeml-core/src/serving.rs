//! The one trait a trained model implements to be served in real time (`exeml serve`), and the
//! shapes of what goes in and out. The HTTP layer lives in the facade; a task crate only says
//! how its model reads one request and answers it in the SPEC JSON format.

use crate::task::{ProblemType, TaskKind};
use serde::Serialize;

/// How a request to the model carries its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A JSON body (tables, text).
    Json,
    /// An uploaded file, `multipart/form-data` (images, sound).
    File,
}

/// What a served model says about itself (`GET /v1/models`, the test page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServeInfo {
    /// The task the model solves.
    pub task: TaskKind,
    /// Binary, multiclass or regression.
    pub problem: ProblemType,
    /// How requests carry their input.
    pub input: InputKind,
    /// The class names in model order (empty for regression).
    pub labels: Vec<String>,
    /// The input fields a JSON request must carry, in order, with their kinds (tables);
    /// empty for other inputs.
    pub fields: Vec<InputField>,
    /// An example request body, shown by the test page and the docs.
    pub example: serde_json::Value,
    /// The length of the embedding [`Servable::embed`] returns; `None` when the model computes
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_dim: Option<usize>,
}

/// One input field of a JSON request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputField {
    /// The field's name.
    pub name: String,
    /// What it holds: `number`, `category`, `datetime` or `text`.
    pub kind: String,
    /// The values seen in training, most frequent first (categories); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// One request's input, already read from the HTTP body.
#[derive(Debug, Clone, Copy)]
pub enum ServeInput<'a> {
    /// A parsed JSON body.
    Json(&'a serde_json::Value),
    /// An uploaded file: the file name the client gave (untrusted, for messages only) and its
    /// bytes.
    File {
        /// The client's file name, reduced to its last path component.
        name: &'a str,
        /// The file's content.
        bytes: &'a [u8],
    },
}

/// A model's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The SPEC response JSON.
    pub body: serde_json::Value,
    /// The predicted class of each input (for the prediction-distribution metric); empty for
    /// regression.
    pub predicted: Vec<String>,
}

/// A trained model that answers requests. It must be thread-safe: one instance serves every
/// request of its version concurrently.
///
/// Errors: a problem with the request is [`crate::Error::InvalidParameter`] with the JSON
/// path of the field as its name (for example `data.req_data[0].age`) or
/// [`crate::Error::Data`]; the service turns both into HTTP 400 with that field named. Any other
/// error is a 500.
pub trait Servable: Send + Sync {
    /// The model's description.
    fn serve_info(&self) -> ServeInfo;

    /// Answer one request.
    fn respond(&self, input: ServeInput<'_>) -> crate::Result<Answer>;

    /// The embedding of one request's input, `{"embedding": [...]}` (`POST /v1/embed`), for
    /// models that compute one (`serve_info().embedding_dim`); by default a refusal naming
    /// the model's task.
    fn embed(&self, input: ServeInput<'_>) -> crate::Result<Answer> {
        let _ = input;
        Err(crate::Error::invalid(
            "model",
            format!(
                "a {} model computes no embeddings; image models do",
                self.serve_info().task
            ),
        ))
    }
}

/// The last path component of an uploaded file's name, so that a hostile name such as
/// `../../etc/passwd` or `C:\x\y.png` can only ever be shown, never used as a path.
pub fn upload_file_name(name: &str) -> &str {
    let name = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if name.is_empty() || name == "." || name == ".." {
        "upload"
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_keep_only_their_last_component() {
        assert_eq!(upload_file_name("../../etc/passwd"), "passwd");
        assert_eq!(upload_file_name("C:\\photos\\cat.png"), "cat.png");
        assert_eq!(upload_file_name("dog.jpg"), "dog.jpg");
        assert_eq!(upload_file_name("folder/"), "upload");
        assert_eq!(upload_file_name(".."), "upload");
        assert_eq!(upload_file_name(""), "upload");
    }
}
