//! The pull relay: a registry on loopback that stands between `podman pull` and a registry
//! mirror (`http://` or `https://`) or a registry itself (over TLS; on this host plain HTTP or
//! TLS) for the length of one `cargo xtask pull`.
//!
//! Why it exists:
//! - podman asks a registry four things one after the other (`/v2/`, the manifest, the config,
//!   the layers). With 200 ms of latency that is 0.8 s of waiting per image before anything is
//!   stored. The relay answers a mirror's `/v2/` itself (a registry's once), asks for the manifest as soon as `pull` says which
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
//! - TLS upstreams are fetched by curl, one process per request (`curl.rs`; why curl and not a
//!   Rust TLS stack: docs/xtask.md, Dependencies). It trusts what podman trusts for that
//!   registry (the system's CAs and its certs.d directory, `podman/certs.rs`), goes through
//!   `HTTPS_PROXY` unless `NO_PROXY` says otherwise, and never skips verification: an upstream
//!   whose certificate does not verify is left to podman ([`Relay::pull_directly`]). podman
//!   talks plain HTTP to the relay on loopback, and still checks every digest.
//! - A registry itself (not a mirror: docker.io at registry-1.docker.io, ghcr.io, one on this
//!   host) gets its `/v2/` asked and passed on, once per run, so podman sees the token
//!   challenge and fetches its token from the registry's token service directly; the token
//!   then comes with each request and is passed on like any `Authorization`. A redirect (Docker
//!   Hub and GHCR send blobs to a CDN) goes back to podman, which follows it itself: those
//!   blobs get podman's own retries, not the relay's.
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
//!
//! Files: `protocol.rs` (upstreams, podman's requests, what is asked again), `upstream.rs`
//! (asking the registry, with retries), `curl.rs` (TLS), `answer.rs` (what podman gets back).

mod answer;
pub mod curl;
mod protocol;
mod upstream;

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::net::http::{parse_request_head, read_head};
use crate::oci::manifest;
use answer::{Answer, Body};
pub use protocol::Upstream;
use protocol::{route, verdict, Route, Verdict};
pub use upstream::Retries;
use upstream::{fetch, UpstreamState, READ_TIMEOUT};

/// Blob downloads in flight at once, per relay: every layer of every image `--jobs` pulls at
/// once (podman itself fetches up to 6 layers per image at a time), so a slot never costs a
/// round trip; the bound is there for images with dozens of layers.
const BLOB_STREAMS: usize = 32;

enum Slot {
    Pending,
    Done(Arc<Answer>),
}

struct Entry {
    slot: Mutex<Slot>,
    ready: Condvar,
}

struct Shared {
    up: UpstreamState,
    dir: PathBuf,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Repositories whose layers are fetched ahead.
    layers_ahead: Mutex<HashSet<String>>,
    streams: Mutex<usize>,
    stream_freed: Condvar,
    /// Names blob files.
    files: AtomicU64,
}

/// A running relay. Dropping it does not stop its threads; [`Relay::close`] removes its files.
pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and serves until the process ends. `dir` holds the
    /// blobs and must be the relay's own; `cert_dir` is podman's certs.d directory for the
    /// upstream, if it has one (trusted with the system's CAs when it speaks TLS).
    pub fn start(upstream: Upstream, dir: &Path, stop: Arc<AtomicBool>, cert_dir: Option<&Path>) -> Result<Relay> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let trust = curl::Trust::prepare(dir, cert_dir)?;
        let listener = TcpListener::bind("127.0.0.1:0").context("pull relay: cannot listen on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            up: UpstreamState::new(upstream, stop, u64::from(port), trust, dir),
            dir: dir.to_path_buf(),
            entries: Mutex::new(HashMap::new()),
            layers_ahead: Mutex::new(HashSet::new()),
            streams: Mutex::new(0),
            stream_freed: Condvar::new(),
            files: AtomicU64::new(0),
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
            let accept: Vec<(String, String)> =
                manifest::MEDIA_TYPES.iter().map(|t| ("Accept".to_string(), t.to_string())).collect();
            let _ = fetch_manifest(&s, &name, &reference, &accept, None);
        });
    }

    /// Requests for repository `name` that had to be asked again so far.
    pub fn retries(&self, name: &str) -> Retries {
        self.shared.up.retries.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    /// Why the relay cannot serve its upstream, if it cannot (it speaks neither plain HTTP
    /// nor TLS, or its certificate does not verify): pull from it directly.
    pub fn pull_directly(&self) -> Option<String> {
        self.shared.up.direct.lock().unwrap().clone()
    }

    /// Removes the relay's files (blobs). Requests still running find them gone and fail.
    pub fn close(&self) {
        let _ = std::fs::remove_dir_all(&self.shared.dir);
    }
}

fn serve(s: &Arc<Shared>, conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Ok(request) = parse_request_head(&read_head(&mut reader)?) else {
        return Answer::error(400, "Bad Request", "UNSUPPORTED", "pull relay: not an HTTP request").write(conn, false);
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return Answer::failure("only pulls go through the relay").write(conn, false);
    }
    let accept: Vec<(String, String)> =
        request.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("accept")).cloned().collect();
    let authorization =
        request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
    let answer = match route(&request.path) {
        Route::Ping if s.up.upstream.origin => fetch_ping(s, authorization.as_deref()),
        Route::Ping => Arc::new(Answer {
            status: 200,
            reason: "OK".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Docker-Distribution-API-Version".into(), "registry/2.0".into()),
            ],
            body: Body::Bytes(b"{}".to_vec()),
        }),
        Route::Manifest { name, reference } => fetch_manifest(s, &name, &reference, &accept, authorization.as_deref()),
        Route::Blob { name, digest } => fetch_blob(s, &name, &digest, authorization.as_deref()),
        Route::Other => Arc::new(Answer::error(404, "Not Found", "UNSUPPORTED", "pull relay: not a pull request")),
    };
    answer.write(conn, head_only)
}

/// What was fetched is kept per credential: an answer fetched with podman's Authorization is
/// only ever handed to a request that brings the same header (another local process cannot
/// read a private image through the relay), and the blobs fetched ahead use the credential of
/// the manifest request that named them. Keys stay in memory; they are never printed.
fn key(kind: &str, id: &str, auth: Option<&str>) -> String {
    format!("{kind} {id}\n{}", auth.unwrap_or(""))
}

/// A registry's own `/v2/` answer (see [`Upstream::origin`]): its token challenge reaches podman.
fn fetch_ping(s: &Arc<Shared>, auth: Option<&str>) -> Arc<Answer> {
    let headers: Vec<(String, String)> =
        auth.into_iter().map(|a| ("Authorization".to_string(), a.to_string())).collect();
    once(s, &key("ping", "/v2/", auth), || fetch(&s.up, "", "/v2/", "/v2/", &headers, None))
}

fn fetch_manifest(
    s: &Arc<Shared>,
    name: &str,
    reference: &str,
    accept: &[(String, String)],
    auth: Option<&str>,
) -> Arc<Answer> {
    let key = key("manifest", &format!("{name}:{reference}"), auth);
    let mut headers: Vec<(String, String)> = accept.to_vec();
    if let Some(a) = auth {
        headers.push(("Authorization".into(), a.to_string()));
    }
    let path = s.up.upstream.path(name, "manifests", reference);
    let what = format!("manifest {reference}");
    once(s, &key, || {
        let answer = fetch(&s.up, name, &what, &path, &headers, None);
        if answer.status == 200 {
            if let Body::Bytes(b) = &answer.body {
                let (config, layers) = manifest::blobs(b);
                let mut ahead: Vec<String> = config.into_iter().collect();
                if s.layers_ahead.lock().unwrap().contains(name) {
                    ahead.extend(layers);
                }
                for digest in ahead {
                    let (s, name, auth) = (Arc::clone(s), name.to_string(), auth.map(str::to_string));
                    std::thread::spawn(move || {
                        let _ = fetch_blob(&s, &name, &digest, auth.as_deref());
                    });
                }
            }
        }
        answer
    })
}

fn fetch_blob(s: &Arc<Shared>, name: &str, digest: &str, auth: Option<&str>) -> Arc<Answer> {
    let key = key("blob", digest, auth);
    let headers: Vec<(String, String)> =
        auth.into_iter().map(|a| ("Authorization".to_string(), a.to_string())).collect();
    let path = s.up.upstream.path(name, "blobs", digest);
    // One file per fetch: the same blob fetched under two credentials is two files.
    let n = s.files.fetch_add(1, Ordering::SeqCst);
    let file = s.dir.join(format!("{}-{n}", digest.trim_start_matches("sha256:")));
    let what = format!("blob {}", digest.get(..19).unwrap_or(digest));
    once(s, &key, || {
        // A bounded number of downloads at once; a request waiting here is not failing.
        {
            let mut n = s.streams.lock().unwrap();
            while *n >= BLOB_STREAMS {
                n = s.stream_freed.wait_timeout(n, Duration::from_millis(200)).unwrap().0;
            }
            *n += 1;
        }
        let answer = fetch(&s.up, name, &what, &path, &headers, Some(&file));
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
        if s.up.stop.load(Ordering::SeqCst) {
            return Arc::new(Answer::failure("interrupted"));
        }
        slot = entry.ready.wait_timeout(slot, Duration::from_millis(200)).unwrap().0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_per_credential() {
        let d = "sha256:ab";
        assert_ne!(
            key("blob", d, Some("Bearer a")),
            key("blob", d, None),
            "a private blob must not reach a request without credentials"
        );
        assert_ne!(key("blob", d, Some("Bearer a")), key("blob", d, Some("Bearer b")));
        assert_eq!(key("blob", d, None), key("blob", d, None));
        assert_ne!(key("manifest", "a:1", None), key("blob", "a:1", None));
    }
}
