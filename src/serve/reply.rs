//! JSON error replies: every refusal carries `{"error": {"code", "message", "field"?}}` and the
//! HTTP status that fits.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use exeml_core::Error;
use serde_json::json;

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_field`, `malformed_json`, `saturated`…).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The JSON path of the offending field, if one is to blame.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message)
        }
    }

    /// 503 with `Retry-After`.
    pub fn saturated() -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "saturated",
                "the service is at its concurrency limit; retry shortly",
            )
        }
    }

    /// The reply for a library error raised while answering a request.
    pub fn from_model(error: &Error) -> Self {
        match error {
            Error::InvalidParameter { name, message } => ApiError::field(name.clone(), message),
            Error::Data { path, message } => {
                // Uploaded files are named by their (sanitised) upload name; JSON requests by
                // a placeholder such as `<request>`, which adds nothing to the message.
                let name = path.display().to_string();
                let message = if name.is_empty() || name.starts_with('<') {
                    message.clone()
                } else {
                    format!("{name}: {message}")
                };
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the model failed: {other}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
