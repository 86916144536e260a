//! End-to-end tests against real nats-server (JetStream) and clickhouse-server processes and
//! the real Python statistics component: the basic flow, readiness and `Health`, ClickHouse
//! outages (back-pressure, nothing dropped), graceful shutdown.

mod common;

use std::time::Duration;

use analytics_engine::metrics::Metrics;
use analytics_engine::pb::{HealthRequest, HealthResponse, PingRequest, StatsRequest};
use common::*;
use serde_json::{json, Value};

fn event(id: &str, kind: &str, value: f64, ts: u64) -> String {
    json!({"id": id, "kind": kind, "value": value, "source": "test", "attributes": {"n": id}, "ts_unix_ms": ts})
        .to_string()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn req(kind: &str, window_seconds: u32) -> StatsRequest {
    StatsRequest { kind: kind.into(), window_seconds, series_minutes: 0 }
}

fn dep<'a>(h: &'a HealthResponse, name: &str) -> &'a analytics_engine::pb::DependencyHealth {
    h.dependencies.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("no {name} in {h:?}"))
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
    let js = Js::connect(&nats.url()).await;
    assert_eq!(js.publish_events(&payloads).await, 15);

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
    let all = client.get_stats(req("", 0)).await.unwrap().into_inner();
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

    let only_click = client.get_stats(req("click", 0)).await.unwrap().into_inner();
    assert_eq!(only_click.total_events, 2);
    assert_eq!(only_click.kinds.len(), 1);

    let recent = client.get_stats(req("", 600)).await.unwrap().into_inner();
    assert_eq!(recent.total_events, 11, "the hour-old click is outside a 10 minute window");
    let recent_click = recent.kinds.iter().find(|k| k.kind == "click").unwrap();
    assert_eq!(recent_click.count, 1);
    assert!(approx(recent_click.mean, 4.0));

    let none = client.get_stats(req("never_seen", 0)).await.unwrap().into_inner();
    assert_eq!(none.total_events, 0);
    assert!(none.kinds.is_empty());

    let err = client.get_stats(req("Bad Kind", 0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .get_stats(StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 100_000 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // Every message was acknowledged (the invalid ones terminated): nothing left for redelivery.
    let js2 = Js::connect(&nats.url()).await;
    wait_until("consumer has nothing pending", Duration::from_secs(20), || async {
        js2.consumer_pending().await == (0, 0)
    })
    .await;

    let health = client.health(HealthRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = health.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["nats", "clickhouse", "python"]);
    assert!(health.dependencies.iter().all(|d| d.ok), "{health:?}");
    assert!(dep(&health, "nats").detail.contains("consumer analytics-engine on stream V7_EVENTS"), "{health:?}");
    assert!(dep(&health, "clickhouse").detail.contains("SELECT 1 ok; events table ready"), "{health:?}");
    assert!(dep(&health, "python").detail.contains("answered ping"), "{health:?}");

    let ping = client.ping(PingRequest {}).await.unwrap().into_inner();
    assert_eq!(ping.events_ingested, 12);
    assert_eq!(ping.version, env!("CARGO_PKG_VERSION"));

    // The Python process is restarted when it dies; GetStats does not depend on it.
    let pid = engine.shared.python.pid().await.expect("python running");
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let again = client.get_stats(req("page_view", 0)).await.unwrap().into_inner();
    assert_eq!(again.total_events, 10);
    let m2 = m.clone();
    wait_until("python restarted", Duration::from_secs(10), || {
        let m = m2.clone();
        async move { Metrics::get(&m.python_restarts) >= 1 }
    })
    .await;
    assert_ne!(engine.shared.python.pid().await, Some(pid));

    // A table dropped at runtime is created again by the next insert.
    ch.query("DROP TABLE v7.events").await.unwrap();
    js.publish_events(&[event("after-drop", "page_view", 7.0, now_ms())]).await;
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
        "v7_analytics_events_acked_total 13",
        "v7_analytics_stats_requests_total 7",
        "v7_analytics_stats_failures_total 2",
        "v7_analytics_python_restarts_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("v7_analytics_insert_failures_total"));

    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outages_hold_events_back_and_lose_none() {
    let nats = Nats::start();
    let ch_port = free_port();
    let engine = Engine::start(test_config(&nats.url(), &format!("http://127.0.0.1:{ch_port}"))).await;

    assert_eq!(engine.get("/healthz").await.0, 200);
    // Once NATS is bound, only ClickHouse is missing (python does not gate readiness).
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
    let mut client = engine.grpc_client().await;
    let health = client.health(HealthRequest {}).await.unwrap().into_inner();
    assert!(!dep(&health, "clickhouse").ok && dep(&health, "nats").ok && dep(&health, "python").ok, "{health:?}");
    assert!(!format!("{health:?}").contains(CH_PASSWORD));
    // healthz stays 200 and the healthcheck subcommand agrees.
    let port = engine.http.port();
    assert_eq!(tokio::task::spawn_blocking(move || healthcheck::check(port)).await.unwrap(), Ok(()));
    let err = client.get_stats(req("", 0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    // Events published meanwhile wait in the stream: nothing is fetched before the schema exists.
    let js = Js::connect(&nats.url()).await;
    let now = now_ms();
    js.publish_events(&(0..3).map(|i| event(&format!("e{i}"), "late", i as f64, now)).collect::<Vec<_>>()).await;
    assert_eq!(js.consumer_pending().await, (3, 0), "3 waiting in the stream, none delivered");
    let m = engine.shared.metrics.clone();
    assert_eq!(Metrics::get(&m.events_received), 0);

    let ch = ClickHouse::start_on(ch_port).await;
    wait_until("readyz 200 after ClickHouse started", Duration::from_secs(30), || async {
        engine.get("/readyz").await.0 == 200
    })
    .await;
    wait_for_events(&ch, 3, Duration::from_secs(30)).await;

    // Down while events are in flight: the batch is retried, nothing more is fetched, nothing
    // is dropped or acknowledged.
    drop(ch);
    js.publish_events(&(0..40).map(|i| event(&format!("d{i}"), "during", i as f64, now)).collect::<Vec<_>>()).await;
    let m1 = m.clone();
    wait_until("insert failures counted", Duration::from_secs(20), || {
        let m = m1.clone();
        async move { Metrics::get(&m.insert_failures) >= 2 }
    })
    .await;
    let held = Metrics::get(&m.pending_events);
    assert!((1..=40).contains(&held), "the failing batch is held in memory: {held}");
    assert_eq!(Metrics::get(&m.events_acked), 3, "nothing acknowledged while ClickHouse is down");
    let (waiting, unacked) = js.consumer_pending().await;
    assert_eq!(waiting + unacked as u64, 40, "all 40 still owed by NATS: {waiting} waiting + {unacked} unacked");
    wait_until("readyz 503 after ClickHouse stopped", Duration::from_secs(20), || async {
        let (status, body) = engine.get("/readyz").await;
        status == 503 && body.contains("clickhouse")
    })
    .await;

    // Back (an empty server on the same port: the engine recreates the table): all 40 arrive.
    let ch = ClickHouse::start_on(ch_port).await;
    wait_for_events(&ch, 40, Duration::from_secs(60)).await;
    assert_eq!(ch.query("SELECT count() FROM v7.events FINAL WHERE kind = 'during'").await.unwrap().trim(), "40");
    wait_until("everything acknowledged", Duration::from_secs(20), || async { js.consumer_pending().await == (0, 0) })
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
    assert_eq!(v["not_ready"], json!(["nats", "clickhouse"]), "python is reported, not required: {body}");
    assert_eq!(v["checks"]["python"]["ok"], false, "{body}");
    let health = engine.grpc_client().await.health(HealthRequest {}).await.unwrap().into_inner();
    assert_eq!(health.dependencies.len(), 3);
    assert!(health.dependencies.iter().all(|d| !d.ok && !d.detail.is_empty()), "{health:?}");
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
async fn graceful_shutdown_stores_and_acks_the_batch_in_hand() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    // One pull waiting an hour for 10 000 messages: only the shutdown ends it and stores the rows.
    config.flush_interval = Duration::from_secs(3600);
    config.batch_size = 10_000;
    let engine = Engine::start(config).await;
    wait_until("readyz 200", Duration::from_secs(30), || async { engine.get("/readyz").await.0 == 200 }).await;

    let js = Js::connect(&nats.url()).await;
    let now = now_ms();
    js.publish_events(&(0..5).map(|i| event(&format!("s{i}"), "shutdown", 1.0, now)).collect::<Vec<_>>()).await;
    let m = engine.shared.metrics.clone();
    let m1 = m.clone();
    wait_until("5 events received", Duration::from_secs(20), || {
        let m = m1.clone();
        async move { Metrics::get(&m.events_received) == 5 }
    })
    .await;
    assert_eq!(Metrics::get(&m.events_stored), 0);
    assert_eq!(ch.query("SELECT count() FROM v7.events").await.unwrap().trim(), "0");
    assert_eq!(js.consumer_pending().await, (0, 5), "delivered, not acknowledged yet");

    engine.shutdown().await.unwrap();
    assert_eq!(Metrics::get(&m.events_stored), 5);
    assert_eq!(Metrics::get(&m.events_acked), 5);
    assert_eq!(ch.query("SELECT count() FROM v7.events WHERE kind = 'shutdown'").await.unwrap().trim(), "5");
    assert_eq!(js.consumer_pending().await, (0, 0), "acknowledged before the engine exited");
}
