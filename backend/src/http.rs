//! The HTTP API: /healthz, /readyz, POST /api/events, GET /api/stats, GET /api/health, /metrics.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::{one_line, status_text, AppState, IngestError, Unavailable};
use crate::event::{self, Event};
use crate::proto::analytics::{KindStats, StatsRequest, StatsResponse};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/events", post(post_event))
        .route("/api/stats", get(get_stats))
        .route("/api/health", get(get_health))
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

/// `503` + `Retry-After`: the events were not all stored; the client should send them again.
fn unavailable(u: &Unavailable) -> Response {
    let mut res = error(StatusCode::SERVICE_UNAVAILABLE, &u.message);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(u.retry_after_secs));
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
    let nats = match &r.nats {
        Ok(s) => json!({ "ready": true, "stream": s.name, "messages": s.messages, "bytes": s.bytes }),
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
        "checks": { "nats": nats, "analytics-engine": check(&r.analytics) },
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
        Err(IngestError::Unavailable(u)) => unavailable(&u),
    }
}

/// Largest `series_minutes` (one day): bounds the response to 1440 points per kind.
pub const MAX_SERIES_MINUTES: u32 = 1440;

/// Parses `?kind=&window_seconds=&series_minutes=` (all optional); the error names the parameter.
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
    let series_minutes =
        match q.get("series_minutes").map(|s| s.trim()) {
            None | Some("") => 0,
            Some(s) => s.parse::<u32>().ok().filter(|m| *m <= MAX_SERIES_MINUTES).ok_or_else(|| {
                format!("series_minutes: must be an integer from 0 to {MAX_SERIES_MINUTES}, got {s:?}")
            })?,
        };
    Ok(StatsRequest { kind, window_seconds, series_minutes })
}

/// The JSON of `/api/stats`; each kind has `per_minute` only when the request asked for a series
/// (`series_minutes > 0`), so the answer to a plain request is unchanged.
pub fn stats_json(r: &StatsResponse, series: bool) -> Value {
    let kinds: Vec<Value> = r
        .kinds
        .iter()
        .map(|k: &KindStats| {
            let mut v = json!({
                "kind": k.kind, "count": k.count, "mean": k.mean, "min": k.min, "max": k.max,
                "p50": k.p50, "p95": k.p95, "stddev": k.stddev,
            });
            if series {
                let points: Vec<Value> = k
                    .per_minute
                    .iter()
                    .map(|m| json!({ "minute_unix_ms": m.minute_unix_ms, "count": m.count }))
                    .collect();
                v["per_minute"] = Value::Array(points);
            }
            v
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
    let series = req.series_minutes > 0;
    let mut client = state.analytics();
    match client.get_stats(req).await {
        Ok(res) => Json(stats_json(res.get_ref(), series)).into_response(),
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

/// Always `200`: the body says which service is not ok (`src/health.rs`).
async fn get_health(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "services": crate::health::services(&state).await })).into_response()
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
        assert_eq!(
            parse_stats_query(&q(&[])).unwrap(),
            StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 0 }
        );
        assert_eq!(
            parse_stats_query(&q(&[("kind", "page_view"), ("window_seconds", "60"), ("series_minutes", "1440")]))
                .unwrap(),
            StatsRequest { kind: "page_view".into(), window_seconds: 60, series_minutes: 1440 }
        );
    }

    #[test]
    fn stats_query_errors_name_the_parameter() {
        for (k, v) in [
            ("window_seconds", "-1"),
            ("window_seconds", "abc"),
            ("window_seconds", "4294967296"),
            ("kind", "Bad Kind"),
            ("series_minutes", "-1"),
            ("series_minutes", "1441"),
            ("series_minutes", "x"),
        ] {
            let e = parse_stats_query(&q(&[(k, v)])).unwrap_err();
            assert!(e.starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn per_minute_only_when_asked() {
        use crate::proto::analytics::MinuteCount;
        let r = StatsResponse {
            total_events: 3,
            kinds: vec![KindStats {
                kind: "a".into(),
                count: 3,
                per_minute: vec![
                    MinuteCount { minute_unix_ms: 60_000, count: 0 },
                    MinuteCount { minute_unix_ms: 120_000, count: 3 },
                ],
                ..Default::default()
            }],
            computed_at_unix_ms: 1,
        };
        assert!(stats_json(&r, false)["kinds"][0].get("per_minute").is_none());
        assert_eq!(
            stats_json(&r, true)["kinds"][0]["per_minute"],
            json!([{"minute_unix_ms": 60_000, "count": 0}, {"minute_unix_ms": 120_000, "count": 3}])
        );
    }
}
