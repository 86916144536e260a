//! gRPC `v7.ingest.v1.Ingest`: the same validation and JetStream path as `POST /api/events`; an
//! ack only once every event is stored, else `Unavailable` (with `retry-after` metadata).
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::app::{AppState, IngestError};
use crate::event::Event;
use crate::proto::ingest::ingest_server::{Ingest, IngestServer};
use crate::proto::ingest::{Event as PbEvent, EventBatch, PublishAck};

pub struct IngestService {
    state: Arc<AppState>,
}

pub fn service(state: Arc<AppState>) -> IngestServer<IngestService> {
    IngestServer::new(IngestService { state })
}

impl From<PbEvent> for Event {
    fn from(e: PbEvent) -> Self {
        Event {
            // proto3 has no "absent" for strings: empty means "backend makes one".
            id: if e.id.is_empty() { None } else { Some(e.id) },
            kind: e.kind,
            value: e.value,
            source: e.source,
            attributes: e.attributes.into_iter().collect(),
            ts_unix_ms: e.ts_unix_ms,
        }
    }
}

impl IngestService {
    async fn handle(&self, method: &str, events: Vec<PbEvent>, batch: bool) -> Result<Response<PublishAck>, Status> {
        let events: Vec<Event> = events.into_iter().map(Event::from).collect();
        let res = self.state.ingest(events, batch).await;
        let out = match res {
            Ok(ids) => Ok(Response::new(PublishAck { accepted: ids.len() as u32, ids })),
            Err(IngestError::Invalid(e)) => Err(Status::invalid_argument(e.to_string())),
            Err(IngestError::Unavailable(u)) => {
                let mut status = Status::unavailable(u.message);
                // The HTTP `Retry-After`, for gRPC clients that look (metadata is ASCII).
                if let Ok(v) = u.retry_after_secs.to_string().parse() {
                    status.metadata_mut().insert("retry-after", v);
                }
                Err(status)
            }
        };
        let code = match &out {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.state.metrics.observe_grpc(method, code);
        out
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn publish(&self, request: Request<PbEvent>) -> Result<Response<PublishAck>, Status> {
        self.handle("Publish", vec![request.into_inner()], false).await
    }

    async fn publish_batch(&self, request: Request<EventBatch>) -> Result<Response<PublishAck>, Status> {
        self.handle("PublishBatch", request.into_inner().events, true).await
    }
}
