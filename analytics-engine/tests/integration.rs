//! End-to-end tests against real nats-server and clickhouse-server processes and the real
//! Python statistics component.

mod common;

use std::time::Duration;

use analytics_engine::metrics::Metrics;
use analytics_engine::pb::{PingRequest, StatsRequest};
use common::*;
use serde_json::{json, Value};

fn event(id: &str, kind: &str, value: f64, ts: u64) -> String {
    json!({"id": id, "kind": kind, "value": value, "source": "test", "attributes": {"n": id}, "ts_unix_ms": ts})
        .to_string()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_from_nats_to_clickhouse_to_stats() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    // A fresh server: the database and table do not exist yet.
    assert_eq!(ch.query("SELECT count() FROM system.databases WHERE name = 'v7'").await.unwrap().trim(), "0");

    let engine = Engine::start(test_config(&nats.url(), &ch.url())).await;
    wait_until("readyz 200", Duration::from_secs(30), || async { engine.get("/readyz").await.0 == 200 }).await;
    // Created at start, before any event arrives.
    wait_until("database and table created", Duration::from_secs(10), || async {
        ch.query("EXISTS TABLE v7.events").await.map(|s| s.trim() == "1").unwrap_or(false)
    })
    .await;

    let now = now_ms();
    let mut payloads: Vec<String> = (1..=10).map(|i| event(&format!("pv{i}"), "page_view", i as f64, now)).collect();
    payloads.push(event("c-old", "click", 2.0, now - 3_600_000));
    payloads.push(event("c-new", "click", 4.0, now));
    payloads.push("this is not json".to_string());
    payloads.push(json!({"id": "bad1", "kind": "Bad Kind", "value": 1.0}).to_string());
    payloads.push(json!({"id": "bad2", "kind": "nokind_value"}).to_string());
    publish(&nats.url(), &payloads).await;

    let m = engine.shared.metrics.clone();
    wait_until("12 events stored", Duration::from_secs(20), || {
        let m = m.clone();
        async move { Metrics::get(&m.events_stored) == 12 && Metrics::get(&m.events_invalid) == 3 }
    })
    .await;
    assert_eq!(Metrics::get(&m.events_received), 15);
    assert_eq!(ch.query("SELECT count() FROM v7.events").await.unwrap().trim(), "12");
    assert_eq!(
        ch.query("SELECT count() FROM v7.events WHERE id LIKE 'bad%' OR kind = 'nokind_value'").await.unwrap().trim(),
        "0",
        "invalid payloads are not stored"
    );
    let row: Value = serde_json::from_str(
        ch.query("SELECT id, kind, value, source, attributes, ts_unix_ms FROM v7.events WHERE id = 'c-old' FORMAT JSONEachRow")
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(row["kind"], "click");
    assert_eq!(row["source"], "test");
    assert_eq!(row["attributes"], r#"{"n":"c-old"}"#);
    assert_eq!(row["ts_unix_ms"], (now - 3_600_000).to_string());

    // GetStats over gRPC, computed by the real Python component.
    let mut client = engine.grpc_client().await;
    let all = client.get_stats(StatsRequest { kind: String::new(), window_seconds: 0 }).await.unwrap().into_inner();
    assert_eq!(all.total_events, 12);
    assert!(all.computed_at_unix_ms as u64 >= now);
    let kinds: Vec<&str> = all.kinds.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(kinds, ["click", "page_view"]);
    let pv = &all.kinds[1];
    assert_eq!(pv.count, 10);
    assert!(approx(pv.mean, 5.5), "{pv:?}");
    assert!(approx(pv.p50, 5.5), "{pv:?}");
    assert!(approx(pv.p95, 9.55), "{pv:?}");
    assert!(approx(pv.min, 1.0) && approx(pv.max, 10.0), "{pv:?}");
    assert!(approx(pv.stddev, 2.8722813232690143), "{pv:?}");
    let click = &all.kinds[0];
    assert_eq!(click.count, 2);
    assert!(approx(click.mean, 3.0) && approx(click.p50, 3.0), "{click:?}");

    let only_click =
        client.get_stats(StatsRequest { kind: "click".into(), window_seconds: 0 }).await.unwrap().into_inner();
    assert_eq!(only_click.total_events, 2);
    assert_eq!(only_click.kinds.len(), 1);

    let recent =
        client.get_stats(StatsRequest { kind: String::new(), window_seconds: 600 }).await.unwrap().into_inner();
    assert_eq!(recent.total_events, 11, "the hour-old click is outside a 10 minute window");
    let recent_click = recent.kinds.iter().find(|k| k.kind == "click").unwrap();
    assert_eq!(recent_click.count, 1);
    assert!(approx(recent_click.mean, 4.0));

    let none =
        client.get_stats(StatsRequest { kind: "never_seen".into(), window_seconds: 0 }).await.unwrap().into_inner();
    assert_eq!(none.total_events, 0);
    assert!(none.kinds.is_empty());

    let err = client.get_stats(StatsRequest { kind: "Bad Kind".into(), window_seconds: 0 }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let ping = client.ping(PingRequest {}).await.unwrap().into_inner();
    assert_eq!(ping.events_ingested, 12);
    assert_eq!(ping.version, env!("CARGO_PKG_VERSION"));

    // The Python process is restarted when it dies.
    let pid = engine.shared.python.pid().await.expect("python running");
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let m2 = m.clone();
    wait_until("python restarted", Duration::from_secs(10), || {
        let m = m2.clone();
        async move { Metrics::get(&m.python_restarts) >= 1 }
    })
    .await;
    let again =
        client.get_stats(StatsRequest { kind: "page_view".into(), window_seconds: 0 }).await.unwrap().into_inner();
    assert_eq!(again.total_events, 10);
    assert_ne!(engine.shared.python.pid().await, Some(pid));

    // A table dropped at runtime is created again by the next insert.
    ch.query("DROP TABLE v7.events").await.unwrap();
    publish(&nats.url(), &[event("after-drop", "page_view", 7.0, now_ms())]).await;
    let m3 = m.clone();
    wait_until("event stored after table drop", Duration::from_secs(20), || {
        let m = m3.clone();
        async move { Metrics::get(&m.events_stored) == 13 }
    })
    .await;
    assert_eq!(ch.query("SELECT count() FROM v7.events").await.unwrap().trim(), "1");

    let (status, metrics) = engine.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "v7_analytics_events_received_total 16",
        "v7_analytics_events_stored_total 13",
        "v7_analytics_events_invalid_total 3",
        "v7_analytics_stats_requests_total 6",
        "v7_analytics_stats_failures_total 1",
        "v7_analytics_python_restarts_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("v7_analytics_insert_failures_total"));

    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_clickhouse_is_down_and_recovers() {
    let nats = Nats::start();
    let ch_port = free_port();
    let engine = Engine::start(test_config(&nats.url(), &format!("http://127.0.0.1:{ch_port}"))).await;

    assert_eq!(engine.get("/healthz").await.0, 200);
    // Once NATS is subscribed and python runs, only ClickHouse is missing.
    wait_until("only clickhouse not ready", Duration::from_secs(20), || async {
        let (status, body) = engine.get("/readyz").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        status == 503 && v["not_ready"] == json!(["clickhouse"])
    })
    .await;
    let (_, body) = engine.get("/readyz").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["checks"]["clickhouse"]["ok"], false);
    assert!(v["checks"]["clickhouse"]["error"].as_str().unwrap().contains("unreachable"), "{body}");
    assert!(!body.contains(CH_PASSWORD), "readyz must not leak the password: {body}");
    // healthz stays 200 and the healthcheck subcommand agrees.
    let port = engine.http.port();
    assert_eq!(tokio::task::spawn_blocking(move || healthcheck::check(port)).await.unwrap(), Ok(()));

    // Events arriving meanwhile are kept and inserted once ClickHouse is up.
    let now = now_ms();
    publish(&nats.url(), &(0..3).map(|i| event(&format!("e{i}"), "late", i as f64, now)).collect::<Vec<_>>()).await;
    let m = engine.shared.metrics.clone();
    let m1 = m.clone();
    wait_until("insert failures counted", Duration::from_secs(20), || {
        let m = m1.clone();
        async move { Metrics::get(&m.events_received) == 3 && Metrics::get(&m.insert_failures) >= 1 }
    })
    .await;
    assert_eq!(Metrics::get(&m.events_stored), 0);

    let ch = ClickHouse::start_on(ch_port).await;
    wait_until("readyz 200 after ClickHouse started", Duration::from_secs(30), || async {
        engine.get("/readyz").await.0 == 200
    })
    .await;
    let m2 = m.clone();
    wait_until("pending events stored", Duration::from_secs(30), || {
        let m = m2.clone();
        async move { Metrics::get(&m.events_stored) == 3 }
    })
    .await;
    assert_eq!(ch.query("SELECT count() FROM v7.events WHERE kind = 'late'").await.unwrap().trim(), "3");

    // And down again: readyz names it.
    drop(ch);
    wait_until("readyz 503 after ClickHouse stopped", Duration::from_secs(20), || async {
        let (status, body) = engine.get("/readyz").await;
        status == 503 && body.contains("clickhouse")
    })
    .await;
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_every_dependency_missing() {
    let dead = free_port();
    let mut config = test_config(&format!("nats://127.0.0.1:{dead}"), &format!("http://127.0.0.1:{dead}"));
    config.python = "/nonexistent/python3".into();
    let engine = Engine::start(config).await;
    assert_eq!(engine.get("/healthz").await.0, 200);
    let (status, body) = engine.get("/readyz").await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["not_ready"], json!(["nats", "clickhouse", "python"]), "{body}");
    let (status, metrics) = engine.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("v7_analytics_events_received_total 0"));
    // Ping does not depend on anything.
    let ping = engine.grpc_client().await.ping(PingRequest {}).await.unwrap().into_inner();
    assert_eq!(ping.events_ingested, 0);
    // With NATS and ClickHouse down, the engine must still stop: `shutdown` fails the test if it
    // hangs (a guard, not a timing; durations belong to benchmarks).
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_pending_inserts() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    // Nothing is flushed by size or timer during the test: only the shutdown flush stores rows.
    config.flush_interval = Duration::from_secs(3600);
    config.batch_size = 100_000;
    let engine = Engine::start(config).await;
    wait_until("readyz 200", Duration::from_secs(30), || async { engine.get("/readyz").await.0 == 200 }).await;

    let now = now_ms();
    publish(&nats.url(), &(0..5).map(|i| event(&format!("s{i}"), "shutdown", 1.0, now)).collect::<Vec<_>>()).await;
    let m = engine.shared.metrics.clone();
    let m1 = m.clone();
    wait_until("5 events received", Duration::from_secs(20), || {
        let m = m1.clone();
        async move { Metrics::get(&m.events_received) == 5 }
    })
    .await;
    assert_eq!(Metrics::get(&m.events_stored), 0);
    assert_eq!(ch.query("SELECT count() FROM v7.events").await.unwrap().trim(), "0");

    engine.shutdown().await.unwrap();
    assert_eq!(Metrics::get(&m.events_stored), 5);
    assert_eq!(ch.query("SELECT count() FROM v7.events WHERE kind = 'shutdown'").await.unwrap().trim(), "5");
}
