//! The gRPC `v7.analytics.v1.Analytics` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::pb::analytics_server::Analytics;
use crate::pb::{
    DependencyHealth, HealthRequest, HealthResponse, PingRequest, PingResponse, StatsRequest, StatsResponse,
};
use crate::Shared;

pub struct AnalyticsService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Analytics for AnalyticsService {
    async fn get_stats(&self, request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let m = &self.shared.metrics;
        Metrics::inc(&m.stats_requests);
        let result = self.shared.stats.get(request.get_ref()).await;
        if let Err(status) = &result {
            Metrics::inc(&m.stats_failures);
            tracing::warn!(code = ?status.code(), message = status.message(), "GetStats failed");
        }
        // The cached answer is shared; each caller gets its own copy to encode.
        result.map(|r| Response::new(StatsResponse::clone(&r)))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            events_ingested: Metrics::get(&self.shared.metrics.events_stored),
        }))
    }

    async fn health(&self, _request: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        let report = crate::health::report(&self.shared).await;
        Ok(Response::new(HealthResponse {
            dependencies: report
                .dependencies
                .iter()
                .map(|d| DependencyHealth { name: d.name.to_string(), ok: d.ok, detail: d.detail.clone() })
                .collect(),
        }))
    }
}
