//! `GetStats` from ClickHouse aggregates: one aggregate query (plus one for the per-minute
//! series) instead of shipping every stored value out of the database, behind a single-flight
//! cache keyed by the request.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use crate::clickhouse::{ClickHouse, KindAggregate, MinuteRow};
use crate::coalesce::Coalescer;
use crate::event::valid_kind;
use crate::metrics::Metrics;
use crate::pb::{KindStats, MinuteCount, StatsRequest, StatsResponse};

/// Longest per-minute series one request may ask for (a day; the response grows with it).
pub const MAX_SERIES_MINUTES: u32 = 1440;
const MINUTE_MS: u64 = 60_000;

/// A validated `StatsRequest`: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsKey {
    pub kind: Option<String>,
    pub window_seconds: u32,
    pub series_minutes: u32,
}

impl StatsKey {
    /// The key of a valid request, else why it is invalid (an `INVALID_ARGUMENT`).
    pub fn from_request(req: &StatsRequest) -> Result<StatsKey, String> {
        let kind = if req.kind.is_empty() {
            None
        } else if valid_kind(&req.kind) {
            Some(req.kind.clone())
        } else {
            return Err("kind must be 1-64 chars of [a-z0-9_.-]".into());
        };
        if req.series_minutes > MAX_SERIES_MINUTES {
            return Err(format!("series_minutes must be at most {MAX_SERIES_MINUTES}, got {}", req.series_minutes));
        }
        Ok(StatsKey { kind, window_seconds: req.window_seconds, series_minutes: req.series_minutes })
    }
}

/// The minutes of a series of `n` minutes ending with the one containing `now_ms` (start of
/// each minute, oldest first).
pub fn series_minutes(now_ms: u64, n: u32) -> Vec<u64> {
    let last = now_ms / MINUTE_MS * MINUTE_MS;
    (0..u64::from(n)).rev().map(|back| last.saturating_sub(back * MINUTE_MS)).collect()
}

/// Builds the response: one `KindStats` per aggregate row, each with the counts of `minutes`
/// (zero where ClickHouse had no row) when a series was asked for.
pub fn build_response(
    aggregates: Vec<KindAggregate>,
    minute_rows: Vec<MinuteRow>,
    minutes: &[u64],
    now_ms: u64,
) -> StatsResponse {
    let mut counts: HashMap<(String, u64), u64> = HashMap::new();
    for r in minute_rows {
        *counts.entry((r.kind, r.minute_unix_ms)).or_default() += r.count;
    }
    let kinds: Vec<KindStats> = aggregates
        .into_iter()
        .map(|a| {
            let per_minute = minutes
                .iter()
                .map(|&m| MinuteCount {
                    minute_unix_ms: i64::try_from(m).unwrap_or(i64::MAX),
                    count: counts.get(&(a.kind.clone(), m)).copied().unwrap_or(0),
                })
                .collect();
            KindStats {
                kind: a.kind,
                count: a.count,
                mean: a.mean,
                min: a.min,
                max: a.max,
                p50: a.p50,
                p95: a.p95,
                stddev: a.stddev,
                per_minute,
            }
        })
        .collect();
    StatsResponse {
        total_events: kinds.iter().map(|k| k.count).sum(),
        kinds,
        computed_at_unix_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
    }
}

/// Runs the queries for `key` at `now_ms`.
pub async fn compute(ch: &ClickHouse, key: &StatsKey, now_ms: u64) -> Result<StatsResponse, Status> {
    let kind = key.kind.as_deref();
    let since = (key.window_seconds > 0).then(|| now_ms.saturating_sub(u64::from(key.window_seconds) * 1000));
    let minutes = series_minutes(now_ms, key.series_minutes);
    let series = async {
        match (minutes.first(), minutes.last()) {
            (Some(&from), Some(&last)) => ch.minute_counts(kind, from, last + MINUTE_MS).await,
            _ => Ok(Vec::new()),
        }
    };
    let (aggregates, series) = tokio::join!(ch.aggregates(kind, since), series);
    let unavailable = |e: anyhow::Error| Status::unavailable(format!("querying ClickHouse: {e:#}"));
    Ok(build_response(aggregates.map_err(unavailable)?, series.map_err(unavailable)?, &minutes, now_ms))
}

/// `GetStats` answers, coalesced per request.
pub struct Stats {
    ch: ClickHouse,
    metrics: Arc<Metrics>,
    cache: Coalescer<StatsKey, Arc<StatsResponse>, Status>,
}

impl Stats {
    pub fn new(ch: ClickHouse, metrics: Arc<Metrics>, ttl: std::time::Duration) -> Self {
        Stats { ch, metrics, cache: Coalescer::new(ttl) }
    }

    pub async fn get(&self, req: &StatsRequest) -> Result<Arc<StatsResponse>, Status> {
        let key = StatsKey::from_request(req).map_err(Status::invalid_argument)?;
        let (ch, metrics) = (self.ch.clone(), self.metrics.clone());
        self.cache
            .get(key.clone(), move || async move {
                Metrics::inc(&metrics.stats_queries);
                compute(&ch, &key, crate::now_unix_ms()).await.map(Arc::new)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(kind: &str, count: u64) -> KindAggregate {
        KindAggregate { kind: kind.into(), count, min: 1.0, max: 2.0, mean: 1.5, stddev: 0.5, p50: 1.5, p95: 1.95 }
    }

    #[test]
    fn series_minutes_end_with_the_current_minute() {
        assert_eq!(series_minutes(10 * MINUTE_MS + 59_999, 3), vec![8 * MINUTE_MS, 9 * MINUTE_MS, 10 * MINUTE_MS]);
        assert_eq!(series_minutes(10 * MINUTE_MS, 1), vec![10 * MINUTE_MS]);
        assert!(series_minutes(10 * MINUTE_MS, 0).is_empty());
    }

    #[test]
    fn response_fills_missing_minutes_with_zero() {
        let minutes = series_minutes(3 * MINUTE_MS + 5, 3);
        let rows = vec![
            MinuteRow { kind: "a".into(), minute_unix_ms: MINUTE_MS, count: 4 },
            MinuteRow { kind: "a".into(), minute_unix_ms: 3 * MINUTE_MS, count: 1 },
            MinuteRow { kind: "b".into(), minute_unix_ms: 2 * MINUTE_MS, count: 2 },
        ];
        let r = build_response(vec![agg("a", 5), agg("b", 2), agg("c", 9)], rows, &minutes, 3 * MINUTE_MS + 5);
        assert_eq!(r.total_events, 16);
        assert_eq!(r.computed_at_unix_ms, 180_005);
        let counts = |k: usize| r.kinds[k].per_minute.iter().map(|m| m.count).collect::<Vec<_>>();
        assert_eq!(counts(0), [4, 0, 1]);
        assert_eq!(counts(1), [0, 2, 0]);
        assert_eq!(counts(2), [0, 0, 0]);
        let starts: Vec<i64> = r.kinds[0].per_minute.iter().map(|m| m.minute_unix_ms).collect();
        assert_eq!(starts, [60_000, 120_000, 180_000]);
        let none = build_response(vec![agg("a", 1)], Vec::new(), &[], 0);
        assert!(none.kinds[0].per_minute.is_empty());
    }

    #[test]
    fn request_validation() {
        let req = |kind: &str, series_minutes| StatsRequest { kind: kind.into(), window_seconds: 0, series_minutes };
        assert_eq!(StatsKey::from_request(&req("", 0)).unwrap().kind, None);
        assert_eq!(StatsKey::from_request(&req("page_view", 60)).unwrap().kind.as_deref(), Some("page_view"));
        assert!(StatsKey::from_request(&req("Bad Kind", 0)).unwrap_err().contains("kind"));
        assert!(StatsKey::from_request(&req("", MAX_SERIES_MINUTES + 1)).unwrap_err().contains("series_minutes"));
    }
}
