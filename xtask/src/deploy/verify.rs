//! `verify`: proof that the running stack works end to end, through the ports the stack file
//! publishes on this host. Every health endpoint answers; an event posted through web's `/api`
//! proxy is accepted, stored in ClickHouse by analytics-engine and counted by its statistics
//! component; an invalid event is refused; an event sent to backend's gRPC ingestion port is
//! accepted and counted too; events accepted while analytics-engine is stopped are all counted
//! once it is back (it is stopped and started for that); Prometheus scrapes both services. ClickHouse refuses its `default`
//! user without the generated password and accepts it with it. Every named volume is mounted
//! where the manifest says and is writable by the service's (non-root) user; every service's
//! logs can be read (`cargo xtask logs`). Stored data survive `down` + `deploy`: verify keeps
//! one marker event stored (`verify_kept`) and fails if a later run counts fewer of them than
//! it left (`.v7/stacks/<project>/verify-kept`; `kube-verify-kept` for kube play's volumes).
//! The containers and volumes are the [`Subject`]'s (`subject.rs`): deploy's, the compose
//! project's or kube play's, so every check is written once. Answers are read as JSON, not
//! searched as text.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::secrets;
use super::subject::{Starter, Subject};
use crate::net::http;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::json::{self, JsonValue, Read};
use crate::util::workspace::Workspace;

/// The checks that passed in this process, in order: printed as `ok    ...` when they pass and
/// listed in GitHub's job summary (`cli/verify.rs`) beside the failed ones. A process verifies
/// one stack, so one list serves it.
static PASSED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Prints a passed check and records it for [`take_passed`].
macro_rules! passed {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("ok    {line}");
        PASSED.lock().unwrap().push(line);
    }};
}

/// The checks that passed so far (and forgets them).
pub fn take_passed() -> Vec<String> {
    std::mem::take(&mut *PASSED.lock().unwrap())
}

/// The host address of a service's container port, from the stack file.
fn host_url(stack: &Stack, service: &str, container_port: u16) -> Result<String> {
    let svc = stack.services.get(service).with_context(|| format!("the stack file has no service {service}"))?;
    let port = svc
        .published()
        .into_iter()
        .find(|p| p.container == container_port)
        .with_context(|| format!("services.{service}.ports publishes no port for {container_port}"))?;
    Ok(format!("http://{}:{}", port.host_ip, port.host))
}

fn parse_body(r: &http::Response, what: &str) -> Result<JsonValue> {
    json::parse(&String::from_utf8_lossy(&r.body)).map_err(|e| anyhow!("{what}: {e}: {}", r.text()))
}

/// `subject`: the containers of the services that have one (Grafana is absent in
/// registry-free mode), as deploy, podman-compose or `podman kube play` named them.
pub fn verify(ws: &Workspace, runner: &Runner, podman: &Podman, stack: &Stack, subject: &Subject) -> Result<()> {
    let t = Duration::from_secs(5);
    let mut checks: Vec<(&str, String)> = vec![
        ("web serves the dashboard", format!("{}/", host_url(stack, "web", 3000)?)),
        ("web is healthy", format!("{}/healthz", host_url(stack, "web", 3000)?)),
        (
            "backend is ready (NATS and analytics-engine answer)",
            format!("{}/readyz", host_url(stack, "backend", 3000)?),
        ),
        (
            "analytics-engine is ready (NATS, ClickHouse, Python)",
            format!("{}/readyz", host_url(stack, "analytics-engine", 9100)?),
        ),
        ("NATS monitoring is healthy", format!("{}/healthz", host_url(stack, "nats", 8222)?)),
        ("ClickHouse answers", format!("{}/ping", host_url(stack, "clickhouse", 8123)?)),
        ("Prometheus is ready", format!("{}/-/ready", host_url(stack, "prometheus", 9090)?)),
    ];
    if subject.has("grafana") {
        checks.push(("Grafana is healthy", format!("{}/api/health", host_url(stack, "grafana", 3000)?)));
    } else {
        println!("skip  Grafana is not deployed (registry-free mode runs without it)");
    }
    let mut failures = Vec::new();
    for (what, url) in &checks {
        match http::get(url, t) {
            Ok(r) if r.status == 200 => passed!("{what} ({url})"),
            Ok(r) => failures.push(format!("{what}: {url} answered {} {}: {}", r.status, r.reason, r.text())),
            Err(e) => failures.push(format!("{what}: {url}: {e:#}")),
        }
    }
    if !failures.is_empty() {
        bail!(
            "the stack is not healthy:\n  {}\n  hint: `cargo xtask status` and `cargo xtask logs SERVICE`",
            failures.join("\n  ")
        );
    }
    let web = host_url(stack, "web", 3000)?;
    event_round_trip(&web, t)?;
    grpc_ingestion(runner, podman, stack, subject, &web)?;
    engine_restart(runner, podman, stack, subject, &web)?;
    kept_across_deploys(subject, &web)?;
    clickhouse_password(ws, stack, t)?;
    volumes_mounted_and_writable(runner, podman, stack, subject)?;
    logs_readable(runner, podman, subject)?;
    prometheus_scrapes(&host_url(stack, "prometheus", 9090)?, t)?;
    println!("verify: the stack works end to end ({})", subject.what());
    Ok(())
}

/// An event posted through web's /api proxy is published on NATS, stored in ClickHouse by
/// analytics-engine, and counted by the statistics component.
fn event_round_trip(web: &str, t: Duration) -> Result<()> {
    let kind = format!("verify_{}", std::process::id());
    let before = count_of(web, &kind)?;
    let r = post_event(web, &kind, 42.5)?;
    if r.status != 202 {
        bail!("POST {web}/api/events answered {} {}: expected 202", r.status, r.text());
    }
    passed!("event accepted through web -> backend ({})", r.text());
    let bad = http::request("POST", &format!("{web}/api/events"), Some(("application/json", b"{\"kind\":\"\"}")), t)?;
    if bad.status != 400 {
        bail!("an invalid event was answered {} instead of 400", bad.status);
    }
    passed!("an invalid event is refused with 400 ({})", bad.text());
    let start = Instant::now();
    loop {
        let now = count_of(web, &kind)?;
        if now == before + 1 {
            passed!("the event was stored in ClickHouse and counted by analytics-engine (count {now})");
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the event was accepted but GET /api/stats?kind={kind} still counts {now} after 30 s (expected {})",
                before + 1
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Posts one event through web's `/api` proxy, as a user of the dashboard does.
fn post_event(web: &str, kind: &str, value: f64) -> Result<http::Response> {
    let mut body = String::new();
    json::object(&mut body).string("kind", kind).number("value", value).string("source", "xtask-verify");
    http::request(
        "POST",
        &format!("{web}/api/events"),
        Some(("application/json", body.as_bytes())),
        Duration::from_secs(5),
    )
}

/// Waits until `/api/stats` counts `want` events of `kind`.
/// Polls `/api/stats` until `kind` counts `want`. An answer that is not there yet (a timeout, a
/// 5xx) counts as "not yet": right after analytics-engine restarted, backend's channel to it
/// reconnects, and a GetStats may wait up to its 10 s deadline. Only the bound makes it fail,
/// with the last count or error.
fn wait_count(web: &str, kind: &str, want: u64) -> Result<()> {
    let start = Instant::now();
    let bound = Duration::from_secs(60);
    loop {
        let last = match count_of(web, kind) {
            Ok(now) if now >= want => return Ok(()),
            Ok(now) => format!("counts {now}"),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() > bound {
            bail!("GET /api/stats?kind={kind}: expected a count of {want} within {} s; last: {last}", bound.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `backend send-event` from the backend image, on the host's network, to the gRPC port the
/// stack file publishes: a real gRPC client (tonic) against the real port.
fn grpc_ingestion(runner: &Runner, podman: &Podman, stack: &Stack, subject: &Subject, web: &str) -> Result<()> {
    let svc = &stack.services["backend"];
    let port = svc.published().into_iter().find(|p| p.container == 50053).context("backend publishes no 50053")?;
    let container = subject.container("backend");
    let image = runner.query(&podman.cmd().args(["inspect", "--format", "{{.ImageName}}", &container]))?;
    let kind = format!("verify_grpc_{}", std::process::id());
    let before = count_of(web, &kind)?;
    let addr = format!("http://{}:{}", port.host_ip, port.host);
    let send = podman.cmd().args(["run", "--rm", "--network", "host", "--entrypoint", "/usr/local/bin/backend"]);
    let out = runner.capture(&send.args([image.trim(), "send-event", "--addr", &addr, "--kind", &kind]))?;
    if !out.status.success() {
        bail!(
            "backend's gRPC ingestion port {addr} did not accept an event: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    println!(
        "ok    an event sent to backend's gRPC port {addr} was accepted ({})",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    wait_count(web, &kind, before + 1)?;
    passed!("the gRPC event was stored and counted");
    Ok(())
}

/// Events accepted while analytics-engine is stopped are all counted once it is back: backend
/// answers 202 only once JetStream stored an event, and the engine's durable consumer takes up
/// where it stopped. Stops the engine (`podman stop`: neither the restart policy nor the
/// supervisor starts it again), posts, starts it, waits for its health check and the counts.
fn engine_restart(runner: &Runner, podman: &Podman, stack: &Stack, subject: &Subject, web: &str) -> Result<()> {
    const N: u64 = 5;
    let container = subject.container("analytics-engine");
    let kind = format!("verify_restart_{}", std::process::id());
    let before = count_of(web, &kind)?;
    runner.run_checked(&podman.cmd().args(["stop", "-t", "10", &container]))?;
    let posted = (|| -> Result<()> {
        for i in 0..N {
            let r = post_event(web, &kind, i as f64)?;
            if r.status != 202 {
                bail!("with analytics-engine stopped, POST /api/events answered {} {}", r.status, r.text());
            }
        }
        Ok(())
    })();
    // Started again whatever happened: verify must not leave the engine stopped.
    runner.run_checked(&podman.cmd().args(["start", &container]))?;
    posted?;
    let back = Duration::from_secs(120);
    super::health::wait_container_healthy(runner, podman, stack, "analytics-engine", &container, back)?;
    wait_count(web, &kind, before + N)?;
    let counted = count_of(web, &kind)?;
    if counted != before + N {
        bail!("{N} events posted while analytics-engine was stopped are counted {} times", counted - before);
    }
    passed!("{N} events accepted while analytics-engine was stopped were all counted once it was back");
    Ok(())
}

/// One `verify_kept` event is always stored; the count this run sees is remembered (in the
/// subject's own file: each starter has volumes of its own), and a later run (after `down` +
/// `deploy`, say) that counts fewer fails: stored data were lost.
fn kept_across_deploys(subject: &Subject, web: &str) -> Result<()> {
    let kind = "verify_kept";
    let file = &subject.kept;
    let left: u64 = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let now = count_of(web, kind)?;
    if now < left {
        bail!(
            "stored events were lost: {kind} counts {now}, an earlier verify left {left} (volumes removed? `down --volumes` \
             deletes the data; then delete {} too)",
            file.display()
        );
    }
    if left > 0 {
        passed!("the {left} marker event(s) stored by earlier runs are still counted ({now})");
    }
    if now == 0 {
        let r = post_event(web, kind, 1.0)?;
        if r.status != 202 {
            bail!("POST {web}/api/events ({kind}) answered {}", r.status);
        }
        wait_count(web, kind, 1)?;
    }
    let counted = count_of(web, kind)?;
    std::fs::create_dir_all(file.parent().expect("in a directory"))?;
    std::fs::write(file, format!("{counted}\n"))?;
    Ok(())
}

/// ClickHouse refuses `default` without the generated password, accepts it with it.
fn clickhouse_password(ws: &Workspace, stack: &Stack, t: Duration) -> Result<()> {
    let Some(svc) = stack.services.get("clickhouse") else { return Ok(()) };
    if !svc.secrets.iter().any(|s| s.get_ref().starts_with("clickhouse-users")) {
        return Ok(());
    }
    let base = host_url(stack, "clickhouse", 8123)?;
    let password = secrets::value(ws, stack, "clickhouse-password")?;
    let without = http::get(&format!("{base}/?query=SELECT%201"), t)?;
    if without.status == 200 {
        bail!("ClickHouse answers its default user without a password (the generated one is not in use)");
    }
    // The password goes in the query string, to loopback only, and is never printed.
    let with = http::get(&format!("{base}/?user=default&password={password}&query=SELECT%201"), t)?;
    if with.status != 200 || with.text().trim() != "1" {
        bail!("ClickHouse refuses the generated password: {} {}", with.status, with.text().trim());
    }
    println!(
        "ok    ClickHouse refuses its default user without the generated password ({}) and accepts it",
        without.status
    );
    Ok(())
}

/// Every named volume of the manifest is mounted at its path in the running container, and the
/// container's user (not root) can write there.
fn volumes_mounted_and_writable(runner: &Runner, podman: &Podman, stack: &Stack, subject: &Subject) -> Result<()> {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, container) in &subject.containers {
        let named: Vec<(String, String)> = stack.services[name]
            .volumes
            .iter()
            .filter(|v| !v.get_ref().starts_with("./"))
            .filter_map(|v| {
                let mut p = v.get_ref().splitn(3, ':');
                Some((subject.volume(p.next()?), p.next()?.to_string()))
            })
            .collect();
        if named.is_empty() {
            continue;
        }
        let format = "{{range .Mounts}}{{.Name}}={{.Destination}} {{end}}";
        let mounts = runner.query(&podman.cmd().args(["inspect", "--format", format, container]))?;
        let uid = runner.query(&podman.cmd().args(["exec", container, "id", "-u"])).unwrap_or_default();
        for (volume, path) in named {
            if !mounts.split_whitespace().any(|m| m == format!("{volume}={path}")) {
                failures.push(format!("{name}: volume {volume} is not mounted at {path} (mounts: {})", mounts.trim()));
                continue;
            }
            let probe = format!("{path}/.v7-verify-write");
            let write = podman.cmd().args(["exec", container, "sh", "-c", "touch \"$1\" && rm \"$1\"", "sh", &probe]);
            let out = runner.capture(&write)?;
            if !out.status.success() {
                failures.push(format!(
                    "{name}: user {} cannot write to {path} (volume {volume}): {}",
                    uid.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            } else if uid.trim() == "0" {
                failures.push(format!("{name}: runs as root"));
            } else {
                checked += 1;
            }
        }
    }
    if !failures.is_empty() {
        bail!("volumes:\n  {}", failures.join("\n  "));
    }
    passed!("{checked} named volumes are mounted where the manifest says and writable by their non-root user");
    Ok(())
}

/// Every service's logs can be read, with the command `cargo xtask logs SERVICE` runs.
fn logs_readable(runner: &Runner, podman: &Podman, subject: &Subject) -> Result<()> {
    for (name, container) in &subject.containers {
        let out = runner.capture(&super::logs_command(podman, container, Some(5), false))?;
        if !out.status.success() {
            bail!("the logs of {name} ({container}) cannot be read: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let how = match subject.starter {
        Starter::Deploy => "`cargo xtask logs SERVICE`",
        // `cargo xtask logs` names deploy's containers; the same `podman logs` reads these.
        Starter::Compose | Starter::KubePlay => "`podman logs CONTAINER`, as `cargo xtask logs` reads deploy's",
    };
    passed!("the logs of {} services can be read ({how})", subject.containers.len());
    Ok(())
}

/// The count of `kind` in a `/api/stats` answer (0 when the kind is absent).
pub fn count_in(stats: &JsonValue, kind: &str) -> Result<u64> {
    let kinds = stats.field("kinds").ok_or_else(|| anyhow!("no `kinds` in the stats answer"))?;
    let count =
        kinds.items().iter().find(|k| k.field("kind").and_then(Read::str) == Some(kind)).and_then(|k| k.field("count"));
    match count {
        None => Ok(0),
        Some(c) => c.number().map(|n| n as u64).ok_or_else(|| anyhow!("`count` of {kind} is not a number")),
    }
}

/// Longer than backend's 10 s deadline for its GetStats call, so a slow answer is seen as
/// backend's answer (a 503 naming the cause), not as a timeout of our own.
const STATS_TIMEOUT: Duration = Duration::from_secs(15);

fn count_of(web: &str, kind: &str) -> Result<u64> {
    let r = http::get(&format!("{web}/api/stats?kind={kind}"), STATS_TIMEOUT)?;
    if r.status != 200 {
        bail!("GET {web}/api/stats answered {}: {}", r.status, r.text());
    }
    count_in(&parse_body(&r, "GET /api/stats")?, kind)
}

/// Whether Prometheus' `/api/v1/targets` answer has an active target of `job` that is up.
pub fn job_is_up(targets: &JsonValue, job: &str) -> bool {
    let active = targets.field("data").and_then(|d| d.field("activeTargets")).map(Read::items).unwrap_or_default();
    active.iter().any(|t| {
        t.field("labels").and_then(|l| l.field("job")).and_then(Read::str) == Some(job)
            && t.field("health").and_then(Read::str) == Some("up")
    })
}

/// Prometheus scrapes every 15 s: the first scrapes get time to happen.
fn prometheus_scrapes(prometheus: &str, t: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pending: Vec<&str> = vec!["backend", "analytics-engine"];
    while !pending.is_empty() {
        let r = http::get(&format!("{prometheus}/api/v1/targets"), t)?;
        let targets = parse_body(&r, "GET /api/v1/targets")?;
        pending.retain(|job| {
            let up = job_is_up(&targets, job);
            if up {
                passed!("Prometheus scrapes {job}");
            }
            !up
        });
        if !pending.is_empty() {
            if start.elapsed() > Duration::from_secs(45) {
                bail!(
                    "Prometheus does not scrape {} successfully after 45 s (GET {prometheus}/api/v1/targets)",
                    pending.join(", ")
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_targets_are_read_as_json() {
        let stats = json::parse(
            r#"{"total_events":12,"kinds":[{"kind":"x","count": 12,"mean":1.5},{"kind":"verify_1","count":3}]}"#,
        )
        .unwrap();
        assert_eq!(count_in(&stats, "x").unwrap(), 12);
        assert_eq!(count_in(&stats, "verify_1").unwrap(), 3);
        assert_eq!(count_in(&stats, "absent").unwrap(), 0);
        assert!(count_in(&json::parse("{}").unwrap(), "x").is_err());
        // A kind whose name contains another's, and a count of the wrong type.
        let tricky = json::parse(r#"{"kinds":[{"kind":"xx","count":5},{"kind":"x","count":"many"}]}"#).unwrap();
        assert!(count_in(&tricky, "x").is_err());
        let targets = json::parse(
            r#"{"status":"success","data":{"activeTargets":[
                {"labels":{"job":"backend","instance":"backend:3000"},"health":"up"},
                {"labels":{"job":"analytics-engine"},"health":"down","lastError":"\"job\":\"backend\" \"health\":\"up\""}]}}"#,
        )
        .unwrap();
        assert!(job_is_up(&targets, "backend"));
        assert!(!job_is_up(&targets, "analytics-engine"), "the error text of another target is not its health");
        assert!(!job_is_up(&json::parse("[]").unwrap(), "backend"));
    }
}
