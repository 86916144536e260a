//! Counters exposed on `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_received: AtomicU64,
    pub events_stored: AtomicU64,
    pub events_invalid: AtomicU64,
    pub events_redelivered: AtomicU64,
    pub events_acked: AtomicU64,
    pub insert_failures: AtomicU64,
    pub stats_requests: AtomicU64,
    pub stats_failures: AtomicU64,
    pub stats_queries: AtomicU64,
    pub python_restarts: AtomicU64,
    pub pending_events: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Renders every metric (Prometheus text exposition format 0.0.4).
    pub fn render(&self) -> String {
        let items: [(&str, &str, &str, &AtomicU64); 11] = [
            (
                "v7_analytics_events_received_total",
                "counter",
                "Messages fetched from the JetStream consumer (redeliveries included).",
                &self.events_received,
            ),
            (
                "v7_analytics_events_stored_total",
                "counter",
                "Event rows inserted into ClickHouse (a redelivered event is inserted again and collapses there).",
                &self.events_stored,
            ),
            (
                "v7_analytics_events_invalid_total",
                "counter",
                "Messages rejected as invalid events (not stored).",
                &self.events_invalid,
            ),
            (
                "v7_analytics_events_redelivered_total",
                "counter",
                "Messages JetStream delivered more than once (not acknowledged in time, or an engine died).",
                &self.events_redelivered,
            ),
            (
                "v7_analytics_events_acked_total",
                "counter",
                "Messages acknowledged after their event was stored.",
                &self.events_acked,
            ),
            (
                "v7_analytics_insert_failures_total",
                "counter",
                "Failed ClickHouse batch inserts (retried).",
                &self.insert_failures,
            ),
            (
                "v7_analytics_stats_requests_total",
                "counter",
                "GetStats requests served or attempted.",
                &self.stats_requests,
            ),
            ("v7_analytics_stats_failures_total", "counter", "GetStats requests that failed.", &self.stats_failures),
            (
                "v7_analytics_stats_queries_total",
                "counter",
                "GetStats computations run against ClickHouse (the rest were coalesced or cached).",
                &self.stats_queries,
            ),
            (
                "v7_analytics_python_restarts_total",
                "counter",
                "Restarts of the Python statistics process after it died.",
                &self.python_restarts,
            ),
            (
                "v7_analytics_pending_events",
                "gauge",
                "Fetched events held in memory, not yet stored and acknowledged.",
                &self.pending_events,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in items {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::add(&m.events_received, 3);
        Metrics::inc(&m.python_restarts);
        let text = m.render();
        assert!(
            text.contains("# TYPE v7_analytics_events_received_total counter\nv7_analytics_events_received_total 3\n")
        );
        assert!(text.contains("v7_analytics_python_restarts_total 1\n"));
        assert!(text.contains("v7_analytics_insert_failures_total 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split(' ');
            assert!(parts.next().unwrap().starts_with("v7_analytics_"));
            parts.next().unwrap().parse::<u64>().unwrap();
        }
    }
}
