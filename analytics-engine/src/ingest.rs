//! At-least-once consumption with exactly-once effect: the JetStream durable pull consumer of
//! the issue 10 contract -> validated rows -> one ClickHouse insert per batch -> acks.
//!
//! - A message is acknowledged only after ClickHouse answered its insert with success. A crash
//!   before that (or an ack lost on the way) makes JetStream redeliver it after `ack_wait`; the
//!   second copy lands on the same `(kind, id)` and the table collapses it (see `clickhouse`).
//! - The engine holds at most one batch of unacknowledged messages. While ClickHouse refuses
//!   it, the batch is retried and nothing more is fetched: back-pressure, never a drop. The
//!   rest waits in the stream (file storage, `discard: New`).
//! - Several engines bind the same durable consumer; JetStream hands each message to one of
//!   their pull requests.
//! - Shutdown: no new pull, the batch in hand is inserted (retried for a bounded time) and
//!   acknowledged, the acks are flushed, then the task ends. What could not be stored stays
//!   unacknowledged and is redelivered after `ack_wait`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use tokio::sync::watch;

use crate::clickhouse::{ClickHouse, SchemaOutcome};
use crate::config::Config;
use crate::event::{parse_event, Row};
use crate::metrics::Metrics;
use crate::stopped;

/// The stream, from the contract shared with backend (the `event-stream` crate).
pub fn stream_config(config: &Config) -> stream::Config {
    event_stream::stream_config(
        &config.nats_stream,
        &config.nats_subject,
        config.stream_max_bytes,
        config.stream_max_age,
    )
}

/// The durable pull consumer every engine shares, from the same contract.
pub fn consumer_config(config: &Config) -> pull::Config {
    event_stream::consumer_config(&config.nats_consumer)
}

/// NATS state shared with `/readyz` and the `Health` RPC.
#[derive(Default)]
pub struct NatsState {
    pub client: RwLock<Option<async_nats::Client>>,
    /// The bound durable consumer (none until the stream and the consumer were found or made).
    pub consumer: RwLock<Option<PullConsumer>>,
    /// Why binding the stream or the consumer failed last (cleared once bound).
    pub bind_error: Mutex<Option<String>>,
}

impl NatsState {
    fn client(&self) -> Option<async_nats::Client> {
        self.client.read().expect("nats state lock").clone()
    }

    pub fn consumer(&self) -> Option<PullConsumer> {
        self.consumer.read().expect("nats state lock").clone()
    }

    /// `Ok` when connected and the consumer is bound, else why not (no network round trip).
    pub fn ready(&self) -> Result<(), String> {
        let Some(client) = self.client() else { return Err("no client".into()) };
        match client.connection_state() {
            async_nats::connection::State::Connected => {}
            other => return Err(format!("connection {other}")),
        }
        if self.consumer().is_none() {
            let why = self.bind_error.lock().expect("nats state lock").clone();
            return Err(format!("consumer not bound{}", why.map(|w| format!(": {w}")).unwrap_or_default()));
        }
        Ok(())
    }
}

/// Whether ClickHouse has the current schema (created or migrated), shared by ingestion,
/// `/readyz` and `Health`.
pub struct SchemaState {
    ready: watch::Sender<bool>,
    error: Mutex<Option<String>>,
}

impl Default for SchemaState {
    fn default() -> Self {
        SchemaState { ready: watch::channel(false).0, error: Mutex::new(None) }
    }
}

impl SchemaState {
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Why the schema is not ready (the last error), if known.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("schema state lock").clone()
    }

    /// Runs [`ClickHouse::ensure_schema`] and records the outcome.
    pub async fn ensure(&self, ch: &ClickHouse) -> anyhow::Result<SchemaOutcome> {
        match ch.ensure_schema().await {
            Ok(outcome) => {
                *self.error.lock().expect("schema state lock") = None;
                self.ready.send_replace(true);
                Ok(outcome)
            }
            Err(e) => {
                *self.error.lock().expect("schema state lock") = Some(format!("{e:#}"));
                self.ready.send_replace(false);
                Err(e)
            }
        }
    }

    /// A failed insert may mean the table is gone: check the schema before the next one.
    fn mark_unready(&self) {
        self.ready.send_replace(false);
    }

    /// Resolves `true` once ready, `false` when `stop` fires first.
    async fn wait_ready(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::select! {
            r = rx.wait_for(|r| *r) => r.is_ok(),
            _ = stopped(stop) => false,
        }
    }
}

/// Creates or migrates the schema at start, retrying until it is done or `stop` fires.
pub async fn run_schema(ch: ClickHouse, schema: Arc<SchemaState>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        // A migration step interrupted by shutdown is finished at the next start (every step
        // is resumable), so shutdown does not wait for a long copy.
        let attempt = tokio::select! {
            r = schema.ensure(&ch) => r,
            _ = stopped(&mut stop) => return,
        };
        match attempt {
            Ok(outcome) => {
                tracing::info!(database = %ch.database(), ?outcome, "ClickHouse schema ready");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "ClickHouse schema not ready; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Ingestion settings (from [`Config`]).
#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub nats_url: String,
    pub stream: stream::Config,
    pub consumer_name: String,
    pub consumer: pull::Config,
    pub batch_size: usize,
    /// How long one pull request waits for its batch to fill.
    pub pull_expires: Duration,
    /// How long the last batch may keep retrying its insert at shutdown.
    pub final_flush_timeout: Duration,
}

impl IngestSettings {
    pub fn from_config(config: &Config) -> Self {
        IngestSettings {
            nats_url: config.nats_url.clone(),
            stream: stream_config(config),
            consumer_name: config.nats_consumer.clone(),
            consumer: consumer_config(config),
            batch_size: config.batch_size.max(1),
            pull_expires: config.flush_interval,
            final_flush_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the consuming loop needs.
pub struct Ingest {
    pub settings: IngestSettings,
    pub nats: Arc<NatsState>,
    pub ch: ClickHouse,
    pub schema: Arc<SchemaState>,
    pub metrics: Arc<Metrics>,
}

/// A fetched message and, when it is a valid event, its row.
struct Held {
    msg: Message,
    row: Row,
}

/// Why [`Ingest::consume`] returned.
enum Exit {
    Stop,
    Rebind(String),
}

/// How long after its `expires` a pull is given for the server's end-of-pull answer.
const PULL_GRACE: Duration = Duration::from_millis(500);

fn backoff_after(failures: u32) -> Duration {
    Duration::from_millis(250 * 2u64.pow(failures.min(5))).min(Duration::from_secs(5))
}

impl Ingest {
    /// Connects, binds the stream and the consumer, and consumes until `stop` fires. NATS or
    /// ClickHouse being away is waited out; the engine serves meanwhile.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let s = &self.settings;
        let connect = async_nats::ConnectOptions::new()
            .name("v7-analytics-engine")
            // Returns at once and connects in the background: the engine starts without NATS.
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                    other => tracing::info!(event = %other, "NATS event"),
                }
            })
            .connect(s.nats_url.as_str())
            .await;
        let client = match connect {
            Ok(c) => c,
            Err(e) => {
                // Only a malformed URL or options get here (connection errors are retried).
                tracing::error!(error = %e, "NATS client cannot be created; ingestion is off");
                *self.nats.bind_error.lock().expect("nats state lock") = Some(e.to_string());
                return;
            }
        };
        *self.nats.client.write().expect("nats state lock") = Some(client.clone());
        let js = jetstream::new(client.clone());

        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            // A JetStream request waits up to its timeout for a server that is not there;
            // shutdown does not wait for it.
            let bound = tokio::select! {
                r = self.bind(&js) => r,
                _ = stopped(&mut stop) => break,
            };
            let consumer = match bound {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff_after(failures);
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, stream = %s.stream.name, consumer = %s.consumer_name, retry_in_ms = delay.as_millis() as u64,
                            "cannot bind the JetStream stream and consumer (is nats-server running with JetStream, `-js`?); retrying");
                    }
                    *self.nats.bind_error.lock().expect("nats state lock") = Some(e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(&mut stop) => break,
                    }
                    continue;
                }
            };
            *self.nats.bind_error.lock().expect("nats state lock") = None;
            *self.nats.consumer.write().expect("nats state lock") = Some(consumer.clone());
            tracing::info!(stream = %s.stream.name, consumer = %s.consumer_name, "bound the JetStream durable consumer");
            // Messages fetched before ClickHouse has the schema would only wait out ack_wait.
            if !self.schema.wait_ready(&mut stop).await {
                break;
            }
            match self.consume(&consumer, &client, &mut stop).await {
                Exit::Stop => break,
                Exit::Rebind(why) => {
                    tracing::warn!(reason = %why, "JetStream consumer lost; binding it again");
                    *self.nats.consumer.write().expect("nats state lock") = None;
                    *self.nats.bind_error.lock().expect("nats state lock") = Some(why);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stopped(&mut stop) => break,
                    }
                }
            }
        }
        *self.nats.consumer.write().expect("nats state lock") = None;
        // Acks are plain publishes: make sure they left before the client goes (a flush
        // without a connection would only wait for its timeout).
        if client.connection_state() == async_nats::connection::State::Connected {
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
                tracing::debug!(error = %e, "NATS flush at shutdown");
            }
        }
        tracing::info!("JetStream consumer stopped");
    }

    /// `get_or_create_stream` (the contract's config) and `get_or_create_consumer`. An existing
    /// stream or consumer is used as it is, never changed.
    async fn bind(&self, js: &jetstream::Context) -> Result<PullConsumer, String> {
        let s = &self.settings;
        let stream =
            js.get_or_create_stream(s.stream.clone()).await.map_err(|e| format!("stream {}: {e}", s.stream.name))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(&s.consumer_name, s.consumer.clone())
            .await
            .map_err(|e| format!("consumer {}: {e}", s.consumer_name))?;
        let drift = event_stream::config_drift(
            &s.stream,
            &stream.cached_info().config,
            &s.consumer,
            &consumer.cached_info().config,
        );
        if !drift.is_empty() {
            // Used as they are (the contract: nobody edits an existing stream or consumer), but
            // an operator should know the guarantees above may not hold.
            tracing::warn!(differences = %drift.join("; "), "the existing JetStream stream/consumer differ from the contract's config");
        }
        Ok(consumer)
    }

    /// Pull, store, ack, until `stop` fires or the consumer fails.
    async fn consume(
        &self,
        consumer: &PullConsumer,
        client: &async_nats::Client,
        stop: &mut watch::Receiver<bool>,
    ) -> Exit {
        let s = &self.settings;
        loop {
            if *stop.borrow() {
                return Exit::Stop;
            }
            // One pull request for up to a batch, for at most `pull_expires`. The next one is
            // sent only once this batch is stored and acknowledged.
            let mut batch = match consumer.batch().max_messages(s.batch_size).expires(s.pull_expires).messages().await {
                Ok(b) => b,
                Err(e) => return Exit::Rebind(format!("pull request failed: {e}")),
            };
            // The server ends the pull at `pull_expires` with a 408; when that answer goes
            // missing, async-nats ends the batch only at expires + 5 s, and the events in hand
            // wait that long for ClickHouse (seen in xtask/bench/ingest.sh, 3 of 9 loads). The
            // pull is over on the server by then, so ending it here loses nothing: a message
            // still on its way is redelivered after ack_wait.
            let ends_by = tokio::time::Instant::now() + s.pull_expires + PULL_GRACE;
            let mut held: Vec<Held> = Vec::new();
            let mut failure = None;
            let mut stopping = false;
            loop {
                tokio::select! {
                    // Messages already here are taken before the deadline is looked at.
                    biased;
                    m = batch.next() => match m {
                        None => break,
                        Some(Ok(msg)) => {
                            if let Some(h) = self.accept(msg).await {
                                held.push(h);
                                self.metrics.pending_events.store(held.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Some(Err(e)) => {
                            // e.g. 409 consumer deleted, 503 no responders (stream gone).
                            failure = Some(format!("pull: {e}"));
                            break;
                        }
                    },
                    // Stop reading: a message the server sends to this pull afterwards is not lost,
                    // just unacknowledged, and redelivered after ack_wait.
                    _ = stopped(stop) => { stopping = true; break; }
                    _ = tokio::time::sleep_until(ends_by) => break,
                }
            }
            drop(batch);
            if !held.is_empty() && !self.store_and_ack(held, client, stop).await {
                return Exit::Stop;
            }
            if stopping {
                return Exit::Stop;
            }
            if let Some(why) = failure {
                return Exit::Rebind(why);
            }
        }
    }

    /// Parses one message. Invalid events are terminated (`+TERM`: never redelivered, counted
    /// and logged); valid ones are held for the insert.
    async fn accept(&self, msg: Message) -> Option<Held> {
        Metrics::inc(&self.metrics.events_received);
        let (published_ms, stream_seq) = match msg.info() {
            Ok(info) => {
                if info.delivered > 1 {
                    Metrics::inc(&self.metrics.events_redelivered);
                }
                let ms = info.published.unix_timestamp_nanos() / 1_000_000;
                (u64::try_from(ms).unwrap_or(0), info.stream_sequence)
            }
            Err(_) => (crate::now_unix_ms(), 0),
        };
        // A missing timestamp or id is taken from the JetStream message itself (its store time,
        // its stream sequence), so a redelivery yields the same row and collapses with the first.
        let stream = &self.settings.stream.name;
        match parse_event(&msg.payload, published_ms, || format!("js-{stream}-{stream_seq}")) {
            Ok(row) => Some(Held { msg, row }),
            Err(e) => {
                Metrics::inc(&self.metrics.events_invalid);
                tracing::warn!(error = %e, subject = %msg.subject, bytes = msg.payload.len(), "invalid event: not stored, terminated");
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    tracing::debug!(error = %e, "terminating an invalid message");
                }
                None
            }
        }
    }

    /// Inserts the held rows (retrying, and re-checking the schema after a failure), then acks
    /// every message. Returns false when it gave up because the engine is stopping: those
    /// messages stay unacknowledged and are redelivered after ack_wait.
    async fn store_and_ack(
        &self,
        held: Vec<Held>,
        client: &async_nats::Client,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let rows: Vec<Row> = held.iter().map(|h| h.row.clone()).collect();
        let mut failures = 0u32;
        let mut deadline = stop.borrow().then(|| Instant::now() + self.settings.final_flush_timeout);
        loop {
            let attempt = async {
                if !self.schema.is_ready() {
                    self.schema.ensure(&self.ch).await?;
                }
                self.ch.insert(&rows).await
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) => {
                    Metrics::inc(&self.metrics.insert_failures);
                    // The table may have been dropped: check (and create) it before retrying.
                    self.schema.mark_unready();
                    failures += 1;
                    let delay = backoff_after(failures);
                    if deadline.is_some_and(|d| Instant::now() + delay > d) {
                        tracing::error!(error = %format!("{e:#}"), unacknowledged = held.len(),
                            "stopping with ClickHouse unavailable: these events stay in NATS unacknowledged and are redelivered after ack_wait");
                        self.metrics.pending_events.store(0, Ordering::Relaxed);
                        return false;
                    }
                    tracing::warn!(error = %format!("{e:#}"), held = held.len(), retry_in_ms = delay.as_millis() as u64,
                        "ClickHouse insert failed; retrying the batch (no new events are fetched meanwhile)");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(stop), if deadline.is_none() => {
                            deadline = Some(Instant::now() + self.settings.final_flush_timeout);
                        }
                    }
                }
            }
        }
        if failures > 0 {
            tracing::info!(rows = rows.len(), "ClickHouse insert succeeded after {failures} failures");
        }
        Metrics::add(&self.metrics.events_stored, rows.len() as u64);
        // Stored: now, and only now, acknowledge.
        for h in &held {
            match h.msg.ack().await {
                Ok(()) => Metrics::inc(&self.metrics.events_acked),
                // Not fatal: the message is redelivered after ack_wait and collapses with its row.
                Err(e) => tracing::warn!(error = %e, "ack failed; the event will be redelivered and de-duplicated"),
            }
        }
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
            tracing::debug!(error = %e, "NATS flush after acks");
        }
        self.metrics.pending_events.store(0, Ordering::Relaxed);
        tracing::debug!(rows = rows.len(), "stored and acknowledged a batch");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_config_from_the_environment() {
        let c = Config::from_map(&Default::default()).unwrap();
        let (s, p) = (stream_config(&c), consumer_config(&c));
        assert_eq!((s.name.as_str(), s.subjects.as_slice()), ("V7_EVENTS", &["v7.events".to_string()][..]));
        assert_eq!(s.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(p.durable_name.as_deref(), Some("analytics-engine"));
        let vars = [
            ("V7_NATS_STREAM", "S2"),
            ("V7_NATS_SUBJECT", "a.b"),
            ("V7_NATS_CONSUMER", "c2"),
            ("V7_STREAM_MAX_BYTES", "1000"),
        ];
        let c = Config::from_map(&vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap();
        let (s, p) = (stream_config(&c), consumer_config(&c));
        assert_eq!((s.name.as_str(), s.subjects[0].as_str(), s.max_bytes), ("S2", "a.b", 1000));
        assert_eq!(p.durable_name.as_deref(), Some("c2"));
    }
}
