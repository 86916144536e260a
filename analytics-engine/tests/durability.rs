//! No accepted event is ever lost, and none is counted twice: real nats-server (JetStream, file
//! store) and clickhouse-server, the engine in-process or as a child process (SIGKILL).
//!
//! Waits are bounded generously and fail saying what was counted; nothing asserts a duration.

mod common;

use std::time::Duration;

use analytics_engine::metrics::Metrics;
use analytics_engine::pb::StatsRequest;
use common::*;
use serde_json::json;

fn event(id: &str, kind: &str, value: f64, ts: u64) -> String {
    json!({"id": id, "kind": kind, "value": value, "source": "test", "attributes": {"n": id}, "ts_unix_ms": ts})
        .to_string()
}

fn events(prefix: &str, n: usize) -> Vec<String> {
    let now = now_ms();
    let kinds = ["page_view", "click", "purchase"];
    (0..n)
        .map(|i| {
            event(&format!("{prefix}-{i}"), kinds[i % kinds.len()], (i % 97) as f64, now - (i as u64 % 600) * 1000)
        })
        .collect()
}

async fn total_via_grpc(grpc: &str) -> u64 {
    let mut client =
        analytics_engine::pb::analytics_client::AnalyticsClient::connect(grpc.to_string()).await.expect("gRPC connect");
    client
        .get_stats(StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 0 })
        .await
        .expect("GetStats")
        .into_inner()
        .total_events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_engine_is_down_are_all_counted() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    // backend created the stream and accepted events; no engine was running.
    let js = Js::connect(&nats.url()).await;
    let n = 1500;
    assert_eq!(js.publish_events(&events("down", n)).await, n);
    assert_eq!(js.stream_messages().await, n as u64);

    let engine = Engine::start(test_config(&nats.url(), &ch.url())).await;
    let (raw, fin) = wait_for_events(&ch, n as u64, Duration::from_secs(60)).await;
    assert_eq!((raw, fin), (n as u64, n as u64), "each stored once; metrics: {}", engine.get("/metrics").await.1);
    assert_eq!(total_via_grpc(&format!("http://{}", engine.grpc)).await, n as u64);
    wait_until("every message acknowledged", Duration::from_secs(20), || async {
        js.consumer_pending().await == (0, 0)
    })
    .await;
    // Acknowledged means stored: the stream is a work queue, so they have left it.
    wait_until("the acknowledged events left the stream", Duration::from_secs(20), || async {
        js.stream_messages().await == 0
    })
    .await;
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_id_twice_is_counted_once() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let engine = Engine::start(test_config(&nats.url(), &ch.url())).await;
    wait_until("readyz 200", Duration::from_secs(30), || async { engine.get("/readyz").await.0 == 200 }).await;
    let js = Js::connect(&nats.url()).await;
    let now = now_ms();
    let twice = event("twice", "click", 5.0, now);
    let retried = event("retried", "click", 7.0, now);
    let mut messages: Vec<(String, String)> = vec![
        // Two stream messages (different Nats-Msg-Id, e.g. a retry after the duplicate window),
        // one event: only storage can tell.
        ("twice#1".into(), twice.clone()),
        ("twice#2".into(), twice.clone()),
        // The same Nats-Msg-Id within the duplicate window: JetStream stores it once.
        ("retried".into(), retried.clone()),
        ("retried".into(), retried.clone()),
    ];
    messages.extend((0..10).map(|i| (format!("u{i}"), event(&format!("u{i}"), "click", 1.0, now))));
    assert_eq!(js.publish(&messages).await, 13, "the stream de-duplicated the repeated Nats-Msg-Id");

    let m = engine.shared.metrics.clone();
    wait_until("13 messages acknowledged", Duration::from_secs(30), || {
        let m = m.clone();
        async move { Metrics::get(&m.events_acked) == 13 }
    })
    .await;
    let (raw, fin) = stored_counts(&ch).await;
    assert_eq!((raw, fin), (13, 12), "two rows for `twice`, counted once");
    let mut client = engine.grpc_client().await;
    let stats = client
        .get_stats(StatsRequest { kind: "click".into(), window_seconds: 0, series_minutes: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_events, 12);
    assert_eq!(stats.kinds[0].count, 12);
    // The table collapses the copies itself once parts merge.
    ch.query("OPTIMIZE TABLE v7.events FINAL").await.unwrap();
    assert_eq!(stored_counts(&ch).await, (12, 12));
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_the_consumer_and_store_each_event_once() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    // Small pulls, so that both engines get a share of the messages.
    config.batch_size = 20;
    let a = Engine::start(config.clone()).await;
    let b = Engine::start(config).await;
    for e in [&a, &b] {
        wait_until("readyz 200", Duration::from_secs(30), || async { e.get("/readyz").await.0 == 200 }).await;
    }
    let js = Js::connect(&nats.url()).await;
    let n = 3000;
    assert_eq!(js.publish_events(&events("two", n)).await, n);
    wait_for_events(&ch, n as u64, Duration::from_secs(60)).await;
    // Stored in ClickHouse comes before the engines count and ack it: wait for the acks.
    let acked = || Metrics::get(&a.shared.metrics.events_acked) + Metrics::get(&b.shared.metrics.events_acked);
    wait_until("both engines acknowledged everything", Duration::from_secs(30), || async { acked() == n as u64 }).await;
    let (raw, fin) = stored_counts(&ch).await;
    let (sa, sb) = (Metrics::get(&a.shared.metrics.events_stored), Metrics::get(&b.shared.metrics.events_stored));
    eprintln!("engine a stored {sa}, engine b stored {sb}");
    assert_eq!(raw, n as u64, "each event stored once, not once per engine (a {sa}, b {sb})");
    assert_eq!(fin, n as u64);
    assert_eq!(sa + sb, n as u64, "a {sa} + b {sb}");
    assert_eq!(ch.query("SELECT uniqExact(id) FROM v7.events").await.unwrap().trim(), n.to_string());
    wait_until("every message acknowledged", Duration::from_secs(20), || async {
        js.consumer_pending().await == (0, 0)
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarts_keep_unconsumed_events() {
    let mut nats = Nats::start();
    let ch = ClickHouse::start().await;
    {
        let js = Js::connect(&nats.url()).await;
        assert_eq!(js.publish_events(&events("before", 700)).await, 700);
    }
    // Restarted with the same store: the stream and its 700 unconsumed events are still there.
    nats.restart();
    let engine = Engine::start(test_config(&nats.url(), &ch.url())).await;
    wait_for_events(&ch, 700, Duration::from_secs(60)).await;

    // Restarted again under a running engine, which reconnects and keeps consuming.
    nats.restart();
    let js = Js::connect(&nats.url()).await;
    assert_eq!(js.publish_events(&events("after", 500)).await, 500);
    let (raw, fin) = wait_for_events(&ch, 1200, Duration::from_secs(90)).await;
    eprintln!("rows stored {raw}, events counted {fin}");
    assert_eq!(total_via_grpc(&format!("http://{}", engine.grpc)).await, 1200);
    wait_until("every message acknowledged", Duration::from_secs(60), || async {
        js.consumer_pending().await == (0, 0)
    })
    .await;
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_inserting_then_restart_counts_exactly_n() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let js = Js::connect(&nats.url()).await;
    let n: u64 = 20_000;
    assert_eq!(js.publish_events(&events("kill", n as usize)).await as u64, n);

    // Small batches: many insert/ack rounds, so the kill lands in the middle of them.
    let extra = [("V7_INGEST_BATCH", "50")];
    let mut first = EngineProcess::start(&nats.url(), &ch.url(), &extra);
    wait_until("the first rows stored", Duration::from_secs(60), || async { stored_counts(&ch).await.0 > 0 }).await;
    first.kill();
    let (raw_at_kill, _) = stored_counts(&ch).await;
    let (waiting, unacked) = js.consumer_pending().await;
    eprintln!(
        "at SIGKILL: {raw_at_kill} rows stored, {waiting} events waiting, {unacked} delivered and unacknowledged"
    );
    assert!(raw_at_kill < n, "the engine had stored everything before the kill; nothing was interrupted");
    assert!(first.log_text().contains("bound the JetStream durable consumer"), "{}", first.log_text());

    // The unacknowledged ones come back after ack_wait (30 s); stored-but-unacked ones collapse.
    let mut second = EngineProcess::start(&nats.url(), &ch.url(), &extra);
    let (raw, fin) = wait_for_events(&ch, n, Duration::from_secs(180)).await;
    eprintln!("after restart: {raw} rows stored for {fin} events");
    assert_eq!(total_via_grpc(&format!("http://127.0.0.1:{}", second.grpc_port)).await, n);
    wait_until("every message acknowledged", Duration::from_secs(90), || async {
        js.consumer_pending().await == (0, 0)
    })
    .await;
    assert_eq!(stored_counts(&ch).await.1, n, "still exactly n once everything is acknowledged");
    assert!(second.terminate(), "graceful exit on SIGTERM: {}", second.log_text());
}
