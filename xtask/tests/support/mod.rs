//! Test support for `cargo xtask pull`: a real registry (Debian's docker-registry) on loopback,
//! the fault-injecting proxy (`faultproxy.py`) in front of it, small images built and pushed
//! here, and Drop guards that remove everything a test made (all named `v7test-pull-...`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(tag: &str) -> String {
    format!("v7test-pull-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
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

fn wait_for_port(port: u16, within: Duration) {
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

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// docker-registry 2.8 on 127.0.0.1, storage in a temp dir.
pub struct Registry {
    pub port: u16,
    _proc: Proc,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let proc = Proc(child);
        wait_for_port(port, Duration::from_secs(10));
        Registry { port, _proc: proc, _dir: dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The fault proxy in front of `upstream`.
pub struct Proxy {
    pub port: u16,
    _proc: Proc,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        Proxy::start_with(upstream, &[])
    }

    pub fn start_with(upstream: &str, extra: &[&str]) -> Proxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/faultproxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").expect("proxy prints its port").parse().unwrap();
        Proxy { port, _proc: Proc(child) }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the fault configuration (see faultproxy.py).
    pub fn faults(&self, json: &str) {
        let (status, body) = http(self.port, "POST", "/__faults", json);
        assert_eq!(status, 200, "{body}");
    }

    pub fn clear_log(&self) {
        http(self.port, "POST", "/__clear", "");
    }

    /// (count, first time) of logged requests matching the query (`method=GET&path=...`).
    pub fn find(&self, query: &str) -> (usize, Option<f64>) {
        let (_, body) = http(self.port, "GET", &format!("/__find?{query}"), "");
        (json_number(&body, "count").unwrap() as usize, json_number(&body, "first"))
    }

    pub fn count(&self, query: &str) -> usize {
        self.find(query).0
    }

    pub fn max_overlap(&self) -> usize {
        let (_, body) = http(self.port, "GET", "/__overlap", "");
        json_number(&body, "max").unwrap() as usize
    }

    pub fn log(&self) -> String {
        http(self.port, "GET", "/__log", "").1
    }
}

/// A tiny HTTP/1.1 client for the proxy's control endpoints.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The number after `"key": ` in a JSON text (null -> None).
pub fn json_number(text: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\": ");
    let start = text.find(&pat)? + pat.len();
    let rest = &text[start..];
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// The string after `"key": ` in a JSON text (first occurrence after `from`).
pub fn json_string_after(text: &str, from: &str, key: &str) -> Option<String> {
    let base = text.find(from)?;
    let pat = format!("\"{key}\": ");
    let start = base + text[base..].find(&pat)? + pat.len();
    let rest = &text[start..];
    if rest.starts_with("null") {
        return None;
    }
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut esc = false;
    for c in rest.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == '"' {
            break;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

pub fn json_number_after(text: &str, from: &str, key: &str) -> Option<f64> {
    let base = text.find(from)?;
    json_number(&text[base..], key)
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

/// Builds a small image (a few files plus `random_mb` MB of random data), pushes it to
/// `registry` as `v7test-pull/<name>:<tag>`, and removes the local copy. Returns the
/// reference in the registry.
pub fn push_image(registry: &str, name: &str, tag: &str, random_mb: usize) -> String {
    let dir = TempDir::new("img");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello"), format!("{name}:{tag}\n")).unwrap();
    let mut data = vec![0u8; random_mb * 1_000_000 + 1000];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(&mut data).unwrap();
    std::fs::write(root.join("blob.bin"), data).unwrap();
    let tar = dir.path().join("img.tar");
    let st = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(st.success());
    let local = format!("localhost/{}", unique("src"));
    let out = podman(&["import", "-q", tar.to_str().unwrap(), &local]);
    assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
    let remote = format!("{registry}/v7test-pull/{name}:{tag}");
    let out = podman(&["push", "-q", "--tls-verify=false", &local, &remote]);
    let _ = podman(&["rmi", "-f", "-i", &local]);
    assert!(out.status.success(), "podman push: {}", String::from_utf8_lossy(&out.stderr));
    remote
}

/// Runs the xtask with a private state dir and a registries.conf marking `insecure` loopback
/// registries as plain HTTP.
pub struct Xtask {
    pub state: TempDir,
    pub registries_conf: PathBuf,
}

impl Xtask {
    pub fn new(insecure: &[String]) -> Xtask {
        let state = TempDir::new("state");
        let registries_conf = state.path().join("test-registries.conf");
        let mut text = String::from("unqualified-search-registries = [\"docker.io\"]\n");
        for r in insecure {
            text.push_str(&format!("\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"));
        }
        std::fs::write(&registries_conf, text).unwrap();
        Xtask { state, registries_conf }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.program(env!("CARGO_BIN_EXE_xtask"), args)
    }

    /// Another program (e.g. script(1) wrapping the xtask) with the xtask's environment.
    pub fn program(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("V7_STATE_DIR", self.state.path().join("v7"))
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion: (exit ok, stdout, stderr, seconds).
    pub fn run(&self, args: &[&str]) -> (bool, String, String, f64) {
        let start = Instant::now();
        let out = self.command(args).output().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        eprintln!("--- xtask {args:?} ({secs:.1} s, {})\n{e}\n{o}", out.status);
        (out.status.success(), o, e, secs)
    }
}
