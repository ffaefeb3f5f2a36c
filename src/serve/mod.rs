//! The real-time HTTP service (SPEC §4): one or more model versions of one task behind a
//! traffic split, with health, readiness, Prometheus metrics, an API key, limits and a test page.
//!
//! Run it with `exeml serve`, or mount [`Service::router`] in your own axum application:
//!
//! ```no_run
//! use exeml::serve::{load_servable, DeployedModel, Deployment, ServeConfig, Service};
//! # async fn run() -> exeml::Result<()> {
//! let model = load_servable("churn-model".as_ref())?;
//! let service = Service::new(ServeConfig::default())?;
//! service.deploy(Deployment::new(vec![DeployedModel::new("0.0.1", "churn-model", model, 100)])?);
//! let app = axum::Router::new().nest("/churn", service.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await
//!     .map_err(|e| exeml::Error::io("127.0.0.1:8080", e))?;
//! axum::serve(listener, app).await.map_err(|e| exeml::Error::io("server", e))?;
//! # Ok(()) }
//! ```
//!
//! Replicas are **in-process workers**: a loaded model is immutable and thread-safe, so every
//! worker shares one copy of it and `--replicas N` bounds how many predictions run at once on
//! tokio's blocking pool. Worker processes would multiply the model's memory and add a hop of
//! inter-process latency to a prediction that takes microseconds; a panic in a model is caught
//! and answered with 500, so process isolation buys little.

mod config;
mod deployment;
mod guard;
mod handlers;
mod page;
mod reply;
mod telemetry;

pub use config::{parse_auto_stop, traffic_shares, ModelSpec, ServeConfig, MAX_AUTO_STOP};
pub use deployment::{load_servable, DeployedModel, Deployment};
pub use reply::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use exeml_core::Result;
use guard::Gate;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use telemetry::Telemetry;
use tokio::sync::watch;

/// A running service's shared state.
struct Shared {
    config: ServeConfig,
    key_digest: Option<[u8; 32]>,
    deployment: RwLock<Arc<Deployment>>,
    gate: Gate,
    telemetry: Telemetry,
    started: Instant,
    stop_at: Option<Instant>,
    stop: watch::Sender<bool>,
}

impl Shared {
    fn deployment(&self) -> Arc<Deployment> {
        Arc::clone(&self.deployment.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Swap in `deployment`; requests already running keep the one they hold.
    fn install(&self, deployment: Deployment) {
        let shares: Vec<(String, u32)> = deployment
            .models()
            .iter()
            .map(|m| (m.name.clone(), m.percent))
            .collect();
        *self.deployment.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(deployment);
        self.telemetry.split(&shares);
    }

    fn auto_stop_remaining(&self) -> Option<Duration> {
        self.stop_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// A service: models, limits and metrics. Cheap to clone (all clones are the same service).
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.shared.config)
            .field("deployment", &self.shared.deployment())
            .finish()
    }
}

impl Service {
    /// A service with no model yet (`/ready` says 503 until [`Service::deploy`]); the auto-stop
    /// countdown starts now.
    pub fn new(config: ServeConfig) -> Result<Self> {
        config.check()?;
        let (stop, _) = watch::channel(false);
        let now = Instant::now();
        let shared = Shared {
            key_digest: config.api_key.as_deref().map(guard::key_digest),
            gate: Gate::new(config.replicas, config.max_pending),
            telemetry: Telemetry::default(),
            deployment: RwLock::new(Arc::new(Deployment::default())),
            started: now,
            stop_at: config.auto_stop.map(|d| now + d),
            stop,
            config,
        };
        Ok(Service {
            shared: Arc::new(shared),
        })
    }

    /// Serve `deployment` from now on. Requests already running finish on the models they
    /// started with; nothing is dropped.
    pub fn deploy(&self, deployment: Deployment) {
        self.shared.install(deployment);
    }

    /// Change the traffic split among the served models (`name → percent`, summing to 100).
    pub fn set_split(&self, split: &[(String, u32)]) -> Result<()> {
        let next = self.shared.deployment().with_split(split)?;
        self.deploy(next);
        Ok(())
    }

    /// The models being served.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.shared.deployment()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.shared.config
    }

    /// Time left before the auto-stop, if one is set.
    pub fn auto_stop_remaining(&self) -> Option<Duration> {
        self.shared.auto_stop_remaining()
    }

    /// Ask [`Service::run`] to stop: it stops accepting connections and returns once the
    /// requests in flight are answered.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// Resolves when the service should stop: [`Service::stop`] was called or the auto-stop
    /// time came.
    pub async fn stopped(&self) {
        let mut stop = self.shared.stop.subscribe();
        let requested = async {
            // An error means every sender is gone, which cannot happen while `self` lives.
            let _ = stop.wait_for(|s| *s).await;
        };
        match self.shared.stop_at {
            Some(at) => {
                tokio::select! {
                    _ = requested => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => requested.await,
        }
    }

    /// The axum router of the service, to run with [`Service::run`] or mount in an application.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        let protected = Router::new()
            .route("/v1/predict", post(handlers::predict))
            .route("/v1/models/{name}/predict", post(handlers::predict_with))
            .route("/v1/embed", post(handlers::embed))
            .route("/v1/models/{name}/embed", post(handlers::embed_with))
            .route("/v1/models", get(handlers::models))
            .route("/v1/split", put(handlers::split))
            .route("/metrics", get(handlers::metrics))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                guard::require_key,
            ));
        Router::new()
            .route("/", get(page::index))
            .route("/page.js", get(page::script))
            .route("/health", get(handlers::health))
            .route("/ready", get(handlers::ready))
            .merge(protected)
            .fallback(handlers::not_found)
            .layer(DefaultBodyLimit::max(shared.config.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&shared),
                guard::time_limit,
            ))
            .with_state(shared)
    }

    /// Serve on `listener` until [`Service::stopped`] resolves, then finish the requests in
    /// flight and return.
    pub async fn run(&self, listener: tokio::net::TcpListener) -> Result<()> {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "listener".into());
        let service = self.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { service.stopped().await })
            .await
            .map_err(|e| exeml_core::Error::io(address, e))
    }
}
