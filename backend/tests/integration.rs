//! Integration tests against a REAL nats-server (started as a child process per test) and the
//! backend's servers running in-process on free ports. analytics-engine is replaced by
//! `FakeAnalytics`, a small in-test tonic server.
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::proto::analytics::analytics_server::{Analytics, AnalyticsServer};
use backend::proto::analytics::{KindStats, PingRequest, PingResponse, StatsRequest, StatsResponse};
use backend::proto::ingest::ingest_client::IngestClient;
use backend::proto::ingest::{Event as PbEvent, EventBatch};
use backend::{send_event, Config, Server};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    /// Starts on a port nats-server picks itself (`-p -1`), read back from its ports file, so
    /// parallel tests never race for a "free" port.
    fn start() -> NatsServer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "v7-backend-test-nats-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nats-server");
        let ports_file = dir.join(format!("nats-server_{}.ports", child.id()));
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
                panic!("nats-server wrote no ports file in {}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir_all(&dir);
        NatsServer { child, port }
    }

    /// Starts on a given port (for the test where the backend is started first).
    fn start_on(port: u16) -> NatsServer {
        let mut child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
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
        NatsServer { child, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- FakeAnalytics

/// Stand-in for analytics-engine (NOT the real service): answers Ping and returns canned
/// GetStats responses, recording the requests it saw. kind "boom" makes GetStats fail.
#[derive(Default, Clone)]
struct FakeAnalytics {
    seen: Arc<Mutex<Vec<StatsRequest>>>,
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
            }],
            computed_at_unix_ms: 1_700_000_000_123,
        }))
    }

    async fn ping(&self, _: tonic::Request<PingRequest>) -> Result<tonic::Response<PingResponse>, tonic::Status> {
        Ok(tonic::Response::new(PingResponse { version: "fake".into(), events_ingested: 0 }))
    }
}

async fn start_fake_analytics() -> (FakeAnalytics, SocketAddr, oneshot::Sender<()>) {
    let fake = FakeAnalytics::default();
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

// ---------------------------------------------------------------- backend in-process

struct TestBackend {
    http: SocketAddr,
    grpc: SocketAddr,
    subject: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestBackend {
    async fn start(nats_url: &str, analytics_url: &str) -> TestBackend {
        static N: AtomicUsize = AtomicUsize::new(0);
        let subject = format!("v7.test.{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let config = Config {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            nats_url: nats_url.to_string(),
            nats_subject: subject.clone(),
            analytics_url: analytics_url.to_string(),
            ..Config::default()
        };
        let server = Server::bind(config).await.unwrap();
        let (http, grpc) = (server.http_addr(), server.grpc_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestBackend { http, grpc, subject, stop: Some(tx), task: Some(task) }
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
        let res = reqwest::Client::new()
            .post(self.url("/api/events"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// Waits until /readyz reports NATS connected (the connector runs in the background).
    async fn wait_nats_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, body) = self.get("/readyz").await;
            if body["checks"]["nats"]["ready"] == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "NATS never became ready: {body}");
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

async fn subscribe(nats: &NatsServer, subject: &str) -> (async_nats::Client, async_nats::Subscriber) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    // async-nats' flush() only writes the socket; it does not wait for the server to have
    // processed SUB. A probe published on the same connection comes back only once the
    // subscription is live, so the backend's publish that follows cannot race it.
    client.publish(subject.to_string(), "probe".into()).await.unwrap();
    client.flush().await.unwrap();
    let probe = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("subscription probe did not come back")
        .unwrap();
    assert_eq!(&probe.payload[..], b"probe");
    (client, sub)
}

async fn next_json(sub: &mut async_nats::Subscriber) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("no NATS message within 5s")
        .expect("subscription ended");
    serde_json::from_slice(&msg.payload).unwrap()
}

async fn assert_no_message(sub: &mut async_nats::Subscriber) {
    if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        panic!("unexpected NATS message: {}", String::from_utf8_lossy(&msg.payload));
    }
}

/// An analytics-engine address where nothing listens: port 1 (tcpmux) is privileged and unused,
/// so connecting is refused at once; a "free" port could be taken by a parallel test's server.
fn nobody_url() -> String {
    "http://127.0.0.1:1".to_string()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_event_publishes_exact_json_on_nats() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let (_client, mut sub) = subscribe(&nats, &backend.subject).await;

    let (status, body) = backend
        .post_raw(
            r#"{"kind":"page_view","value":1.5,"source":"web","attributes":{"path":"/"},"ts_unix_ms":1700000000000}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id in response").to_string();
    assert_eq!(body, json!({ "id": id }));
    let got = next_json(&mut sub).await;
    assert_eq!(
        got,
        json!({"id": id, "kind": "page_view", "value": 1.5, "source": "web",
               "attributes": {"path": "/"}, "ts_unix_ms": 1_700_000_000_000i64})
    );

    // Optional fields omitted: defaults filled, ts_unix_ms set to "now".
    let before = backend::event::now_unix_ms();
    let (status, body) = backend.post_raw(r#"{"kind":"click","value":-2}"#).await;
    assert_eq!(status, 202, "{body}");
    let got = next_json(&mut sub).await;
    let ts = got["ts_unix_ms"].as_i64().unwrap();
    assert!(ts >= before && ts <= backend::event::now_unix_ms(), "ts {ts}");
    assert_eq!(
        got,
        json!({"id": body["id"], "kind": "click", "value": -2.0, "source": "",
               "attributes": {}, "ts_unix_ms": ts})
    );

    // /metrics counts what happened.
    let text = reqwest::get(backend.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("v7_http_requests_total{method=\"POST\",route=\"/api/events\",status=\"202\"} 2"), "{text}");
    assert!(text.contains("v7_events_published_total 2"), "{text}");
    assert!(text.contains("v7_http_request_duration_seconds_count{route=\"/api/events\"} 2"), "{text}");

    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_get_400_and_nothing_is_published() {
    let nats = NatsServer::start();
    let backend = TestBackend::start(&nats.url(), &nobody_url()).await;
    backend.wait_nats_ready().await;
    let (_client, mut sub) = subscribe(&nats, &backend.subject).await;

    let cases = [
        ("{", "body"),
        (r#"{"value":1}"#, "kind"),
        (r#"{"kind":"Bad Kind","value":1}"#, "kind"),
        (r#"{"kind":"a","value":"x"}"#, "value"),
        (r#"{"kind":"a"}"#, "value"),
        (r#"{"kind":"a","value":1,"attributes":{"k":1}}"#, "attributes"),
        (r#"{"kind":"a","value":1,"ts_unix_ms":-5}"#, "ts_unix_ms"),
    ];
    for (body, field) in cases {
        let (status, res) = backend.post_raw(body).await;
        assert_eq!(status, 400, "{body} -> {res}");
        let err = res["error"].as_str().unwrap_or_else(|| panic!("no error in {res}"));
        assert!(err.starts_with(field), "{body}: error {err:?} should name {field}");
        assert_eq!(res.as_object().unwrap().len(), 1, "{res}");
    }
    assert_no_message(&mut sub).await;

    let text = reqwest::get(backend.url("/metrics")).await.unwrap().text().await.unwrap();
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
    let (_client, mut sub) = subscribe(&nats, &backend.subject).await;
    let mut client = IngestClient::connect(format!("http://{}", backend.grpc)).await.unwrap();

    let ev = |kind: &str, value: f64| PbEvent {
        kind: kind.into(),
        value,
        source: "grpc".into(),
        attributes: [("a".to_string(), "b".to_string())].into_iter().collect(),
        ts_unix_ms: 42,
    };

    let ack = client.publish(ev("order", 9.5)).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 1);
    assert_eq!(
        next_json(&mut sub).await,
        json!({"id": ack.ids[0], "kind": "order", "value": 9.5, "source": "grpc",
               "attributes": {"a": "b"}, "ts_unix_ms": 42})
    );

    let ack =
        client.publish_batch(EventBatch { events: vec![ev("one", 1.0), ev("two", 2.0)] }).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 2);
    assert_eq!(ack.ids.len(), 2);
    for (i, kind) in ["one", "two"].iter().enumerate() {
        let got = next_json(&mut sub).await;
        assert_eq!(got["kind"], json!(kind));
        assert_eq!(got["id"], json!(ack.ids[i]));
    }

    // Invalid: InvalidArgument naming the field, and nothing of the batch is published.
    let status = client.publish(ev("", 1.0)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("kind:"), "{}", status.message());
    let status = client.publish(ev("x", f64::NAN)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("value:"), "{}", status.message());
    let status = client.publish_batch(EventBatch { events: vec![ev("ok", 1.0), ev("NOT OK", 1.0)] }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("events[1].kind:"), "{}", status.message());
    assert_no_message(&mut sub).await;

    let text = reqwest::get(backend.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("v7_grpc_requests_total{method=\"Publish\",code=\"InvalidArgument\"} 2"), "{text}");
    assert!(text.contains("v7_grpc_requests_total{method=\"PublishBatch\",code=\"Ok\"} 1"), "{text}");
    backend.shutdown().await;
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
    let (_client, mut sub) = subscribe(&nats, &backend.subject).await;
    let addr = format!("http://{}", backend.grpc);

    // The client function with the defaults (but the address).
    let args = send_event::Args { addr: addr.clone(), ..send_event::Args::defaults(0) };
    let ack = send_event::send(&args).await.unwrap();
    assert_eq!(ack.accepted, 1);
    assert_eq!(ack.ids.len(), 1);
    let got = next_json(&mut sub).await;
    let ts = got["ts_unix_ms"].as_i64().unwrap();
    assert_eq!(
        got,
        json!({"id": ack.ids[0], "kind": "grpc_probe", "value": 1.0, "source": "backend-send-event",
               "attributes": {}, "ts_unix_ms": ts})
    );

    // The binary: one line on stdout naming the id that went out on NATS, exit 0.
    let (code, stdout, stderr) =
        run_send_event(&["--addr", &addr, "--kind", "bin_probe", "--value", "-2.5", "--source", "ops"]).await;
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let got = next_json(&mut sub).await;
    assert_eq!((&got["kind"], &got["value"], &got["source"]), (&json!("bin_probe"), &json!(-2.5), &json!("ops")));
    let id = got["id"].as_str().unwrap();
    assert_eq!(stdout, format!("accepted 1 event at {addr}: id {id}\n"));
    assert_eq!(stderr, "");

    // Rejected by the server: status code + message on one stderr line, exit 1, nothing published.
    let (code, stdout, stderr) = run_send_event(&["--addr", &addr, "--kind", "Bad Kind"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}");
    assert_eq!(stdout, "");
    assert!(stderr.starts_with(&format!("backend send-event: {addr} answered InvalidArgument: kind:")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_no_message(&mut sub).await;

    // Bad arguments: one usage line, exit 2.
    let (code, _, stderr) = run_send_event(&["--value", "lots"]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("backend send-event: --value: expected a number"), "{stderr}");
    assert!(stderr.contains("usage: backend send-event [--addr URL]"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let text = reqwest::get(backend.url("/metrics")).await.unwrap().text().await.unwrap();
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
    let (fake, addr, fake_stop) = start_fake_analytics().await;
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
        Some(StatsRequest { kind: "page_view".into(), window_seconds: 60 })
    );

    let (status, _) = backend.get("/api/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        fake.seen.lock().unwrap().last().cloned(),
        Some(StatsRequest { kind: String::new(), window_seconds: 0 })
    );

    let (status, body) = backend.get("/api/stats?window_seconds=abc").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("window_seconds"), "{body}");

    let (status, body) = backend.get("/api/stats?kind=boom").await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"].as_str().unwrap().contains("python component crashed"), "{body}");

    backend.shutdown().await;
    let _ = fake_stop.send(());
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
    let (status, body) = backend.post_raw(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("nats"), "{body}");

    let nats = NatsServer::start_on(nats_port);
    backend.wait_nats_ready().await;
    let (_client, mut sub) = subscribe(&nats, &backend.subject).await;
    let (status, body) = backend.post_raw(r#"{"kind":"a","value":1}"#).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(next_json(&mut sub).await["id"], body["id"]);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_and_sigterm() {
    let nats = NatsServer::start();
    let bin = env!("CARGO_BIN_EXE_backend");
    let healthcheck = |port: u16| {
        Command::new(bin)
            .arg("healthcheck")
            .env("V7_HTTP_ADDR", format!("0.0.0.0:{port}"))
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };

    // The ports are picked before the process binds them, so a parallel test may take one in
    // between: the process then exits at once, and we retry with new ports.
    let mut attempt = 0;
    let mut child = loop {
        attempt += 1;
        let http_port = free_port();
        let mut child = Command::new(bin)
            .env("V7_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("V7_GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("V7_NATS_URL", nats.url())
            .env("V7_ANALYTICS_URL", nobody_url())
            .env("V7_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let up = loop {
            if healthcheck(http_port).success() {
                break true;
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(attempt < 3, "backend exited before serving ({status}), {attempt} attempts");
                break false;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("backend healthcheck never passed");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if up {
            break child;
        }
    };
    assert_eq!(healthcheck(1).code(), Some(1), "nothing listens on port 1");

    // SIGTERM: both servers drain and the process exits 0.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("backend did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
