//! Prometheus metrics: one recorder per process, request counts and durations per route,
//! and the request timeout (so a timed-out request is counted too).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed (a test harness); we still render ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A label value that lives as long as the process, allocated once per distinct value
/// (route templates and status codes: a few hundred at most, never client-chosen text), so
/// counting a request allocates nothing.
fn interned(value: &str) -> &'static str {
    static SEEN: OnceLock<std::sync::RwLock<std::collections::HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(found) = seen.read().expect("label cache").get(value) {
        return found;
    }
    let mut write = seen.write().expect("label cache");
    if let Some(found) = write.get(value) {
        return found;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    write.insert(leaked);
    leaked
}

pub async fn track(req: Request, next: Next, timeout: Duration) -> Response {
    let start = Instant::now();
    // Methods are any token a client sends: only the standard ones get a label of their own.
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| interned(p.as_str()));
    let response = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => crate::timed_out(),
    };
    let status = interned(response.status().as_str());
    metrics::counter!("switchboard_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    metrics::histogram!("switchboard_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
