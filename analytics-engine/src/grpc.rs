//! The gRPC `v7.analytics.v1.Analytics` service.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::event::valid_kind;
use crate::metrics::Metrics;
use crate::pb::analytics_server::Analytics;
use crate::pb::{KindStats, PingRequest, PingResponse, StatsRequest, StatsResponse};
use crate::{now_unix_ms, Shared};

pub struct AnalyticsService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Analytics for AnalyticsService {
    async fn get_stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let m = &self.shared.metrics;
        Metrics::inc(&m.stats_requests);
        let result = self.stats(request.into_inner()).await;
        if let Err(status) = &result {
            Metrics::inc(&m.stats_failures);
            tracing::warn!(code = ?status.code(), message = status.message(), "GetStats failed");
        }
        result.map(Response::new)
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            events_ingested: Metrics::get(&self.shared.metrics.events_stored),
        }))
    }
}

impl AnalyticsService {
    async fn stats(&self, req: StatsRequest) -> Result<StatsResponse, Status> {
        let kind = if req.kind.is_empty() {
            None
        } else if valid_kind(&req.kind) {
            Some(req.kind.as_str())
        } else {
            return Err(Status::invalid_argument("kind must be 1-64 chars of [a-z0-9_.-]"));
        };
        let now = now_unix_ms();
        let since = (req.window_seconds > 0).then(|| now.saturating_sub(u64::from(req.window_seconds) * 1000));
        let rows = self
            .shared
            .clickhouse
            .kind_values(kind, since)
            .await
            .map_err(|e| Status::unavailable(format!("querying ClickHouse: {e:#}")))?;
        let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (k, v) in rows {
            groups.entry(k).or_default().push(v);
        }
        let kinds = if groups.is_empty() {
            Vec::new()
        } else {
            self.shared
                .python
                .stats(&groups)
                .await
                .map_err(|e| Status::internal(format!("statistics component: {e:#}")))?
        };
        let kinds: Vec<KindStats> = kinds
            .into_iter()
            .map(|k| KindStats {
                kind: k.kind,
                count: k.count,
                mean: k.mean,
                min: k.min,
                max: k.max,
                p50: k.p50,
                p95: k.p95,
                stddev: k.stddev,
            })
            .collect();
        Ok(StatsResponse {
            total_events: kinds.iter().map(|k| k.count).sum(),
            kinds,
            computed_at_unix_ms: i64::try_from(now).unwrap_or(i64::MAX),
        })
    }
}
