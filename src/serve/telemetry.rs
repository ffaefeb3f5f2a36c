//! The service's Prometheus metrics (`GET /metrics`): requests, errors and latency per model
//! version, the prediction distribution, saturation and the auto-stop countdown.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s in factors of 2.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric of one service, registered once.
pub struct Telemetry {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    predictions: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    in_flight: Gauge,
    traffic: Family<Labels, Gauge>,
    auto_stop_remaining: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exeml");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Prediction requests by model version and HTTP status",
            requests.clone(),
        );
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Prediction request latency by model version",
            latency.clone(),
        );
        let predictions = Family::<Labels, Counter>::default();
        registry.register(
            "predictions",
            "Predicted classes by model version (the prediction distribution)",
            predictions.clone(),
        );
        let rejected = Family::<Labels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Requests refused before reaching a model, by reason",
            rejected.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Prediction requests being served now",
            in_flight.clone(),
        );
        let traffic = Family::<Labels, Gauge>::default();
        registry.register(
            "traffic_percent",
            "Share of /v1/predict traffic of each model version",
            traffic.clone(),
        );
        let auto_stop_remaining = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "auto_stop_remaining_seconds",
            "Seconds until the service stops by itself (-1: no auto-stop)",
            auto_stop_remaining.clone(),
        );
        auto_stop_remaining.set(-1.0);
        Telemetry {
            registry,
            requests,
            latency,
            predictions,
            rejected,
            in_flight,
            traffic,
            auto_stop_remaining,
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Telemetry {
    /// One finished prediction request of `model` with its HTTP status and duration.
    pub fn request(&self, model: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.requests
            .get_or_create(&labels(&[("model", model), ("status", &status)]))
            .inc();
        self.latency
            .get_or_create(&labels(&[("model", model)]))
            .observe(elapsed.as_secs_f64());
    }

    /// The classes `model` predicted for one request.
    pub fn predicted(&self, model: &str, classes: &[String]) {
        for class in classes {
            self.predictions
                .get_or_create(&labels(&[("model", model), ("label", class)]))
                .inc();
        }
    }

    /// A request refused before reaching a model (`unauthorized`, `saturated`, `timeout`…).
    pub fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// The gauge of requests being served now.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Record the current traffic split.
    pub fn split(&self, shares: &[(String, u32)]) {
        self.traffic.clear();
        for (model, percent) in shares {
            self.traffic
                .get_or_create(&labels(&[("model", model)]))
                .set(i64::from(*percent));
        }
    }

    /// The metrics in the OpenMetrics text format, with the auto-stop countdown refreshed.
    pub fn render(&self, auto_stop_remaining: Option<Duration>) -> String {
        self.auto_stop_remaining
            .set(auto_stop_remaining.map_or(-1.0, |d| d.as_secs_f64()));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_carry_counts_latency_and_distribution() {
        let t = Telemetry::default();
        t.request("0.0.1", 200, Duration::from_micros(300));
        t.request("0.0.1", 400, Duration::from_millis(2));
        t.predicted("0.0.1", &["yes".into(), "no".into(), "yes".into()]);
        t.rejected("saturated");
        t.split(&[("0.0.1".into(), 100)]);
        let text = t.render(Some(Duration::from_secs(60)));
        assert!(
            text.contains(r#"exeml_requests_total{model="0.0.1",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"exeml_predictions_total{model="0.0.1",label="yes"} 2"#));
        assert!(text.contains(r#"exeml_rejected_requests_total{reason="saturated"} 1"#));
        assert!(text.contains(r#"exeml_request_duration_seconds_count{model="0.0.1"} 2"#));
        assert!(text.contains(r#"exeml_traffic_percent{model="0.0.1"} 100"#));
        assert!(text.contains("exeml_auto_stop_remaining_seconds 60"));
    }
}
