//! Shared state and the one ingestion path used by both `POST /api/events` and gRPC `Ingest`.
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::connection::State as NatsState;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::event::{validate, Event, ValidationError};
use crate::metrics::Metrics;
use crate::proto::analytics::analytics_client::AnalyticsClient;
use crate::proto::analytics::PingRequest;

/// Largest gRPC `PublishBatch` accepted.
pub const MAX_BATCH: usize = 1000;
/// How long `/readyz` waits for analytics-engine's `Ping`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long publishing waits for the NATS client to write the events out.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AppState {
    pub config: Config,
    pub metrics: Metrics,
    /// Set once by the background connector when NATS first answers; async-nats reconnects
    /// by itself afterwards.
    nats: OnceLock<async_nats::Client>,
    analytics: AnalyticsClient<Channel>,
}

#[derive(Debug)]
pub enum IngestError {
    /// The input breaks docs/contracts.md (HTTP 400, gRPC InvalidArgument).
    Invalid(ValidationError),
    /// NATS is not connected or refused the message (HTTP 503, gRPC Unavailable).
    Unavailable(String),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Invalid(e) => e.fmt(f),
            IngestError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Readiness of each dependency (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub nats: Result<(), String>,
    pub analytics: Result<(), String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.nats.is_ok() && self.analytics.is_ok()
    }
}

impl AppState {
    pub fn new(config: Config) -> anyhow::Result<Arc<AppState>> {
        let endpoint = Endpoint::from_shared(config.analytics_url.clone())
            .map_err(|e| anyhow::anyhow!("V7_ANALYTICS_URL: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        // Lazy: the process starts (and /healthz works) while analytics-engine is down.
        let analytics = AnalyticsClient::new(endpoint.connect_lazy());
        Ok(Arc::new(AppState { config, metrics: Metrics::default(), nats: OnceLock::new(), analytics }))
    }

    pub fn analytics(&self) -> AnalyticsClient<Channel> {
        self.analytics.clone()
    }

    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.nats.get()
    }

    pub(crate) fn set_nats(&self, client: async_nats::Client) {
        let _ = self.nats.set(client);
    }

    fn nats_connected(&self) -> Result<&async_nats::Client, String> {
        match self.nats.get() {
            None => Err(format!("nats: not connected to {}", self.config.nats_url)),
            Some(c) => match c.connection_state() {
                NatsState::Connected => Ok(c),
                other => Err(format!("nats: {other} ({})", self.config.nats_url)),
            },
        }
    }

    pub async fn readiness(&self) -> Readiness {
        let nats = self.nats_connected().map(|_| ());
        let mut client = self.analytics();
        let analytics = match tokio::time::timeout(PING_TIMEOUT, client.ping(PingRequest {})).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!("analytics-engine: {}", one_line(&status_text(&status)))),
            Err(_) => Err(format!("analytics-engine: Ping timed out after {PING_TIMEOUT:?}")),
        };
        Readiness { nats, analytics }
    }

    /// Validates every event, then publishes each (with `id` and `ts_unix_ms` filled in) on
    /// `V7_NATS_SUBJECT`. Nothing is published when any event is invalid. `batch` names
    /// errors `events[i].field` instead of `field`. Returns the ids in order.
    pub async fn ingest(&self, events: Vec<Event>, batch: bool) -> Result<Vec<String>, IngestError> {
        if batch && events.len() > MAX_BATCH {
            self.metrics.events_rejected(events.len() as u64);
            return Err(IngestError::Invalid(ValidationError {
                field: "events".into(),
                message: format!("at most {MAX_BATCH} events per batch, got {}", events.len()),
            }));
        }
        for (i, ev) in events.iter().enumerate() {
            if let Err(e) = validate(ev) {
                self.metrics.events_rejected(events.len() as u64);
                let e = if batch { e.within(&format!("events[{i}]")) } else { e };
                return Err(IngestError::Invalid(e));
            }
        }
        let client = match self.nats_connected() {
            Ok(c) => c,
            Err(m) => {
                self.metrics.publish_failed(events.len() as u64);
                return Err(IngestError::Unavailable(m));
            }
        };
        let subject = self.config.nats_subject.clone();
        let mut ids = Vec::with_capacity(events.len());
        let total = events.len();
        for ev in events {
            let published = ev.finalize();
            let payload = serde_json::to_vec(&published).expect("event serializes");
            if let Err(e) = client.publish(subject.clone(), payload.into()).await {
                self.metrics.publish_failed(total as u64);
                tracing::warn!(error = %e, published = ids.len(), "NATS publish failed");
                return Err(IngestError::Unavailable(format!(
                    "nats: publish failed after {} of {total} events: {e}",
                    ids.len()
                )));
            }
            tracing::debug!(id = %published.id, kind = %published.kind, "event published");
            ids.push(published.id);
        }
        // publish() only queues in the client; flushing writes the batch to the socket before
        // we answer 202/ack (and avoids events sitting in the buffer until the next wakeup).
        match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
            Ok(Ok(())) => {
                self.metrics.events_published(total as u64);
                Ok(ids)
            }
            Ok(Err(e)) => {
                self.metrics.publish_failed(total as u64);
                tracing::warn!(error = %e, "NATS flush failed");
                Err(IngestError::Unavailable(format!("nats: flush failed: {e}")))
            }
            Err(_) => {
                self.metrics.publish_failed(total as u64);
                tracing::warn!("NATS flush timed out");
                Err(IngestError::Unavailable(format!("nats: flush timed out after {FLUSH_TIMEOUT:?}")))
            }
        }
    }
}

/// Connects to NATS, retrying with backoff until it answers or `stop` fires. Runs in the
/// background so the process serves `/healthz` while NATS is down.
pub(crate) async fn connect_nats(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let url = state.config.nats_url.clone();
    let mut delay = Duration::from_millis(100);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let opts = async_nats::ConnectOptions::new()
            .name("v7-backend")
            .connection_timeout(Duration::from_secs(3))
            .event_callback(|event| async move {
                tracing::info!(%event, "nats event");
            });
        let connect = opts.connect(url.as_str());
        tokio::select! {
            res = connect => match res {
                Ok(client) => {
                    tracing::info!(%url, attempt, "connected to NATS");
                    state.set_nats(client);
                    return;
                }
                Err(e) => {
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(%url, attempt, error = %e, "NATS not reachable yet, retrying");
                    }
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub fn status_text(status: &tonic::Status) -> String {
    let msg = status.message();
    if msg.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {msg}", status.code())
    }
}

/// Keeps error bodies to one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
