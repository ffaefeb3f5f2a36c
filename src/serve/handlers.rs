//! The endpoints: prediction and embeddings (JSON or file upload), models, split, health,
//! readiness, metrics.

use crate::serve::deployment::DeployedModel;
use crate::serve::reply::ApiError;
use crate::serve::Shared;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use exeml_core::serving::{upload_file_name, Answer, InputKind, ServeInput};
use rand::Rng;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// `POST /v1/predict`: the model the traffic split picks answers.
pub async fn predict(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    by_split(&shared, request, Ask::Predict).await
}

/// `POST /v1/models/{name}/predict`: that model version answers, whatever the split.
pub async fn predict_with(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    by_name(&shared, &name, request, Ask::Predict).await
}

/// `POST /v1/embed`: the embedding of the uploaded image, from the model the split picks.
pub async fn embed(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    by_split(&shared, request, Ask::Embed).await
}

/// `POST /v1/models/{name}/embed`: the embedding from that model version.
pub async fn embed_with(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    by_name(&shared, &name, request, Ask::Embed).await
}

/// What a request asks of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Its prediction (SPEC JSON).
    Predict,
    /// Its input's embedding.
    Embed,
}

async fn by_split(shared: &Shared, request: Request, ask: Ask) -> Response {
    let deployment = shared.deployment();
    let ticket = rand::rng().random_range(0..100);
    match deployment.pick(ticket) {
        Some(model) => answer(shared, Arc::clone(model), request, ask).await,
        None => no_model().into_response(),
    }
}

async fn by_name(shared: &Shared, name: &str, request: Request, ask: Ask) -> Response {
    let deployment = shared.deployment();
    match deployment.get(name) {
        Some(model) => answer(shared, Arc::clone(model), request, ask).await,
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!(
                "no model `{}` is served; see GET /v1/models",
                name.chars().take(64).collect::<String>()
            ),
        )
        .into_response(),
    }
}

fn no_model() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "no model is deployed",
    )
}

/// Run one request through the gate, time it and count it.
async fn answer(
    shared: &Shared,
    model: Arc<DeployedModel>,
    request: Request,
    ask: Ask,
) -> Response {
    let started = Instant::now();
    let Some(_admission) = shared.gate.admit() else {
        shared.telemetry.rejected("saturated");
        return ApiError::saturated().into_response();
    };
    shared.telemetry.in_flight().inc();
    let result = run_model(shared, &model, request, ask).await;
    shared.telemetry.in_flight().dec();
    let mut response = match result {
        Ok(answer) => {
            shared.telemetry.predicted(&model.name, &answer.predicted);
            Json(answer.body).into_response()
        }
        Err(error) => error.into_response(),
    };
    if let Ok(name) = HeaderValue::from_str(&model.name) {
        response.headers_mut().insert("x-exeml-model", name);
    }
    shared
        .telemetry
        .request(&model.name, response.status().as_u16(), started.elapsed());
    response
}

/// The request's input, read as the model needs it.
enum Input {
    /// The parsed body and its size in bytes.
    Json(Value, usize),
    File {
        name: String,
        bytes: Bytes,
    },
}

async fn run_model(
    shared: &Shared,
    model: &Arc<DeployedModel>,
    request: Request,
    ask: Ask,
) -> Result<Answer, ApiError> {
    let input = read_input(model.info.input, request).await?;
    let inline = input_is_small(&input);
    let permit = shared.gate.worker().await;
    let model = Arc::clone(model);
    let predict = move || {
        let _permit = permit;
        let input = match &input {
            Input::Json(value, _) => ServeInput::Json(value),
            Input::File { name, bytes } => ServeInput::File { name, bytes },
        };
        match ask {
            Ask::Predict => model.model.respond(input),
            Ask::Embed => model.model.embed(input),
        }
    };
    // A small JSON request (a few table rows) predicts in microseconds: answering it on this
    // thread saves the hand-off to the blocking pool. Files and large batches go to the pool so
    // that they never hold up the threads that read and write sockets.
    let result = if inline {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(predict)).map_err(|_| ())
    } else {
        tokio::task::spawn_blocking(predict).await.map_err(|join| {
            eprintln!("exeml serve: {join}");
        })
    };
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(ApiError::from_model(&error)),
        // A panic inside the model: answered, logged, and the server lives on.
        Err(()) => {
            eprintln!("exeml serve: a prediction failed unexpectedly");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the model failed unexpectedly",
            ))
        }
    }
}

/// JSON bodies up to this size are predicted inline.
const INLINE_BODY_BYTES: usize = 16 * 1024;

fn input_is_small(input: &Input) -> bool {
    match input {
        Input::Json(_, size) => *size <= INLINE_BODY_BYTES,
        Input::File { .. } => false,
    }
}

async fn read_input(kind: InputKind, request: Request) -> Result<Input, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match kind {
        InputKind::Json => {
            if content_type.starts_with("multipart/") {
                return Err(ApiError::field(
                    "body",
                    "this model takes a JSON body, not a file upload",
                ));
            }
            let bytes = Bytes::from_request(request, &())
                .await
                .map_err(|r| ApiError::new(r.status(), "unreadable_body", r.body_text()))?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                )
            })?;
            Ok(Input::Json(value, bytes.len()))
        }
        InputKind::File => {
            if !content_type.starts_with("multipart/form-data") {
                return Err(ApiError::field(
                    "body",
                    "this model takes a file upload: multipart/form-data with a `file` field",
                ));
            }
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|r| ApiError::new(r.status(), "malformed_multipart", r.body_text()))?;
            let malformed = |e: axum::extract::multipart::MultipartError| {
                ApiError::new(e.status(), "malformed_multipart", e.body_text())
            };
            while let Some(field) = multipart.next_field().await.map_err(malformed)? {
                let is_file = field.name() == Some("file") || field.file_name().is_some();
                if !is_file {
                    continue;
                }
                let name = upload_file_name(field.file_name().unwrap_or("upload")).to_string();
                let bytes = field.bytes().await.map_err(malformed)?;
                if bytes.is_empty() {
                    return Err(ApiError::field(
                        "file",
                        format!("{name}: the file is empty"),
                    ));
                }
                return Ok(Input::File { name, bytes });
            }
            Err(ApiError::field(
                "file",
                "missing: upload the file in a multipart field named `file`",
            ))
        }
    }
}

/// `GET /v1/models`: the served versions with their split, task, labels and input schema.
pub async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let deployment = shared.deployment();
    let models: Vec<Value> = deployment
        .models()
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "source": m.source,
                "traffic_percent": m.percent,
                "task": m.info.task,
                "problem": m.info.problem,
                "input": m.info.input,
                "labels": m.info.labels,
                "fields": m.info.fields,
                "example": m.info.example,
                "predict_url": format!("/v1/models/{}/predict", m.name),
                "embedding_dim": m.info.embedding_dim,
                "embed_url": m.info.embedding_dim.map(|_| format!("/v1/models/{}/embed", m.name)),
            })
        })
        .collect();
    Json(json!({
        "models": models,
        "replicas": shared.config.replicas,
        "auto_stop_remaining_s": shared.auto_stop_remaining().map(|d| d.as_secs_f64().round()),
    }))
}

/// `PUT /v1/split` with `{"split": {"0.0.1": 90, "0.0.2": 10}}`: a new traffic split.
pub async fn split(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed: Result<Vec<(String, u32)>, ApiError> = (|| {
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let object = value
            .get("split")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ApiError::field("split", "expected {\"split\": {\"MODEL\": PERCENT}}")
            })?;
        object
            .iter()
            .map(|(name, pct)| {
                let pct = pct
                    .as_u64()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| ApiError::field(format!("split.{name}"), "expected 0 to 100"))?;
                Ok((name.clone(), pct as u32))
            })
            .collect()
    })();
    let result = parsed.and_then(|split| {
        let next = shared
            .deployment()
            .with_split(&split)
            .map_err(|e| ApiError::from_model(&e))?;
        let shares: Vec<(String, u32)> = next
            .models()
            .iter()
            .map(|m| (m.name.clone(), m.percent))
            .collect();
        shared.install(next);
        Ok(shares)
    });
    match result {
        Ok(shares) => {
            let split: serde_json::Map<String, Value> =
                shares.into_iter().map(|(n, p)| (n, json!(p))).collect();
            Json(json!({ "split": split })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /health`: the process is alive.
pub async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "uptime_s": shared.started.elapsed().as_secs(),
        "auto_stop_remaining_s": shared.auto_stop_remaining().map(|d| d.as_secs()),
    }))
}

/// `GET /ready`: 200 once a model is deployed, 503 before.
pub async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let deployment = shared.deployment();
    if deployment.models().is_empty() {
        return no_model().into_response();
    }
    let names: Vec<&str> = deployment
        .models()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    Json(json!({ "ready": true, "models": names })).into_response()
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.telemetry.render(shared.auto_stop_remaining());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Any other path: 404 as JSON.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: see /v1/models, /v1/predict, /v1/embed, /health, /ready, /metrics",
    )
}
