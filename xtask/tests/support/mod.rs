//! Support for the end-to-end tests, shared by every test crate (`mod support;`): temporary
//! directories and processes removed on drop, live package mirrors (`mirrors.rs`), podman, JSON read with the xtask's own parser
//! (tinyjson), a test CA (`tls.rs`), an authenticated CONNECT proxy (`tinyproxy.rs`), and in
//! `registry.rs` (pull) and `stack.rs` (registry-free) what each family of tests runs against.
//! Each test crate uses part of it.
#![allow(dead_code)]

pub mod mirrors;
pub mod registry;
pub mod stack;
pub mod tinyproxy;
pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
pub use tinyjson::JsonValue;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(tag: &str) -> String {
    format!("v7test-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, within: Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {within:?}");
}

/// A process ended by PID on drop.
pub struct Proc(pub Child);

impl Proc {
    /// Starts one of the test's helper servers (faultproxy.py, tokenserver.py, cargo_mirror.py),
    /// which listen on a free port and print `PORT <n>` as their first line once they do.
    /// stdout must be piped by `cmd`.
    pub fn start_printing_port(cmd: &mut Command, what: &str) -> (Proc, u16) {
        use std::io::{BufRead, BufReader};
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout piped")).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("{what} did not print its port: {line:?}"));
        (Proc(child), port)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET http://127.0.0.1:port/path` (HTTP/1.0): (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_request(port, "GET", path, None)
}

pub fn http_request(port: u16, method: &str, path: &str, json: Option<&str>) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = json.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if json.is_some() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| format!("read from 127.0.0.1:{port}: {e}"))?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response from 127.0.0.1:{port}{path}: {resp:?}"))?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A request that must be answered: the proxy's control endpoints.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let json = if body.is_empty() && method == "GET" { None } else { Some(body) };
    http_request(port, method, path, json).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A JSON text parsed; panics with the text when it is not JSON.
pub fn json(text: &str) -> JsonValue {
    text.trim().parse().unwrap_or_else(|e| panic!("not JSON ({e:?}):\n{text}"))
}

/// `value[key]`, when `value` is an object that has it.
pub fn field<'a>(value: &'a JsonValue, key: &str) -> Option<&'a JsonValue> {
    match value {
        JsonValue::Object(m) => m.get(key),
        _ => None,
    }
}

pub fn number(value: &JsonValue, key: &str) -> Option<f64> {
    match field(value, key)? {
        JsonValue::Number(n) => Some(*n),
        _ => None,
    }
}

/// A string field; `None` for null or absent.
pub fn string(value: &JsonValue, key: &str) -> Option<String> {
    match field(value, key)? {
        JsonValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn boolean(value: &JsonValue, key: &str) -> Option<bool> {
    match field(value, key)? {
        JsonValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

pub fn items<'a>(value: &'a JsonValue, key: &str) -> &'a [JsonValue] {
    match field(value, key) {
        Some(JsonValue::Array(a)) => a,
        _ => &[],
    }
}

/// The object of array `list` whose `key` is `value`; panics with the document when none is.
pub fn entry<'a>(doc: &'a JsonValue, list: &str, key: &str, value: &str) -> &'a JsonValue {
    find_in(items(doc, list), key, value)
}

/// The object of `list` whose `key` is `value`; panics with the list when none is.
pub fn find_in<'a>(list: &'a [JsonValue], key: &str, value: &str) -> &'a JsonValue {
    list.iter()
        .find(|e| string(e, key).as_deref() == Some(value))
        .unwrap_or_else(|| panic!("no entry with {key} = {value:?} in {list:?}"))
}

pub fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).stdin(Stdio::null()).output().expect("podman")
}

pub fn image_exists(reference: &str) -> bool {
    podman(&["image", "exists", reference]).status.success()
}

/// Images pulled or pushed by a test, removed on drop (only these names).
#[derive(Default)]
pub struct Images(pub Vec<String>);

impl Images {
    pub fn add(&mut self, reference: &str) {
        self.0.push(reference.to_string());
    }
    pub fn remove_now(&self) {
        for r in &self.0 {
            let _ = podman(&["rmi", "-f", "-i", r]);
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        self.remove_now();
    }
}
