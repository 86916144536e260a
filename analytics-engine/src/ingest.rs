//! NATS subscription -> validated rows -> batched ClickHouse inserts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::clickhouse::ClickHouse;
use crate::event::{parse_event, Row};
use crate::metrics::Metrics;
use crate::{now_unix_ms, stopped};

/// NATS state shared with `/readyz`.
#[derive(Default)]
pub struct NatsState {
    pub client: RwLock<Option<async_nats::Client>>,
    pub subscribed: AtomicBool,
}

impl NatsState {
    /// `Ok` when the subscription exists and the connection is up, else why not.
    pub fn ready(&self) -> Result<(), String> {
        if !self.subscribed.load(Ordering::Relaxed) {
            return Err("not subscribed".into());
        }
        match self.client.read().expect("nats state lock").as_ref() {
            None => Err("no client".into()),
            Some(c) => match c.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("connection {other}")),
            },
        }
    }
}

/// Subscribes to `subject` and feeds valid rows to `tx` until `shutdown` turns true.
/// Connection problems are retried in the background; the engine runs meanwhile.
pub async fn run_subscriber(
    url: String,
    subject: String,
    state: Arc<NatsState>,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Row>,
    mut shutdown: watch::Receiver<bool>,
) {
    let seq = AtomicU64::new(0);
    let mut backoff = Duration::from_millis(500);
    'outer: loop {
        if *shutdown.borrow() {
            break;
        }
        let connect = async_nats::ConnectOptions::new()
            .name("v7-analytics-engine")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            })
            .connect(url.as_str())
            .await;
        let client = match connect {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, url = %url, "NATS connect failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        *state.client.write().expect("nats state lock") = Some(client.clone());
        let mut sub = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, subject = %subject, "NATS subscribe failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut shutdown) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        state.subscribed.store(true, Ordering::Relaxed);
        tracing::info!(subject = %subject, "subscribed to NATS subject");
        loop {
            tokio::select! {
                msg = sub.next() => {
                    let Some(msg) = msg else {
                        tracing::warn!("NATS subscription ended; resubscribing");
                        state.subscribed.store(false, Ordering::Relaxed);
                        continue 'outer;
                    };
                    Metrics::inc(&metrics.events_received);
                    let now = now_unix_ms();
                    match parse_event(&msg.payload, now, || format!("ae-{now}-{}", seq.fetch_add(1, Ordering::Relaxed))) {
                        Ok(row) => {
                            if tx.send(row).await.is_err() {
                                break 'outer;
                            }
                        }
                        Err(e) => {
                            Metrics::inc(&metrics.events_invalid);
                            tracing::warn!(error = %e, subject = %msg.subject, bytes = msg.payload.len(), "invalid event dropped");
                        }
                    }
                }
                _ = stopped(&mut shutdown) => {
                    state.subscribed.store(false, Ordering::Relaxed);
                    if let Err(e) = sub.unsubscribe().await {
                        tracing::debug!(error = %e, "NATS unsubscribe");
                    }
                    // Rows already received are still queued in `tx`; the writer flushes them.
                    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(1), sub.next()).await {
                        Metrics::inc(&metrics.events_received);
                        let now = now_unix_ms();
                        match parse_event(&msg.payload, now, || format!("ae-{now}-{}", seq.fetch_add(1, Ordering::Relaxed))) {
                            Ok(row) => { let _ = tx.send(row).await; }
                            Err(_) => Metrics::inc(&metrics.events_invalid),
                        }
                    }
                    break 'outer;
                }
            }
        }
    }
    state.subscribed.store(false, Ordering::Relaxed);
    tracing::info!("NATS subscriber stopped");
}

/// Batching settings of the writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_pending: usize,
    /// How long the final flush may keep retrying at shutdown.
    pub final_flush_timeout: Duration,
}

struct Writer {
    ch: ClickHouse,
    metrics: Arc<Metrics>,
    pending: VecDeque<Row>,
    schema_ready: bool,
    failures_in_row: u32,
    retry_at: Option<Instant>,
    settings: WriterSettings,
}

impl Writer {
    fn push(&mut self, row: Row) {
        self.pending.push_back(row);
        if self.pending.len() > self.settings.max_pending {
            self.pending.pop_front();
            Metrics::inc(&self.metrics.events_dropped);
        }
        self.metrics.pending_events.store(self.pending.len() as u64, Ordering::Relaxed);
    }

    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Inserts everything pending, in chunks. Returns false on failure (rows are kept).
    async fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            if !self.schema_ready {
                match self.ch.ensure_schema().await {
                    Ok(()) => {
                        self.schema_ready = true;
                        tracing::info!(database = %self.ch.database(), "ClickHouse schema ready");
                    }
                    Err(e) => return self.failed(e),
                }
            }
            let n = self.pending.len().min(self.settings.batch_size.max(1) * 20);
            let chunk: Vec<Row> = self.pending.iter().take(n).cloned().collect();
            match self.ch.insert(&chunk).await {
                Ok(()) => {
                    self.pending.drain(..n);
                    Metrics::add(&self.metrics.events_stored, n as u64);
                    self.metrics.pending_events.store(self.pending.len() as u64, Ordering::Relaxed);
                    if self.failures_in_row > 0 {
                        tracing::info!("ClickHouse inserts recovered");
                    }
                    self.failures_in_row = 0;
                    self.retry_at = None;
                    tracing::debug!(rows = n, "inserted batch");
                }
                Err(e) => {
                    // The table may have been dropped: recreate it on the next attempt.
                    self.schema_ready = false;
                    return self.failed(e);
                }
            }
        }
        true
    }

    fn failed(&mut self, e: anyhow::Error) -> bool {
        Metrics::inc(&self.metrics.insert_failures);
        self.failures_in_row += 1;
        let delay = Duration::from_millis(250 * 2u64.pow(self.failures_in_row.min(5))).min(Duration::from_secs(5));
        self.retry_at = Some(Instant::now() + delay);
        tracing::warn!(error = %format!("{e:#}"), pending = self.pending.len(), retry_in_ms = delay.as_millis() as u64, "ClickHouse insert failed; will retry");
        false
    }
}

/// Drains `rx` into ClickHouse until the channel closes (all senders dropped), then flushes.
pub async fn run_writer(ch: ClickHouse, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Row>, settings: WriterSettings) {
    let mut w = Writer {
        ch,
        metrics,
        pending: VecDeque::new(),
        schema_ready: false,
        failures_in_row: 0,
        retry_at: None,
        settings,
    };
    // Create the schema at start (not only at the first insert) when ClickHouse is up.
    match w.ch.ensure_schema().await {
        Ok(()) => {
            w.schema_ready = true;
            tracing::info!(database = %w.ch.database(), "ClickHouse schema ready");
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "ClickHouse not ready at start; will create the schema later")
        }
    }
    // The first tick one interval from now: `interval`'s first tick is immediate, and a row that
    // arrives before the loop has taken it would be flushed at once, whatever batch_size says.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + settings.flush_interval, settings.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            row = rx.recv() => match row {
                Some(row) => {
                    w.push(row);
                    if w.pending.len() >= settings.batch_size && w.may_try() {
                        w.flush().await;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                if !w.schema_ready && w.pending.is_empty() && w.may_try() {
                    if let Err(e) = w.ch.ensure_schema().await {
                        w.retry_at = Some(Instant::now() + Duration::from_secs(2));
                        tracing::debug!(error = %format!("{e:#}"), "ClickHouse schema not created yet");
                    } else {
                        w.schema_ready = true;
                        tracing::info!(database = %w.ch.database(), "ClickHouse schema ready");
                    }
                }
                if !w.pending.is_empty() && w.may_try() {
                    w.flush().await;
                }
            }
        }
    }
    // Shutdown: flush what is left, retrying for a bounded time.
    let deadline = Instant::now() + settings.final_flush_timeout;
    while !w.pending.is_empty() {
        if w.flush().await {
            break;
        }
        if Instant::now() >= deadline {
            tracing::error!(lost = w.pending.len(), "giving up on pending events at shutdown: ClickHouse unavailable");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::info!("ClickHouse writer stopped");
}
