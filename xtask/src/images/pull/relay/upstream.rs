//! Asking the registry: one request per try, up to [`TRIES`] per podman request ([`fetch`])
//! with a short backoff, counting what had to be asked again. Plain HTTP is ours
//! ([`fetch_plain`], HTTP/1.0, so the answer's end is the connection's; a 200 with a file
//! streams the body there, `.part` renamed when complete); TLS is curl's ([`fetch_tls`],
//! `curl.rs`). A "plain-HTTP" registry that turns out to speak TLS is noticed once
//! ([`speaks_tls`]) and fetched over TLS from then on; one that speaks neither, or whose
//! certificate does not verify, is reported ([`UpstreamState::direct`]), so `pull` leaves it to
//! podman.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::answer::{Answer, Body};
use super::curl::{self, Trust};
use super::protocol::{backoff, verdict, Upstream, Verdict, TRIES};
use crate::net::backoff::Jitter;
use crate::net::http::{self, authority, parse_response_head, read_head, HeadError};
use crate::podman::registries_conf::is_loopback_registry;
use crate::process::Runner;
use crate::util::time::now_unix;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence on a connection for this long counts as a failed request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A Retry-After longer than this goes back to podman (and to `pull`'s own attempts) instead
/// of holding a request open.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// A manifest or an error answer larger than this is not a registry answer.
const MAX_SMALL_BODY: usize = 16 << 20;
/// Headers of the registry's answer that podman needs; the rest stays behind.
const PASSED_BACK: &[&str] = &[
    "content-type",
    "docker-content-digest",
    "www-authenticate",
    "retry-after",
    "location",
    "docker-distribution-api-version",
];

/// Per repository: requests asked again, and the last reason.
#[derive(Clone, Debug, Default)]
pub struct Retries {
    pub count: u32,
    pub last: Option<String>,
}

/// The registry one relay fetches from, and what it has learnt about it.
pub struct UpstreamState {
    pub upstream: Upstream,
    pub stop: Arc<AtomicBool>,
    pub retries: Mutex<HashMap<String, Retries>>,
    /// Why the relay cannot serve this upstream and podman should pull it directly: it speaks
    /// neither plain HTTP nor TLS, or its certificate does not verify.
    pub direct: Mutex<Option<String>>,
    /// Fetched over TLS (curl): an `https://` upstream, or a plain one found to speak TLS.
    tls: AtomicBool,
    /// The upstream has given an HTTP answer over the current transport.
    answered: AtomicBool,
    /// The answer to the TLS question ([`speaks_tls`]), asked once; requests that fail while
    /// it is being asked wait for it.
    tls_probe: Mutex<Option<bool>>,
    jitter: Mutex<Jitter>,
    /// For TLS: the CAs and client certificate, curl's runner, where its files go.
    trust: Trust,
    runner: Runner,
    work: PathBuf,
    files: AtomicU64,
}

impl UpstreamState {
    pub fn new(upstream: Upstream, stop: Arc<AtomicBool>, salt: u64, trust: Trust, work: &Path) -> UpstreamState {
        UpstreamState {
            tls: AtomicBool::new(upstream.tls),
            upstream,
            stop,
            retries: Mutex::new(HashMap::new()),
            direct: Mutex::new(None),
            answered: AtomicBool::new(false),
            tls_probe: Mutex::new(None),
            jitter: Mutex::new(Jitter::seeded(salt)),
            trust,
            runner: Runner::new(false),
            work: work.to_path_buf(),
            files: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn go_direct(&self, why: String) {
        self.direct.lock().unwrap().get_or_insert(why);
    }
}

/// How one request failed.
enum Failed {
    /// Worth asking again.
    Again(String),
    /// The upstream does not speak plain HTTP (a TLS server, most likely).
    NotHttp(String),
    /// The relay cannot serve it, for this reason: podman pulls it directly.
    Direct(String),
}

/// Asks the registry up to [`TRIES`] times; the last answer (or failure) is podman's.
pub fn fetch(
    s: &UpstreamState,
    name: &str,
    what: &str,
    path: &str,
    headers: &[(String, String)],
    file: Option<&Path>,
) -> Answer {
    let mut last = Answer::failure("no request made");
    let mut try_ = 0;
    while try_ < TRIES {
        try_ += 1;
        if s.stopped() {
            return Answer::failure("interrupted");
        }
        let tls = s.tls.load(Ordering::SeqCst);
        let result = if tls { fetch_tls(s, path, headers, file) } else { fetch_plain(s, path, headers, file) };
        let (why, wait) = match result {
            Ok(answer) => {
                s.answered.store(true, Ordering::SeqCst);
                match verdict(answer.status, answer.header("retry-after"), now_unix()) {
                    Verdict::Final => return answer,
                    Verdict::Retry(Some(after)) if after > MAX_RETRY_AFTER => return answer,
                    Verdict::Retry(after) => {
                        let why = format!("{} {}", answer.status, answer.reason);
                        last = answer;
                        (why, after)
                    }
                }
            }
            Err(Failed::Direct(why)) => {
                let answer = Answer::failure(&format!("{what}: {why}"));
                s.go_direct(why);
                return answer;
            }
            Err(failed) => {
                let not_http = matches!(failed, Failed::NotHttp(_));
                let (Failed::Again(e) | Failed::NotHttp(e) | Failed::Direct(e)) = failed;
                last = Answer::failure(&format!("{what}: {e}"));
                // A TLS server closes on a plain request without a word (OpenSSL does) or
                // answers 400 (Go, nginx): before any HTTP answer, ask once whether it speaks
                // TLS, and if so ask again over TLS at once (this try does not count).
                if !tls && !s.answered.load(Ordering::SeqCst) {
                    let speaks = *s.tls_probe.lock().unwrap().get_or_insert_with(|| speaks_tls(&s.upstream));
                    if speaks {
                        s.tls.store(true, Ordering::SeqCst);
                        try_ -= 1;
                        continue;
                    }
                }
                if not_http {
                    s.go_direct("it does not answer plain HTTP".into());
                }
                if s.direct.lock().unwrap().is_some() {
                    return last; // asking again will not help
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
            if s.stopped() {
                return Answer::failure("interrupted");
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
    last
}

/// The headers podman needs from an answer.
fn passed_back(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers.iter().filter(|(k, _)| PASSED_BACK.contains(&k.to_ascii_lowercase().as_str())).cloned().collect()
}

fn cut_message(got: u64, length: Option<u64>) -> Option<String> {
    length.filter(|&want| want != got).map(|want| format!("answer cut at {got} of {want} bytes"))
}

/// Go's and nginx's answers to plain HTTP on a TLS port.
fn is_tls_port_answer(status: u16, body: &[u8]) -> bool {
    status == 400 && String::from_utf8_lossy(body).contains("HTTPS")
}

/// One plain-HTTP request to the registry.
fn fetch_plain(
    s: &UpstreamState,
    path: &str,
    headers: &[(String, String)],
    file: Option<&Path>,
) -> Result<Answer, Failed> {
    let up = &s.upstream;
    let again = Failed::Again;
    let mut conn = http::connect(&up.host, up.port, CONNECT_TIMEOUT).map_err(|e| again(format!("{e:#}")))?;
    conn.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| again(e.to_string()))?;
    conn.set_write_timeout(Some(READ_TIMEOUT)).map_err(|e| again(e.to_string()))?;
    let mut req =
        format!("GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: v7-xtask-pull-relay\r\n", authority(&up.host, up.port));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).map_err(|e| again(format!("sending the request: {e}")))?;
    let mut reader = BufReader::with_capacity(64 << 10, conn);
    let raw = read_head(&mut reader).map_err(|e| again(format!("reading the answer: {e}")))?;
    let head = match parse_response_head(&raw) {
        Ok(h) => h,
        Err(HeadError::NotHttp) => return Err(Failed::NotHttp("the registry does not answer plain HTTP".into())),
        Err(e) => return Err(again(format!("reading the answer: {e}"))),
    };
    let length: Option<u64> = http::header(&head.headers, "content-length").and_then(|v| v.trim().parse().ok());
    let passed = passed_back(&head.headers);
    let body = match file {
        Some(file) if head.status == 200 => {
            let part = file.with_extension("part");
            let mut out = std::fs::File::create(&part).map_err(|e| again(format!("{}: {e}", part.display())))?;
            let mut got = 0u64;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                if s.stopped() {
                    return Err(again("interrupted".into()));
                }
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return Err(again(format!("answer cut at {got} bytes: {e}"))),
                };
                out.write_all(&buf[..n]).map_err(|e| again(format!("{}: {e}", part.display())))?;
                got += n as u64;
            }
            if let Some(why) = cut_message(got, length) {
                return Err(again(why));
            }
            std::fs::rename(&part, file).map_err(|e| again(format!("{}: {e}", file.display())))?;
            Body::File(file.to_path_buf(), got)
        }
        _ => {
            let data =
                http::read_body(&mut reader, &head.headers, MAX_SMALL_BODY).map_err(|e| again(format!("{e:#}")))?;
            if is_tls_port_answer(head.status, &data) {
                return Err(Failed::NotHttp(format!("the registry answered {} to plain HTTP", head.status)));
            }
            Body::Bytes(data)
        }
    };
    Ok(Answer { status: head.status, reason: head.reason, headers: passed, body })
}

/// One request over TLS, by curl (`curl.rs`): the head and body land in files of the relay's
/// directory; a 200 with a file becomes that file, anything else is read into memory.
fn fetch_tls(
    s: &UpstreamState,
    path: &str,
    headers: &[(String, String)],
    file: Option<&Path>,
) -> Result<Answer, Failed> {
    let up = &s.upstream;
    let n = s.files.fetch_add(1, Ordering::SeqCst);
    let head_out = s.work.join(format!("tls-{n}.head"));
    let body_out = s.work.join(format!("tls-{n}.body"));
    let req = curl::Request {
        method: "GET",
        url: up.https_url(path),
        headers,
        no_proxy: is_loopback_registry(&authority(&up.host, up.port)),
        connect_secs: CONNECT_TIMEOUT.as_secs(),
        max_secs: None,
        head_out: &head_out,
        body_out: &body_out,
    };
    let ran = curl::run(&s.runner, &s.work, &req, &s.trust, &s.stop);
    let raw = std::fs::read(&head_out).unwrap_or_default();
    let _ = std::fs::remove_file(&head_out);
    let cleanup = || {
        let _ = std::fs::remove_file(&body_out);
    };
    let got = std::fs::metadata(&body_out).map(|m| m.len()).unwrap_or(0);
    let head = parse_response_head(&raw).ok();
    let length =
        head.as_ref().and_then(|h| http::header(&h.headers, "content-length")).and_then(|v| v.trim().parse().ok());
    match ran {
        Ok(()) => {}
        Err(curl::Failure::Untrusted(e)) => {
            cleanup();
            return Err(Failed::Direct(format!("the relay cannot verify its certificate ({e})")));
        }
        Err(curl::Failure::Missing(e)) => {
            cleanup();
            return Err(Failed::Direct(format!("the relay needs curl for TLS: {e}; apt-get install curl")));
        }
        Err(curl::Failure::Cut(e)) => {
            cleanup();
            return Err(Failed::Again(cut_message(got, length).unwrap_or(e)));
        }
        Err(curl::Failure::Again(e)) => {
            cleanup();
            // A reset after the head: the answer was cut.
            return Err(Failed::Again(cut_message(got, length).filter(|_| got > 0).unwrap_or(e)));
        }
    }
    let Some(head) = head else {
        cleanup();
        return Err(Failed::Again("reading the answer: no HTTP head from curl".into()));
    };
    if let Some(why) = cut_message(got, length) {
        cleanup();
        return Err(Failed::Again(why));
    }
    let passed = passed_back(&head.headers);
    let body = match file {
        Some(file) if head.status == 200 => {
            std::fs::rename(&body_out, file).map_err(|e| Failed::Again(format!("{}: {e}", file.display())))?;
            Body::File(file.to_path_buf(), got)
        }
        _ => {
            let data =
                if got as usize > MAX_SMALL_BODY { Vec::new() } else { std::fs::read(&body_out).unwrap_or_default() };
            cleanup();
            Body::Bytes(data)
        }
    };
    Ok(Answer { status: head.status, reason: head.reason, headers: passed, body })
}

/// Does `up` answer a TLS ClientHello with a TLS record (a handshake or an alert)? A minimal
/// TLS 1.2 hello, written out by hand: any TLS server answers it with a ServerHello or, not
/// liking the offer, an alert; both start with a record header `0x16|0x15, 0x03`.
fn speaks_tls(up: &Upstream) -> bool {
    let Ok(mut conn) = http::connect(&up.host, up.port, CONNECT_TIMEOUT) else { return false };
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
