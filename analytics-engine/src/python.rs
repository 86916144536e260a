//! The Python statistics component: one long-lived `$V7_PYTHON -m v7stats.server` child,
//! spoken to with newline-delimited JSON over its stdin/stdout (protocol in README.md and in
//! the `v7stats.server` docstring). Restarted when it dies.
//!
//! `GetStats` no longer goes through it (ClickHouse aggregates, see `stats`): its `stats` op is
//! the reference implementation of the statistic definitions, which the integration tests hold
//! ClickHouse's aggregates against, and `Health` reports whether it answers `ping`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{watch, Mutex};

use crate::metrics::Metrics;
use crate::stopped;

/// The module the engine runs.
pub const MODULE: &str = "v7stats.server";
/// How long one request may take before the process is considered hung and restarted.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `{"id":..,"op":"stats","groups":{kind:[values...]}}`
#[derive(Debug, Serialize)]
pub struct StatsRequest<'a> {
    pub id: u64,
    pub op: &'static str,
    pub groups: &'a BTreeMap<String, Vec<f64>>,
}

/// Statistics of one kind, as the component returns them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KindStats {
    pub kind: String,
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p95: f64,
    pub stddev: f64,
}

/// `{"id":..,"kinds":[...]}` or `{"id":..,"error":".."}` (or `{"id":..,"ok":true}` for ping).
#[derive(Debug, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub id: serde_json::Value,
    #[serde(default)]
    pub kinds: Option<Vec<KindStats>>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub version: Option<String>,
}

/// Encodes a stats request as one line (with the trailing `\n`).
pub fn encode_stats_request(id: u64, groups: &BTreeMap<String, Vec<f64>>) -> String {
    let mut line =
        serde_json::to_string(&StatsRequest { id, op: "stats", groups }).expect("finite floats always serialize");
    line.push('\n');
    line
}

/// Encodes a ping request line.
pub fn encode_ping_request(id: u64) -> String {
    format!("{}\n", serde_json::json!({"id": id, "op": "ping"}))
}

/// Decodes a response line to a stats request with id `expected_id`.
pub fn decode_stats_response(line: &str, expected_id: u64) -> Result<Vec<KindStats>> {
    let resp = decode_line(line, expected_id)?;
    resp.kinds.ok_or_else(|| anyhow!("statistics response without `kinds`"))
}

fn decode_line(line: &str, expected_id: u64) -> Result<Response> {
    let resp: Response = serde_json::from_str(line.trim_end())
        .with_context(|| format!("statistics component answered a non-response line {:?}", truncate(line)))?;
    if resp.id != expected_id {
        bail!("statistics component answered id {} to request {expected_id}", resp.id);
    }
    if let Some(err) = resp.error {
        bail!("statistics component error: {err}");
    }
    Ok(resp)
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How a request failed: `Rejected` leaves the process usable (it answered an error line),
/// `Broken` means the process must be restarted.
enum Failure {
    Rejected(anyhow::Error),
    Broken(anyhow::Error),
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Owns the Python child process.
pub struct PythonStats {
    python: String,
    python_path: Option<PathBuf>,
    proc: Mutex<Option<Proc>>,
    alive: AtomicBool,
    spawned_before: AtomicBool,
    spawn_failing: AtomicBool,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl PythonStats {
    pub fn new(python: String, python_path: Option<PathBuf>, metrics: Arc<Metrics>) -> Self {
        PythonStats {
            python,
            python_path,
            proc: Mutex::new(None),
            alive: AtomicBool::new(false),
            spawned_before: AtomicBool::new(false),
            spawn_failing: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Whether the process was running at the last check.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn spawn(&self) -> Result<Proc> {
        let mut cmd = Command::new(&self.python);
        cmd.arg("-m")
            .arg(MODULE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true);
        if let Some(dir) = &self.python_path {
            let mut paths = vec![dir.clone()];
            if let Some(existing) = std::env::var_os("PYTHONPATH") {
                paths.extend(std::env::split_paths(&existing));
            }
            cmd.env("PYTHONPATH", std::env::join_paths(paths).context("joining PYTHONPATH")?);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting `{} -m {MODULE}`", self.python))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Proc { child, stdin, stdout })
    }

    /// Makes sure a live process is in `slot`, (re)starting it when needed.
    fn ensure(&self, slot: &mut Option<Proc>) -> Result<()> {
        if let Some(p) = slot.as_mut() {
            match p.child.try_wait() {
                Ok(None) => {
                    self.alive.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Some(status)) => {
                    tracing::warn!(%status, "python statistics process exited; restarting it");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot poll the python statistics process; restarting it")
                }
            }
            *slot = None;
        }
        self.alive.store(false, Ordering::Relaxed);
        match self.spawn() {
            Ok(p) => {
                let pid = p.child.id().unwrap_or(0);
                *slot = Some(p);
                self.alive.store(true, Ordering::Relaxed);
                self.spawn_failing.store(false, Ordering::Relaxed);
                if self.spawned_before.swap(true, Ordering::Relaxed) {
                    Metrics::inc(&self.metrics.python_restarts);
                    tracing::info!(pid, "python statistics process restarted");
                } else {
                    tracing::info!(pid, python = %self.python, "python statistics process started");
                }
                Ok(())
            }
            Err(e) => {
                if !self.spawn_failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %format!("{e:#}"), "cannot start the python statistics process (retrying)");
                }
                Err(e)
            }
        }
    }

    /// Checks the process and restarts it when it died.
    pub async fn check(&self) -> bool {
        let mut slot = self.proc.lock().await;
        self.ensure(&mut slot).is_ok()
    }

    async fn round_trip(p: &mut Proc, line: &str, timeout: Duration) -> Result<String> {
        p.stdin.write_all(line.as_bytes()).await.context("writing to the statistics process")?;
        p.stdin.flush().await.context("flushing to the statistics process")?;
        let mut answer = String::new();
        let n = tokio::time::timeout(timeout, p.stdout.read_line(&mut answer))
            .await
            .map_err(|_| anyhow!("statistics process did not answer within {timeout:?}"))?
            .context("reading from the statistics process")?;
        if n == 0 {
            bail!("statistics process closed its stdout");
        }
        Ok(answer)
    }

    /// One request/response. The timeout is enforced here, never by dropping this future from
    /// outside: an answer arriving after the caller left would be read as the next request's.
    ///
    /// `spawn`: start the process when it is not running (a `stats` request), or fail at once
    /// (the health `ping`: reporting must not wait for an interpreter to start; the supervisor
    /// starts it).
    async fn request<T>(
        &self,
        line: String,
        id: u64,
        timeout: Duration,
        spawn: bool,
        decode: impl Fn(&str, u64) -> Result<T>,
    ) -> Result<T> {
        let mut slot = self.proc.lock().await;
        if !spawn {
            let running = match slot.as_mut() {
                Some(p) => matches!(p.child.try_wait(), Ok(None)),
                None => false,
            };
            if !running {
                bail!("the statistics process is not running (the supervisor restarts it)");
            }
        }
        self.ensure(&mut slot)?;
        let p = slot.as_mut().expect("ensure leaves a process");
        let outcome = match Self::round_trip(p, &line, timeout).await {
            Err(e) => Err(Failure::Broken(e)),
            Ok(answer) => match serde_json::from_str::<Response>(answer.trim_end()) {
                // A well-formed error line for our id: the process itself is fine.
                Ok(r) if r.id == id && r.error.is_some() => {
                    Err(Failure::Rejected(anyhow!("statistics component error: {}", r.error.unwrap_or_default())))
                }
                _ => decode(&answer, id).map_err(Failure::Broken),
            },
        };
        match outcome {
            Ok(v) => Ok(v),
            Err(Failure::Rejected(e)) => Err(e),
            Err(Failure::Broken(broken)) => {
                // Broken pipe, timeout or a desynchronised stream: start afresh next time.
                tracing::warn!(error = %format!("{broken:#}"), "python statistics process failed; killing it");
                if let Some(mut p) = slot.take() {
                    let _ = p.child.start_kill();
                    let _ = p.child.wait().await;
                }
                self.alive.store(false, Ordering::Relaxed);
                Err(broken)
            }
        }
    }

    /// Statistics per kind of `groups` (kind -> values).
    pub async fn stats(&self, groups: &BTreeMap<String, Vec<f64>>) -> Result<Vec<KindStats>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.request(encode_stats_request(id, groups), id, REQUEST_TIMEOUT, true, decode_stats_response).await
    }

    /// A protocol-level ping of the running process, answered within `timeout`; returns the
    /// component's version. A process that does not answer in time is killed (and restarted by
    /// the supervisor); none running is an error at once.
    pub async fn ping(&self, timeout: Duration) -> Result<String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.request(encode_ping_request(id), id, timeout, false, |line, id| {
            let r = decode_line(line, id)?;
            if r.ok != Some(true) {
                bail!("ping answered without ok");
            }
            Ok(r.version.unwrap_or_default())
        })
        .await
    }

    /// Keeps the process running until `shutdown` turns true, then stops it.
    pub async fn supervise(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let ok = self.check().await;
            backoff = if ok { Duration::from_millis(250) } else { (backoff * 2).min(Duration::from_secs(5)) };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        self.stop().await;
    }

    /// Closes the process's stdin (it exits on EOF), killing it if it lingers.
    pub async fn stop(&self) {
        let mut slot = self.proc.lock().await;
        self.alive.store(false, Ordering::Relaxed);
        if let Some(Proc { mut child, stdin, stdout }) = slot.take() {
            drop(stdin);
            drop(stdout);
            match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
                Ok(_) => tracing::info!("python statistics process stopped"),
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    tracing::warn!("python statistics process killed (did not exit on EOF)");
                }
            }
        }
    }

    /// The child's pid (tests kill it to check restarts).
    pub async fn pid(&self) -> Option<u32> {
        self.proc.lock().await.as_ref().and_then(|p| p.child.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        let mut groups = BTreeMap::new();
        groups.insert("b".to_string(), vec![1.0, 2.5]);
        groups.insert("a".to_string(), vec![3.0]);
        let line = encode_stats_request(7, &groups);
        assert_eq!(line, "{\"id\":7,\"op\":\"stats\",\"groups\":{\"a\":[3.0],\"b\":[1.0,2.5]}}\n");
        assert_eq!(encode_ping_request(3), "{\"id\":3,\"op\":\"ping\"}\n");
    }

    #[test]
    fn response_decoding() {
        let line =
            r#"{"id":7,"kinds":[{"kind":"a","count":2,"mean":1.5,"min":1,"max":2,"p50":1.5,"p95":1.95,"stddev":0.5}]}"#;
        let kinds = decode_stats_response(line, 7).unwrap();
        assert_eq!(
            kinds,
            vec![KindStats {
                kind: "a".into(),
                count: 2,
                mean: 1.5,
                min: 1.0,
                max: 2.0,
                p50: 1.5,
                p95: 1.95,
                stddev: 0.5
            }]
        );
    }

    #[test]
    fn error_and_mismatch_responses() {
        let err = decode_stats_response(r#"{"id":7,"error":"boom"}"#, 7).unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert!(decode_stats_response(r#"{"id":8,"kinds":[]}"#, 7).is_err());
        assert!(decode_stats_response("garbage", 7).is_err());
        assert!(decode_stats_response(r#"{"id":7}"#, 7).is_err());
    }
}
