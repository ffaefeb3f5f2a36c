//! What stands in front of the models: the API key check, the concurrency gate (503 when
//! saturated) and the per-request timeout.

use crate::serve::reply::ApiError;
use crate::serve::Shared;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The SHA-256 of an API key: keys are compared as digests, in constant time, so neither the
/// key's content nor its length leaks through timing.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        return text.strip_prefix("Bearer ").map(str::trim);
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

/// Middleware: 401 unless the request carries the service's API key (when one is set).
pub async fn require_key(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &shared.key_digest else {
        return next.run(request).await;
    };
    let ok = presented_key(&request)
        .map(|key| bool::from(key_digest(key).ct_eq(expected)))
        .unwrap_or(false);
    if ok {
        next.run(request).await
    } else {
        shared.telemetry.rejected("unauthorized");
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

/// Middleware: a request that takes longer than the configured timeout (reading a slow body
/// included) gets 408; the server never waits on a stalled client forever.
pub async fn time_limit(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(shared.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            shared.telemetry.rejected("timeout");
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request took longer than {:.1} s",
                    shared.config.request_timeout.as_secs_f64()
                ),
            )
            .into_response()
        }
    }
}

/// Bounds the requests inside the service (`max_pending`) and the predictions running at once
/// (`replicas`).
#[derive(Debug)]
pub struct Gate {
    pending: AtomicUsize,
    max_pending: usize,
    workers: Arc<Semaphore>,
}

/// A request's place inside the gate; leaving frees it.
#[derive(Debug)]
pub struct Admission<'a> {
    gate: &'a Gate,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.gate.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// A gate for `replicas` workers and `max_pending` requests.
    pub fn new(replicas: usize, max_pending: usize) -> Self {
        Gate {
            pending: AtomicUsize::new(0),
            max_pending,
            workers: Arc::new(Semaphore::new(replicas)),
        }
    }

    /// Enter, or `None` when the service is saturated.
    pub fn admit(&self) -> Option<Admission<'_>> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let admission = Admission { gate: self };
        (before < self.max_pending).then_some(admission)
    }

    /// Wait for a free worker.
    pub async fn worker(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .expect("the worker semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_limit_and_frees_on_leave() {
        let gate = Gate::new(1, 2);
        let a = gate.admit();
        let b = gate.admit();
        assert!(a.is_some() && b.is_some());
        assert!(gate.admit().is_none());
        drop(a);
        assert!(gate.admit().is_some());
    }

    #[test]
    fn keys_compare_by_digest() {
        assert_eq!(key_digest("secret-key"), key_digest("secret-key"));
        assert_ne!(key_digest("secret-key"), key_digest("secret-kez"));
    }
}
