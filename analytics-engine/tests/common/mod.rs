//! Test harness: real nats-server and clickhouse-server children on free loopback ports,
//! and the engine run in-process. Missing servers make the tests FAIL (never skip).

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

/// A nats-server child, killed on drop.
pub struct Nats {
    child: Child,
    pub port: u16,
}

impl Nats {
    pub fn start() -> Nats {
        let bin = find_binary("nats-server", "nats-server");
        let port = free_port();
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let mut nats = Nats { child, port };
        if !wait_tcp(port, Duration::from_secs(15)) {
            let _ = nats.child.kill();
            panic!("nats-server did not listen on 127.0.0.1:{port}");
        }
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Engine configuration for tests: loopback ports picked by the OS.
pub fn test_config(nats_url: &str, clickhouse_url: &str) -> Config {
    let vars: HashMap<String, String> = [
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
    .collect();
    let mut c = Config::from_map(&vars).unwrap();
    c.python_path = Some(python_dir());
    c
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

pub async fn publish(nats_url: &str, payloads: &[String]) {
    let client = async_nats::connect(nats_url).await.expect("test NATS connect");
    for p in payloads {
        client.publish(SUBJECT, p.clone().into()).await.unwrap();
    }
    client.flush().await.unwrap();
}

pub fn now_ms() -> u64 {
    analytics_engine::now_unix_ms()
}
