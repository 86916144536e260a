//! Asking the registry: one request per [`fetch_once`], up to [`TRIES`] per podman request
//! ([`fetch`]) with a short backoff, counting what had to be asked again. HTTP/1.0, so the
//! answer's end is the connection's; a 200 with a file streams the body there (`.part`,
//! renamed when complete). A registry that turns out to speak TLS is noticed once
//! ([`speaks_tls`]) and reported, so `pull` goes to it directly.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::answer::{Answer, Body};
use super::protocol::{backoff, verdict, Upstream, Verdict, TRIES};
use crate::net::backoff::Jitter;
use crate::net::http::{self, authority, parse_response_head, read_head, HeadError};
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
    /// The upstream answered something that is not plain HTTP (TLS, most likely).
    pub not_http: AtomicBool,
    /// The upstream has given an HTTP answer: it speaks plain HTTP.
    answered: AtomicBool,
    /// The TLS question ([`speaks_tls`]) has been asked.
    tls_asked: AtomicBool,
    jitter: Mutex<Jitter>,
}

impl UpstreamState {
    pub fn new(upstream: Upstream, stop: Arc<AtomicBool>, salt: u64) -> UpstreamState {
        UpstreamState {
            upstream,
            stop,
            retries: Mutex::new(HashMap::new()),
            not_http: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            tls_asked: AtomicBool::new(false),
            jitter: Mutex::new(Jitter::seeded(salt)),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
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
    for try_ in 1..=TRIES {
        if s.stopped() {
            return Answer::failure("interrupted");
        }
        let (why, wait) = match fetch_once(s, path, headers, file) {
            Ok(answer) => match verdict(answer.status, answer.header("retry-after"), now_unix()) {
                Verdict::Final => return answer,
                Verdict::Retry(Some(after)) if after > MAX_RETRY_AFTER => return answer,
                Verdict::Retry(after) => {
                    let why = format!("{} {}", answer.status, answer.reason);
                    last = answer;
                    (why, after)
                }
            },
            Err(e) => {
                last = Answer::failure(&format!("{what}: {e}"));
                // A TLS server closes on a plain request without a word (OpenSSL does): before
                // any HTTP answer, ask once whether it speaks TLS instead.
                if !s.answered.load(Ordering::SeqCst)
                    && !s.tls_asked.swap(true, Ordering::SeqCst)
                    && speaks_tls(&s.upstream)
                {
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
            if s.stopped() {
                return Answer::failure("interrupted");
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
    last
}

/// One request to the registry.
fn fetch_once(
    s: &UpstreamState,
    path: &str,
    headers: &[(String, String)],
    file: Option<&Path>,
) -> Result<Answer, String> {
    let up = &s.upstream;
    let mut conn = http::connect(&up.host, up.port, CONNECT_TIMEOUT).map_err(|e| format!("{e:#}"))?;
    conn.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut req =
        format!("GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: v7-xtask-pull-relay\r\n", authority(&up.host, up.port));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::with_capacity(64 << 10, conn);
    let raw = read_head(&mut reader).map_err(|e| format!("reading the answer: {e}"))?;
    let head = match parse_response_head(&raw) {
        Ok(h) => h,
        Err(HeadError::NotHttp) => {
            s.not_http.store(true, Ordering::SeqCst);
            return Err("the registry does not answer plain HTTP".into());
        }
        Err(e) => return Err(format!("reading the answer: {e}")),
    };
    s.answered.store(true, Ordering::SeqCst);
    let length: Option<u64> = http::header(&head.headers, "content-length").and_then(|v| v.trim().parse().ok());
    let passed: Vec<(String, String)> =
        head.headers.iter().filter(|(k, _)| PASSED_BACK.contains(&k.to_ascii_lowercase().as_str())).cloned().collect();
    let cut = |got: u64| length.filter(|&want| want != got).map(|want| format!("answer cut at {got} of {want} bytes"));
    let body = match file {
        Some(file) if head.status == 200 => {
            let part = file.with_extension("part");
            let mut out = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
            let mut got = 0u64;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                if s.stopped() {
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
            let data = http::read_body(&mut reader, &head.headers, MAX_SMALL_BODY).map_err(|e| format!("{e:#}"))?;
            // Go's and nginx's answers to plain HTTP on a TLS port.
            if head.status == 400 && String::from_utf8_lossy(&data).contains("HTTPS") {
                s.not_http.store(true, Ordering::SeqCst);
            }
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
