//! `verify`: proof that the running stack works end to end, through the ports the stack file
//! publishes on this host. Every health endpoint answers; an event posted through web's `/api`
//! proxy is accepted, stored in ClickHouse by analytics-engine and counted by its statistics
//! component; an invalid event is refused; Prometheus scrapes both services. Answers are read
//! as JSON, not searched as text.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::net::http;
use crate::stack::Stack;
use crate::util::json::{self, JsonValue, Read};

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

/// `deployed`: the services that have a container (Grafana is absent in registry-free mode).
pub fn verify(stack: &Stack, deployed: &[String]) -> Result<()> {
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
    if deployed.iter().any(|d| d == "grafana") {
        checks.push(("Grafana is healthy", format!("{}/api/health", host_url(stack, "grafana", 3000)?)));
    } else {
        println!("skip  Grafana is not deployed (registry-free mode runs without it)");
    }
    let mut failures = Vec::new();
    for (what, url) in &checks {
        match http::get(url, t) {
            Ok(r) if r.status == 200 => println!("ok    {what} ({url})"),
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
    event_round_trip(&host_url(stack, "web", 3000)?, t)?;
    prometheus_scrapes(&host_url(stack, "prometheus", 9090)?, t)?;
    println!("verify: the stack works end to end");
    Ok(())
}

/// An event posted through web's /api proxy is published on NATS, stored in ClickHouse by
/// analytics-engine, and counted by the statistics component.
fn event_round_trip(web: &str, t: Duration) -> Result<()> {
    let kind = format!("verify_{}", std::process::id());
    let before = count_of(web, &kind)?;
    let mut body = String::new();
    json::object(&mut body).string("kind", &kind).number("value", 42.5).string("source", "xtask-verify");
    let r = http::request("POST", &format!("{web}/api/events"), Some(("application/json", body.as_bytes())), t)?;
    if r.status != 202 {
        bail!("POST {web}/api/events answered {} {}: expected 202", r.status, r.text());
    }
    println!("ok    event accepted through web -> backend ({})", r.text());
    let bad = http::request("POST", &format!("{web}/api/events"), Some(("application/json", b"{\"kind\":\"\"}")), t)?;
    if bad.status != 400 {
        bail!("an invalid event was answered {} instead of 400", bad.status);
    }
    println!("ok    an invalid event is refused with 400 ({})", bad.text());
    let start = Instant::now();
    loop {
        let now = count_of(web, &kind)?;
        if now == before + 1 {
            println!("ok    the event was stored in ClickHouse and counted by analytics-engine (count {now})");
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

fn count_of(web: &str, kind: &str) -> Result<u64> {
    let r = http::get(&format!("{web}/api/stats?kind={kind}"), Duration::from_secs(5))?;
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
                println!("ok    Prometheus scrapes {job}");
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
