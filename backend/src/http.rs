//! The HTTP API: /healthz, /readyz, POST /api/events, GET /api/stats, /metrics.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::{one_line, status_text, AppState, IngestError};
use crate::event::{self, Event};
use crate::proto::analytics::{KindStats, StatsRequest, StatsResponse};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/events", post(post_event))
        .route("/api/stats", get(get_stats))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn error(status: StatusCode, message: impl AsRef<str>) -> Response {
    (status, Json(json!({ "error": one_line(message.as_ref()) }))).into_response()
}

/// Counts every request by method, route template and status, and times it.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    state.metrics.observe_http(&method, &route, res.status().as_u16(), elapsed);
    tracing::debug!(%method, %route, status = res.status().as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "http request");
    res
}

async fn healthz() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let r = state.readiness().await;
    let check = |c: &Result<(), String>| match c {
        Ok(()) => json!({ "ready": true }),
        Err(e) => json!({ "ready": false, "error": e }),
    };
    let mut not_ready = Vec::new();
    if r.nats.is_err() {
        not_ready.push("nats");
    }
    if r.analytics.is_err() {
        not_ready.push("analytics-engine");
    }
    let body = json!({
        "ready": r.ready(),
        "not_ready": not_ready,
        "checks": { "nats": check(&r.nats), "analytics-engine": check(&r.analytics) },
    });
    let status = if r.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn post_event(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let ev = match event::parse_json(&body) {
        Ok(ev) => ev,
        Err(e) => {
            state.metrics.events_rejected(1);
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match state.ingest(vec![ev], false).await {
        Ok(ids) => (StatusCode::ACCEPTED, Json(json!({ "id": ids[0] }))).into_response(),
        Err(IngestError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(IngestError::Unavailable(m)) => error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// Parses `?kind=&window_seconds=` (both optional); the error names the parameter.
pub fn parse_stats_query(q: &HashMap<String, String>) -> Result<StatsRequest, String> {
    let kind = q.get("kind").map(|s| s.trim().to_string()).unwrap_or_default();
    if !kind.is_empty() {
        let probe = Event { kind: kind.clone(), ..Default::default() };
        event::validate(&probe).map_err(|e| e.to_string())?;
    }
    let window_seconds = match q.get("window_seconds").map(|s| s.trim()) {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| format!("window_seconds: must be an integer from 0 to {}, got {s:?}", u32::MAX))?,
    };
    Ok(StatsRequest { kind, window_seconds })
}

pub fn stats_json(r: &StatsResponse) -> Value {
    let kinds: Vec<Value> = r
        .kinds
        .iter()
        .map(|k: &KindStats| {
            json!({
                "kind": k.kind, "count": k.count, "mean": k.mean, "min": k.min, "max": k.max,
                "p50": k.p50, "p95": k.p95, "stddev": k.stddev,
            })
        })
        .collect();
    json!({
        "total_events": r.total_events,
        "kinds": kinds,
        "computed_at_unix_ms": r.computed_at_unix_ms,
    })
}

async fn get_stats(State(state): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let req = match parse_stats_query(&q) {
        Ok(r) => r,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let mut client = state.analytics();
    match client.get_stats(req).await {
        Ok(res) => Json(stats_json(res.get_ref())).into_response(),
        Err(status) => {
            let code = match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(error = %status_text(&status), "analytics-engine GetStats failed");
            error(code, format!("analytics-engine: {}", status_text(&status)))
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn stats_query_defaults_and_values() {
        assert_eq!(parse_stats_query(&q(&[])).unwrap(), StatsRequest { kind: String::new(), window_seconds: 0 });
        assert_eq!(
            parse_stats_query(&q(&[("kind", "page_view"), ("window_seconds", "60")])).unwrap(),
            StatsRequest { kind: "page_view".into(), window_seconds: 60 }
        );
    }

    #[test]
    fn stats_query_errors_name_the_parameter() {
        for (k, v) in [
            ("window_seconds", "-1"),
            ("window_seconds", "abc"),
            ("window_seconds", "4294967296"),
            ("kind", "Bad Kind"),
        ] {
            let e = parse_stats_query(&q(&[(k, v)])).unwrap_err();
            assert!(e.starts_with(k), "{k}={v}: {e}");
        }
    }
}
