//! The pull relay: a registry on loopback that stands between `podman pull` and a plain-HTTP
//! registry (a mirror, or a registry on this host) for the length of one `cargo xtask pull`.
//!
//! Why it exists:
//! - podman asks a registry four things one after the other (`/v2/`, the manifest, the config,
//!   the layers). With 200 ms of latency that is 0.8 s of waiting per image before anything is
//!   stored. The relay answers `/v2/` itself, asks for the manifest as soon as `pull` says which
//!   image comes next ([`Relay::expect`], while podman is still starting), and as soon as it has
//!   the manifest fetches the config and the layers in parallel: two round trips instead of
//!   four, and the first one overlaps podman's start.
//! - One failed request (a 503, a reset, a blob cut midway) fails a whole `podman pull`, and
//!   podman 4.3 does not retry a 503 at all. The relay retries each request on its own (5xx,
//!   408, reset, refused, timeout, a body shorter than its Content-Length) with a short
//!   exponential backoff, and honours a 429's Retry-After, which podman never shows us. A final
//!   answer (404, 401, 403, ...) goes back to podman unchanged, so its error says what the
//!   registry said and `pull` classifies it as before.
//! - podman still checks every digest, so the relay cannot change what gets stored: a wrong byte
//!   from the relay fails the pull like a wrong byte from the registry.
//!
//! Limits, chosen:
//! - Plain-HTTP upstreams only. std has no TLS, and a TLS stack would cost more cold-build time
//!   than this module is worth (avoid adding dependencies: docs/benchmarks.md). HTTPS registries
//!   are pulled by podman directly, with the retries of `pull`.
//! - Layers are fetched ahead only for images that are not here at all ([`Relay::expect`]): when
//!   an image is refreshed, podman already has most of its layers and fetching them would waste
//!   the bandwidth the relay is meant to save. The config is always fetched ahead (it is small).
//! - Credentials: podman's `Authorization` header is passed on and the registry's
//!   `WWW-Authenticate` comes back, so the token flow works. podman looks stored credentials up
//!   by the relay's address, not the registry's, so when a pull through the relay ends in
//!   401/403, `pull` tries that source once more directly.
//!
//! Blobs are written under the relay's own directory and removed with it ([`Relay::close`]);
//! manifests and error answers are kept in memory. Only successful answers are kept: a failed
//! one is handed to the requests waiting for it and then forgotten, so the next attempt asks the
//! registry again.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::http_client::{read_head, status_of};
use regex_lite::Regex;

/// Requests to the registry per podman request, the first one included.
pub const TRIES: u32 = 5;
/// Blob downloads in flight at once, per relay: every layer of every image `--jobs` pulls at
/// once (podman itself fetches up to 6 layers per image at a time), so a slot never costs a
/// round trip; the bound is there for images with dozens of layers.
const BLOB_STREAMS: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence on a connection for this long counts as a failed request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A Retry-After longer than this goes back to podman (and to `pull`'s own attempts) instead
/// of holding a request open.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// A manifest or an error answer larger than this is not a registry answer.
const MAX_SMALL_BODY: usize = 16 << 20;

/// Where the relay fetches from: a plain-HTTP registry and, for a mirror at `host:port/ns`, the
/// namespace its repositories live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// `""` or `ns/`.
    pub namespace: String,
}

impl Upstream {
    /// From a registries.conf `location` (`host[:port][/ns]`, no scheme); port 80 by default.
    pub fn from_location(location: &str) -> Option<Upstream> {
        let (authority, ns) = match location.split_once('/') {
            Some((a, n)) => (a, format!("{}/", n.trim_matches('/'))),
            None => (location, String::new()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h.to_string(), p.parse().ok()?),
            Some(_) => return None,
            None => (authority.to_string(), 80),
        };
        if host.is_empty() {
            return None;
        }
        Some(Upstream { host: host.trim_matches(['[', ']']).to_string(), port, namespace: if ns == "/" { String::new() } else { ns } })
    }

    /// `/v2/<namespace><name>/<kind>/<reference>`.
    pub fn path(&self, name: &str, kind: &str, reference: &str) -> String {
        format!("/v2/{}{name}/{kind}/{reference}", self.namespace)
    }
}

/// What podman asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Ping,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    Other,
}

pub fn route(path: &str) -> Route {
    let path = path.split('?').next().unwrap_or(path);
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return Route::Other };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if !name.is_empty() && !reference.is_empty() && !reference.contains('/') {
            return Route::Manifest { name: name.to_string(), reference: reference.to_string() };
        }
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if !name.is_empty() && digest.starts_with("sha256:") && !digest.contains('/') {
            return Route::Blob { name: name.to_string(), digest: digest.to_string() };
        }
    }
    Route::Other
}

/// The blobs an image manifest names: its config, then its layers. An index (manifest list)
/// names manifests, not blobs: nothing. A `subject` (an artifact's referent) is not a blob.
pub fn manifest_blobs(body: &str) -> (Option<String>, Vec<String>) {
    if body.contains("\"manifests\"") {
        return (None, Vec::new());
    }
    let digest = Regex::new(r#""digest"\s*:\s*"(sha256:[0-9a-f]{64})""#).expect("valid regex");
    let inside = |key: &str| {
        Regex::new(&format!(r#""{key}"\s*:\s*\{{[^}}]*?"digest"\s*:\s*"(sha256:[0-9a-f]{{64}})""#))
            .expect("valid regex")
            .captures(body)
            .map(|c| c[1].to_string())
    };
    let config = inside("config");
    let subject = inside("subject");
    let mut layers: Vec<String> = Vec::new();
    for c in digest.captures_iter(body) {
        let d = c[1].to_string();
        if Some(&d) != config.as_ref() && Some(&d) != subject.as_ref() && !layers.contains(&d) {
            layers.push(d);
        }
    }
    (config, layers)
}

/// What to do with a registry's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Hand it to podman.
    Final,
    /// Ask again, after the registry's Retry-After when it gave one.
    Retry(Option<Duration>),
}

pub fn verdict(status: u16, retry_after: Option<&str>, now_unix: u64) -> Verdict {
    match status {
        429 => Verdict::Retry(retry_after.and_then(|v| crate::pull::parse_retry_after(v, now_unix))),
        408 | 500..=599 => Verdict::Retry(None),
        _ => Verdict::Final,
    }
}

/// Wait before request `try_ + 1`: 0.2 s, 0.4 s, 0.8 s, ... capped at 3.2 s, the upper half
/// jitter. Short on purpose: a request is cheap to repeat, and the pull's own attempts (seconds
/// apart) are still there when the registry stays down.
pub fn backoff(try_: u32, jitter: f64) -> Duration {
    let full = 0.2 * (1u32 << try_.saturating_sub(1).min(4)) as f64;
    Duration::from_secs_f64(full * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// An answer for podman.
#[derive(Debug)]
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
}

impl Answer {
    fn failure(why: &str) -> Answer {
        let msg = format!(
            "{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":{}}}]}}",
            crate::text_format::json_str(&format!("pull relay: {why}"))
        );
        Answer {
            status: 502,
            reason: "Bad Gateway".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(msg.into_bytes()),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The manifest types podman 4.3 accepts, asked for when the relay fetches a manifest ahead
/// (and by `pull`'s own Retry-After probe).
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Headers of the registry's answer that podman needs; the rest stays behind.
const PASSED_BACK: &[&str] =
    &["content-type", "docker-content-digest", "www-authenticate", "retry-after", "location", "docker-distribution-api-version"];

enum Slot {
    Pending,
    Done(Arc<Answer>),
}

struct Entry {
    slot: Mutex<Slot>,
    ready: Condvar,
}

/// Per repository: requests asked again, and the last reason.
#[derive(Clone, Debug, Default)]
pub struct Retries {
    pub count: u32,
    pub last: Option<String>,
}

struct Shared {
    upstream: Upstream,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    retries: Mutex<HashMap<String, Retries>>,
    /// Repositories whose layers are fetched ahead.
    layers_ahead: Mutex<HashSet<String>>,
    streams: Mutex<usize>,
    stream_freed: Condvar,
    /// The upstream answered something that is not plain HTTP (TLS, most likely).
    not_http: AtomicBool,
    /// Names blob files.
    files: AtomicU64,
    /// The upstream has given an HTTP answer: it speaks plain HTTP.
    answered: AtomicBool,
    /// The TLS question ([`speaks_tls`]) has been asked.
    tls_asked: AtomicBool,
    jitter: Mutex<crate::pull::Jitter>,
}

/// A running relay. Dropping it does not stop its threads; [`Relay::close`] removes its files.
pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and serves until the process ends. `dir` holds the
    /// blobs and must be the relay's own.
    pub fn start(upstream: Upstream, dir: &Path, stop: Arc<AtomicBool>) -> Result<Relay> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0").context("pull relay: cannot listen on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream,
            dir: dir.to_path_buf(),
            stop,
            entries: Mutex::new(HashMap::new()),
            retries: Mutex::new(HashMap::new()),
            layers_ahead: Mutex::new(HashSet::new()),
            streams: Mutex::new(0),
            stream_freed: Condvar::new(),
            not_http: AtomicBool::new(false),
            files: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            tls_asked: AtomicBool::new(false),
            jitter: Mutex::new(crate::pull::Jitter::seeded(u64::from(port))),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let _ = serve(&s, conn);
                });
            }
        });
        Ok(Relay { port, shared })
    }

    /// `127.0.0.1:port`, a registries.conf `location`.
    pub fn location(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// podman is about to pull `name:reference` through this relay: the manifest is asked for
    /// now, while podman starts (0.2 s on a busy machine), and with it the config and, when
    /// `fetch_layers` (the image is not here at all), the layers.
    pub fn expect(&self, name: &str, reference: &str, fetch_layers: bool) {
        {
            let mut set = self.shared.layers_ahead.lock().unwrap();
            if fetch_layers {
                set.insert(name.to_string());
            } else {
                set.remove(name);
            }
        }
        let (s, name, reference) = (Arc::clone(&self.shared), name.to_string(), reference.to_string());
        std::thread::spawn(move || {
            let accept: Vec<(String, String)> = MANIFEST_TYPES.iter().map(|t| ("Accept".to_string(), t.to_string())).collect();
            let _ = manifest(&s, &name, &reference, &accept, None);
        });
    }

    /// Requests for repository `name` that had to be asked again so far.
    pub fn retries(&self, name: &str) -> Retries {
        self.shared.retries.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    /// The registry turned out not to speak plain HTTP: pull from it directly.
    pub fn upstream_not_plain_http(&self) -> bool {
        self.shared.not_http.load(Ordering::SeqCst)
    }

    /// Removes the relay's files (blobs). Requests still running find them gone and fail.
    pub fn close(&self) {
        let _ = std::fs::remove_dir_all(&self.shared.dir);
    }
}

fn serve(s: &Arc<Shared>, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let (request_line, headers) = read_head(&mut reader)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && method != "HEAD" {
        return write_answer(conn, &Answer::failure("only pulls go through the relay"), false);
    }
    let accept: Vec<(String, String)> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("accept")).cloned().collect();
    let authorization = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
    let answer = match route(path) {
        Route::Ping => Arc::new(Answer {
            status: 200,
            reason: "OK".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Docker-Distribution-API-Version".into(), "registry/2.0".into()),
            ],
            body: Body::Bytes(b"{}".to_vec()),
        }),
        Route::Manifest { name, reference } => manifest(s, &name, &reference, &accept, authorization.as_deref()),
        Route::Blob { name, digest } => blob(s, &name, &digest, authorization.as_deref()),
        Route::Other => Arc::new(Answer {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(br#"{"errors":[{"code":"UNSUPPORTED","message":"pull relay: not a pull request"}]}"#.to_vec()),
        }),
    };
    write_answer(conn, &answer, head_only)
}

/// What was fetched is kept per credential: an answer fetched with podman's Authorization is
/// only ever handed to a request that brings the same header (another local process cannot
/// read a private image through the relay), and the blobs fetched ahead use the credential of
/// the manifest request that named them. Keys stay in memory; they are never printed.
fn key(kind: &str, id: &str, auth: Option<&str>) -> String {
    format!("{kind} {id}\n{}", auth.unwrap_or(""))
}

fn manifest(s: &Arc<Shared>, name: &str, reference: &str, accept: &[(String, String)], auth: Option<&str>) -> Arc<Answer> {
    let key = key("manifest", &format!("{name}:{reference}"), auth);
    let mut headers: Vec<(String, String)> = accept.to_vec();
    if let Some(a) = auth {
        headers.push(("Authorization".into(), a.to_string()));
    }
    let path = s.upstream.path(name, "manifests", reference);
    let what = format!("manifest {reference}");
    once(s, &key, || {
        let answer = fetch(s, name, &what, &path, &headers, None);
        if answer.status == 200 {
            if let Body::Bytes(b) = &answer.body {
                let (config, layers) = manifest_blobs(&String::from_utf8_lossy(b));
                let mut ahead: Vec<String> = config.into_iter().collect();
                if s.layers_ahead.lock().unwrap().contains(name) {
                    ahead.extend(layers);
                }
                for digest in ahead {
                    let (s, name, auth) = (Arc::clone(s), name.to_string(), auth.map(str::to_string));
                    std::thread::spawn(move || {
                        let _ = blob(&s, &name, &digest, auth.as_deref());
                    });
                }
            }
        }
        answer
    })
}

fn blob(s: &Arc<Shared>, name: &str, digest: &str, auth: Option<&str>) -> Arc<Answer> {
    let key = key("blob", digest, auth);
    let headers: Vec<(String, String)> = auth.into_iter().map(|a| ("Authorization".to_string(), a.to_string())).collect();
    let path = s.upstream.path(name, "blobs", digest);
    // One file per fetch: the same blob fetched under two credentials is two files.
    let n = s.files.fetch_add(1, Ordering::SeqCst);
    let file = s.dir.join(format!("{}-{n}", digest.trim_start_matches("sha256:")));
    let short = &digest[..digest.len().min(19)];
    let what = format!("blob {short}");
    once(s, &key, || {
        // A bounded number of downloads at once; a request waiting here is not failing.
        {
            let mut n = s.streams.lock().unwrap();
            while *n >= BLOB_STREAMS {
                n = s.stream_freed.wait_timeout(n, Duration::from_millis(200)).unwrap().0;
            }
            *n += 1;
        }
        let answer = fetch(s, name, &what, &path, &headers, Some(&file));
        *s.streams.lock().unwrap() -= 1;
        s.stream_freed.notify_one();
        answer
    })
}

/// One fetch per key at a time: the first asker fetches, later ones wait for its answer. A
/// final answer (a 200, a 404, a 401, ...) is kept for the askers that come after, so a
/// manifest asked for ahead is not asked for again when podman comes; one that may change by
/// asking again (5xx, 408, 429, a failed transfer) is handed to the waiting askers and then
/// forgotten, so the next attempt asks the registry anew.
fn once(s: &Shared, key: &str, fetch: impl FnOnce() -> Answer) -> Arc<Answer> {
    let (entry, leader) = {
        let mut map = s.entries.lock().unwrap();
        match map.get(key) {
            Some(e) => (Arc::clone(e), false),
            None => {
                let e = Arc::new(Entry { slot: Mutex::new(Slot::Pending), ready: Condvar::new() });
                map.insert(key.to_string(), Arc::clone(&e));
                (e, true)
            }
        }
    };
    if leader {
        let answer = Arc::new(fetch());
        if verdict(answer.status, None, 0) != Verdict::Final {
            s.entries.lock().unwrap().remove(key);
        }
        *entry.slot.lock().unwrap() = Slot::Done(Arc::clone(&answer));
        entry.ready.notify_all();
        return answer;
    }
    let mut slot = entry.slot.lock().unwrap();
    loop {
        if let Slot::Done(a) = &*slot {
            return Arc::clone(a);
        }
        if s.stop.load(Ordering::SeqCst) {
            return Arc::new(Answer::failure("interrupted"));
        }
        slot = entry.ready.wait_timeout(slot, Duration::from_millis(200)).unwrap().0;
    }
}

/// Asks the registry up to [`TRIES`] times; the last answer (or failure) is podman's.
fn fetch(s: &Shared, name: &str, what: &str, path: &str, headers: &[(String, String)], file: Option<&Path>) -> Answer {
    let mut last = Answer::failure("no request made");
    for try_ in 1..=TRIES {
        if s.stop.load(Ordering::SeqCst) {
            return Answer::failure("interrupted");
        }
        let (why, wait) = match fetch_once(s, path, headers, file) {
            Ok(answer) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                match verdict(answer.status, answer.header("retry-after"), now) {
                    Verdict::Final => return answer,
                    Verdict::Retry(Some(after)) if after > MAX_RETRY_AFTER => return answer,
                    Verdict::Retry(after) => {
                        let why = format!("{} {}", answer.status, answer.reason);
                        last = answer;
                        (why, after)
                    }
                }
            }
            Err(e) => {
                last = Answer::failure(&format!("{what}: {e}"));
                // A TLS server closes on a plain request without a word (OpenSSL does): before
                // any HTTP answer, ask once whether it speaks TLS instead.
                if !s.answered.load(Ordering::SeqCst) && !s.tls_asked.swap(true, Ordering::SeqCst) && speaks_tls(&s.upstream) {
                    s.not_http.store(true, Ordering::SeqCst);
                }
                if s.not_http.load(Ordering::SeqCst) {
                    return last; // asking again will not make it speak HTTP
                }
                (e, None)
            }
        };
        if try_ == TRIES {
            break;
        }
        let wait = wait.unwrap_or_else(|| backoff(try_, s.jitter.lock().unwrap().next()));
        {
            let mut r = s.retries.lock().unwrap();
            let e = r.entry(name.to_string()).or_default();
            e.count += 1;
            e.last = Some(format!("{what}: {why}, asked again in {:.1} s", wait.as_secs_f64()));
        }
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if s.stop.load(Ordering::SeqCst) {
                return Answer::failure("interrupted");
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
    last
}

/// One request to the registry, HTTP/1.0 so the answer is never chunked and its end is the
/// connection's. A 200 with `file` streams the body there (`.part`, renamed when complete).
fn fetch_once(s: &Shared, path: &str, headers: &[(String, String)], file: Option<&Path>) -> Result<Answer, String> {
    let up = &s.upstream;
    let addr = (up.host.as_str(), up.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", up.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", up.host))?;
    let mut conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: v7-xtask-pull-relay\r\n", up.host, up.port);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::with_capacity(64 << 10, conn);
    let (status_line, all) = read_head(&mut reader).map_err(|e| format!("reading the answer: {e}"))?;
    if !status_line.starts_with("HTTP/") {
        s.not_http.store(true, Ordering::SeqCst);
        return Err("the registry does not answer plain HTTP".into());
    }
    s.answered.store(true, Ordering::SeqCst);
    let (status, reason) = status_of(&status_line).ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let length: Option<u64> =
        all.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse().ok());
    let headers: Vec<(String, String)> =
        all.into_iter().filter(|(k, _)| PASSED_BACK.contains(&k.to_ascii_lowercase().as_str())).collect();
    let cut = |got: u64| length.filter(|&want| want != got).map(|want| format!("answer cut at {got} of {want} bytes"));
    let body = match file {
        Some(file) if status == 200 => {
            let part = file.with_extension("part");
            let mut out = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
            let mut got = 0u64;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                if s.stop.load(Ordering::SeqCst) {
                    return Err("interrupted".into());
                }
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return Err(format!("answer cut at {got} bytes: {e}")),
                };
                out.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", part.display()))?;
                got += n as u64;
            }
            if let Some(why) = cut(got) {
                return Err(why);
            }
            std::fs::rename(&part, file).map_err(|e| format!("{}: {e}", file.display()))?;
            Body::File(file.to_path_buf(), got)
        }
        _ => {
            let mut data = Vec::new();
            let r = reader.take(MAX_SMALL_BODY as u64 + 1).read_to_end(&mut data);
            if let Err(e) = r {
                return Err(format!("answer cut at {} bytes: {e}", data.len()));
            }
            if data.len() > MAX_SMALL_BODY {
                return Err(format!("an answer of more than {MAX_SMALL_BODY} bytes where a manifest was expected"));
            }
            if let Some(why) = cut(data.len() as u64) {
                return Err(why);
            }
            // Go's and nginx's answers to plain HTTP on a TLS port.
            if status == 400 && String::from_utf8_lossy(&data).contains("HTTPS") {
                s.not_http.store(true, Ordering::SeqCst);
            }
            Body::Bytes(data)
        }
    };
    Ok(Answer { status, reason, headers, body })
}

/// Does `up` answer a TLS ClientHello with a TLS record (a handshake or an alert)? A minimal
/// TLS 1.2 hello, written out by hand: any TLS server answers it with a ServerHello or, not
/// liking the offer, an alert; both start with a record header `0x16|0x15, 0x03`.
fn speaks_tls(up: &Upstream) -> bool {
    let Some(addr) = (up.host.as_str(), up.port).to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let suites: [u8; 8] = [0xc0, 0x2f, 0xc0, 0x2b, 0x00, 0x9c, 0x00, 0x2f];
    let mut hello = vec![0x03, 0x03];
    hello.extend([0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend([0, suites.len() as u8]);
    hello.extend(suites);
    hello.extend([1, 0]); // null compression
    let mut handshake = vec![0x01, 0, 0, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend(handshake);
    if conn.write_all(&record).is_err() {
        return false;
    }
    let mut head = [0u8; 2];
    conn.read_exact(&mut head).is_ok() && (head[0] == 0x16 || head[0] == 0x15) && head[1] == 0x03
}

fn write_answer(mut conn: TcpStream, a: &Answer, head_only: bool) -> std::io::Result<()> {
    let length = match &a.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, n) => *n,
    };
    let mut head = format!("HTTP/1.1 {} {}\r\nContent-Length: {length}\r\nConnection: close\r\n", a.status, a.reason);
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if !head_only {
        match &a.body {
            Body::Bytes(b) => conn.write_all(b)?,
            Body::File(path, _) => {
                std::io::copy(&mut std::fs::File::open(path)?, &mut conn)?;
            }
        }
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_from_locations() {
        let u = Upstream::from_location("127.0.0.1:5001").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.namespace.as_str()), ("127.0.0.1", 5001, ""));
        let u = Upstream::from_location("mirror.lan/dockerhub").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.namespace.as_str()), ("mirror.lan", 80, "dockerhub/"));
        assert_eq!(u.path("library/node", "manifests", "18-alpine"), "/v2/dockerhub/library/node/manifests/18-alpine");
        assert!(Upstream::from_location(":5000").is_none());
        assert!(Upstream::from_location("host:port").is_none());
    }

    #[test]
    fn podman_requests_are_routed() {
        assert_eq!(route("/v2/"), Route::Ping);
        assert_eq!(
            route("/v2/library/node/manifests/18-alpine"),
            Route::Manifest { name: "library/node".into(), reference: "18-alpine".into() }
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(route(&format!("/v2/a/b/c/blobs/{d}?x=1")), Route::Blob { name: "a/b/c".into(), digest: d.clone() });
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::Other, "an upload is not a pull");
        assert_eq!(route("/v2/_catalog"), Route::Other);
        assert_eq!(route("/metrics"), Route::Other);
    }

    #[test]
    fn an_image_manifest_names_its_config_and_layers_an_index_names_none() {
        let (c, l1, l2, subj) = ("1".repeat(64), "2".repeat(64), "3".repeat(64), "4".repeat(64));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":7,"digest":"sha256:{c}"}},
               "layers":[{{"mediaType":"x","size":1,"digest":"sha256:{l1}","urls":["http://x"]}},
                         {{"mediaType":"x","size":1, "digest" : "sha256:{l2}"}}],
               "subject":{{"mediaType":"m","size":3,"digest":"sha256:{subj}"}}}}"#
        );
        let (config, layers) = manifest_blobs(&manifest);
        assert_eq!(config, Some(format!("sha256:{c}")));
        assert_eq!(layers, vec![format!("sha256:{l1}"), format!("sha256:{l2}")], "the subject is not a layer");
        let index = format!(r#"{{"manifests":[{{"digest":"sha256:{l1}","platform":{{"os":"linux"}}}}]}}"#);
        assert_eq!(manifest_blobs(&index), (None, vec![]));
    }

    #[test]
    fn what_is_asked_again() {
        assert_eq!(verdict(200, None, 0), Verdict::Final);
        assert_eq!(verdict(404, None, 0), Verdict::Final);
        assert_eq!(verdict(401, None, 0), Verdict::Final);
        assert_eq!(verdict(503, None, 0), Verdict::Retry(None));
        assert_eq!(verdict(408, None, 0), Verdict::Retry(None));
        assert_eq!(verdict(429, Some("3"), 0), Verdict::Retry(Some(Duration::from_secs(3))));
        assert_eq!(verdict(429, None, 0), Verdict::Retry(None));
    }

    #[test]
    fn answers_are_kept_per_credential() {
        let d = "sha256:ab";
        assert_ne!(key("blob", d, Some("Bearer a")), key("blob", d, None), "a private blob must not reach a request without credentials");
        assert_ne!(key("blob", d, Some("Bearer a")), key("blob", d, Some("Bearer b")));
        assert_eq!(key("blob", d, None), key("blob", d, None));
        assert_ne!(key("manifest", "a:1", None), key("blob", "a:1", None));
    }

    #[test]
    fn request_backoff_is_short_and_capped() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(30, 1.0), Duration::from_secs_f64(3.2));
    }
}
