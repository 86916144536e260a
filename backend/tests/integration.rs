//! Integration tests against a REAL nats-server with JetStream (a child process per test, its
//! own store directory) and the backend's servers running in-process on free ports. What a
//! `202` promises is checked by reading the stream back with a JetStream consumer.
//! analytics-engine is replaced by `FakeAnalytics` and Prometheus by `FakePrometheus`, small
//! in-test servers (NOT the real services).
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use backend::proto::analytics::analytics_server::{Analytics, AnalyticsServer};
use backend::proto::analytics::{
    DependencyHealth, HealthRequest, HealthResponse, KindStats, MinuteCount, PingRequest, PingResponse, StatsRequest,
    StatsResponse,
};
use backend::proto::ingest::ingest_client::IngestClient;
use backend::proto::ingest::{Event as PbEvent, EventBatch};
use backend::{send_event, Config, Server};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The contract's default stream name (each test has its own nats-server, so no clash).
const STREAM: &str = "V7_EVENTS";

// ---------------------------------------------------------------- nats-server child process

fn nats_server_binary() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/sbin/nats-server"), PathBuf::from("/usr/bin/nats-server")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        // Never skip silently: these tests need a real server.
        .unwrap_or_else(|| panic!("nats-server not found: apt-get install nats-server"))
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh directory under the system temp dir, removed by the `NatsServer` that uses it.
fn temp_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "v7-backend-test-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct NatsServer {
    child: Child,
    port: u16,
    /// JetStream's store (`-sd`); `None` when started without JetStream.
    store: Option<PathBuf>,
    /// Remove `store` on drop (false when a restarted server reuses it).
    owns_store: bool,
}

impl NatsServer {
    /// Starts with JetStream on a port nats-server picks itself (`-p -1`), read back from its
    /// ports file, so parallel tests never race for a "free" port.
    fn start() -> NatsServer {
        Self::spawn_picking_port(true)
    }

    /// Core NATS only, to see what backend does when JetStream is off.
    fn start_without_jetstream() -> NatsServer {
        Self::spawn_picking_port(false)
    }

    fn spawn_picking_port(jetstream: bool) -> NatsServer {
        let ports_dir = temp_dir("nats-ports");
        let store = jetstream.then(|| temp_dir("nats-store"));
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"]).arg(&ports_dir);
        if let Some(store) = &store {
            cmd.arg("-js").arg("-sd").arg(store);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawning nats-server");
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    let url = v["nats"][0].as_str().expect("nats url in ports file").to_string();
                    break url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited early: {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nats-server wrote no ports file in {}", ports_dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir_all(&ports_dir);
        NatsServer { child, port, store, owns_store: true }
    }

    /// Starts with JetStream on a given port and store (for the tests where the backend is
    /// started first, or NATS restarts).
    fn start_on(port: u16, store: PathBuf, owns_store: bool) -> NatsServer {
        let mut child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited early (port {port} taken?): {status}");
            }
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer { child, port, store: Some(store), owns_store }
    }

    /// Stops the server (SIGKILL: nothing is flushed, like a crash) and keeps its store, so a
    /// server started with [`NatsServer::start_on`] on the same port and store is "NATS back".
    fn kill(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.owns_store = false;
        (self.port, self.store.clone().expect("a JetStream server"))
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let (true, Some(store)) = (self.owns_store, &self.store) {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

// ---------------------------------------------------------------- reading the stream back

/// A JetStream consumer of the test's stream (a durable pull consumer, explicit acks, from the
/// first message), plus the stream's message count.
struct StreamReader {
    js: async_nats::jetstream::Context,
    consumer: async_nats::jetstream::consumer::Consumer<pull::Config>,
}

/// One stored message: the JSON payload and its `Nats-Msg-Id` header.
struct Stored {
    json: Value,
    msg_id: Option<String>,
}

impl StreamReader {
    /// Opens a reader on [`STREAM`]; the stream must exist (backend creates it at startup:
    /// call after `wait_nats_ready`).
    async fn open(nats: &NatsServer) -> StreamReader {
        static N: AtomicUsize = AtomicUsize::new(0);
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(STREAM).await.expect("backend created the stream");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("test-reader-{}", N.fetch_add(1, Ordering::Relaxed))),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        StreamReader { js, consumer }
    }

    /// The next message in stream order (waits at most 10 s), acknowledged.
    async fn next(&mut self) -> Stored {
        let mut batch =
            self.consumer.fetch().max_messages(1).expires(Duration::from_secs(10)).messages().await.unwrap();
        let msg = batch.next().await.expect("no message in the stream within 10 s").unwrap();
        msg.ack().await.unwrap();
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_string());
        Stored { json: serde_json::from_slice(&msg.payload).unwrap(), msg_id }
    }

    async fn next_json(&mut self) -> Value {
        self.next().await.json
    }

    /// Messages the stream has stored so far (its last sequence number: the stream is a work
    /// queue, so the ones this reader acknowledged have left it, but each stored message took
    /// one sequence number and a duplicate id takes none). A request's events are stored
    /// before its answer, so after the answer this count is exact, no waiting needed.
    async fn count(&self) -> u64 {
        let mut stream = self.js.get_stream(STREAM).await.unwrap();
        stream.info().await.unwrap().state.last_sequence
    }
}

// ---------------------------------------------------------------- FakeAnalytics

/// Stand-in for analytics-engine (NOT the real service): answers Ping and returns canned
/// GetStats responses, recording the requests it saw. kind "boom" makes GetStats fail.
/// `health: None` answers Health with Unimplemented (an engine that predates the RPC).
#[derive(Default, Clone)]
struct FakeAnalytics {
    seen: Arc<Mutex<Vec<StatsRequest>>>,
    health: Option<Vec<DependencyHealth>>,
}

#[tonic::async_trait]
impl Analytics for FakeAnalytics {
    async fn get_stats(
        &self,
        request: tonic::Request<StatsRequest>,
    ) -> Result<tonic::Response<StatsResponse>, tonic::Status> {
        let req = request.into_inner();
        self.seen.lock().unwrap().push(req.clone());
        if req.kind == "boom" {
            return Err(tonic::Status::internal("python component crashed"));
        }
        // Per-minute counts as the contract says: oldest first, one per minute asked for.
        let per_minute = (0..req.series_minutes)
            .map(|i| MinuteCount { minute_unix_ms: 1_700_000_000_000 + 60_000 * i as i64, count: u64::from(i % 2) })
            .collect();
        Ok(tonic::Response::new(StatsResponse {
            total_events: 7,
            kinds: vec![KindStats {
                kind: "page_view".into(),
                count: 7,
                mean: 1.5,
                min: 0.5,
                max: 3.0,
                p50: 1.25,
                p95: 2.75,
                stddev: 0.75,
                per_minute,
            }],
            computed_at_unix_ms: 1_700_000_000_123,
        }))
    }

    async fn ping(&self, _: tonic::Request<PingRequest>) -> Result<tonic::Response<PingResponse>, tonic::Status> {
        Ok(tonic::Response::new(PingResponse { version: "fake".into(), events_ingested: 0 }))
    }

    async fn health(&self, _: tonic::Request<HealthRequest>) -> Result<tonic::Response<HealthResponse>, tonic::Status> {
        match &self.health {
            Some(deps) => Ok(tonic::Response::new(HealthResponse { dependencies: deps.clone() })),
            None => Err(tonic::Status::unimplemented("Health is not implemented")),
        }
    }
}

async fn start_fake_analytics(fake: FakeAnalytics) -> (FakeAnalytics, SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let svc = AnalyticsServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (fake, addr, tx)
}

/// Stand-in for Prometheus' `GET /-/ready` (NOT Prometheus): answers every request with 200.
async fn start_fake_prometheus() -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = if req.starts_with("GET /-/ready ") {
                "HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\nPrometheus Server is Ready.\n"
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------- backend in-process

struct TestBackend {
    http: SocketAddr,
    grpc: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestBackend {
    async fn start(nats_url: &str, analytics_url: &str) -> TestBackend {
        Self::start_with(nats_url, analytics_url, &[]).await
    }

    /// The configuration comes from the same parser as the process environment, so `env`
    /// pairs are the real variable names (`V7_STREAM_MAX_BYTES`, ...).
    async fn start_with(nats_url: &str, analytics_url: &str, env: &[(&str, &str)]) -> TestBackend {
        let mut vars: HashMap<String, String> = [
            ("V7_HTTP_ADDR", "127.0.0.1:0"),
            ("V7_GRPC_ADDR", "127.0.0.1:0"),
            ("V7_NATS_URL", nats_url),
            ("V7_ANALYTICS_URL", analytics_url),
            // Nothing listens there unless a test says otherwise.
            ("V7_PROMETHEUS_URL", "http://127.0.0.1:1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_map(&vars).unwrap();
        let server = Server::bind(config).await.unwrap();
        let (http, grpc) = (server.http_addr(), server.grpc_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestBackend { http, grpc, stop: Some(tx), task: Some(task) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = reqwest::get(self.url(path)).await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post_raw(&self, body: &str) -> (u16, Value) {
        let (status, _, body) = self.post_full(body).await;
        (status, body)
    }

    /// (status, Retry-After header, JSON body).
    async fn post_full(&self, body: &str) -> (u16, Option<String>, Value) {
        let res = reqwest::Client::new()
            .post(self.url("/api/events"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (status, retry_after, res.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap()
    }

    /// Waits until /readyz reports NATS connected and the stream there (the connector runs in
    /// the background).
    async fn wait_nats_ready(&self) {
        self.wait_nats(true).await
    }

    async fn wait_nats(&self, ready: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, body) = self.get("/readyz").await;
            if body["checks"]["nats"]["ready"] == json!(ready) {
                return;
            }
            assert!(Instant::now() < deadline, "NATS readiness never became {ready}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let res = tokio::time::timeout(Duration::from_secs(15), self.task.take().unwrap())
            .await
            .expect("backend did not shut down in time");
        res.unwrap().unwrap();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An analytics-engine address where nothing listens: port 1 (tcpmux) is privileged and unused,
/// so connecting is refused at once; a "free" port could be taken by a parallel test's server.
fn nobody_url() -> String {
    "http://127.0.0.1:1".to_string()
}

fn pb_event(kind: &str, value: f64) -> PbEvent {
    PbEvent {
        kind: kind.into(),
        value,
        source: "grpc".into(),
        attributes: [("a".to_string(), "b".to_string())].into_iter().collect(),
        ts_unix_ms: 42,
        id: String::new(),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_event_is_in_the_stream_with_its_id_as_msg_id() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let mut reader = StreamReader::open(&nats).await;

    let (status, body) = backend
        .post_raw(
            r#"{"kind":"page_view","value":1.5,"source":"web","attributes":{"path":"/"},"ts_unix_ms":1700000000000}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id in response").to_string();
    assert_eq!(body, json!({ "id": id }));
    // 202 means stored: the stream has it before we look.
    assert_eq!(reader.count().await, 1);
    let got = reader.next().await;
    assert_eq!(got.msg_id.as_deref(), Some(id.as_str()), "Nats-Msg-Id is the event id");
    assert_eq!(
        got.json,
        json!({"id": id, "kind": "page_view", "value": 1.5, "source": "web",
               "attributes": {"path": "/"}, "ts_unix_ms": 1_700_000_000_000i64})
    );

    // Optional fields omitted: defaults filled, ts_unix_ms set to "now".
    let before = backend::event::now_unix_ms();
    let (status, body) = backend.post_raw(r#"{"kind":"click","value":-2}"#).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(reader.count().await, 2);
    let got = reader.next_json().await;
    let ts = got["ts_unix_ms"].as_i64().unwrap();
    assert!(ts >= before && ts <= backend::event::now_unix_ms(), "ts {ts}");
    assert_eq!(
        got,
        json!({"id": body["id"], "kind": "click", "value": -2.0, "source": "",
               "attributes": {}, "ts_unix_ms": ts})
    );

    // /metrics counts what happened.
    let text = backend.metrics().await;
    assert!(text.contains("v7_http_requests_total{method=\"POST\",route=\"/api/events\",status=\"202\"} 2"), "{text}");
    assert!(text.contains("v7_events_published_total 2\n"), "{text}");
    assert!(text.contains("v7_events_duplicate_total 0\n"), "{text}");
    assert!(text.contains("v7_http_request_duration_seconds_count{route=\"/api/events\"} 2"), "{text}");

    // /readyz shows the stream.
    let (_, body) = backend.get("/readyz").await;
    assert_eq!(body["checks"]["nats"]["stream"], json!(STREAM), "{body}");
    // The backlog: the reader acknowledged both, and a work queue keeps only what is not.
    assert_eq!(body["checks"]["nats"]["messages"], json!(0), "{body}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_id_twice_is_stored_once() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let mut reader = StreamReader::open(&nats).await;

    let body = r#"{"id":"order-42:retry.ok_1","kind":"order","value":9.5}"#;
    for attempt in 1..=2 {
        let (status, res) = backend.post_raw(body).await;
        assert_eq!(status, 202, "attempt {attempt}: {res}");
        assert_eq!(res, json!({"id": "order-42:retry.ok_1"}), "attempt {attempt}");
    }
    // The same id over gRPC is the same JetStream message id.
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();
    let ack = client
        .publish(PbEvent { id: "order-42:retry.ok_1".into(), ..pb_event("order", 9.5) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.ids, vec!["order-42:retry.ok_1".to_string()]);

    assert_eq!(reader.count().await, 1, "three posts of one id, one stored message");
    let got = reader.next().await;
    assert_eq!(got.json["id"], json!("order-42:retry.ok_1"));
    assert_eq!(got.json["ts_unix_ms"].as_i64().map(|t| t > 0), Some(true), "{}", got.json);
    assert_eq!(got.msg_id.as_deref(), Some("order-42:retry.ok_1"));

    // A different id is a different event.
    let (status, _) = backend.post_raw(r#"{"id":"order-43","kind":"order","value":1}"#).await;
    assert_eq!(status, 202);
    assert_eq!(reader.count().await, 2);

    let text = backend.metrics().await;
    assert!(text.contains("v7_events_published_total 4\n"), "{text}");
    assert!(text.contains("v7_events_duplicate_total 2\n"), "{text}");

    // Invalid ids: 400 naming `id`, nothing stored.
    for bad in [r#""""#, r#""has space""#, r#""a/b""#, "7"] {
        let (status, res) = backend.post_raw(&format!(r#"{{"id":{bad},"kind":"a","value":1}}"#)).await;
        assert_eq!(status, 400, "id {bad}: {res}");
        assert!(res["error"].as_str().unwrap().starts_with("id:"), "{res}");
    }
    let status = client.publish(PbEvent { id: "x".repeat(65), ..pb_event("a", 1.0) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("id:"), "{}", status.message());
    assert_eq!(reader.count().await, 2);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_get_400_and_nothing_is_stored() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let reader = StreamReader::open(&nats).await;

    let cases = [
        ("{", "body"),
        (r#"{"value":1}"#, "kind"),
        (r#"{"kind":"Bad Kind","value":1}"#, "kind"),
        (r#"{"kind":"a","value":"x"}"#, "value"),
        (r#"{"kind":"a"}"#, "value"),
        (r#"{"kind":"a","value":1,"attributes":{"k":1}}"#, "attributes"),
        (r#"{"kind":"a","value":1,"ts_unix_ms":-5}"#, "ts_unix_ms"),
        (r#"{"kind":"a","value":1,"id":"no spaces"}"#, "id"),
        (r#"{"kind":"a","value":1,"idd":"x"}"#, "idd"),
    ];
    for (body, field) in cases {
        let (status, res) = backend.post_raw(body).await;
        assert_eq!(status, 400, "{body} -> {res}");
        let err = res["error"].as_str().unwrap_or_else(|| panic!("no error in {res}"));
        assert!(err.starts_with(field), "{body}: error {err:?} should name {field}");
        assert_eq!(res.as_object().unwrap().len(), 1, "{res}");
    }
    assert_eq!(reader.count().await, 0);

    let text = backend.metrics().await;
    assert!(text.contains("v7_events_published_total 0"), "{text}");
    assert!(text.contains(&format!("v7_events_rejected_total {}", cases.len())), "{text}");

    let (status, _) = backend.get("/nope").await;
    assert_eq!(status, 404);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_publish_and_batch_use_the_same_path() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let mut reader = StreamReader::open(&nats).await;
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();
    let ev = pb_event;

    let ack = client.publish(ev("order", 9.5)).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 1);
    assert_eq!(
        reader.next_json().await,
        json!({"id": ack.ids[0], "kind": "order", "value": 9.5, "source": "grpc",
               "attributes": {"a": "b"}, "ts_unix_ms": 42})
    );

    let ack =
        client.publish_batch(EventBatch { events: vec![ev("one", 1.0), ev("two", 2.0)] }).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 2);
    assert_eq!(ack.ids.len(), 2);
    for (i, kind) in ["one", "two"].iter().enumerate() {
        let got = reader.next_json().await;
        assert_eq!(got["kind"], json!(kind));
        assert_eq!(got["id"], json!(ack.ids[i]));
    }

    // Invalid: InvalidArgument naming the field, and nothing of the batch is stored.
    let status = client.publish(ev("", 1.0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("kind:"), "{}", status.message());
    let status = client.publish(ev("x", f64::NAN)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("value:"), "{}", status.message());
    let status = client.publish_batch(EventBatch { events: vec![ev("ok", 1.0), ev("NOT OK", 1.0)] }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("events[1].kind:"), "{}", status.message());
    assert_eq!(reader.count().await, 3);

    let text = backend.metrics().await;
    assert!(text.contains("v7_grpc_requests_total{method=\"Publish\",code=\"InvalidArgument\"} 2"), "{text}");
    assert!(text.contains("v7_grpc_requests_total{method=\"PublishBatch\",code=\"Ok\"} 1"), "{text}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_n_is_n_messages_in_order() {
    const N: usize = 500;
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let mut reader = StreamReader::open(&nats).await;
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();

    let events: Vec<PbEvent> = (0..N).map(|i| pb_event("batch", i as f64)).collect();
    let ack = client.publish_batch(EventBatch { events }).await.unwrap().into_inner();
    assert_eq!(ack.accepted as usize, N);
    assert_eq!(ack.ids.len(), N);
    assert_eq!(reader.count().await, N as u64, "every event of the acked batch is stored");
    for (i, id) in ack.ids.iter().enumerate() {
        let got = reader.next().await;
        assert_eq!(got.json["id"], json!(id), "message {i}");
        assert_eq!(got.json["value"], json!(i as f64), "message {i}");
        assert_eq!(got.msg_id.as_deref(), Some(id.as_str()), "message {i}");
    }
    let text = backend.metrics().await;
    assert!(text.contains(&format!("v7_events_published_total {N}\n")), "{text}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_is_503_with_retry_after_and_never_202() {
    let nats = NatsServer::start();
    // A short ack timeout keeps the "connection just died" case quick; the outcome is the same.
    let backend = TestBackend::start_with(&nats.url(), &nobody_url(), &[("V7_PUBLISH_TIMEOUT_MS", "1000")]).await;
    backend.wait_nats_ready().await;
    let (status, first) = backend.post_raw(r#"{"kind":"before","value":1}"#).await;
    assert_eq!(status, 202, "{first}");

    let (port, store) = nats.kill();
    // At once (the client may not have noticed yet) and once it has: 503 either way.
    let mut refused = 0;
    for round in 0..2 {
        if round == 1 {
            backend.wait_nats(false).await;
        }
        let (status, retry_after, body) = backend.post_full(r#"{"kind":"during","value":1}"#).await;
        assert_eq!(status, 503, "round {round}: {body}");
        let secs: u64 = retry_after.expect("Retry-After on 503").parse().expect("Retry-After in seconds");
        assert!(secs > 0);
        let err = body["error"].as_str().unwrap();
        assert!(err.starts_with("nats: "), "{err}");
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        refused += 1;
    }
    let (_, _, body) = backend.post_full(r#"{"kind":"during","value":1}"#).await;
    assert!(body["error"].as_str().unwrap().starts_with("nats: not connected"), "{body}");
    refused += 1;
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();
    let status = client.publish_batch(EventBatch { events: vec![pb_event("during", 1.0)] }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
    refused += 1;

    // NATS comes back with its store: the event acked before is still there, new ones are stored.
    let nats = NatsServer::start_on(port, store.clone(), true);
    backend.wait_nats_ready().await;
    let (status, after) = backend.post_raw(r#"{"kind":"after","value":1}"#).await;
    assert_eq!(status, 202, "{after}");

    let reader = StreamReader::open(&nats).await;
    let count = reader.count().await;
    // A publish sent just before the client noticed the crash may still be delivered after the
    // reconnect (it was answered 503; a retry with the same id would dedupe), so the stream may
    // hold more than the two acked events — but never fewer.
    assert!((2..=2 + refused).contains(&count), "{count} messages, 2 acked, {refused} refused");
    let mut reader = reader;
    let mut seen = Vec::new();
    for _ in 0..count {
        seen.push(reader.next_json().await["id"].clone());
    }
    assert!(seen.contains(&first["id"]), "the event acked before the crash survived: {seen:?}");
    assert!(seen.contains(&after["id"]), "{seen:?}");

    let text = backend.metrics().await;
    let failed: u64 = ["nats_down", "timeout"]
        .iter()
        .map(|r| metric(&text, &format!("v7_events_publish_failures_total{{reason=\"{r}\"}}")))
        .sum();
    assert_eq!(failed, refused, "{text}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_is_503_and_keeps_what_it_acked() {
    let nats = NatsServer::start();
    // Room for a handful of events only.
    let backend = TestBackend::start_with(&nats.url(), &nobody_url(), &[("V7_STREAM_MAX_BYTES", "2000")]).await;
    backend.wait_nats_ready().await;
    let reader = StreamReader::open(&nats).await;

    let mut accepted = 0u64;
    let mut refusal = None;
    for i in 0..200 {
        // Every event the same size, so once one is refused the next cannot fit either.
        let (status, retry_after, body) = backend.post_full(r#"{"kind":"fill","value":1}"#).await;
        match status {
            202 => accepted += 1,
            503 => {
                refusal = Some((retry_after, body));
                break;
            }
            other => panic!("post {i}: unexpected {other} {body}"),
        }
    }
    let (retry_after, body) = refusal.unwrap_or_else(|| panic!("{accepted} events fit in 2000 bytes"));
    assert!(accepted > 0, "the first event fits: {body}");
    assert_eq!(retry_after.as_deref(), Some("30"), "{body}");
    let err = body["error"].as_str().unwrap();
    assert!(err.starts_with(&format!("nats: stream {STREAM} is full")), "{err}");
    assert!(err.contains("0 of 1 events stored"), "{err}");
    assert_eq!(reader.count().await, accepted, "every 202 is stored, the refused one is not");

    // Still full: the next one is refused too; over gRPC a batch is Unavailable.
    let (status, _, _) = backend.post_full(r#"{"kind":"fill","value":1}"#).await;
    assert_eq!(status, 503);
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();
    let events = (0..5).map(|i| pb_event("fill", i as f64)).collect();
    let status = client.publish_batch(EventBatch { events }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("is full") && status.message().contains("of 5 events stored"), "{status:?}");
    assert_eq!(status.metadata().get("retry-after").map(|v| v.to_str().unwrap()), Some("30"));
    assert_eq!(reader.count().await, accepted);

    let text = backend.metrics().await;
    assert!(text.contains("v7_events_publish_failures_total{reason=\"stream_full\"} 7\n"), "{text}");
    assert!(text.contains(&format!("v7_events_published_total {accepted}\n")), "{text}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_created_again_by_the_next_publish() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream(STREAM).await.unwrap();

    let (status, body) = backend.post_raw(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 202, "{body}");
    let mut reader = StreamReader::open(&nats).await;
    assert_eq!(reader.count().await, 1);
    assert_eq!(reader.next_json().await["id"], body["id"]);

    // The contract's config, as backend created it.
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, vec!["v7.events".to_string()]);
    assert_eq!(config.discard, async_nats::jetstream::stream::DiscardPolicy::New);
    assert_eq!(config.storage, async_nats::jetstream::stream::StorageType::File);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.max_bytes, 1_073_741_824);
    assert_eq!(config.max_age, Duration::from_secs(604_800));
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_events_are_refused_and_not_ready() {
    let nats = NatsServer::start_without_jetstream();
    let backend = TestBackend::start_with(&nats.url(), &nobody_url(), &[("V7_PUBLISH_TIMEOUT_MS", "1000")]).await;
    // Connected, but the stream cannot exist.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = backend.get("/readyz").await;
        let err = body["checks"]["nats"]["error"].as_str().unwrap_or("").to_string();
        if err.contains("stream") {
            assert_eq!(body["checks"]["nats"]["ready"], json!(false));
            break;
        }
        assert!(Instant::now() < deadline, "readyz never named the stream: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, retry_after, body) = backend.post_full(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(
        body["error"].as_str().unwrap().starts_with("nats: no JetStream stream stores subject v7.events"),
        "{body}"
    );
    backend.shutdown().await;
}

/// The value of the sample `name` (with its labels) in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line[name.len() + 1..].parse().unwrap()
}

/// Runs `backend send-event ARGS` (the real binary) off the async threads: (exit code, stdout, stderr).
async fn run_send_event(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backend")).arg("send-event").args(args).output().unwrap()
    })
    .await
    .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_event_publishes_over_grpc_and_prints_the_ack() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let mut reader = StreamReader::open(&nats).await;
    let addr = format!("http://{}", backend.grpc);

    // The client function with the defaults (but the address).
    let args = send_event::Args { addr: addr.clone(), ..send_event::Args::defaults(0) };
    let ack = send_event::send(&args).await.unwrap();
    assert_eq!(ack.accepted, 1);
    assert_eq!(ack.ids.len(), 1);
    let got = reader.next_json().await;
    let ts = got["ts_unix_ms"].as_i64().unwrap();
    assert_eq!(
        got,
        json!({"id": ack.ids[0], "kind": "grpc_probe", "value": 1.0, "source": "backend-send-event",
               "attributes": {}, "ts_unix_ms": ts})
    );

    // The binary: one line on stdout naming the id that was stored, exit 0.
    let (code, stdout, stderr) =
        run_send_event(&["--addr", &addr, "--kind", "bin_probe", "--value", "-2.5", "--source", "ops"]).await;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let got = reader.next_json().await;
    assert_eq!((&got["kind"], &got["value"], &got["source"]), (&json!("bin_probe"), &json!(-2.5), &json!("ops")));
    let id = got["id"].as_str().unwrap();
    assert_eq!(stdout, format!("accepted 1 event at {addr}: id {id}\n"));
    assert_eq!(stderr, "");

    // Rejected by the server: status code + message on one stderr line, exit 1, nothing stored.
    let (code, stdout, stderr) = run_send_event(&["--addr", &addr, "--kind", "Bad Kind"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}");
    assert_eq!(stdout, "");
    assert!(stderr.starts_with(&format!("backend send-event: {addr} answered InvalidArgument: kind:")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(reader.count().await, 2);

    // Bad arguments: one usage line, exit 2.
    let (code, _, stderr) = run_send_event(&["--value", "lots"]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("backend send-event: --value: expected a number"), "{stderr}");
    assert!(stderr.contains("usage: backend send-event [--addr URL]"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let text = backend.metrics().await;
    assert!(text.contains("v7_grpc_requests_total{method=\"Publish\",code=\"Ok\"} 2"), "{text}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_event_failures_name_the_address_and_the_cause() {
    // Nothing listens: connection refused, naming the address.
    let args = send_event::Args::defaults(1);
    let err = send_event::send(&args).await.unwrap_err();
    assert!(err.starts_with("connect http://127.0.0.1:1: "), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    let (code, stdout, stderr) = run_send_event(&["--addr", "http://127.0.0.1:1"]).await;
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    assert_eq!(stderr, format!("backend send-event: {err}\n"));

    // The server answers but cannot publish (NATS absent): the gRPC status and its message.
    let backend = TestBackend::start(&format!("nats://127.0.0.1:{}", free_port()), &nobody_url()).await;
    let addr = format!("http://{}", backend.grpc);
    let err = send_event::send(&send_event::Args { addr: addr.clone(), ..args }).await.unwrap_err();
    assert!(err.starts_with(&format!("{addr} answered Unavailable: nats: not connected")), "{err}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_analytics_engine_is_absent() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;

    let (status, body) = backend.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = backend.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], json!(false));
    assert_eq!(body["not_ready"], json!(["analytics-engine"]));
    assert_eq!(body["checks"]["nats"]["ready"], json!(true));
    assert!(body["checks"]["analytics-engine"]["error"].is_string(), "{body}");

    let (status, body) = backend.get("/api/stats").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("analytics-engine"), "{body}");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_served_from_analytics_engine() {
    let nats = NatsServer::start();
    let (fake, addr, fake_stop) = start_fake_analytics(FakeAnalytics::default()).await;
    let backend = TestBackend::start(&nats.url(), &format!("http://{addr}")).await;
    backend.wait_nats_ready().await;

    let (status, body) = backend.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["not_ready"], json!([]));

    let (status, body) = backend.get("/api/stats?kind=page_view&window_seconds=60").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "total_events": 7,
            "kinds": [{"kind": "page_view", "count": 7, "mean": 1.5, "min": 0.5, "max": 3.0,
                       "p50": 1.25, "p95": 2.75, "stddev": 0.75}],
            "computed_at_unix_ms": 1_700_000_000_123i64,
        })
    );
    assert_eq!(
        fake.seen.lock().unwrap().last().cloned(),
        Some(StatsRequest { kind: "page_view".into(), window_seconds: 60, series_minutes: 0 })
    );

    let (status, _) = backend.get("/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        fake.seen.lock().unwrap().last().cloned(),
        Some(StatsRequest { kind: String::new(), window_seconds: 0, series_minutes: 0 })
    );

    // series_minutes goes through; each kind carries per_minute.
    let (status, body) = backend.get("/api/stats?window_seconds=180&series_minutes=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.seen.lock().unwrap().last().cloned(),
        Some(StatsRequest { kind: String::new(), window_seconds: 180, series_minutes: 3 })
    );
    assert_eq!(
        body["kinds"][0]["per_minute"],
        json!([
            {"minute_unix_ms": 1_700_000_000_000i64, "count": 0},
            {"minute_unix_ms": 1_700_000_060_000i64, "count": 1},
            {"minute_unix_ms": 1_700_000_120_000i64, "count": 0},
        ])
    );
    assert_eq!(body["kinds"][0]["count"], json!(7));

    for bad in ["window_seconds=abc", "series_minutes=-1", "series_minutes=100000"] {
        let (status, body) = backend.get(&format!("/api/stats?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let param = bad.split('=').next().unwrap();
        assert!(body["error"].as_str().unwrap().starts_with(param), "{body}");
    }

    let (status, body) = backend.get("/api/stats?kind=boom").await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("python component crashed"), "{body}");

    backend.shutdown().await;
    let _ = fake_stop.send(());
}

fn dep(name: &str, ok: bool, detail: &str) -> DependencyHealth {
    DependencyHealth { name: name.into(), ok, detail: detail.into() }
}

/// `{name: (ok, detail)}` of `/api/health`, after checking it is 200 and lists the names in order.
async fn health_of(backend: &TestBackend, names: &[&str]) -> HashMap<String, (bool, String)> {
    let (status, body) = backend.get("/api/health").await;
    assert_eq!(status, 200, "{body}");
    let services = body["services"].as_array().unwrap_or_else(|| panic!("no services: {body}"));
    let got: Vec<&str> = services.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(got, names, "{body}");
    services
        .iter()
        .map(|s| {
            assert_eq!(s.as_object().unwrap().len(), 3, "{s}");
            let name = s["name"].as_str().unwrap().to_string();
            (name, (s["ok"].as_bool().unwrap(), s["detail"].as_str().unwrap().to_string()))
        })
        .collect()
}

const HEALTH_NAMES: [&str; 6] = ["backend", "nats", "analytics-engine", "clickhouse", "python", "prometheus"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_every_service() {
    let nats = NatsServer::start();
    let fake = FakeAnalytics {
        health: Some(vec![
            dep("nats", true, "consumer analytics-engine: 0 pending"),
            dep("clickhouse", true, "18.16.1 answers"),
            dep("python", false, "python3: exited 1"),
        ]),
        ..Default::default()
    };
    let (_fake, addr, fake_stop) = start_fake_analytics(fake).await;
    let (prom, prom_task) = start_fake_prometheus().await;
    let backend = TestBackend::start_with(
        &nats.url(),
        &format!("http://{addr}"),
        &[("V7_PROMETHEUS_URL", &format!("http://{prom}"))],
    )
    .await;
    backend.wait_nats_ready().await;

    let h = health_of(&backend, &HEALTH_NAMES).await;
    assert!(h["backend"].0);
    assert!(h["nats"].0, "{:?}", h["nats"]);
    assert!(h["nats"].1.contains(&format!("stream {STREAM}")), "{:?}", h["nats"]);
    assert!(h["analytics-engine"].0, "{:?}", h["analytics-engine"]);
    assert_eq!(h["clickhouse"], (true, "18.16.1 answers".to_string()));
    assert_eq!(h["python"], (false, "python3: exited 1".to_string()));
    assert!(h["prometheus"].0, "{:?}", h["prometheus"]);
    assert!(h["prometheus"].1.contains("/-/ready answered 200"), "{:?}", h["prometheus"]);

    backend.shutdown().await;
    let _ = fake_stop.send(());
    prom_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_an_engine_without_the_health_rpc_as_not_ok() {
    let nats = NatsServer::start();
    // An engine that predates the Health RPC, and no Prometheus.
    let (_fake, addr, fake_stop) = start_fake_analytics(FakeAnalytics::default()).await;
    let backend = TestBackend::start(&nats.url(), &format!("http://{addr}")).await;
    backend.wait_nats_ready().await;

    let h = health_of(&backend, &HEALTH_NAMES).await;
    assert!(h["backend"].0);
    assert!(h["nats"].0, "{:?}", h["nats"]);
    let (ok, detail) = &h["analytics-engine"];
    assert!(!ok && detail.contains("Unimplemented"), "{detail}");
    for name in ["clickhouse", "python"] {
        assert!(!h[name].0 && h[name].1.contains("Health RPC failed"), "{name}: {:?}", h[name]);
    }
    let (ok, detail) = &h["prometheus"];
    assert!(!ok && detail.starts_with("http://127.0.0.1:1/-/ready"), "{detail}");
    backend.shutdown().await;
    let _ = fake_stop.send(());

    // Nothing at all answers: still 200, everything but backend not ok.
    let backend = TestBackend::start(&format!("nats://127.0.0.1:{}", free_port()), &nobody_url()).await;
    let h = health_of(&backend, &HEALTH_NAMES).await;
    assert!(h["backend"].0);
    for name in &HEALTH_NAMES[1..] {
        assert!(!h[*name].0, "{name}: {:?}", h[*name]);
    }
    assert!(h["nats"].1.starts_with("not connected"), "{:?}", h["nats"]);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_nats_and_connects_when_it_appears() {
    let nats_port = free_port();
    let backend = TestBackend::start(&format!("nats://127.0.0.1:{nats_port}"), &nobody_url()).await;

    let (status, _) = backend.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = backend.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["not_ready"], json!(["nats", "analytics-engine"]));
    let (status, retry_after, body) = backend.post_full(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(body["error"].as_str().unwrap().starts_with("nats"), "{body}");

    let nats = NatsServer::start_on(nats_port, temp_dir("nats-store"), true);
    backend.wait_nats_ready().await;
    let (status, body) = backend.post_raw(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 202, "{body}");
    let mut reader = StreamReader::open(&nats).await;
    assert_eq!(reader.count().await, 1);
    assert_eq!(reader.next_json().await["id"], body["id"]);
    backend.shutdown().await;
}
