//! What a cluster needs to know about each service and the stack file does not say: the
//! numeric user its image runs as, what it writes outside its volumes, its HTTP health
//! endpoints, and how large its volumes are. Each table says where its numbers come from.

use crate::stack::{Healthcheck, Mode};

/// A numeric user and group (the Pod Security "restricted" profile needs a numeric UID for
/// `runAsNonRoot`: a `USER name` cannot be checked by the kubelet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

const fn id(uid: u32, gid: u32) -> RunAs {
    RunAs { uid, gid }
}

/// (service, registry mode, registry-free mode, where the numbers come from). Registry-free
/// numbers were read with `podman run --rm --entrypoint id localhost/v7-registry-free/NAME`
/// (Debian's packages make their system users with the first free IDs).
const USERS: &[(&str, RunAs, RunAs, &str)] = &[
    ("nats", id(1000, 1000), id(100, 101), "nats:2.10-alpine runs as root: any non-root UID works, /data is the claim"),
    ("clickhouse", id(101, 101), id(100, 101), "clickhouse-server images: user clickhouse, 101:101"),
    ("prometheus", id(65534, 65534), id(100, 101), "prom/prometheus: USER nobody, 65534"),
    ("grafana", id(472, 472), id(472, 472), "grafana/grafana: user grafana, 472"),
    ("analytics-engine", id(10001, 10001), id(10001, 10001), "analytics-engine/Dockerfile*: adduser -u 10001 v7"),
    ("backend", id(10001, 10001), id(10001, 10001), "backend/Dockerfile*: adduser -u 10001 v7"),
    ("web", id(101, 101), id(101, 101), "nginx:1.25-alpine's nginx user and web/Dockerfile.registry-free: 101"),
];

/// The numeric user `service`'s image runs as in `mode`, if known.
pub fn run_as(service: &str, mode: Mode) -> Option<RunAs> {
    let row = USERS.iter().find(|(name, ..)| *name == service)?;
    Some(if mode == Mode::RegistryFree { row.2 } else { row.1 })
}

/// Directories a service writes outside its volumes, each an `emptyDir` so the root file
/// system can be read-only: `/tmp` for every service (web's nginx writes its configuration,
/// pid and temp files there, the Dockerfiles say), Grafana's log directory besides.
pub fn writable(service: &str) -> Vec<&'static str> {
    let mut dirs = vec!["/tmp"];
    if service == "grafana" {
        dirs.push("/var/log/grafana");
    }
    dirs
}

/// HTTP health endpoints: port, liveness path, readiness path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub port: u16,
    pub live: String,
    pub ready: String,
}

/// Services whose readiness is not their liveness: backend and analytics-engine answer
/// `/readyz` only when their dependencies answer (`*/src/http.rs`), Prometheus has `/-/healthy`
/// beside `/-/ready`.
const ENDPOINTS: &[(&str, u16, &str, &str)] = &[
    ("backend", 3000, "/healthz", "/readyz"),
    ("analytics-engine", 9100, "/healthz", "/readyz"),
    ("prometheus", 9090, "/-/healthy", "/-/ready"),
];

/// The service's HTTP endpoints: from the table above, else from a health check that fetches
/// `http://127.0.0.1:PORT/PATH` with wget or curl (one path for both probes); `None` when the
/// health check is a command of its own (probed with `exec`).
pub fn endpoints(service: &str, healthcheck: Option<&Healthcheck>) -> Option<Endpoints> {
    if let Some((_, port, live, ready)) = ENDPOINTS.iter().find(|(n, ..)| *n == service) {
        return Some(Endpoints { port: *port, live: live.to_string(), ready: ready.to_string() });
    }
    let test = &healthcheck?.test;
    if !matches!(test.first().map(String::as_str), Some("wget" | "curl")) {
        return None;
    }
    let url = test
        .iter()
        .find_map(|a| a.strip_prefix("http://127.0.0.1:").or_else(|| a.strip_prefix("http://localhost:")))?;
    let (port, path) = url.split_once('/').unwrap_or((url, ""));
    let path = format!("/{path}");
    Some(Endpoints { port: port.parse().ok()?, live: path.clone(), ready: path })
}

/// The size a volume claim asks for: ClickHouse's and Prometheus' data grow with the events,
/// the rest are small.
pub fn volume_size(volume: &str) -> &'static str {
    match volume {
        "clickhouse-data" => "10Gi",
        "prometheus-data" => "5Gi",
        _ => "1Gi",
    }
}
