//! The registry protocol as the relay needs it: where an upstream lives, which pull request
//! podman made, and which answers are worth asking for again.

use std::time::Duration;

use crate::net::backoff::{exponential, parse_retry_after};
use crate::net::http::{authority, split_authority};

/// Requests to the registry per podman request, the first one included.
pub const TRIES: u32 = 5;

/// Where the relay fetches from: a registry (plain HTTP, or TLS through curl) and, for a
/// mirror at `host:port/ns`, the namespace its repositories live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// `""` or `ns/`.
    pub namespace: String,
    /// Speaks TLS (an `https://` mirror). A plain-HTTP upstream that turns out to speak TLS
    /// is switched over by the relay (upstream.rs).
    pub tls: bool,
    /// The registry itself, not a mirror: its `/v2/` answer is passed on to podman (asked
    /// once, kept), because a registry that hands out tokens (docker.io, ghcr.io) names the
    /// token service in that answer's `WWW-Authenticate`, and podman asks for a token only
    /// after seeing it. A mirror's `/v2/` is answered by the relay itself.
    pub origin: bool,
}

impl Upstream {
    /// From a registries.conf `location` (`host[:port][/ns]`, no scheme), plain HTTP; port 80
    /// by default.
    pub fn from_location(location: &str) -> Option<Upstream> {
        Upstream::parse(location, false)
    }

    /// The same, for an upstream that speaks TLS; port 443 by default.
    pub fn from_location_tls(location: &str) -> Option<Upstream> {
        Upstream::parse(location, true)
    }

    /// A registry itself (see [`Upstream::origin`]), at its API host: `registry-1.docker.io`
    /// for `docker.io`, as podman reaches it.
    pub fn origin(registry: &str, tls: bool) -> Option<Upstream> {
        let api = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        Some(Upstream { origin: true, ..Upstream::parse(api, tls)? })
    }

    fn parse(location: &str, tls: bool) -> Option<Upstream> {
        let (authority, ns) = match location.split_once('/') {
            Some((a, n)) => (a, format!("{}/", n.trim_matches('/'))),
            None => (location, String::new()),
        };
        let (host, port) = split_authority(authority, if tls { 443 } else { 80 }).ok()?;
        Some(Upstream { host, port, namespace: if ns == "/" { String::new() } else { ns }, tls, origin: false })
    }

    /// `https://host:port<path>`, for curl.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", authority(&self.host, self.port))
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
        429 => Verdict::Retry(retry_after.and_then(|v| parse_retry_after(v, now_unix))),
        408 | 500..=599 => Verdict::Retry(None),
        _ => Verdict::Final,
    }
}

/// Wait before request `try_ + 1`: 0.2 s, 0.4 s, 0.8 s, ... capped at 3.2 s, the upper half
/// jitter. Short on purpose: a request is cheap to repeat, and the pull's own attempts (seconds
/// apart) are still there when the registry stays down.
pub fn backoff(try_: u32, jitter: f64) -> Duration {
    exponential(try_, Duration::from_millis(200), Duration::from_millis(3200), jitter)
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
        let u = Upstream::from_location("[::1]:5000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5000));
        assert!(Upstream::from_location(":5000").is_none());
        let u = Upstream::from_location_tls("mirror.example/hub").unwrap();
        assert_eq!((u.port, u.tls, u.namespace.as_str()), (443, true, "hub/"));
        assert_eq!(u.https_url("/v2/hub/a/blobs/x"), "https://mirror.example:443/v2/hub/a/blobs/x");
        assert!(!Upstream::from_location("m:5000").unwrap().tls);
        assert!(Upstream::from_location("host:port").is_none());
        let hub = Upstream::origin("docker.io", true).unwrap();
        assert_eq!((hub.host.as_str(), hub.port, hub.tls, hub.origin), ("registry-1.docker.io", 443, true, true));
        assert_eq!(hub.path("library/nats", "manifests", "2.10-alpine"), "/v2/library/nats/manifests/2.10-alpine");
        let ghcr = Upstream::origin("ghcr.io", true).unwrap();
        assert_eq!((ghcr.host.as_str(), ghcr.namespace.as_str()), ("ghcr.io", ""));
        assert!(!Upstream::from_location_tls("mirror.example").unwrap().origin, "a mirror answers /v2/ itself");
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
    fn request_backoff_is_short_and_capped() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(30, 1.0), Duration::from_secs_f64(3.2));
    }
}
