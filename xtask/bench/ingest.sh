#!/usr/bin/env bash
# Ingest and stats benchmark of issue 10 (JetStream publishing, stats from ClickHouse), in ONE run,
# both sides built in release mode from git worktrees (edits in progress change nothing):
#   baseline:       BASE (default 1eacf98, the last commit before issue 10: backend publishes on
#                   core NATS and answers 202 once the client flushed; the engine subscribes,
#                   stores into a plain MergeTree and answers GetStats by sending every value to
#                   its Python process);
#   this checkout:  HEAD (backend answers 202 once JetStream acknowledged; the engine consumes a
#                   durable consumer, ReplacingMergeTree, aggregates in ClickHouse, 1 s cache).
# Real servers run as host processes on free loopback ports (no podman): one `nats-server -js -sd`
# (core NATS for the baseline, JetStream for HEAD; separate subjects) and one clickhouse-server
# with a generated minimal config (as analytics-engine/tests/common/mod.rs does), databases
# v7bench_old / v7bench_new, each created by its own engine. Per side: engine + backend; HEAD also
# runs a second engine with V7_STATS_CACHE_MS=0 (same stream, consumer and database) behind a
# second backend.
#   ingest: REQUESTS requests on CONCURRENCY keep-alive connections, each side with its engine
#           running: HTTP `POST /api/events` (one event a request; HTTP has no batch form), gRPC
#           Publish (one event) and gRPC PublishBatch (BATCH_REQUESTS batches of BATCH events):
#           accepted events/s, p50/p99 ms of a 202 / ack, failed requests; then how many of the
#           accepted events reached ClickHouse, and how long after the load (bounded by
#           DRAIN_TIMEOUT s, or 15 s without a new row). Sides alternate first/second from run to run.
#   stats:  for each of SIZES stored events (10 kinds, loaded straight into both tables with one
#           `INSERT ... SELECT ... FROM numbers(N)`, ts within the last hour, ingest rows truncated):
#           the first request after the load (> 1 s after any other, so HEAD's cache is cold) and
#           the median of REPEATS more, back to back, through backend's `GET /api/stats` and by gRPC
#           `GetStats{}` (all kinds, all time) straight to the engine, also with the client sending
#           an HTTP/2 PING every 1 ms (BASE's services leave Nagle on for the gRPC connections they
#           accept, so an answer written as body + trailers otherwise waits ~40 ms for the client's
#           delayed ACK; the pings make that ACK immediate; HEAD sets TCP_NODELAY, so there the two
#           should agree); and ClickHouse's own query
#           over its HTTP interface: `GROUP BY kind` of count, avg, min, max, quantiles(0.5, 0.95),
#           stddevPop on the baseline table, and HEAD's exact query (FINAL, stddevPopStable) on
#           HEAD's table.
# The load generator is a small Rust program (one thread, bounded counts) written into the HEAD
# worktree's backend/examples and built there against HEAD's protos (both sides speak them).
# Medians over RUNS; the cleanup kills only the processes it started, by PID, and removes its
# worktrees and temp dir. TARGET_CACHE=<dir> keeps the two target dirs there between runs,
# KEEP_LOGS=<dir> the servers' and services' logs.
# Usage: RUNS=3 xtask/bench/ingest.sh
#        (SIZES="10000 100000 1000000" REQUESTS=20000 BATCH=100 BATCH_REQUESTS=REQUESTS/10
#         CONCURRENCY=8 REPEATS=10 DRAIN_TIMEOUT=120 BASE=1eacf98 are the defaults)
set -euo pipefail
runs=${RUNS:-3}
base=${BASE:-1eacf98}
sizes=${SIZES:-10000 100000 1000000}
requests=${REQUESTS:-20000}
batch=${BATCH:-100}
batch_requests=${BATCH_REQUESTS:-$(( requests / 10 > 0 ? requests / 10 : 1 ))}
concurrency=${CONCURRENCY:-8}
repeats=${REPEATS:-10}
drain_timeout=${DRAIN_TIMEOUT:-120}
root=$(git rev-parse --show-toplevel)
cd "$root"
for bin in nats-server clickhouse-server; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "$bin not found: apt-get install $bin" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin"
tmp=$(mktemp -d /var/tmp/v7bench-ingest.XXXXXX)
mkdir -p "$tmp/logs"
targets=${TARGET_CACHE:-$tmp}
old_tree="$tmp/base"
new_tree="$tmp/new"
pids=()
cleanup() {
  local i pid n
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$tmp/logs/." "$KEEP_LOGS/" 2>/dev/null || true; fi
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for n in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  git worktree remove --force "$old_tree" >/dev/null 2>&1 || true
  git worktree remove --force "$new_tree" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building $base and HEAD (release, worktrees, nice 19)"
git worktree add -q --detach "$old_tree" "$base"
git worktree add -q --detach "$new_tree" HEAD
(cd "$old_tree" && CARGO_TARGET_DIR="$targets/base-target" nice -n 19 cargo build -q --release --locked -p backend -p analytics-engine)
(cd "$new_tree" && CARGO_TARGET_DIR="$targets/new-target" nice -n 19 cargo build -q --release --locked -p backend -p analytics-engine)
mkdir -p "$new_tree/backend/examples"
cat > "$new_tree/backend/examples/v7bench_load.rs" <<'EOF'
//! Load generator of xtask/bench/ingest.sh (written into the bench's HEAD worktree, never into the
//! checkout). One thread (current-thread runtime), bounded request counts, loopback only.
//!   events-http URL REQUESTS CONCURRENCY            POST URL/api/events, one event per request
//!   events-grpc URL REQUESTS CONCURRENCY BATCH      Ingest/Publish (BATCH 1) or PublishBatch
//!     -> "<events/s> <p50 ms> <p99 ms> <events accepted> <requests failed> <seconds>"
//!   stats-http URL REPEATS | stats-grpc URL REPEATS  GET URL/api/stats | Analytics/GetStats{}
//!   stats-grpc-quick URL REPEATS                    GetStats{}, the client sending an HTTP/2 PING
//!                                                   every 1 ms: its ACKs go out at once, so an
//!                                                   answer the server writes in two pieces with
//!                                                   Nagle on is not held for a delayed ACK (40 ms)
//!   ch URL USER PASSWORD QUERY REPEATS               one query over ClickHouse's HTTP interface
//!     -> "<first ms> <median of REPEATS ms> <total_events, or lines of the answer>"
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::proto::analytics::analytics_client::AnalyticsClient;
use backend::proto::analytics::StatsRequest;
use backend::proto::ingest::ingest_client::IngestClient;
use backend::proto::ingest::{Event, EventBatch};
use tonic::transport::{Channel, Endpoint};

type Res<T> = Result<T, String>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn event(i: usize, kind: &str) -> Event {
    Event {
        kind: kind.to_string(),
        value: (i % 1000) as f64 / 10.0,
        source: "v7bench".to_string(),
        attributes: [("path".to_string(), "/bench".to_string())].into_iter().collect(),
        ts_unix_ms: 0,
        id: String::new(),
    }
}

struct Tally {
    latencies_ms: Vec<f64>,
    events: usize,
    failed: usize,
    first_error: Option<String>,
}

/// Runs `requests` calls on `concurrency` workers (`make_worker(w)` gives worker w its call,
/// which returns the events stored); prints the summary line.
async fn drive<F, Fut>(requests: usize, concurrency: usize, make_worker: impl Fn(usize) -> F) -> Res<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<usize>>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let tally =
        Arc::new(Mutex::new(Tally { latencies_ms: Vec::with_capacity(requests), events: 0, failed: 0, first_error: None }));
    let start = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let mut call = make_worker(w);
        let (next, tally) = (next.clone(), tally.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let r = call(i).await;
                let took = ms(t.elapsed());
                let mut s = tally.lock().unwrap();
                match r {
                    Ok(n) => {
                        s.latencies_ms.push(took);
                        s.events += n;
                    }
                    Err(e) => {
                        s.failed += 1;
                        s.first_error.get_or_insert(e);
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let secs = start.elapsed().as_secs_f64();
    let mut s = tally.lock().unwrap();
    s.latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if let Some(e) = &s.first_error {
        eprintln!("v7bench_load: {} of {requests} requests failed, first: {e}", s.failed);
    }
    println!(
        "{:.0} {:.3} {:.3} {} {} {:.3}",
        s.events as f64 / secs,
        pct(&s.latencies_ms, 0.50),
        pct(&s.latencies_ms, 0.99),
        s.events,
        s.failed,
        secs
    );
    Ok(())
}

async fn channel(url: &str) -> Res<Channel> {
    channel_pinging(url, None).await
}

async fn channel_pinging(url: &str, ping: Option<Duration>) -> Res<Channel> {
    let mut e = Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?.timeout(Duration::from_secs(120));
    if let Some(every) = ping {
        e = e.http2_keep_alive_interval(every).keep_alive_while_idle(true).keep_alive_timeout(Duration::from_secs(60));
    }
    e.connect()
        .await
        .map_err(|e| format!("connect {url}: {e:?}"))
}

fn http_client(concurrency: usize) -> Res<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| e.to_string())
}

async fn events_http(url: String, requests: usize, concurrency: usize) -> Res<()> {
    let client = http_client(concurrency)?;
    let url = format!("{url}/api/events");
    drive(requests, concurrency, |_| {
        let (client, url) = (client.clone(), url.clone());
        move |i: usize| {
            let body = format!(
                r#"{{"kind":"bench_http","value":{},"source":"v7bench","attributes":{{"path":"/bench"}}}}"#,
                (i % 1000) as f64 / 10.0
            );
            let req = client.post(&url).header("content-type", "application/json").body(body);
            async move {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                if status == 202 {
                    Ok(1)
                } else {
                    Err(format!("{status} {text}"))
                }
            }
        }
    })
    .await
}

async fn events_grpc(url: String, requests: usize, concurrency: usize, batch: usize) -> Res<()> {
    let mut channels = Vec::new();
    for _ in 0..concurrency {
        channels.push(channel(&url).await?);
    }
    drive(requests, concurrency, |w| {
        let client = IngestClient::new(channels[w].clone());
        move |i: usize| {
            let mut client = client.clone();
            async move {
                if batch == 1 {
                    let ack = client.publish(event(i, "bench_grpc")).await.map_err(|s| format!("{s:?}"))?;
                    Ok(ack.into_inner().accepted as usize)
                } else {
                    let events = (0..batch).map(|j| event(i * batch + j, "bench_batch")).collect();
                    let ack =
                        client.publish_batch(EventBatch { events }).await.map_err(|s| format!("{s:?}"))?.into_inner();
                    if ack.accepted as usize != batch {
                        return Err(format!("accepted {} of {batch}", ack.accepted));
                    }
                    Ok(batch)
                }
            }
        }
    })
    .await
}

/// The first call, then `repeats` more; prints first ms, median ms and what the last answer said.
async fn timed<F, Fut>(repeats: usize, mut call: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<String>>,
{
    let t = Instant::now();
    let mut said = call().await?;
    let first = ms(t.elapsed());
    let mut rest = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        said = call().await?;
        rest.push(ms(t.elapsed()));
    }
    println!("{first:.3} {:.3} {said}", median(&mut rest));
    Ok(())
}

async fn stats_http(url: String, repeats: usize) -> Res<()> {
    let client = http_client(1)?;
    let url = format!("{url}/api/stats");
    timed(repeats, || {
        let req = client.get(&url);
        async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("GET /api/stats answered {status} {text}"));
            }
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            Ok(v["total_events"].to_string())
        }
    })
    .await
}

async fn stats_grpc(url: String, repeats: usize, ping: Option<Duration>) -> Res<()> {
    let client = AnalyticsClient::new(channel_pinging(&url, ping).await?);
    timed(repeats, || {
        let mut client = client.clone();
        async move {
            let r = client
                .get_stats(StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 0 })
                .await
                .map_err(|s| format!("GetStats: {s:?}"))?;
            Ok(r.into_inner().total_events.to_string())
        }
    })
    .await
}

async fn clickhouse(url: String, user: String, password: String, query: String, repeats: usize) -> Res<()> {
    let client = http_client(1)?;
    timed(repeats, || {
        let req = client.post(format!("{url}/")).basic_auth(&user, Some(&password)).body(query.clone());
        async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("ClickHouse answered {status} {text}"));
            }
            Ok(text.lines().count().to_string())
        }
    })
    .await
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let n = |i: usize| -> usize {
        a.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("v7bench_load: argument {i} must be a number: {a:?}");
            std::process::exit(2)
        })
    };
    let s = |i: usize| a.get(i).cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let r = rt.block_on(async {
        match a.first().map(String::as_str) {
            Some("events-http") => events_http(s(1), n(2), n(3)).await,
            Some("events-grpc") => events_grpc(s(1), n(2), n(3), n(4)).await,
            Some("stats-http") => stats_http(s(1), n(2)).await,
            Some("stats-grpc") => stats_grpc(s(1), n(2), None).await,
            Some("stats-grpc-quick") => stats_grpc(s(1), n(2), Some(Duration::from_millis(1))).await,
            Some("ch") => clickhouse(s(1), s(2), s(3), s(4), n(5)).await,
            _ => Err(format!("unknown mode {a:?}")),
        }
    });
    if let Err(e) = r {
        eprintln!("v7bench_load: {e}");
        std::process::exit(1);
    }
}
EOF
(cd "$new_tree" && CARGO_TARGET_DIR="$targets/new-target" nice -n 19 cargo build -q --release --locked -p backend --example v7bench_load)
old_bin="$targets/base-target/release"
new_bin="$targets/new-target/release"
load="$new_bin/examples/v7bench_load"

# Free loopback ports, all picked at once so they differ.
read -r nats_port ch_http ch_tcp \
  old_eng_grpc old_eng_http old_be_http old_be_grpc \
  new_eng_grpc new_eng_http new_be_http new_be_grpc \
  nc_eng_grpc nc_eng_http nc_be_http nc_be_grpc < <(python3 -c '
import socket
s = [socket.socket() for _ in range(15)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')

# start NAME ENV... -- CMD...: a host process, output in logs/NAME.log, its PID remembered.
start() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$@" > "$tmp/logs/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=\$!"
}
# await NAME URL: until URL answers 2xx (120 s), while NAME's process lives.
await() {
  local name=$1 url=$2 pid
  eval "pid=\$pid_$name"
  for _ in $(seq 1200); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; its log:" >&2; tail -30 "$tmp/logs/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name: $url did not answer 2xx in 120 s; its log:" >&2; tail -30 "$tmp/logs/$name.log" >&2; exit 1
}

ch_user=default
ch_password=v7bench-pw
ch() { curl -sS --fail-with-body --max-time 300 -u "$ch_user:$ch_password" --data-binary "$1" "http://127.0.0.1:$ch_http/"; }

echo "== servers: nats-server $(nats-server --version | awk '{print $2}') on $nats_port, clickhouse-server on $ch_http"
start nats -- nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats"
mkdir -p "$tmp/ch/logs"
cat > "$tmp/ch/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$tmp/ch/logs/server.log</log>
        <errorlog>$tmp/ch/logs/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>$ch_http</http_port>
    <tcp_port>$ch_tcp</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$tmp/ch/data/</path>
    <tmp_path>$tmp/ch/tmp/</tmp_path>
    <user_files_path>$tmp/ch/user_files/</user_files_path>
    <format_schema_path>$tmp/ch/format_schemas/</format_schema_path>
    <users_config>$tmp/ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
cat > "$tmp/ch/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <$ch_user>
            <password>$ch_password</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </$ch_user>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
EOF
(cd "$tmp/ch" && exec clickhouse-server --config-file="$tmp/ch/config.xml" < /dev/null > "$tmp/logs/clickhouse.log" 2>&1) &
pids+=($!); pid_clickhouse=$!
for _ in $(seq 900); do
  [ "$(ch 'SELECT 1' 2>/dev/null)" = 1 ] && break
  kill -0 "$pid_clickhouse" 2>/dev/null || { echo "clickhouse-server exited:" >&2; tail -30 "$tmp/logs/clickhouse.log" "$tmp/ch/logs/server.err.log" >&2 || true; exit 1; }
  sleep 0.1
done
[ "$(ch 'SELECT 1')" = 1 ]
for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
echo "clickhouse-server $(ch 'SELECT version()')"

common=(V7_NATS_URL="nats://127.0.0.1:$nats_port" V7_CLICKHOUSE_URL="http://127.0.0.1:$ch_http"
  V7_CLICKHOUSE_USER="$ch_user" V7_CLICKHOUSE_PASSWORD="$ch_password" V7_PYTHON=python3
  V7_LOG_FORMAT=text RUST_LOG=warn)
echo "== baseline $base ($(git -C "$old_tree" log -1 --format=%h)): engine + backend (core NATS, subject v7bench.old)"
start old_engine "${common[@]}" V7_GRPC_ADDR="127.0.0.1:$old_eng_grpc" V7_HTTP_ADDR="127.0.0.1:$old_eng_http" \
  V7_NATS_SUBJECT=v7bench.old V7_CLICKHOUSE_DATABASE=v7bench_old PYTHONPATH="$old_tree/analytics-engine/python" \
  -- "$old_bin/analytics-engine"
await old_engine "http://127.0.0.1:$old_eng_http/readyz"
start old_backend "${common[@]}" V7_HTTP_ADDR="127.0.0.1:$old_be_http" V7_GRPC_ADDR="127.0.0.1:$old_be_grpc" \
  V7_NATS_SUBJECT=v7bench.old V7_ANALYTICS_URL="http://127.0.0.1:$old_eng_grpc" -- "$old_bin/backend"
await old_backend "http://127.0.0.1:$old_be_http/readyz"

echo "== this checkout (HEAD $(git -C "$new_tree" log -1 --format=%h)): engine + backend, and an engine with V7_STATS_CACHE_MS=0 + its backend (JetStream stream V7BENCH)"
new_env=("${common[@]}" V7_NATS_SUBJECT=v7bench.new V7_NATS_STREAM=V7BENCH V7_CLICKHOUSE_DATABASE=v7bench_new
  PYTHONPATH="$new_tree/analytics-engine/python")
start new_engine "${new_env[@]}" V7_GRPC_ADDR="127.0.0.1:$new_eng_grpc" V7_HTTP_ADDR="127.0.0.1:$new_eng_http" \
  -- "$new_bin/analytics-engine"
await new_engine "http://127.0.0.1:$new_eng_http/readyz"
start nc_engine "${new_env[@]}" V7_GRPC_ADDR="127.0.0.1:$nc_eng_grpc" V7_HTTP_ADDR="127.0.0.1:$nc_eng_http" \
  V7_STATS_CACHE_MS=0 -- "$new_bin/analytics-engine"
await nc_engine "http://127.0.0.1:$nc_eng_http/readyz"
start new_backend "${new_env[@]}" V7_HTTP_ADDR="127.0.0.1:$new_be_http" V7_GRPC_ADDR="127.0.0.1:$new_be_grpc" \
  V7_ANALYTICS_URL="http://127.0.0.1:$new_eng_grpc" V7_PROMETHEUS_URL=http://127.0.0.1:9 -- "$new_bin/backend"
await new_backend "http://127.0.0.1:$new_be_http/readyz"
start nc_backend "${new_env[@]}" V7_HTTP_ADDR="127.0.0.1:$nc_be_http" V7_GRPC_ADDR="127.0.0.1:$nc_be_grpc" \
  V7_ANALYTICS_URL="http://127.0.0.1:$nc_eng_grpc" V7_PROMETHEUS_URL=http://127.0.0.1:9 -- "$new_bin/backend"
await nc_backend "http://127.0.0.1:$nc_be_http/readyz"
ch "SHOW CREATE TABLE v7bench_old.events" | grep -q "ENGINE = MergeTree" || { echo "v7bench_old.events is not the baseline's MergeTree" >&2; exit 1; }
ch "SHOW CREATE TABLE v7bench_new.events" | grep -q "ENGINE = ReplacingMergeTree" || { echo "v7bench_new.events is not HEAD's ReplacingMergeTree" >&2; exit 1; }

# median: of the numbers on stdin, 3 significant digits (integers from 1000 up), "-" for none.
median() {
  sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) { print "-"; exit }
    m = NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2
    if (m >= 1000) printf "%.0f\n", m; else if (m >= 100) printf "%.0f\n", m; else if (m >= 10) printf "%.1f\n", m; else if (m >= 1) printf "%.2f\n", m; else printf "%.3f\n", m }'
}
sum() { awk '{s+=$1} END {print s+0}'; }
stored() { # SIDE: rows in its table, each event once
  if [ "$1" = old ]; then ch "SELECT count() FROM v7bench_old.events"; else ch "SELECT count() FROM v7bench_new.events FINAL"; fi
}

# ingest SIDE MODE RUN: one load, then waits for its events in ClickHouse; appends to $tmp/ingest.
ingest() {
  local side=$1 mode=$2 run=$3 http grpc before line eps p50 p99 acc failed secs t0 now drain last changed
  eval "http=\$${side}_be_http grpc=\$${side}_be_grpc"
  before=$(stored "$side")
  case $mode in
    http) line=$("$load" events-http "http://127.0.0.1:$http" "$requests" "$concurrency") ;;
    grpc) line=$("$load" events-grpc "http://127.0.0.1:$grpc" "$requests" "$concurrency" 1) ;;
    batch) line=$("$load" events-grpc "http://127.0.0.1:$grpc" "$batch_requests" "$concurrency" "$batch") ;;
  esac
  read -r eps p50 p99 acc failed secs <<< "$line"
  t0=$(date +%s.%N); last=-1; changed=$t0
  while :; do
    now=$(stored "$side")
    [ $(( now - before )) -ge "$acc" ] && break
    [ "$now" != "$last" ] && { last=$now; changed=$(date +%s.%N); }
    # Gives up after DRAIN_TIMEOUT s, or 15 s without a new row (events lost, not late).
    awk -v a="$(date +%s.%N)" -v b="$t0" -v c="$changed" -v m="$drain_timeout" 'BEGIN { exit !(a - b > m || a - c > 15) }' && break
    sleep 0.1
  done
  drain=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  echo "$side $mode $eps $p50 $p99 $acc $failed $(( now - before )) $drain" >> "$tmp/ingest"
  printf '  run %s %-3s %-5s %7s events/s, p50 %s ms, p99 %s ms, %s accepted (%s requests failed), %s in ClickHouse after %s s\n' \
    "$run" "$side" "$mode" "$eps" "$p50" "$p99" "$acc" "$failed" "$(( now - before ))" "$drain"
}

echo "== ingest: $requests requests (batches: $batch_requests of $batch events), $concurrency connections, medians of $runs runs"
: > "$tmp/ingest"
for run in $(seq "$runs"); do
  if [ $(( run % 2 )) = 1 ]; then order="old new"; else order="new old"; fi
  for mode in http grpc batch; do
    for side in $order; do ingest "$side" "$mode" "$run"; done
  done
done

# stats_path SIZE RUN LABEL MODE TARGET...: sleep past HEAD's cache, then the first + REPEATS.
stats_path() {
  local size=$1 run=$2 label=$3 line first med said; shift 3
  sleep 1.3
  line=$("$load" "$@" "$repeats")
  read -r first med said <<< "$line"
  case $label in
    ch_*) [ "$said" = 10 ] || { echo "$label: expected 10 kinds from ClickHouse, got $said lines" >&2; exit 1; } ;;
    *) [ "$said" = "$size" ] || { echo "$label: total_events $said, expected $size" >&2; exit 1; } ;;
  esac
  echo "$size $label $first $med" >> "$tmp/stats"
  printf '  %8s events, run %s: %-10s first %9s ms, median %9s ms\n' "$size" "$run" "$label" "$first" "$med"
}
old_ch_query="SELECT kind, count(), avg(value), min(value), max(value), quantiles(0.5, 0.95)(value), stddevPop(value) FROM v7bench_old.events GROUP BY kind ORDER BY kind"
new_ch_query="SELECT kind, count(), min(value), max(value), avg(value), stddevPopStable(value), quantiles(0.5, 0.95)(value) FROM \`v7bench_new\`.\`events\` FINAL GROUP BY kind ORDER BY kind FORMAT TabSeparated"

echo "== stats: sizes $sizes (10 kinds), first request + median of $repeats, medians of $runs runs"
: > "$tmp/stats"
for size in $sizes; do
  for run in $(seq "$runs"); do
    now_ms=$(( $(date +%s) * 1000 ))
    for db in v7bench_old v7bench_new; do
      ch "TRUNCATE TABLE $db.events"
      ch "INSERT INTO $db.events (id, kind, value, source, attributes, ts_unix_ms)
          SELECT concat('bench-', toString(number)), concat('kind', toString(number % 10)),
                 (intHash32(number) % 100000) / 100, 'v7bench', '{\"path\":\"/bench\"}',
                 toUInt64($now_ms - (number % 3600000))
          FROM numbers($size)"
    done
    [ "$(stored old)" = "$size" ] && [ "$(stored new)" = "$size" ] || { echo "loading $size events failed" >&2; exit 1; }
    stats_path "$size" "$run" old_http stats-http "http://127.0.0.1:$old_be_http"
    stats_path "$size" "$run" old_grpc stats-grpc "http://127.0.0.1:$old_eng_grpc"
    stats_path "$size" "$run" old_quick stats-grpc-quick "http://127.0.0.1:$old_eng_grpc"
    stats_path "$size" "$run" new_http stats-http "http://127.0.0.1:$new_be_http"
    stats_path "$size" "$run" new_grpc stats-grpc "http://127.0.0.1:$new_eng_grpc"
    stats_path "$size" "$run" new_quick stats-grpc-quick "http://127.0.0.1:$new_eng_grpc"
    stats_path "$size" "$run" nc_http stats-http "http://127.0.0.1:$nc_be_http"
    stats_path "$size" "$run" nc_grpc stats-grpc "http://127.0.0.1:$nc_eng_grpc"
    stats_path "$size" "$run" nc_quick stats-grpc-quick "http://127.0.0.1:$nc_eng_grpc"
    stats_path "$size" "$run" ch_old ch "http://127.0.0.1:$ch_http" "$ch_user" "$ch_password" "$old_ch_query"
    stats_path "$size" "$run" ch_new ch "http://127.0.0.1:$ch_http" "$ch_user" "$ch_password" "$new_ch_query"
  done
done

# col FILE FILTER-AWK FIELD: the values of FIELD on the lines matching FILTER.
col() { awk "$2 { print \$$3 }" "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
echo
echo "Ingest, $requests requests per measurement on $concurrency keep-alive connections (batches: $batch_requests of $batch events), loopback, engines running; medians of $runs runs:"
echo
echo "| measure | baseline ($base, core NATS) | this checkout (JetStream) | this / baseline |"
echo "|---|---|---|---|"
for mode in http grpc batch; do
  case $mode in
    http) what="HTTP POST /api/events, 1 event" ;;
    grpc) what="gRPC Publish, 1 event" ;;
    batch) what="gRPC PublishBatch, $batch events" ;;
  esac
  for f in "3 events/s accepted" "4 p50 ms of a 202/ack" "5 p99 ms of a 202/ack" "9 s from the end of the load until all stored in ClickHouse"; do
    read -r field label <<< "$f"
    o=$(col "$tmp/ingest" "\$1 == \"old\" && \$2 == \"$mode\"" "$field" | median)
    n=$(col "$tmp/ingest" "\$1 == \"new\" && \$2 == \"$mode\"" "$field" | median)
    r=$(ratio "$n" "$o"); [ "$field" = 9 ] && r=
    echo "| $what: $label | $o | $n | $r |"
  done
  oa=$(col "$tmp/ingest" "\$1 == \"old\" && \$2 == \"$mode\"" 6 | sum); os=$(col "$tmp/ingest" "\$1 == \"old\" && \$2 == \"$mode\"" 8 | sum)
  na=$(col "$tmp/ingest" "\$1 == \"new\" && \$2 == \"$mode\"" 6 | sum); ns=$(col "$tmp/ingest" "\$1 == \"new\" && \$2 == \"$mode\"" 8 | sum)
  of=$(col "$tmp/ingest" "\$1 == \"old\" && \$2 == \"$mode\"" 7 | sum); nf=$(col "$tmp/ingest" "\$1 == \"new\" && \$2 == \"$mode\"" 7 | sum)
  echo "| $what: stored / accepted (all runs), failed requests | $os / $oa, $of failed | $ns / $na, $nf failed | |"
done
echo
echo "GetStats of all kinds, all time (10 kinds), ms: first request after the load / median of $repeats more back to back; medians of $runs runs:"
echo
header="| path |"; rule="|---|"
for size in $sizes; do header="$header $size: first | $size: median |"; rule="$rule---|---|"; done
echo "$header"; echo "$rule"
for label in old_http old_grpc old_quick new_http new_grpc new_quick nc_http nc_grpc nc_quick ch_old ch_new; do
  case $label in
    old_http) what="baseline ($base, all values to Python), GET /api/stats" ;;
    old_grpc) what="baseline, gRPC GetStats to the engine" ;;
    old_quick) what="baseline, gRPC GetStats, client pinging every 1 ms (no delayed ACK)" ;;
    new_http) what="this checkout (1 s cache), GET /api/stats" ;;
    new_grpc) what="this checkout (1 s cache), gRPC GetStats" ;;
    new_quick) what="this checkout (1 s cache), gRPC GetStats, client pinging every 1 ms" ;;
    nc_http) what="this checkout, V7_STATS_CACHE_MS=0, GET /api/stats" ;;
    nc_grpc) what="this checkout, V7_STATS_CACHE_MS=0, gRPC GetStats" ;;
    nc_quick) what="this checkout, V7_STATS_CACHE_MS=0, gRPC GetStats, client pinging every 1 ms" ;;
    ch_old) what="ClickHouse GROUP BY kind (count, avg, min, max, quantiles, stddevPop), baseline table" ;;
    ch_new) what="ClickHouse, HEAD's query (FINAL, stddevPopStable), HEAD's table" ;;
  esac
  row="| $what |"
  for size in $sizes; do
    row="$row $(col "$tmp/stats" "\$1 == $size && \$2 == \"$label\"" 3 | median) | $(col "$tmp/stats" "\$1 == $size && \$2 == \"$label\"" 4 | median) |"
  done
  echo "$row"
done
echo
echo "\"first\" is the first request after the load, 1.3 s after any other; the repeats follow back to back, so HEAD's 1 s cache answers most of them."
smallest=${sizes%% *}
floor=$(col "$tmp/stats" "\$1 == $smallest && \$2 == \"new_grpc\"" 4 | median)
quick=$(col "$tmp/stats" "\$1 == $smallest && \$2 == \"new_quick\"" 4 | median)
batch_p50=$(col "$tmp/ingest" '$1 == "old" && $2 == "batch"' 4 | median)
echo "A cached GetStats answer (this checkout, gRPC, $smallest events, back to back) took $floor ms ($quick ms with the client pinging every 1 ms): no statistics are computed for it, so that is the gRPC round trip of a GetStats answer."
if awk -v a="$floor" -v b="$batch_p50" 'BEGIN { exit !(a > 20 || b > 35) }'; then
  echo "The baseline's PublishBatch ack p50 is $batch_p50 ms: its services leave TCP_NODELAY unset on the gRPC connections they accept (tonic's TcpIncoming::from(listener)), and an answer of a few hundred bytes goes out as body, then trailers in a second write, which waits ~40 ms for the client's delayed ACK. Baseline figures near 40-50 ms measure that; the \"client pinging every 1 ms\" rows show its engine's own time. This checkout sets TCP_NODELAY (grpc_incoming in both services), so its cached round trip above is the floor."
fi
for f in "$tmp"/logs/*.log; do
  n=$(grep -c -E ' (WARN|ERROR) ' "$f" || true)
  [ "$n" -gt 0 ] && echo "$(basename "$f" .log) logged $n warnings/errors, first: $(grep -m1 -E ' (WARN|ERROR) ' "$f" | cut -c1-300)"
done
slow=$(awk '$1 == "new" && $9 >= 4.5' "$tmp/ingest" | wc -l)
if [ "$slow" -gt 0 ]; then
  echo "$slow of this checkout's ingest measurements took >= 4.5 s to reach ClickHouse: async-nats ends a pull batch whose server timeout (408) did not arrive only after its own fallback, expires + 5 s (pull.rs, Batch::batch), and the engine inserts a batch only when its pull has ended."
fi
echo "nats-server $(nats-server --version | awk '{print $2}'), clickhouse-server $(ch 'SELECT version()'), $(nproc) cores; release builds of $base and HEAD ($(git -C "$new_tree" log -1 --format=%h))"
