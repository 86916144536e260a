//! Shared state and the one ingestion path used by both `POST /api/events` and gRPC `Ingest`:
//! validate every event, publish them all to the JetStream stream, succeed only when every ack
//! arrived (see `jetstream.rs`).
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::connection::State as NatsState;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::event::{validate, Event, ValidationError};
use crate::jetstream::{FailureKind, JetStream, PublishFailure, StreamState};
use crate::metrics::Metrics;
use crate::proto::analytics::analytics_client::AnalyticsClient;
use crate::proto::analytics::PingRequest;

/// Largest gRPC `PublishBatch` accepted.
pub const MAX_BATCH: usize = 1000;
/// How long `/readyz` waits for analytics-engine's `Ping`, and for the stream lookup.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AppState {
    pub config: Config,
    pub metrics: Metrics,
    /// Set once by the background connector when NATS first answers; async-nats reconnects
    /// by itself afterwards.
    nats: OnceLock<async_nats::Client>,
    /// Set together with `nats`.
    jetstream: OnceLock<JetStream>,
    analytics: AnalyticsClient<Channel>,
}

#[derive(Debug)]
pub enum IngestError {
    /// The input breaks docs/contracts.md (HTTP 400, gRPC InvalidArgument).
    Invalid(ValidationError),
    /// NATS could not store every event (HTTP 503 + `Retry-After`, gRPC Unavailable).
    Unavailable(Unavailable),
}

/// Why a request's events were not (all) stored, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub kind: FailureKind,
    /// One line starting with `nats: `.
    pub message: String,
    pub retry_after_secs: u64,
}

impl From<PublishFailure> for Unavailable {
    fn from(f: PublishFailure) -> Self {
        Unavailable { kind: f.kind, retry_after_secs: f.kind.retry_after_secs(), message: f.message }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Invalid(e) => e.fmt(f),
            IngestError::Unavailable(u) => f.write_str(&u.message),
        }
    }
}

/// Readiness of each dependency (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Connected and the stream is reachable (looked up, or created when missing).
    pub nats: Result<StreamState, String>,
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
        Ok(Arc::new(AppState {
            config,
            metrics: Metrics::default(),
            nats: OnceLock::new(),
            jetstream: OnceLock::new(),
            analytics,
        }))
    }

    pub fn analytics(&self) -> AnalyticsClient<Channel> {
        self.analytics.clone()
    }

    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.nats.get()
    }

    pub(crate) fn set_nats(&self, client: async_nats::Client) {
        let _ = self.jetstream.set(JetStream::new(client.clone(), &self.config));
        let _ = self.nats.set(client);
    }

    fn nats_connected(&self) -> Result<&JetStream, String> {
        match (self.nats.get(), self.jetstream.get()) {
            (Some(c), Some(js)) => match c.connection_state() {
                NatsState::Connected => Ok(js),
                other => Err(format!("nats: not connected to {} ({other})", self.config.nats_url)),
            },
            _ => Err(format!("nats: not connected to {}", self.config.nats_url)),
        }
    }

    /// Connected to NATS and the stream is there (created when missing: a readiness probe that
    /// keeps traffic away until a publish recreates the stream would never become ready).
    pub async fn stream_state(&self) -> Result<StreamState, String> {
        let js = self.nats_connected()?;
        match tokio::time::timeout(PING_TIMEOUT, js.ensure_stream()).await {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(e)) => Err(format!("nats: {e}")),
            Err(_) => Err(format!("nats: stream {} not reachable within {PING_TIMEOUT:?}", js.stream_name())),
        }
    }

    pub async fn readiness(&self) -> Readiness {
        let mut client = self.analytics();
        let ping = async {
            match tokio::time::timeout(PING_TIMEOUT, client.ping(PingRequest {})).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(format!("analytics-engine: {}", one_line(&status_text(&status)))),
                Err(_) => Err(format!("analytics-engine: Ping timed out after {PING_TIMEOUT:?}")),
            }
        };
        let (nats, analytics) = tokio::join!(self.stream_state(), ping);
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
        let js = match self.nats_connected() {
            Ok(js) => js,
            Err(message) => {
                self.metrics.publish_failed(FailureKind::NatsDown, events.len() as u64);
                let kind = FailureKind::NatsDown;
                return Err(IngestError::Unavailable(Unavailable {
                    kind,
                    message,
                    retry_after_secs: kind.retry_after_secs(),
                }));
            }
        };
        let total = events.len();
        let mut ids = Vec::with_capacity(total);
        let mut messages = Vec::with_capacity(total);
        for ev in events {
            let published = ev.finalize();
            let payload = serde_json::to_vec(&published).expect("event serializes");
            messages.push((published.id.clone(), payload.into()));
            ids.push(published.id);
        }
        match js.publish(&self.config.nats_subject, &messages, self.config.publish_timeout).await {
            Ok(done) => {
                self.metrics.events_published(total as u64);
                self.metrics.events_duplicate(done.duplicates as u64);
                tracing::debug!(events = total, duplicates = done.duplicates, "events stored");
                Ok(ids)
            }
            Err(failure) => {
                self.metrics.events_published(failure.stored as u64);
                self.metrics.publish_failed(failure.kind, failure.failed as u64);
                tracing::warn!(reason = failure.kind.label(), stored = failure.stored, failed = failure.failed,
                    error = %failure.message, "JetStream did not store every event");
                Err(IngestError::Unavailable(failure.into()))
            }
        }
    }
}

/// Connects to NATS, retrying with backoff until it answers or `stop` fires, then ensures the
/// stream. Runs in the background so the process serves `/healthz` while NATS is down.
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
                    break;
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
    ensure_stream(&state, stop).await;
}

/// Creates the stream when it does not exist yet (the contract: both services do this at
/// startup), retrying with backoff while NATS or JetStream does not answer. Publishing does not
/// wait for this: it ensures the stream itself when it finds none.
async fn ensure_stream(state: &AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(js) = state.jetstream.get() else { return };
    let mut delay = Duration::from_millis(100);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        tokio::select! {
            res = js.ensure_stream() => match res {
                Ok(s) => {
                    tracing::info!(stream = %s.name, messages = s.messages, bytes = s.bytes, attempt, "JetStream stream ready");
                    return;
                }
                Err(e) => {
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(error = %e, attempt, "JetStream stream not available yet, retrying");
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
