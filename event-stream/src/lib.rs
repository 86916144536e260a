//! The JetStream contract of the events (docs/contracts.md, "Events"): the stream backend
//! publishes every accepted event to and the durable consumer analytics-engine reads it from.
//!
//! Both services pass these configs to `get_or_create_stream` / `get_or_create_consumer`
//! (whichever starts first creates them; neither edits an existing one), so they are defined
//! once, here: two copies could drift, and a stream created by one service with settings the
//! other does not expect would break the delivery guarantees silently.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

/// `V7_NATS_STREAM` unless set.
pub const DEFAULT_STREAM: &str = "V7_EVENTS";
/// `V7_NATS_SUBJECT` unless set.
pub const DEFAULT_SUBJECT: &str = "v7.events";
/// `V7_NATS_CONSUMER` unless set: the durable consumer every engine shares.
pub const DEFAULT_CONSUMER: &str = "analytics-engine";
/// 1 GiB, the default `max_bytes` (`V7_STREAM_MAX_BYTES`).
pub const DEFAULT_MAX_BYTES: i64 = 1_073_741_824;
/// 7 days, the default `max_age` (`V7_STREAM_MAX_AGE_SECS`).
pub const DEFAULT_MAX_AGE_SECS: u64 = 604_800;
/// Upper bound of `V7_STREAM_MAX_AGE_SECS` (100 years): JetStream keeps `max_age` in
/// nanoseconds as an i64, so larger values would overflow on the server.
pub const MAX_AGE_SECS_LIMIT: u64 = 100 * 365 * 24 * 3600;
/// How long a `Nats-Msg-Id` is remembered: a client's retry within it is stored once.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a delivered, unacknowledged message waits before JetStream delivers it again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Unacknowledged messages over all engines (also the largest batch an engine may pull).
pub const MAX_ACK_PENDING: i64 = 10_000;

/// The stream capturing `subject`.
pub fn stream_config(name: &str, subject: &str, max_bytes: i64, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        storage: StorageType::File,
        max_bytes,
        max_age,
        // A full stream refuses new events (the publisher learns it and answers 503) instead of
        // silently dropping the oldest, possibly unconsumed, ones.
        discard: DiscardPolicy::New,
        // An event leaves the stream once analytics-engine acknowledged it (it is in
        // ClickHouse then): `max_bytes` bounds the backlog, not a week of traffic. With the
        // default (limits) retention, 1 GiB of stored-and-counted events made backend refuse
        // new ones until they aged out.
        retention: RetentionPolicy::WorkQueue,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// The durable pull consumer every engine binds: explicit acks, so a message is delivered
/// again unless the engine acknowledged it after ClickHouse stored it.
pub fn consumer_config(durable_name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(durable_name.to_string()),
        description: Some("V7 analytics-engine: events -> ClickHouse".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    }
}

/// The settings of an existing stream and consumer that differ from the contract's and matter
/// to the delivery guarantees, one line each (empty when they match).
pub fn config_drift(
    want_stream: &stream::Config,
    stream: &stream::Config,
    want_consumer: &pull::Config,
    consumer: &consumer::Config,
) -> Vec<String> {
    let mut d = Vec::new();
    let mut check = |what: &str, want: String, got: String| {
        if want != got {
            d.push(format!("{what}: contract {want}, found {got}"));
        }
    };
    check("stream subjects", format!("{:?}", want_stream.subjects), format!("{:?}", stream.subjects));
    check("stream storage", format!("{:?}", want_stream.storage), format!("{:?}", stream.storage));
    check("stream discard", format!("{:?}", want_stream.discard), format!("{:?}", stream.discard));
    check("stream retention", format!("{:?}", want_stream.retention), format!("{:?}", stream.retention));
    check("stream max_bytes", want_stream.max_bytes.to_string(), stream.max_bytes.to_string());
    check("stream max_age", format!("{:?}", want_stream.max_age), format!("{:?}", stream.max_age));
    check(
        "stream duplicate_window",
        format!("{:?}", want_stream.duplicate_window),
        format!("{:?}", stream.duplicate_window),
    );
    check("consumer ack_policy", format!("{:?}", want_consumer.ack_policy), format!("{:?}", consumer.ack_policy));
    check("consumer ack_wait", format!("{:?}", want_consumer.ack_wait), format!("{:?}", consumer.ack_wait));
    check("consumer max_ack_pending", want_consumer.max_ack_pending.to_string(), consumer.max_ack_pending.to_string());
    check(
        "consumer deliver_policy",
        format!("{:?}", want_consumer.deliver_policy),
        format!("{:?}", consumer.deliver_policy),
    );
    d
}

/// A stream or durable consumer name: 1-255 bytes (it becomes a directory on the server), none
/// of whitespace `.` `*` `>` `/` `\` (subject tokens or path separators).
pub fn validate_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err(format!("must be 1 to 255 bytes, got {}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\')) {
        return Err(format!("{s:?} must not contain {c:?} (no whitespace, . * > / \\)"));
    }
    Ok(())
}

/// A subject to publish on: dot-separated non-empty tokens, no whitespace, no wildcards.
pub fn validate_subject(s: &str) -> Result<(), String> {
    if s.split('.').any(|t| t.is_empty()) {
        return Err(format!("subject {s:?} has an empty token"));
    }
    if s.chars().any(|c| c.is_whitespace() || c == '*' || c == '>') {
        return Err(format!("subject {s:?} must not contain whitespace or wildcards"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> (stream::Config, pull::Config) {
        (
            stream_config(
                DEFAULT_STREAM,
                DEFAULT_SUBJECT,
                DEFAULT_MAX_BYTES,
                Duration::from_secs(DEFAULT_MAX_AGE_SECS),
            ),
            consumer_config(DEFAULT_CONSUMER),
        )
    }

    #[test]
    fn the_contract() {
        let (s, p) = defaults();
        assert_eq!((s.name.as_str(), s.subjects.as_slice()), ("V7_EVENTS", &["v7.events".to_string()][..]));
        assert_eq!(
            (s.storage, s.discard, s.retention),
            (StorageType::File, DiscardPolicy::New, RetentionPolicy::WorkQueue)
        );
        assert_eq!((s.max_bytes, s.max_age), (1_073_741_824, Duration::from_secs(604_800)));
        assert_eq!(s.duplicate_window, Duration::from_secs(120));
        assert_eq!(p.durable_name.as_deref(), Some("analytics-engine"));
        assert_eq!((p.ack_policy, p.ack_wait, p.max_ack_pending), (AckPolicy::Explicit, ACK_WAIT, 10_000));
        assert_eq!(p.deliver_policy, DeliverPolicy::All);
    }

    #[test]
    fn drift_names_what_differs() {
        let (s, p) = defaults();
        let found = consumer::Config {
            ack_policy: p.ack_policy,
            ack_wait: p.ack_wait,
            max_ack_pending: p.max_ack_pending,
            deliver_policy: p.deliver_policy,
            ..Default::default()
        };
        assert!(config_drift(&s, &s, &p, &found).is_empty());
        let other = stream::Config { discard: DiscardPolicy::Old, retention: RetentionPolicy::Limits, ..s.clone() };
        let short = consumer::Config { ack_wait: Duration::from_secs(5), ..found };
        let d = config_drift(&s, &other, &p, &short);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("stream discard"), "{d:?}");
        assert!(d[1].starts_with("stream retention"), "{d:?}");
        assert!(d[2].starts_with("consumer ack_wait"), "{d:?}");
    }

    #[test]
    fn names_and_subjects() {
        assert!(validate_name("V7_EVENTS").is_ok());
        assert!(validate_name("").unwrap_err().contains("1 to 255"));
        assert!(validate_name(&"x".repeat(256)).unwrap_err().contains("got 256"));
        assert!(validate_name("a.b").unwrap_err().contains("'.'"));
        assert!(validate_subject("v7.events").is_ok());
        assert!(validate_subject("v7..events").unwrap_err().contains("empty token"));
        assert!(validate_subject("v7.*").unwrap_err().contains("wildcards"));
    }
}
