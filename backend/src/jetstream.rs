//! JetStream: the stream every accepted event is stored in, and the publisher whose acks decide
//! between `202` and `503`.
//!
//! Core NATS keeps nothing for a subscriber that is not there, so an event "published" while
//! analytics-engine is down was lost. Events now go to a JetStream stream (the shared contract of
//! issue 10: file storage, `discard: New`, 120 s duplicate window), and a request is answered
//! `202`/ack only once the server acknowledged — i.e. stored — every one of its events.
//!
//! Each event is published with `Nats-Msg-Id: <event id>`, so a retry of the same id within the
//! duplicate window is stored once (the ack says `duplicate`, which counts as stored).
use std::error::Error as _;
use std::time::Duration;

use async_nats::connection::State as NatsState;
use async_nats::jetstream::context::{Publish, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, ErrorCode};
// axum re-exports `bytes::Bytes` (the payload type of async-nats), so no extra dependency.
use axum::body::Bytes;
use tokio::time::Instant;

use crate::config::Config;

/// The stream, from the contract shared with analytics-engine (the `event-stream` crate).
pub fn stream_config(config: &Config) -> stream::Config {
    event_stream::stream_config(
        &config.nats_stream,
        &config.nats_subject,
        config.stream_max_bytes,
        config.stream_max_age,
    )
}

/// Why events could not be stored. Each maps to a `503` reason and a `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not connected to NATS, or the connection broke while waiting for acks.
    NatsDown,
    /// The stream refused the event: `max_bytes` (or the server's storage) is exhausted.
    StreamFull,
    /// No ack within `V7_PUBLISH_TIMEOUT_MS` while still connected.
    Timeout,
    /// Nothing stores the subject (no stream and it could not be created, JetStream disabled,
    /// or an existing stream of that name captures other subjects).
    NoStream,
    /// JetStream answered with another error.
    Rejected,
}

impl FailureKind {
    /// The `reason` label of `v7_events_publish_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::NatsDown => "nats_down",
            FailureKind::StreamFull => "stream_full",
            FailureKind::Timeout => "timeout",
            FailureKind::NoStream => "no_stream",
            FailureKind::Rejected => "rejected",
        }
    }

    pub const ALL: [FailureKind; 5] = [
        FailureKind::NatsDown,
        FailureKind::StreamFull,
        FailureKind::Timeout,
        FailureKind::NoStream,
        FailureKind::Rejected,
    ];

    /// Seconds a client should wait before retrying (`Retry-After`). A full stream frees space
    /// only as messages age out (`max_age`) or an operator acts, so it gets a longer pause than
    /// a reconnect.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            FailureKind::NatsDown | FailureKind::Timeout | FailureKind::NoStream => 5,
            FailureKind::StreamFull | FailureKind::Rejected => 30,
        }
    }
}

/// A request whose events were not all stored. Events are not rolled back: `stored` of them may
/// already be in the stream, which is why clients that retry should send their own ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFailure {
    pub kind: FailureKind,
    /// One line, starting with `nats: `, naming what failed.
    pub message: String,
    /// Events of the request JetStream acknowledged anyway.
    pub stored: usize,
    /// Events of the request not acknowledged.
    pub failed: usize,
}

/// Every event of the request is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Of them, how many JetStream recognised as a retry of an id it already had.
    pub duplicates: usize,
}

/// What `/readyz` and `/api/health` show about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub max_bytes: i64,
}

impl StreamState {
    pub fn describe(&self) -> String {
        format!("stream {}: {} messages, {} of {} bytes", self.name, self.messages, self.bytes, self.max_bytes)
    }
}

/// The JetStream side of one NATS connection.
pub struct JetStream {
    client: async_nats::Client,
    context: jetstream::Context,
    stream: stream::Config,
    /// Serialises `get_or_create_stream`, so a burst of requests that all find the stream
    /// missing sends one create, not hundreds.
    ensure_lock: tokio::sync::Mutex<()>,
}

impl JetStream {
    pub fn new(client: async_nats::Client, config: &Config) -> JetStream {
        let mut context = jetstream::new(client.clone());
        // Bounds both JetStream API requests and each ack; the request-wide deadline of
        // `publish` is applied on top.
        context.set_timeout(config.publish_timeout);
        JetStream { client, context, stream: stream_config(config), ensure_lock: tokio::sync::Mutex::new(()) }
    }

    pub fn stream_name(&self) -> &str {
        &self.stream.name
    }

    fn connected(&self) -> Result<(), String> {
        match self.client.connection_state() {
            NatsState::Connected => Ok(()),
            other => Err(format!("not connected ({other})")),
        }
    }

    /// `get_or_create_stream` with the contract's config: looks the stream up, creates it only
    /// when it does not exist, never edits it. Returns its current state.
    pub async fn ensure_stream(&self) -> Result<StreamState, String> {
        self.connected()?;
        let _guard = self.ensure_lock.lock().await;
        let stream = self
            .context
            .get_or_create_stream(self.stream.clone())
            .await
            .map_err(|e| format!("stream {}: {}", self.stream.name, one_line(&error_chain(&e))))?;
        let info = stream.cached_info();
        Ok(StreamState {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_bytes: info.config.max_bytes,
        })
    }

    /// Publishes every `(id, payload)` on `subject` with `Nats-Msg-Id: id`: sends them all, then
    /// waits for all the acks, the whole request bounded by `timeout`. If the only failures are
    /// "no stream" (it was deleted, or NATS restarted without its store), the stream is
    /// ensured once and the unacknowledged events are sent again — safe, since the ids dedupe.
    pub async fn publish(
        &self,
        subject: &str,
        events: &[(String, Bytes)],
        timeout: Duration,
    ) -> Result<Published, PublishFailure> {
        let deadline = Instant::now() + timeout;
        let total = events.len();
        let mut acked = 0usize;
        let mut duplicates = 0usize;
        let mut pending: Vec<usize> = (0..total).collect();
        let mut ensured = false;
        loop {
            if let Err(e) = self.connected() {
                return Err(PublishFailure {
                    kind: FailureKind::NatsDown,
                    message: format!("nats: {e}; {acked} of {total} events stored"),
                    stored: acked,
                    failed: total - acked,
                });
            }
            let results = self.send_and_wait(subject, events, &pending, deadline).await;
            let mut missing = Vec::new();
            // The first failure that is not "no stream" decides the reason.
            let mut failure: Option<(FailureKind, String)> = None;
            let mut failed = 0usize;
            for (i, res) in results {
                match res {
                    Ok(ack) => {
                        acked += 1;
                        if ack.duplicate {
                            duplicates += 1;
                        }
                    }
                    Err(e) => match self.classify(&e) {
                        FailureKind::NoStream => missing.push(i),
                        kind => {
                            failed += 1;
                            if failure.is_none() {
                                failure = Some((kind, one_line(&error_chain(&e))));
                            }
                        }
                    },
                }
            }
            if failure.is_none() && missing.is_empty() {
                return Ok(Published { duplicates });
            }
            if failure.is_none() && !ensured {
                ensured = true;
                // The stream may have been deleted or NATS restarted without its store: make it
                // again (as at startup) and resend what was not stored.
                let ensure = tokio::time::timeout_at(deadline, self.ensure_stream()).await;
                match ensure {
                    Ok(Ok(state)) => {
                        tracing::warn!(stream = %state.name, missing = missing.len(),
                            "publish found no stream; ensured it, resending");
                        pending = missing;
                        continue;
                    }
                    Ok(Err(e)) => {
                        return Err(self.no_stream(subject, acked, total, &e));
                    }
                    Err(_) => {
                        return Err(self.no_stream(subject, acked, total, "timed out ensuring it"));
                    }
                }
            }
            let failed = failed + missing.len();
            let (kind, cause) = match failure {
                Some(f) => f,
                None => {
                    return Err(self.no_stream(subject, acked, total, "it exists but does not capture the subject"))
                }
            };
            return Err(self.failure(kind, &cause, acked, failed, total, timeout));
        }
    }

    /// Sends the `pending` events, then awaits their acks (each bounded by `deadline`).
    async fn send_and_wait(
        &self,
        subject: &str,
        events: &[(String, Bytes)],
        pending: &[usize],
        deadline: Instant,
    ) -> Vec<(usize, Result<PublishAck, PublishError>)> {
        let mut out = Vec::with_capacity(pending.len());
        let mut waiting = Vec::with_capacity(pending.len());
        for &i in pending {
            let (id, payload) = &events[i];
            let publish = Publish::build().payload(payload.clone()).message_id(id);
            let sent = tokio::time::timeout_at(deadline, self.context.send_publish(subject.to_string(), publish)).await;
            match sent {
                Ok(Ok(ack)) => waiting.push((i, ack)),
                Ok(Err(e)) => out.push((i, Err(e))),
                Err(_) => out.push((i, Err(PublishError::from(PublishErrorKind::TimedOut)))),
            }
        }
        // Every publish is in flight before the first ack is awaited: a batch costs one round
        // trip, not one per event.
        let acks = futures::future::join_all(waiting.into_iter().map(|(i, ack)| async move {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(res) => (i, res),
                Err(_) => (i, Err(PublishError::from(PublishErrorKind::TimedOut))),
            }
        }))
        .await;
        out.extend(acks);
        out
    }

    fn classify(&self, e: &PublishError) -> FailureKind {
        match e.kind() {
            // "no responders": nothing listens on the subject's JetStream side.
            PublishErrorKind::StreamNotFound => FailureKind::NoStream,
            // The client dropped the request: the connection is gone.
            PublishErrorKind::BrokenPipe => FailureKind::NatsDown,
            PublishErrorKind::TimedOut => {
                if self.connected().is_err() {
                    FailureKind::NatsDown
                } else {
                    FailureKind::Timeout
                }
            }
            PublishErrorKind::Other => match e.source().and_then(|s| s.downcast_ref::<jetstream::Error>()) {
                Some(js) if is_full(js) => FailureKind::StreamFull,
                Some(_) => FailureKind::Rejected,
                None if self.connected().is_err() => FailureKind::NatsDown,
                None => FailureKind::Rejected,
            },
            _ => FailureKind::Rejected,
        }
    }

    fn no_stream(&self, subject: &str, acked: usize, total: usize, cause: &str) -> PublishFailure {
        PublishFailure {
            kind: FailureKind::NoStream,
            message: one_line(&format!(
                "nats: no JetStream stream stores subject {subject} (stream {}: {cause}); {acked} of {total} events stored",
                self.stream.name
            )),
            stored: acked,
            failed: total - acked,
        }
    }

    fn failure(
        &self,
        kind: FailureKind,
        cause: &str,
        acked: usize,
        failed: usize,
        total: usize,
        timeout: Duration,
    ) -> PublishFailure {
        let what = match kind {
            FailureKind::NatsDown => "connection lost".to_string(),
            FailureKind::StreamFull => format!(
                "stream {} is full (max_bytes {}, discard new): {cause}",
                self.stream.name, self.stream.max_bytes
            ),
            FailureKind::Timeout => format!("no JetStream ack within {timeout:?} for {failed} events"),
            FailureKind::NoStream | FailureKind::Rejected => format!("JetStream refused the event: {cause}"),
        };
        PublishFailure {
            kind,
            message: one_line(&format!("nats: {what}; {acked} of {total} events stored")),
            stored: acked,
            failed: total - acked,
        }
    }
}

/// The server refuses because a limit is reached: with `discard: New`, `max_bytes`/`max_msgs`
/// give "store failed: maximum bytes/messages exceeded" (10077); the account or server being
/// out of storage has its own codes.
fn is_full(e: &jetstream::Error) -> bool {
    let code = e.error_code();
    code == ErrorCode::STORAGE_RESOURCES_EXCEEDED
        || code == ErrorCode::INSUFFICIENT_RESOURCES
        || code == ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
        || code == ErrorCode::MEMORY_RESOURCES_EXCEEDED
        || (code == ErrorCode::STREAM_STORE_FAILED && e.to_string().to_ascii_lowercase().contains("maximum"))
}

/// `e` and its sources, `: `-separated (async-nats puts the server's words in the source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

fn one_line(s: &str) -> String {
    crate::app::one_line(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_config_is_the_contracts() {
        let c = stream_config(&Config::default());
        let want = event_stream::stream_config(
            event_stream::DEFAULT_STREAM,
            event_stream::DEFAULT_SUBJECT,
            event_stream::DEFAULT_MAX_BYTES,
            Duration::from_secs(event_stream::DEFAULT_MAX_AGE_SECS),
        );
        assert_eq!(format!("{c:?}"), format!("{want:?}"));
        assert_eq!((c.name.as_str(), c.subjects[0].as_str()), ("V7_EVENTS", "v7.events"));
    }

    #[test]
    fn failure_kinds_have_labels_and_retry_after() {
        let labels: Vec<&str> = FailureKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, ["nats_down", "stream_full", "timeout", "no_stream", "rejected"]);
        assert!(FailureKind::ALL.iter().all(|k| k.retry_after_secs() > 0));
    }
}
