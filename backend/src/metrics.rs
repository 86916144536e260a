//! Hand-written Prometheus text exposition (format 0.0.4): request counters by route and status,
//! a latency histogram per route, gRPC calls by method and code, events stored by JetStream
//! (and how many of them were duplicates), publish failures by reason.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::jetstream::FailureKind;

/// Histogram upper bounds in seconds.
pub const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    http_requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    http_latency: Mutex<BTreeMap<String, Histogram>>,
    grpc_requests: Mutex<BTreeMap<(String, String), u64>>,
    events_published: AtomicU64,
    events_duplicate: AtomicU64,
    /// Indexed like `FailureKind::ALL`.
    publish_failures: [AtomicU64; FailureKind::ALL.len()],
    events_rejected: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.http_requests).entry((method.to_string(), route.to_string(), status)).or_insert(0) += 1;
        let secs = elapsed.as_secs_f64();
        let mut lat = lock(&self.http_latency);
        let h = lat.entry(route.to_string()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn observe_grpc(&self, method: &str, code: tonic::Code) {
        *lock(&self.grpc_requests).entry((method.to_string(), format!("{code:?}"))).or_insert(0) += 1;
    }

    pub fn events_published(&self, n: u64) {
        self.events_published.fetch_add(n, Ordering::Relaxed);
    }

    /// Events JetStream recognised as already stored (a retry of the same id); also counted in
    /// `events_published`.
    pub fn events_duplicate(&self, n: u64) {
        self.events_duplicate.fetch_add(n, Ordering::Relaxed);
    }

    pub fn publish_failed(&self, kind: FailureKind, n: u64) {
        let i = FailureKind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL");
        self.publish_failures[i].fetch_add(n, Ordering::Relaxed);
    }

    pub fn events_rejected(&self, n: u64) {
        self.events_rejected.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP v7_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE v7_http_requests_total counter\n");
        for ((method, route, status), n) in lock(&self.http_requests).iter() {
            let _ = writeln!(
                out,
                "v7_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out.push_str("# HELP v7_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE v7_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.http_latency).iter() {
            let route = escape(route);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "v7_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ =
                writeln!(out, "v7_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "v7_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "v7_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        out.push_str("# HELP v7_grpc_requests_total gRPC calls by method and status code.\n");
        out.push_str("# TYPE v7_grpc_requests_total counter\n");
        for ((method, code), n) in lock(&self.grpc_requests).iter() {
            let _ =
                writeln!(out, "v7_grpc_requests_total{{method=\"{}\",code=\"{}\"}} {n}", escape(method), escape(code));
        }
        let counters = [
            (
                "v7_events_published_total",
                "Events JetStream acknowledged (stored, or recognised as a duplicate of a stored id).",
                &self.events_published,
            ),
            (
                "v7_events_duplicate_total",
                "Acknowledged events JetStream already had (same id within the duplicate window).",
                &self.events_duplicate,
            ),
            ("v7_events_rejected_total", "Events rejected by validation.", &self.events_rejected),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        // Every reason is always present (0 included) so dashboards and alerts see the series
        // before the first failure.
        out.push_str("# HELP v7_events_publish_failures_total Events not acknowledged by JetStream, by reason.\n");
        out.push_str("# TYPE v7_events_publish_failures_total counter\n");
        for (kind, v) in FailureKind::ALL.iter().zip(&self.publish_failures) {
            let _ = writeln!(
                out,
                "v7_events_publish_failures_total{{reason=\"{}\"}} {}",
                kind.label(),
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.observe_http("GET", "/healthz", 200, Duration::from_millis(3));
        m.observe_http("GET", "/healthz", 200, Duration::from_millis(300));
        m.observe_http("POST", "/api/events", 400, Duration::from_millis(1));
        m.observe_grpc("Publish", tonic::Code::Ok);
        m.events_published(3);
        m.events_duplicate(1);
        m.publish_failed(FailureKind::StreamFull, 2);
        let text = m.render();
        assert!(
            text.contains("v7_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("v7_http_requests_total{method=\"POST\",route=\"/api/events\",status=\"400\"} 1\n"));
        assert!(text.contains("v7_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 1\n"));
        assert!(text.contains("v7_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.5\"} 2\n"));
        assert!(text.contains("v7_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("v7_http_request_duration_seconds_count{route=\"/healthz\"} 2\n"));
        assert!(text.contains("v7_grpc_requests_total{method=\"Publish\",code=\"Ok\"} 1\n"));
        assert!(text.contains("v7_events_published_total 3\n"));
        assert!(text.contains("v7_events_duplicate_total 1\n"));
        assert!(text.contains("v7_events_publish_failures_total{reason=\"stream_full\"} 2\n"), "{text}");
        assert!(text.contains("v7_events_publish_failures_total{reason=\"nats_down\"} 0\n"), "{text}");
        // Every non-comment line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad line {line:?}");
        }
    }
}
