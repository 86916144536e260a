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

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let nats = shared.nats.ready();
    let clickhouse = shared.clickhouse.ping().await.map_err(|e| format!("{e:#}"));
    let python = if shared.python.is_alive() { Ok(()) } else { Err("process not running".to_string()) };
    let checks = [("nats", nats), ("clickhouse", clickhouse), ("python", python)];
    let not_ready: Vec<&str> = checks.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| *n).collect();
    let mut detail = serde_json::Map::new();
    for (name, r) in &checks {
        let v = match r {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e}),
        };
        detail.insert((*name).to_string(), v);
    }
    let ready = not_ready.is_empty();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not ready" },
            "not_ready": not_ready,
            "checks": detail,
        })),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render()).into_response()
}
