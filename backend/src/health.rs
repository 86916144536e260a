//! `GET /api/health`: one list of every service the dashboard shows, each `{name, ok, detail}`.
//!
//! backend answers for itself, for NATS (its own connection and the stream), for
//! analytics-engine (its `Health` RPC answering), for ClickHouse and Python (as that RPC reports
//! them) and for Prometheus (`GET <V7_PROMETHEUS_URL>/-/ready`). Every probe is bounded by
//! [`PROBE_TIMEOUT`] and they run concurrently, so the endpoint answers within about that time
//! even when everything is down; it is always `200` — the body says what is not ok.
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{one_line, status_text, AppState};
use crate::proto::analytics::{DependencyHealth, HealthRequest};

/// Each probe (stream lookup, `Health` RPC, Prometheus) must answer within this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceHealth {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl ServiceHealth {
    fn new(name: &str, ok: bool, detail: impl Into<String>) -> ServiceHealth {
        ServiceHealth { name: name.to_string(), ok, detail: one_line(&detail.into()) }
    }
}

/// The services in the contract's order: backend, nats, analytics-engine, clickhouse, python,
/// then any other dependency the engine reports, then prometheus.
pub async fn services(state: &AppState) -> Vec<ServiceHealth> {
    let mut client = state.analytics();
    let engine = async {
        match tokio::time::timeout(PROBE_TIMEOUT, client.health(HealthRequest {})).await {
            Ok(Ok(res)) => Ok(res.into_inner().dependencies),
            Ok(Err(status)) => Err(format!("Health RPC failed: {}", status_text(&status))),
            Err(_) => Err(format!("Health RPC did not answer within {PROBE_TIMEOUT:?}")),
        }
    };
    let (stream, engine, prometheus) =
        tokio::join!(state.stream_state(), engine, probe_prometheus(&state.config.prometheus_url));

    let mut out = vec![ServiceHealth::new(
        "backend",
        true,
        format!("backend {} serving HTTP and gRPC", env!("CARGO_PKG_VERSION")),
    )];

    let engine_dep = |name: &str| -> Option<&DependencyHealth> {
        engine.as_ref().ok().and_then(|deps| deps.iter().find(|d| d.name == name))
    };

    // NATS as backend sees it (what publishing needs); when the engine reports its own view
    // as broken, events are not being consumed, so that turns the entry red too.
    let nats = match &stream {
        Ok(s) => {
            let mine = format!("connected to {}; {}", state.config.nats_url, s.describe());
            match engine_dep("nats") {
                Some(d) if !d.ok => {
                    ServiceHealth::new("nats", false, format!("{mine}; analytics-engine: {}", d.detail))
                }
                _ => ServiceHealth::new("nats", true, mine),
            }
        }
        Err(e) => ServiceHealth::new("nats", false, e.strip_prefix("nats: ").unwrap_or(e)),
    };
    out.push(nats);

    match &engine {
        Ok(deps) => {
            let names: Vec<&str> = deps.iter().map(|d| d.name.as_str()).collect();
            out.push(ServiceHealth::new(
                "analytics-engine",
                true,
                format!("answers Health at {} (reports: {})", state.config.analytics_url, names.join(", ")),
            ));
        }
        Err(e) => {
            out.push(ServiceHealth::new("analytics-engine", false, format!("{}: {e}", state.config.analytics_url)))
        }
    }

    for name in ["clickhouse", "python"] {
        let entry = match (&engine, engine_dep(name)) {
            (_, Some(d)) => ServiceHealth::new(name, d.ok, d.detail.clone()),
            (Ok(_), None) => ServiceHealth::new(name, false, "not reported by analytics-engine's Health"),
            (Err(_), None) => ServiceHealth::new(name, false, "unknown: analytics-engine's Health RPC failed"),
        };
        out.push(entry);
    }
    if let Ok(deps) = &engine {
        for d in deps.iter().filter(|d| !matches!(d.name.as_str(), "nats" | "clickhouse" | "python")) {
            out.push(ServiceHealth::new(&d.name, d.ok, d.detail.clone()));
        }
    }

    out.push(match prometheus {
        Ok(detail) => ServiceHealth::new("prometheus", true, detail),
        Err(e) => ServiceHealth::new("prometheus", false, e),
    });
    out
}

/// An `http://host[:port][/prefix]` URL split into (host, port, prefix without trailing `/`).
/// Hand-parsed because the only HTTP client backend needs is this one GET.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("expected an http:// URL, got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| format!("unclosed [ in {url:?}"))?;
        let port = v6[end + 1..].strip_prefix(':');
        (format!("[{}]", &v6[..end]), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("no host in {url:?}"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!("invalid host {host:?} in {url:?}"));
    }
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("invalid port {p:?} in {url:?}"))?,
    };
    if path.contains(['?', '#', ' ']) {
        return Err(format!("the URL must not have a query or fragment: {url:?}"));
    }
    Ok((host, port, path.trim_end_matches('/').to_string()))
}

/// `GET <base>/-/ready` (Prometheus' readiness endpoint) with HTTP/1.0, within [`PROBE_TIMEOUT`]:
/// ok on 200.
pub async fn probe_prometheus(base: &str) -> Result<String, String> {
    let (host, port, prefix) = parse_http_url(base)?;
    let path = format!("{prefix}/-/ready");
    let target = format!("{}/-/ready", base.trim_end_matches('/'));
    let get = async {
        // `[::1]` must be unbracketed for the resolver.
        let connect_host = host.trim_start_matches('[').trim_end_matches(']');
        let mut stream = tokio::net::TcpStream::connect((connect_host, port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        // Only the status line matters.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        match healthcheck::status_code(&buf) {
            Some(200) => Ok(format!("{target} answered 200")),
            Some(code) => Err(format!("{target} answered {code}")),
            None => Err(format!("{target}: no HTTP status line in the answer")),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, get).await {
        Ok(res) => res.map_err(|e| if e.starts_with(&target) { e } else { format!("{target}: {e}") }),
        Err(_) => Err(format!("{target}: no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        assert_eq!(parse_http_url("http://prometheus:9090").unwrap(), ("prometheus".into(), 9090, "".into()));
        assert_eq!(parse_http_url("http://prometheus:9090/").unwrap(), ("prometheus".into(), 9090, "".into()));
        assert_eq!(parse_http_url("http://p/prom/").unwrap(), ("p".into(), 80, "/prom".into()));
        assert_eq!(parse_http_url("http://[::1]:9091").unwrap(), ("[::1]".into(), 9091, "".into()));
        for bad in [
            "prometheus:9090",
            "https://p:9090",
            "http://",
            "http://:9090",
            "http://p:x",
            "http://p:0",
            "http://p:9090/?a",
            "http://u@p",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn prometheus_probe_reads_the_status_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for answer in
                ["HTTP/1.1 200 OK\r\n\r\nPrometheus Server is Ready.\n", "HTTP/1.1 503 Service Unavailable\r\n\r\n"]
            {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /-/ready HTTP/1.0\r\n"), "{req}");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        assert_eq!(probe_prometheus(&base).await.unwrap(), format!("{base}/-/ready answered 200"));
        assert_eq!(probe_prometheus(&base).await.unwrap_err(), format!("{base}/-/ready answered 503"));
        server.await.unwrap();
        let err = probe_prometheus("http://127.0.0.1:1").await.unwrap_err();
        assert!(err.starts_with("http://127.0.0.1:1/-/ready: connect 127.0.0.1:1:"), "{err}");
    }
}
