//! The real-time service: SPEC JSON in and out, traffic split, API key, limits, metrics, hostile
//! requests, graceful shutdown, and the `exeml serve` binary end to end.

use crate::data;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use exeml::core::serving::{Answer, InputKind, Servable, ServeInfo, ServeInput};
use exeml::serve::{load_servable, DeployedModel, Deployment, ServeConfig, Service};
use exeml::{ProblemType, Result, TaskKind};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// A small iris model trained once for the whole file (linear family: fast).
fn iris_model_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("iris-model");
        exeml::TabularPredictor::new("species")
            .time_limit(Duration::from_secs(3))
            .families(["linear"])
            .fit_path(&data("iris.csv"))
            .expect("fit")
            .save(&path)
            .expect("save");
        (dir, path)
    });
    path
}

fn service_with(config: ServeConfig, models: Vec<DeployedModel>) -> Service {
    let service = Service::new(config).expect("config");
    service.deploy(Deployment::new(models).expect("deployment"));
    service
}

fn iris_service(config: ServeConfig) -> Service {
    let model = load_servable(iris_model_dir()).expect("load");
    service_with(
        config,
        vec![DeployedModel::new("0.0.1", "iris", model, 100)],
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error_field(&self) -> Option<String> {
        self.json()["error"]["field"].as_str().map(str::to_string)
    }
}

async fn send(service: &Service, request: Request<Body>) -> Reply {
    let response = service.router().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn post_json(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request")
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn iris_row() -> Value {
    json!({"sepal_length_cm": "6.3", "sepal_width_cm": 2.9, "petal_length_cm": "5.6",
           "petal_width_cm": 1.8})
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn predictions_come_back_in_the_spec_format_and_match_the_library() {
    rt().block_on(async {
        let service = iris_service(ServeConfig::default());
        let rows = json!([iris_row(), {"sepal_length_cm": 5.0, "sepal_width_cm": 3.4,
            "petal_length_cm": 1.5, "petal_width_cm": 0.2, "species": "ignored"}]);
        let body = json!({"data": {"req_data": rows}});
        let reply = send(&service, post_json("/v1/predict", body.to_string())).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.headers["x-exeml-model"], "0.0.1");
        let answer = reply.json();
        let out = answer["data"]["resp_data"].as_array().expect("resp_data");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1]["predict"], "setosa");
        let probabilities = out[0]["probabilities"].as_object().expect("probabilities");
        assert_eq!(probabilities.len(), 3);
        for p in probabilities.values() {
            let text = p.as_str().expect("a string");
            assert_eq!(text.split('.').nth(1).map(str::len), Some(3), "{text}");
        }
        // The same rows through the library give the same answer.
        let model = exeml::TabularModel::load(iris_model_dir()).expect("load");
        let records: Vec<std::collections::BTreeMap<String, Value>> =
            serde_json::from_value(rows).expect("records");
        let table = exeml::Table::from_records(&records, &[]).expect("table");
        let expected = model.predict(&table).expect("predict");
        assert_eq!(out[0]["predict"], expected.label(0));
    });
}

#[test]
fn bad_requests_get_400_naming_the_field_and_never_crash() {
    rt().block_on(async {
        let service = iris_service(ServeConfig::default());
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            ("{\"data\": {\"req_data\": [".into(), None, "malformed_json"),
            ("[1, 2]".into(), Some("data.req_data"), "invalid_field"),
            (
                json!({"data": {"req_data": []}}).to_string(),
                Some("data.req_data"),
                "invalid_field",
            ),
            (
                json!({"data": {"req_data": "x"}}).to_string(),
                Some("data.req_data"),
                "invalid_field",
            ),
            (
                json!({"data": {"req_data": [7]}}).to_string(),
                Some("data.req_data[0]"),
                "invalid_field",
            ),
            (
                json!({"data": {"req_data": [{"sepal_length_cm": 1}]}}).to_string(),
                Some("data.req_data[0].sepal_width_cm"),
                "invalid_field",
            ),
            (
                json!({"data": {"req_data": [iris_row(), {"sepal_length_cm": "wide",
                    "sepal_width_cm": 1, "petal_length_cm": 1, "petal_width_cm": 1}]}})
                .to_string(),
                Some("data.req_data[1].sepal_length_cm"),
                "invalid_field",
            ),
            (
                json!({"data": {"req_data": [{"sepal_length_cm": {"x": 1}, "sepal_width_cm": 1,
                    "petal_length_cm": 1, "petal_width_cm": 1}]}})
                .to_string(),
                Some("data.req_data[0].sepal_length_cm"),
                "invalid_field",
            ),
            ("\u{0}\u{1}binary".into(), None, "malformed_json"),
        ];
        for (body, field, code) in cases {
            let reply = send(&service, post_json("/v1/predict", body.clone())).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(reply.json()["error"]["code"], code, "{body}");
            assert_eq!(reply.error_field().as_deref(), field, "{body}");
        }
        // A file upload to a table model.
        let upload = multipart_request("/v1/predict", "x.csv", b"1,2,3");
        let reply = send(&service, upload).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        // The service still answers.
        let ok = json!({"data": {"req_data": [iris_row()]}}).to_string();
        assert_eq!(
            send(&service, post_json("/v1/predict", ok)).await.status,
            StatusCode::OK
        );
    });
}

#[test]
fn oversized_bodies_unknown_routes_and_models_are_refused_as_json() {
    rt().block_on(async {
        let config = ServeConfig {
            max_body_bytes: 1024,
            ..ServeConfig::default()
        };
        let service = iris_service(config);
        let huge = format!(
            "{{\"data\": {{\"req_data\": [\"{}\"]}}}}",
            "x".repeat(100_000)
        );
        let reply = send(&service, post_json("/v1/predict", huge)).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["error"]["code"], "unreadable_body");
        let reply = send(&service, get("/v2/whatever")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json()["error"]["code"], "not_found");
        let reply = send(
            &service,
            post_json("/v1/models/..%2F..%2Fetc/predict", "{}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json()["error"]["code"], "unknown_model");
        // A table model computes no embedding: refused by name, not a 500.
        let reply = send(&service, post_json("/v1/embed", iris_row().to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.error_field().as_deref(), Some("model"));
        let message = reply.json()["error"]["message"].to_string();
        assert!(
            message.contains("tabular model computes no embeddings"),
            "{message}"
        );
    });
}

#[test]
fn the_api_key_guards_everything_but_the_page_and_probes() {
    rt().block_on(async {
        let config = ServeConfig {
            api_key: Some("s3cret-key".into()),
            ..ServeConfig::default()
        };
        let service = iris_service(config);
        let body = json!({"data": {"req_data": [iris_row()]}}).to_string();
        let reply = send(&service, post_json("/v1/predict", body.clone())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        for (name, value) in [
            ("authorization", "Bearer wrong-key!"),
            ("authorization", "s3cret-key"),
            ("x-api-key", "s3cret-ke"),
        ] {
            let mut request = post_json("/v1/predict", body.clone());
            request
                .headers_mut()
                .insert(name, value.parse().expect("header"));
            assert_eq!(
                send(&service, request).await.status,
                StatusCode::UNAUTHORIZED,
                "{value}"
            );
        }
        for (name, value) in [
            ("authorization", "Bearer s3cret-key"),
            ("x-api-key", "s3cret-key"),
        ] {
            let mut request = post_json("/v1/predict", body.clone());
            request
                .headers_mut()
                .insert(name, value.parse().expect("header"));
            assert_eq!(
                send(&service, request).await.status,
                StatusCode::OK,
                "{name}"
            );
        }
        for open in ["/", "/health", "/ready", "/page.js"] {
            assert_eq!(
                send(&service, get(open)).await.status,
                StatusCode::OK,
                "{open}"
            );
        }
        for closed in ["/metrics", "/v1/models"] {
            assert_eq!(
                send(&service, get(closed)).await.status,
                StatusCode::UNAUTHORIZED,
                "{closed}"
            );
        }
        let metrics = {
            let mut r = get("/metrics");
            r.headers_mut()
                .insert("x-api-key", "s3cret-key".parse().expect("header"));
            String::from_utf8(send(&service, r).await.body).expect("utf-8")
        };
        assert!(
            metrics.contains(r#"exeml_rejected_requests_total{reason="unauthorized"} 6"#),
            "{metrics}"
        );
    });
}

#[test]
fn models_metrics_and_the_page_describe_the_service() {
    rt().block_on(async {
        let service = iris_service(ServeConfig {
            auto_stop: Some(Duration::from_secs(3600)),
            ..ServeConfig::default()
        });
        let body = json!({"data": {"req_data": [iris_row(), iris_row()]}}).to_string();
        assert_eq!(
            send(&service, post_json("/v1/predict", body)).await.status,
            StatusCode::OK
        );
        let models = send(&service, get("/v1/models")).await.json();
        let first = &models["models"][0];
        assert_eq!(first["name"], "0.0.1");
        assert_eq!(first["traffic_percent"], 100);
        assert_eq!(first["task"], "tabular");
        assert_eq!(
            first["labels"],
            json!(["setosa", "versicolor", "virginica"])
        );
        assert_eq!(first["fields"].as_array().expect("fields").len(), 4);
        assert_eq!(first["fields"][0]["kind"], "number");
        let remaining = models["auto_stop_remaining_s"].as_f64().expect("auto-stop");
        assert!(remaining > 3500.0 && remaining <= 3600.0, "{remaining}");
        // The example body of /v1/models is itself a valid request.
        let example = first["example"].to_string();
        assert_eq!(
            send(&service, post_json("/v1/predict", example))
                .await
                .status,
            StatusCode::OK
        );

        let metrics = String::from_utf8(send(&service, get("/metrics")).await.body).expect("utf-8");
        assert!(
            metrics.contains(r#"exeml_requests_total{model="0.0.1",status="200"} 2"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"exeml_request_duration_seconds_count{model="0.0.1"} 2"#));
        assert!(metrics.contains("exeml_predictions_total{model=\"0.0.1\",label=\""));
        assert!(metrics.contains("exeml_auto_stop_remaining_seconds 3"));

        let page = send(&service, get("/")).await;
        assert!(page.headers["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("default-src 'self'"));
        assert!(String::from_utf8_lossy(&page.body).contains("<script src=\"page.js\">"));
        let ready = send(&service, get("/ready")).await.json();
        assert_eq!(ready["models"], json!(["0.0.1"]));
    });
}

#[test]
fn traffic_follows_the_split_and_can_be_changed_live() {
    rt().block_on(async {
        let model = load_servable(iris_model_dir()).expect("load");
        let service = service_with(
            ServeConfig::default(),
            vec![
                DeployedModel::new("v1", "iris", Arc::clone(&model), 80),
                DeployedModel::new("v2", "iris", model, 20),
            ],
        );
        let body = json!({"data": {"req_data": [iris_row()]}}).to_string();
        let mut v2 = 0;
        for _ in 0..400 {
            let reply = send(&service, post_json("/v1/predict", body.clone())).await;
            if reply.headers["x-exeml-model"] == "v2" {
                v2 += 1;
            }
        }
        // 20 % of 400 = 80; a binomial deviation beyond ±40 has probability < 1e-6.
        assert!((40..=120).contains(&v2), "v2 took {v2} of 400");
        let pinned = send(&service, post_json("/v1/models/v2/predict", body.clone())).await;
        assert_eq!(pinned.headers["x-exeml-model"], "v2");

        let bad = Request::put("/v1/split")
            .body(Body::from(
                json!({"split": {"v1": 60, "v2": 60}}).to_string(),
            ))
            .expect("request");
        assert_eq!(send(&service, bad).await.status, StatusCode::BAD_REQUEST);
        let swap = Request::put("/v1/split")
            .body(Body::from(
                json!({"split": {"v1": 0, "v2": 100}}).to_string(),
            ))
            .expect("request");
        let reply = send(&service, swap).await;
        assert_eq!(reply.status, StatusCode::OK);
        for _ in 0..20 {
            let reply = send(&service, post_json("/v1/predict", body.clone())).await;
            assert_eq!(reply.headers["x-exeml-model"], "v2");
        }
    });
}

/// A model that answers file uploads after a delay, panics on request, and records the names
/// it was given: exercises the service without a trained image model.
struct Probe {
    delay: Duration,
    names: Mutex<Vec<String>>,
}

impl Servable for Probe {
    fn serve_info(&self) -> ServeInfo {
        ServeInfo {
            task: TaskKind::Image,
            problem: ProblemType::Multiclass,
            input: InputKind::File,
            labels: vec!["cat".into(), "dog".into()],
            fields: Vec::new(),
            example: Value::Null,
            embedding_dim: None,
        }
    }

    fn respond(&self, input: ServeInput<'_>) -> Result<Answer> {
        std::thread::sleep(self.delay);
        let ServeInput::File { name, bytes } = input else {
            return Err(exeml::Error::invalid("body", "expected a file"));
        };
        if bytes == b"panic" {
            panic!("a bug in a model");
        }
        self.names.lock().expect("lock").push(name.to_string());
        Ok(Answer {
            body: json!({"predicted_label": "cat", "scores": [["cat", "1.000"]]}),
            predicted: vec!["cat".into()],
        })
    }
}

fn probe_service(delay: Duration, config: ServeConfig) -> (Service, Arc<Probe>) {
    let probe = Arc::new(Probe {
        delay,
        names: Mutex::new(Vec::new()),
    });
    let servable: Arc<dyn Servable> = probe.clone();
    let service = service_with(
        config,
        vec![DeployedModel::new("img", "probe", servable, 100)],
    );
    (service, probe)
}

fn multipart_request(uri: &str, file_name: &str, bytes: &[u8]) -> Request<Body> {
    let boundary = "exemlboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Request::post(uri)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("request")
}

#[test]
fn file_uploads_reach_the_model_with_harmless_names_and_panics_become_500() {
    rt().block_on(async {
        let (service, probe) = probe_service(Duration::ZERO, ServeConfig::default());
        let reply = send(
            &service,
            multipart_request("/v1/predict", "../../etc/passwd", b"img"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["predicted_label"], "cat");
        assert_eq!(probe.names.lock().expect("lock").as_slice(), ["passwd"]);
        let reply = send(&service, multipart_request("/v1/predict", "a.png", b"")).await;
        assert_eq!(reply.error_field().as_deref(), Some("file"));
        let reply = send(&service, post_json("/v1/predict", "{}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let broken = Request::post("/v1/predict")
            .header("content-type", "multipart/form-data; boundary=zzz")
            .body(Body::from("--zzz\r\ngarbage"))
            .expect("request");
        assert_eq!(send(&service, broken).await.status, StatusCode::BAD_REQUEST);
        let reply = send(
            &service,
            multipart_request("/v1/predict", "p.png", b"panic"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.json()["error"]["code"], "internal");
        let reply = send(&service, multipart_request("/v1/predict", "ok.png", b"img")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "the service survived the panic"
        );
    });
}

#[test]
fn saturation_gives_503_with_retry_after_and_slow_requests_time_out() {
    rt().block_on(async {
        let config = ServeConfig {
            replicas: 1,
            max_pending: 1,
            ..ServeConfig::default()
        };
        let (service, _) = probe_service(Duration::from_millis(600), config);
        let first = {
            let service = service.clone();
            tokio::spawn(async move {
                send(&service, multipart_request("/v1/predict", "a.png", b"img"))
                    .await
                    .status
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let second = send(&service, multipart_request("/v1/predict", "b.png", b"img")).await;
        assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers["retry-after"], "1");
        assert_eq!(first.await.expect("join"), StatusCode::OK);

        let config = ServeConfig {
            request_timeout: Duration::from_millis(100),
            ..ServeConfig::default()
        };
        let (service, _) = probe_service(Duration::from_millis(800), config);
        let reply = send(&service, multipart_request("/v1/predict", "a.png", b"img")).await;
        assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(reply.json()["error"]["code"], "timeout");
    });
}

/// A raw HTTP/1.1 exchange over a socket (no client crate needed for a test this small).
fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn a_stopped_service_finishes_the_requests_in_flight() {
    let runtime = rt();
    let (service, _) = probe_service(Duration::from_millis(500), ServeConfig::default());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let running = {
        let service = service.clone();
        runtime.spawn(async move { service.run(listener).await })
    };
    let client = std::thread::spawn({
        let address = address.clone();
        move || {
            let boundary = "b";
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\nimg\r\n--{boundary}--\r\n"
            );
            let mut stream = std::net::TcpStream::connect(&address).expect("connect");
            write!(
                stream,
                "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .expect("write");
            let mut reply = String::new();
            stream.read_to_string(&mut reply).expect("read");
            reply
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    service.stop();
    let reply = client.join().expect("client");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    runtime
        .block_on(running)
        .expect("join")
        .expect("clean stop");
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "no longer listening"
    );
}

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &[&str], workspace: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .env("EXEML_HOME", workspace)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn exeml serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the URL");
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Server { child, address }
}

#[test]
fn the_binary_serves_a_model_folder_and_stops_on_sigterm_and_auto_stop() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let dir = iris_model_dir().to_str().expect("utf-8");
    let started = Instant::now();
    let mut server = start_server(&["--model", dir, "--replicas", "2"], workspace.path());
    assert!(started.elapsed() < Duration::from_secs(30));
    let (status, body) = http(&server.address, "GET", "/health", "");
    assert_eq!(status, 200, "{body}");
    let request = json!({"data": {"req_data": [iris_row()]}}).to_string();
    let (status, body) = http(&server.address, "POST", "/v1/predict", &request);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert!(
        answer["data"]["resp_data"][0]["predict"].is_string(),
        "{answer}"
    );
    let (status, _) = http(
        &server.address,
        "POST",
        "/v1/models/iris-model/predict",
        &request,
    );
    assert_eq!(status, 200);

    #[cfg(unix)]
    {
        let pid = server.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = server.child.wait().expect("wait");
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
    }

    let mut server = start_server(&["--model", dir, "--auto-stop", "1s"], workspace.path());
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "a clean exit at the auto-stop: {status}");
}

#[test]
fn the_binary_refuses_bad_splits_and_missing_models() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let dir = iris_model_dir().to_str().expect("utf-8");
    let a = format!("{dir}=50");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", &a, "--model", &a], "two models are named"),
        (vec!["--model", "no-such-folder"], "no-such-folder"),
        (vec!["--model", "0.0.9", "--project", "nope"], "nope"),
        (
            vec!["--model", dir, "--auto-stop", "30h"],
            "longer than 24 h",
        ),
        (vec!["--model", dir, "--api-key", "short"], "--api-key"),
    ];
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_exeml"))
            .arg("serve")
            .args(&args)
            .args(["--port", "0"])
            .env("EXEML_HOME", workspace.path())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "`{needle}` in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn serving_a_project_version_marks_it_deployed_until_the_service_stops() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let store = exeml::core::store::Store::open(workspace.path()).expect("store");
    let project = exeml::Project::create(store, "flowers", TaskKind::Tabular, "").expect("project");
    project
        .import_table(&data("iris.csv"), Some("species"), Default::default())
        .expect("import");
    let predictor = exeml::TabularPredictor::new("species").families(["linear"]);
    let budget = exeml::Budget::new(Duration::from_secs(3));
    let version = project
        .train(None, &predictor, None, &budget, &exeml::core::Silent)
        .expect("train");
    assert_eq!(version.version, "0.0.1");

    let list = |workspace: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_exeml"))
            .args(["model", "list", "--project", "flowers"])
            .env("EXEML_HOME", workspace)
            .output()
            .expect("list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut server = start_server(
        &["--project", "flowers", "--model", "0.0.1"],
        workspace.path(),
    );
    assert!(list(workspace.path()).contains("[deployed]"));
    let refused = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .args(["model", "delete", "--project", "flowers", "0.0.1", "--yes"])
        .env("EXEML_HOME", workspace.path())
        .output()
        .expect("delete");
    assert!(
        !refused.status.success(),
        "a deployed version is not deleted"
    );
    let request = json!({"data": {"req_data": [iris_row()]}}).to_string();
    let (status, _) = http(
        &server.address,
        "POST",
        "/v1/models/0.0.1/predict",
        &request,
    );
    assert_eq!(status, 200);
    #[cfg(unix)]
    {
        let pid = server.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success());
        assert!(server.child.wait().expect("wait").success());
        assert!(!list(workspace.path()).contains("[deployed]"));
    }
}

/// A PNG that claims `side`×`side` pixels and holds none: an image bomb's header.
fn png_bomb(side: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for chunk in [ihdr, b"IDAT".to_vec(), b"IEND".to_vec()] {
        out.extend_from_slice(&((chunk.len() - 4) as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

#[test]
fn image_uploads_are_classified_and_hostile_images_refused() {
    use rand::SeedableRng;
    let Some(dir) = crate::image::model_dir() else {
        return;
    };
    let model = load_servable(dir).expect("load");
    assert_eq!(model.serve_info().input, InputKind::File);
    assert_eq!(model.serve_info().task, TaskKind::Image);
    let service = service_with(
        ServeConfig::default(),
        vec![DeployedModel::new("0.0.1", "shapes", model, 100)],
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut png = std::io::Cursor::new(Vec::new());
    crate::image::picture("stripes", &mut rng)
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("encode");
    let png = png.into_inner();
    rt().block_on(async {
        let reply = send(&service, multipart_request("/v1/predict", "s.png", &png)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let body = reply.json();
        assert!(body["predicted_label"].is_string(), "{body}");
        assert_eq!(body["scores"].as_array().map(Vec::len), Some(3));
        for (name, bytes) in [
            ("half.png", png[..png.len() / 2].to_vec()),
            ("bomb.png", png_bomb(100_000)),
            ("text.jpg", b"GIF89a or rather not an image".to_vec()),
        ] {
            let reply = send(&service, multipart_request("/v1/predict", name, &bytes)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
            let message = reply.json()["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(message.contains(name), "{name}: {message}");
        }
        let reply = send(&service, post_json("/v1/predict", r#"{"data": 1}"#)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);

        // Embeddings: the library's, by split or by name; hostile files refused the same way.
        let expected = exeml::vision::ImageModel::load(dir)
            .expect("load")
            .embed_bytes("s.png", &png)
            .expect("embed");
        for uri in ["/v1/embed", "/v1/models/0.0.1/embed"] {
            let reply = send(&service, multipart_request(uri, "s.png", &png)).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri}");
            let got: Vec<f32> = reply.json()["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(got.len(), expected.len());
            assert!(
                got.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5),
                "{uri}"
            );
        }
        let reply = send(
            &service,
            multipart_request("/v1/embed", "bomb.png", &png_bomb(100_000)),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let models = send(&service, get("/v1/models")).await.json();
        assert_eq!(models["models"][0]["embed_url"], "/v1/models/0.0.1/embed");
        assert_eq!(
            models["models"][0]["embedding_dim"].as_u64(),
            Some(expected.len() as u64)
        );
    });
}
