//! Test harness: real nats-server (JetStream, file store) and clickhouse-server children on
//! free loopback ports, JetStream publishing as backend does it, and the engine run in-process
//! or as a child process (for SIGKILL). Missing servers make the tests FAIL (never skip).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use analytics_engine::{Config, Server, Shared};

pub const CH_USER: &str = "default";
pub const CH_PASSWORD: &str = "test-secret-pw";
pub const SUBJECT: &str = "v7.events.test";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Finds `name` on PATH or in the sbin directories Debian installs servers into.
fn find_binary(name: &str, apt_package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{name}` was not found on PATH or in /usr/sbin: the integration tests need a real server. \
             Install it with `apt-get install {apt_package}`."
        )
    })
}

fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "v7-ae-{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_tcp(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A nats-server child with JetStream on (`-js`) and its own store directory; killed on drop
/// (the store directory is removed then).
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
}

impl Nats {
    pub fn start() -> Nats {
        let mut nats = Nats { child: None, port: free_port(), store: temp_dir("nats") };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        let bin = find_binary("nats-server", "nats-server");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.join("server.log"))
            .expect("nats log file");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.join("js"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        if !wait_tcp(self.port, Duration::from_secs(15)) {
            self.kill();
            panic!("nats-server did not listen on 127.0.0.1:{}", self.port);
        }
    }

    /// Kills the server (SIGKILL); the store directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A JetStream client for the tests, with the stream of the contract (created as backend or
/// the engine would: `get_or_create_stream` with `ingest::stream_config`).
pub struct Js {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub stream: String,
}

impl Js {
    pub async fn connect(nats_url: &str) -> Js {
        let client = async_nats::connect(nats_url).await.expect("test NATS connect");
        let js = async_nats::jetstream::new(client.clone());
        let config = test_config(nats_url, "http://127.0.0.1:1");
        let stream = config.nats_stream.clone();
        // The server may still be recovering its store right after a (re)start.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match js.get_or_create_stream(analytics_engine::ingest::stream_config(&config)).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("test: stream not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("creating the test stream: {e}"),
            }
        }
        Js { client, js, stream }
    }

    /// Publishes `(Nats-Msg-Id, payload)` pairs as backend does and waits for every ack;
    /// returns how many the stream stored as new (not duplicates). A publish whose ack does not
    /// come (a loaded test machine) is retried with the same `Nats-Msg-Id`, as a client would:
    /// the duplicate window makes the retry safe, and a retry reported `duplicate` was stored by
    /// the attempt before it.
    pub async fn publish(&self, messages: &[(String, String)]) -> usize {
        let mut new = 0;
        let mut stored: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for chunk in messages.chunks(500) {
            let mut acks = Vec::with_capacity(chunk.len());
            for (id, payload) in chunk {
                acks.push((id.as_str(), payload, self.send(id, payload).await));
            }
            for (id, payload, ack) in acks {
                let mut ack = ack.await;
                let mut retried = false;
                for attempt in 1..=5 {
                    match ack {
                        Ok(_) => break,
                        Err(e) => {
                            eprintln!("test: publish {id} not acknowledged ({e}); retry {attempt}");
                            retried = true;
                            ack = self.send(id, payload).await.await;
                        }
                    }
                }
                let ack = ack.unwrap_or_else(|e| panic!("JetStream ack for {id}: {e}"));
                // A duplicate is new only if it is our own lost attempt (not an id sent before).
                if (!ack.duplicate || retried) && stored.insert(id) {
                    new += 1;
                }
            }
        }
        new
    }

    async fn send(&self, id: &str, payload: &str) -> async_nats::jetstream::context::PublishAckFuture {
        let publish =
            async_nats::jetstream::context::Publish::build().payload(payload.to_string().into()).message_id(id);
        self.js.send_publish(SUBJECT, publish).await.expect("JetStream publish")
    }

    /// Publishes events (JSON with an `id`), each with `Nats-Msg-Id` = its id.
    pub async fn publish_events(&self, payloads: &[String]) -> usize {
        let messages: Vec<(String, String)> = payloads
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_str(p).unwrap_or(serde_json::Value::Null);
                let id = v["id"].as_str().map(str::to_string).unwrap_or_else(|| format!("raw-{}", p.len()));
                (id, p.clone())
            })
            .collect();
        self.publish(&messages).await
    }

    /// Messages in the stream.
    pub async fn stream_messages(&self) -> u64 {
        let mut s = self.js.get_stream(&self.stream).await.expect("get stream");
        s.info().await.expect("stream info").state.messages
    }

    /// `(num_pending, num_ack_pending)` of the engines' durable consumer.
    pub async fn consumer_pending(&self) -> (u64, usize) {
        let s = self.js.get_stream(&self.stream).await.expect("get stream");
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer(event_stream::DEFAULT_CONSUMER).await.expect("get consumer");
        let info = c.info().await.expect("consumer info");
        (info.num_pending, info.num_ack_pending)
    }
}

/// A clickhouse-server child with a generated minimal config in a temp dir, killed on drop.
pub struct ClickHouse {
    child: Child,
    pub http_port: u16,
    pub dir: PathBuf,
}

impl ClickHouse {
    pub async fn start() -> ClickHouse {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(http_port: u16) -> ClickHouse {
        let bin = find_binary("clickhouse-server", "clickhouse-server");
        let dir = temp_dir("clickhouse");
        let tcp_port = free_port();
        let d = dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/logs/server.log</log>
        <errorlog>{d}/logs/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"#
        );
        let users = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <{CH_USER}>
            <password>{CH_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{CH_USER}>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"#
        );
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::write(dir.join("users.xml"), users).unwrap();
        let out = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config-file={}", dir.join("config.xml").display()))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting clickhouse-server");
        let mut ch = ClickHouse { child, http_port, dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(body) = ch.query("SELECT 1").await {
                if body.trim() == "1" {
                    break;
                }
            }
            if let Ok(Some(status)) = ch.child.try_wait() {
                panic!("clickhouse-server exited ({status}); logs in {}: {}", ch.dir.display(), ch.log_tail());
            }
            if Instant::now() > deadline {
                panic!("clickhouse-server did not answer SELECT 1 on port {http_port}: {}", ch.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ch
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        for f in ["stderr.log", "logs/server.err.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let tail: String = t.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
                s.push_str(&format!("\n--- {f}:\n{tail}"));
            }
        }
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs a query as the test user; Err on non-2xx.
    pub async fn query(&self, sql: &str) -> Result<String, String> {
        ch_query(self.http_port, sql).await
    }
}

pub async fn ch_query(port: u16, sql: &str) -> Result<String, String> {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .basic_auth(CH_USER, Some(CH_PASSWORD))
        .timeout(Duration::from_secs(10))
        .body(sql.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = resp.status().is_success();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(body)
    } else {
        Err(body)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The environment of a test engine (in-process via [`test_config`], or a child process).
pub fn test_env(nats_url: &str, clickhouse_url: &str) -> HashMap<String, String> {
    [
        ("V7_GRPC_ADDR", "127.0.0.1:0".to_string()),
        ("V7_HTTP_ADDR", "127.0.0.1:0".to_string()),
        ("V7_NATS_URL", nats_url.to_string()),
        ("V7_NATS_SUBJECT", SUBJECT.to_string()),
        ("V7_CLICKHOUSE_URL", clickhouse_url.to_string()),
        ("V7_CLICKHOUSE_DATABASE", "v7".to_string()),
        ("V7_CLICKHOUSE_USER", CH_USER.to_string()),
        ("V7_CLICKHOUSE_PASSWORD", CH_PASSWORD.to_string()),
        ("V7_PYTHON", std::env::var("V7_PYTHON").unwrap_or_else(|_| "python3".to_string())),
        ("V7_LOG_FORMAT", "text".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Engine configuration for tests: loopback ports picked by the OS.
pub fn test_config(nats_url: &str, clickhouse_url: &str) -> Config {
    let mut c = Config::from_map(&test_env(nats_url, clickhouse_url)).unwrap();
    c.python_path = Some(python_dir());
    c
}

/// The engine binary run as a child process (so it can be SIGKILLed), its log in a file.
pub struct EngineProcess {
    child: Option<Child>,
    pub http_port: u16,
    pub grpc_port: u16,
    pub log: PathBuf,
    dir: PathBuf,
}

impl EngineProcess {
    /// Starts `analytics-engine` with [`test_env`] plus `extra`.
    pub fn start(nats_url: &str, clickhouse_url: &str, extra: &[(&str, &str)]) -> EngineProcess {
        let dir = temp_dir("engine");
        let (http_port, grpc_port) = (free_port(), free_port());
        let mut env = test_env(nats_url, clickhouse_url);
        env.insert("V7_HTTP_ADDR".into(), format!("127.0.0.1:{http_port}"));
        env.insert("V7_GRPC_ADDR".into(), format!("127.0.0.1:{grpc_port}"));
        let pythonpath = match std::env::var_os("PYTHONPATH") {
            Some(p) => format!("{}:{}", python_dir().display(), p.to_string_lossy()),
            None => python_dir().display().to_string(),
        };
        env.insert("PYTHONPATH".into(), pythonpath);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let log = dir.join("engine.log");
        let child = Command::new(env!("CARGO_BIN_EXE_analytics-engine"))
            .envs(&env)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting the analytics-engine binary");
        EngineProcess { child: Some(child), http_port, grpc_port, log, dir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no flush, no ack, nothing.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (graceful shutdown); returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("the engine did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{}", self.http_port, path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The engine running in-process on a tokio task.
pub struct Engine {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Engine {
    pub async fn start(config: Config) -> Engine {
        analytics_engine::init_logging(analytics_engine::LogFormat::Text);
        let server = Server::bind(config).await.expect("binding the engine");
        let (http, grpc, shared) = (server.http_addr(), server.grpc_addr(), server.shared());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Engine { http, grpc, shared, stop: Some(tx), task: Some(task) }
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("engine did not stop within 30 s")
            .expect("engine task panicked")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{}", self.http, path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("engine HTTP request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub async fn grpc_client(
        &self,
    ) -> analytics_engine::pb::analytics_client::AnalyticsClient<tonic::transport::Channel> {
        analytics_engine::pb::analytics_client::AnalyticsClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("gRPC connect")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes (then panics with `what`).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows in `v7.events` as stored (duplicates included) and as counted (`FINAL`).
/// `FINAL` is counted first: rows only ever get added, so `raw >= fin` holds even while
/// inserts land between the two queries.
pub async fn stored_counts(ch: &ClickHouse) -> (u64, u64) {
    let fin = ch.query("SELECT count() FROM v7.events FINAL").await.unwrap_or_default();
    let raw = ch.query("SELECT count() FROM v7.events").await.unwrap_or_default();
    (raw.trim().parse().unwrap_or(0), fin.trim().parse().unwrap_or(0))
}

/// Waits until `v7.events FINAL` holds `n` events; panics saying what was counted.
pub async fn wait_for_events(ch: &ClickHouse, n: u64, timeout: Duration) -> (u64, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let (raw, fin) = stored_counts(ch).await;
        if fin == n {
            return (raw, fin);
        }
        if fin > n {
            panic!("more events counted than published: {fin} (FINAL) > {n}, {raw} rows stored");
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {n} events: counted {fin} (FINAL), {raw} rows stored");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn now_ms() -> u64 {
    analytics_engine::now_unix_ms()
}
