//! `GetStats` from ClickHouse aggregates, checked against a brute-force computation over the
//! same test data (and against the Python reference implementation), the per-minute series,
//! and request coalescing. Real nats-server, clickhouse-server and Python.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use analytics_engine::metrics::Metrics;
use analytics_engine::pb::{KindStats, StatsRequest};
use common::*;
use serde_json::json;

fn event(id: &str, kind: &str, value: f64, ts: u64) -> String {
    json!({"id": id, "kind": kind, "value": value, "source": "test", "ts_unix_ms": ts}).to_string()
}

/// Deterministic pseudo-random values (an LCG; no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The brute-force statistics of `values` (the README's definitions).
struct Brute {
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    sorted: Vec<f64>,
}

impl Brute {
    fn of(values: &[f64]) -> Brute {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Brute {
            count: sorted.len() as u64,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean,
            stddev: var.sqrt(),
            sorted,
        }
    }

    /// Linear interpolation at rank q·(n−1).
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * (self.sorted.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        self.sorted[lo] + (self.sorted[hi] - self.sorted[lo]) * (rank - lo as f64)
    }

    /// The value at a rank, clamped.
    fn at_rank(&self, rank: f64) -> f64 {
        self.sorted[(rank.max(0.0) as usize).min(self.sorted.len() - 1)]
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

fn check_exact(k: &KindStats, b: &Brute) {
    assert_eq!(k.count, b.count, "{}: count", k.kind);
    assert_eq!((k.min, k.max), (b.min, b.max), "{}: min/max", k.kind);
    assert!(close(k.mean, b.mean, 1e-12), "{}: mean {} vs {}", k.kind, k.mean, b.mean);
    assert!(close(k.stddev, b.stddev, 1e-9), "{}: stddev {} vs {}", k.kind, k.stddev, b.stddev);
    assert!(close(k.p50, b.quantile(0.5), 1e-12), "{}: p50 {} vs {}", k.kind, k.p50, b.quantile(0.5));
    assert!(close(k.p95, b.quantile(0.95), 1e-12), "{}: p95 {} vs {}", k.kind, k.p95, b.quantile(0.95));
}

async fn stats(
    engine: &Engine,
    kind: &str,
    window_seconds: u32,
    series_minutes: u32,
) -> analytics_engine::pb::StatsResponse {
    engine
        .grpc_client()
        .await
        .get_stats(StatsRequest { kind: kind.into(), window_seconds, series_minutes })
        .await
        .expect("GetStats")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_agree_with_a_brute_force_computation() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    config.stats_cache_ttl = Duration::ZERO;
    let engine = Engine::start(config).await;
    let js = Js::connect(&nats.url()).await;

    let now = now_ms();
    let mut rng = Lcg(42);
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut recent: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut payloads = Vec::new();
    let mut add = |kind: &'static str, v: f64, age_ms: u64, payloads: &mut Vec<String>| {
        let i = payloads.len();
        payloads.push(event(&format!("{kind}-{i}"), kind, v, now - age_ms));
        values.entry(kind).or_default().push(v);
        if age_ms < 3_600_000 {
            recent.entry(kind).or_default().push(v);
        }
    };
    // Mixed signs and magnitudes; a third of them two hours old (outside a 1 h window).
    for i in 0..300 {
        let v = (rng.next() - 0.3) * 1000.0;
        add("small", v, if i % 3 == 0 { 7_200_000 } else { 1000 }, &mut payloads);
    }
    add("single", 42.5, 1000, &mut payloads);
    // Large and close together: a naive variance formula loses every digit here.
    for _ in 0..500 {
        add("offset", 1e9 + (rng.next() * 100.0).round(), 1000, &mut payloads);
    }
    // Exactly as many as ClickHouse's quantile reservoir holds: still exact.
    for _ in 0..8192 {
        add("edge", rng.next() * rng.next() * 500.0, 1000, &mut payloads);
    }
    // More: quantiles are estimated from a sample; everything else stays exact.
    for _ in 0..20_000 {
        add("large", (rng.next() * 10.0).exp(), 1000, &mut payloads);
    }
    assert_eq!(js.publish_events(&payloads).await, payloads.len());
    // Redelivered / re-published copies of 100 events must change nothing.
    let copies: Vec<(String, String)> =
        payloads.iter().take(100).enumerate().map(|(i, p)| (format!("copy-{i}"), p.clone())).collect();
    assert_eq!(js.publish(&copies).await, 100);
    let total = payloads.len() as u64;
    let m = engine.shared.metrics.clone();
    wait_until("every message stored and acknowledged", Duration::from_secs(120), || {
        let m = m.clone();
        async move { Metrics::get(&m.events_acked) == total + 100 }
    })
    .await;
    assert_eq!(stored_counts(&ch).await, (total + 100, total));

    let all = stats(&engine, "", 0, 0).await;
    assert_eq!(all.total_events, total);
    let names: Vec<&str> = all.kinds.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(names, ["edge", "large", "offset", "single", "small"], "sorted by kind");
    for k in &all.kinds {
        let b = Brute::of(&values[k.kind.as_str()]);
        if k.kind != "large" {
            check_exact(k, &b);
            continue;
        }
        assert_eq!(k.count, b.count);
        assert_eq!((k.min, k.max), (b.min, b.max));
        assert!(close(k.mean, b.mean, 1e-9), "large: mean {} vs {}", k.mean, b.mean);
        assert!(close(k.stddev, b.stddev, 1e-9), "large: stddev {} vs {}", k.stddev, b.stddev);
        // Estimated from a uniform sample of 8192: within 5 % of the rank (about 9 standard
        // errors at p50, 20 at p95).
        let n = b.sorted.len() as f64;
        for (q, got) in [(0.5, k.p50), (0.95, k.p95)] {
            let rank = q * (n - 1.0);
            let (lo, hi) = (b.at_rank(rank - 0.05 * n), b.at_rank(rank + 0.05 * n));
            assert!(
                lo <= got && got <= hi,
                "large: p{} = {got}, exact {}, allowed {lo}..{hi}",
                q * 100.0,
                b.quantile(q)
            );
        }
    }
    let offset = all.kinds.iter().find(|k| k.kind == "offset").unwrap();
    assert!(offset.stddev > 10.0 && offset.stddev < 40.0, "a stable stddev of 0..100 spread: {}", offset.stddev);

    // The window and the kind filter.
    let last_hour = stats(&engine, "", 3600, 0).await;
    let small = last_hour.kinds.iter().find(|k| k.kind == "small").unwrap();
    check_exact(small, &Brute::of(&recent["small"]));
    assert_eq!(last_hour.total_events, total - 100, "the 100 two-hour-old events are outside");
    let only = stats(&engine, "offset", 0, 0).await;
    assert_eq!(only.kinds.len(), 1);
    check_exact(&only.kinds[0], &Brute::of(&values["offset"]));

    // The Python component computes the same numbers from the raw values (its reference
    // definitions agree with ClickHouse's aggregates wherever those are exact).
    let groups: BTreeMap<String, Vec<f64>> =
        ["small", "single", "offset", "edge"].iter().map(|k| (k.to_string(), values[k].clone())).collect();
    let reference = engine.shared.python.stats(&groups).await.expect("python stats");
    for r in reference {
        let k = all.kinds.iter().find(|k| k.kind == r.kind).unwrap();
        assert_eq!(r.count, k.count);
        for (what, a, b) in
            [("mean", r.mean, k.mean), ("stddev", r.stddev, k.stddev), ("p50", r.p50, k.p50), ("p95", r.p95, k.p95)]
        {
            assert!(close(a, b, 1e-9), "{}: python {what} {a} vs ClickHouse {b}", r.kind);
        }
    }
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_series_has_one_entry_per_minute_oldest_first() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    config.stats_cache_ttl = Duration::ZERO;
    let engine = Engine::start(config).await;
    let js = Js::connect(&nats.url()).await;

    let now = now_ms();
    let mut events: Vec<(String, u64)> = Vec::new();
    let mut payloads = Vec::new();
    for (kind, minutes_ago, n) in [
        ("page_view", 0, 3),
        ("page_view", 1, 2),
        ("page_view", 4, 5),
        ("page_view", 9, 1),
        ("page_view", 15, 4),
        ("click", 2, 6),
        ("quiet", 30, 2),
    ] {
        for i in 0..n {
            let ts = now - minutes_ago * 60_000 - i * 7;
            payloads.push(event(&format!("{kind}-{minutes_ago}-{i}"), kind, 1.0, ts));
            events.push((kind.to_string(), ts));
        }
    }
    js.publish_events(&payloads).await;
    wait_for_events(&ch, payloads.len() as u64, Duration::from_secs(60)).await;

    let series = 10;
    let r = stats(&engine, "", 0, series).await;
    assert_eq!(r.kinds.len(), 3);
    let last_minute = (r.computed_at_unix_ms / 60_000) * 60_000;
    for k in &r.kinds {
        assert_eq!(k.per_minute.len(), series as usize, "{}: one entry per minute", k.kind);
        let starts: Vec<i64> = k.per_minute.iter().map(|m| m.minute_unix_ms).collect();
        assert_eq!(*starts.last().unwrap(), last_minute, "{}: ends with the current minute", k.kind);
        assert!(
            starts.windows(2).all(|w| w[1] - w[0] == 60_000),
            "{}: consecutive minutes, oldest first: {starts:?}",
            k.kind
        );
        for m in &k.per_minute {
            let expected = events
                .iter()
                .filter(|(kind, ts)| *kind == k.kind && (*ts as i64) / 60_000 * 60_000 == m.minute_unix_ms)
                .count() as u64;
            assert_eq!(m.count, expected, "{} at minute {}", k.kind, m.minute_unix_ms);
        }
    }
    let counted =
        |kind: &str| r.kinds.iter().find(|k| k.kind == kind).unwrap().per_minute.iter().map(|m| m.count).sum::<u64>();
    // The 15- and 30-minute-old events are outside the series but still in the stats.
    assert_eq!(r.kinds.iter().find(|k| k.kind == "page_view").unwrap().count, 15);
    assert!(
        counted("page_view") >= 10 && counted("page_view") <= 11,
        "the 9-minute-old one may have left: {}",
        counted("page_view")
    );
    assert_eq!(counted("quiet"), 0, "minutes without events are there, with 0");

    // No series asked: none sent. A kind filter applies to the series too.
    assert!(stats(&engine, "", 0, 0).await.kinds.iter().all(|k| k.per_minute.is_empty()));
    let click = stats(&engine, "click", 0, 5).await;
    assert_eq!(click.kinds.len(), 1);
    assert_eq!(click.kinds[0].per_minute.len(), 5);
    assert_eq!(click.kinds[0].per_minute.iter().map(|m| m.count).sum::<u64>(), 6);
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dashboards_asking_the_same_cost_one_query() {
    let nats = Nats::start();
    let ch = ClickHouse::start().await;
    let mut config = test_config(&nats.url(), &ch.url());
    // Long enough that "the same period" cannot end during the test.
    config.stats_cache_ttl = Duration::from_secs(3600);
    let engine = Arc::new(Engine::start(config).await);
    let js = Js::connect(&nats.url()).await;
    let now = now_ms();
    js.publish_events(&(0..20).map(|i| event(&format!("c{i}"), "click", i as f64, now)).collect::<Vec<_>>()).await;
    wait_for_events(&ch, 20, Duration::from_secs(60)).await;

    let m = engine.shared.metrics.clone();
    let before = Metrics::get(&m.stats_queries);
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move { stats(&engine, "", 300, 30).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "everyone got the same answer");
    assert_eq!(answers[0].total_events, 20);
    assert_eq!(Metrics::get(&m.stats_queries) - before, 1, "25 identical requests, one computation");
    assert_eq!(Metrics::get(&m.stats_requests), 25);
    // Another question is another computation.
    stats(&engine, "click", 300, 30).await;
    assert_eq!(Metrics::get(&m.stats_queries) - before, 2);
    let (_, metrics) = engine.get("/metrics").await;
    assert!(metrics.lines().any(|l| l == format!("v7_analytics_stats_queries_total {}", before + 2)), "{metrics}");
}
