//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}

/// Ready = the engine can do its job: NATS connected with the consumer bound, ClickHouse
/// answering with the schema in place. Python is reported but does not gate readiness:
/// neither ingestion nor `GetStats` depends on it any more.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let report = crate::health::report(&shared).await;
    let mut not_ready = Vec::new();
    let mut checks = serde_json::Map::new();
    for d in &report.dependencies {
        let mut ok = d.ok;
        let mut detail = d.detail.clone();
        if d.name == "clickhouse" && ok && !report.schema_ready {
            ok = false;
            detail = format!("schema not ready ({detail})");
        }
        if !ok && d.name != "python" {
            not_ready.push(d.name);
        }
        let v = if ok { json!({"ok": true, "detail": detail}) } else { json!({"ok": false, "error": detail}) };
        checks.insert(d.name.to_string(), v);
    }
    let ready = not_ready.is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not ready" },
            "not_ready": not_ready,
            "checks": checks,
        })),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render()).into_response()
}
