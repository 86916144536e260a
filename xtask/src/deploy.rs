//! `deploy`, `down`, `status`, `logs` and `verify`: the running stack.
//!
//! deploy creates the networks and volumes, then starts each service in dependency order and
//! waits until its health check passes before starting the services that depend on it. podman
//! cannot schedule health checks without systemd, so containers are created with
//! `--health-interval disable` and the xtask runs `podman healthcheck run` itself; the same
//! path is used everywhere, so behaviour does not depend on the host. If a service does not
//! become healthy, its last log lines are printed and the containers this deploy started are
//! removed (volumes are kept): no half-started stack is left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::command::{Cmd, Runner};
use crate::flags;
use crate::http_client;
use crate::manifest::{Port, Stack};
use crate::podman_host::Podman;
use crate::registry_free;
use crate::text_format::json_str;

/// Label on everything deploy creates, so status/down find exactly what is ours. Builds put it
/// on every image they commit too, intermediates included (`build.rs`, `registry_free.rs`).
pub const PROJECT_LABEL: &str = "v7.project";

/// What runs where: the image of each service in the chosen mode, or why it is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Image(String),
    Skipped(String),
}

pub fn placement(stack: &Stack, service: &str, offline: bool) -> Placement {
    let svc = &stack.services[service];
    if !offline {
        return Placement::Image(svc.image.get_ref().clone());
    }
    match &svc.offline {
        Some(o) if o.unavailable.is_some() => Placement::Skipped(o.unavailable.clone().unwrap()),
        Some(_) => Placement::Image(registry_free::image_name(stack, service)),
        None => Placement::Image(svc.image.get_ref().clone()),
    }
}

/// `podman run` for one service, as data.
pub fn run_command(podman: &Podman, stack: &Stack, root: &Path, service: &str, image: &str) -> Cmd {
    let svc = &stack.services[service];
    let mut cmd = podman.cmd().args([
        "run",
        "-d",
        "--init",
        "--name",
        &stack.container_name(service),
        "--label",
        &format!("{PROJECT_LABEL}={}", stack.project.name),
        "--label",
        &format!("v7.service={service}"),
        "--stop-timeout",
        "10",
    ]);
    for n in &svc.networks {
        cmd = cmd.arg("--network").arg(stack.network_name(n.get_ref()));
    }
    if !svc.networks.is_empty() {
        cmd = cmd.arg("--network-alias").arg(service);
    }
    for p in &svc.ports {
        cmd = cmd.arg("-p").arg(Port::parse(p.get_ref()).expect("validated").to_podman());
    }
    for (k, v) in &svc.environment {
        cmd = cmd.arg("-e").arg(format!("{k}={v}"));
    }
    for v in &svc.volumes {
        let spec = v.get_ref();
        let spec = match spec.strip_prefix("./") {
            Some(rel) => format!("{}/{rel}", root.display()),
            None => {
                let (name, rest) = spec.split_once(':').unwrap();
                format!("{}:{rest}", stack.volume_name(name))
            }
        };
        cmd = cmd.arg("-v").arg(spec);
    }
    if let Some(hc) = &svc.healthcheck {
        let test: Vec<String> = hc.test.iter().map(|a| format!("\"{}\"", a.replace('"', "\\\""))).collect();
        cmd = cmd
            .arg("--health-cmd")
            .arg(format!("[{}]", test.join(",")))
            .arg("--health-interval")
            .arg("disable")
            .arg("--health-retries")
            .arg(hc.retries.to_string())
            .arg("--health-timeout")
            .arg(hc.timeout.get_ref().clone());
    }
    if let Some(cpus) = svc.resources.cpus {
        cmd = cmd.arg("--cpus").arg(cpus.to_string());
    }
    if let Some(m) = &svc.resources.memory {
        cmd = cmd.arg("--memory").arg(m.get_ref().clone());
    }
    cmd = cmd.arg(image);
    cmd.args(svc.command.iter().cloned())
}

impl flags::Deploy {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = crate::project_root();
        let stack = Stack::load(&root)?;
        if !self.dry_run {
            crate::prereq::ensure(sh, "deploy", crate::prereq::PODMAN)?;
        }
        let offline = registry_free::use_registry_free(&stack, self.offline)?;
        let podman = Podman::prepare()?;
        let runner = Runner::new(self.dry_run);
        if !self.no_build {
            if offline {
                registry_free::build_all(sh, &stack, &[], false, false, self.dry_run)?;
            } else {
                // Base and infrastructure images first, with the pull's retries and mirrors,
                // rather than leaving them to podman build's and podman run's single attempt.
                flags::Pull {
                    status: false,
                    policy: None,
                    jobs: None,
                    timeout: None,
                    deadline: None,
                    attempts: None,
                    registry_mirror: Vec::new(),
                    image: Vec::new(),
                    no_relay: false,
                    json: false,
                    dry_run: self.dry_run,
                }
                .run(sh)?;
                let builds = crate::build::plan(&root, &stack, &[], None)?;
                let env = std::env::vars().collect();
                crate::build::run_builds(&runner, &podman, &crate::proxy::detect(&env), &stack.project.name, builds, false)?;
            }
        }
        let timeout = Duration::from_secs(self.timeout.unwrap_or(120));
        deploy(&runner, &podman, &stack, &root, offline, timeout)
    }
}

pub fn deploy(runner: &Runner, podman: &Podman, stack: &Stack, root: &Path, offline: bool, timeout: Duration) -> Result<()> {
    let order = stack.start_order().map_err(anyhow::Error::msg)?;
    // Check every image is here before creating anything.
    let mut missing = Vec::new();
    for name in &order {
        if let Placement::Image(image) = placement(stack, name, offline) {
            let exists = runner.capture(&podman.cmd().args(["image", "exists", &image]))?.status.success();
            if !exists {
                missing.push(format!("{name} ({image})"));
            }
        }
    }
    if !missing.is_empty() && !runner.dry_run {
        bail!(
            "images missing, nothing was started: {}\n  hint: run `cargo xtask {}` first, or deploy without --no-build",
            missing.join(", "),
            if offline { "build --offline" } else { "pull && cargo xtask build" }
        );
    }
    let label = format!("{PROJECT_LABEL}={}", stack.project.name);
    for (net, cfg) in &stack.networks {
        let name = stack.network_name(net);
        if runner.capture(&podman.cmd().args(["network", "exists", &name]))?.status.success() {
            continue;
        }
        let mut cmd = podman.cmd().args(["network", "create", "--label", &label]);
        if cfg.internal {
            cmd = cmd.arg("--internal");
        }
        runner.run_captured(&cmd.arg(&name))?;
    }
    // Only the volumes of services this mode runs (no grafana-data without Grafana).
    let used = |vol: &str| {
        order.iter().any(|n| {
            matches!(placement(stack, n, offline), Placement::Image(_))
                && stack.services[*n].volumes.iter().any(|v| v.get_ref().split(':').next() == Some(vol))
        })
    };
    for vol in stack.volumes.keys().filter(|v| used(v)) {
        let name = stack.volume_name(vol);
        if runner.capture(&podman.cmd().args(["volume", "exists", &name]))?.status.success() {
            continue;
        }
        runner.run_captured(&podman.cmd().args(["volume", "create", "--label", &label, &name]))?;
    }
    let mut started: Vec<String> = Vec::new();
    for name in &order {
        let image = match placement(stack, name, offline) {
            Placement::Image(i) => i,
            Placement::Skipped(why) => {
                eprintln!("{name}: not started: {why}");
                continue;
            }
        };
        if let Some(dep) = stack.services[*name].depends_on.iter().find(|d| !started.contains(d.get_ref())) {
            if matches!(placement(stack, dep.get_ref(), offline), Placement::Skipped(_)) {
                eprintln!("{name}: not started: it depends on {}, which is not available in this mode", dep.get_ref());
                continue;
            }
        }
        let container = stack.container_name(name);
        let remove = podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", &container]);
        runner.run_captured(&remove)?;
        let run = run_command(podman, stack, root, name, &image);
        let mut out = runner.run_captured(&run)?;
        // podman 4.3 can release a removed container's name in its storage a moment after
        // `rm` returns (seen when the old container was started with --rm); one more try.
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is already in use") {
            runner.run_captured(&remove)?;
            std::thread::sleep(Duration::from_secs(2));
            out = runner.run_captured(&run)?;
        }
        if !out.status.success() {
            let err = crate::command::last_line(&out.stderr);
            let hint = crate::podman_host::explain_failure(&err).map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            rollback(runner, podman, stack, &started);
            bail!("{name}: podman run failed: {err}{hint}\n  the containers this deploy started were removed");
        }
        started.push(name.to_string());
        if runner.dry_run {
            continue;
        }
        if let Err(e) = wait_healthy(runner, podman, stack, name, timeout) {
            let logs = runner.capture(&podman.cmd().args(["logs", "--tail", "20", &container]))?;
            eprintln!("{name}: last log lines:\n{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
            rollback(runner, podman, stack, &started);
            return Err(e.context("the containers this deploy started were removed (volumes kept); fix the cause and deploy again"));
        }
    }
    if !runner.dry_run {
        eprintln!("stack {} is up: {}", stack.project.name, started.join(", "));
        if let Some(web) = stack.services.get("web").and_then(|w| w.ports.first()) {
            let p = Port::parse(web.get_ref()).unwrap();
            eprintln!("dashboard: http://{}:{}/   check it end to end: cargo xtask verify", p.host_ip, p.host);
        }
    }
    Ok(())
}

fn rollback(runner: &Runner, podman: &Podman, stack: &Stack, started: &[String]) {
    for name in started.iter().rev() {
        let _ = runner.run_captured(&podman.cmd().args(["rm", "-f", "-t", "3", "--ignore", &stack.container_name(name)]));
    }
}

/// Runs the service's health check until it passes, the container stops, or time runs out.
fn wait_healthy(runner: &Runner, podman: &Podman, stack: &Stack, name: &str, timeout: Duration) -> Result<()> {
    let container = stack.container_name(name);
    let start = Instant::now();
    let has_check = stack.services[name].healthcheck.is_some();
    let interval = Duration::from_millis(500);
    loop {
        let state = runner.query(&podman.cmd().args(["inspect", "--format", "{{.State.Status}}", &container]))?;
        if state.trim() != "running" {
            bail!("{name}: the container stopped ({}) before it became healthy", state.trim());
        }
        if !has_check {
            eprintln!("{name}: running (no health check defined)");
            return Ok(());
        }
        let out = runner.capture(&podman.cmd().args(["healthcheck", "run", &container]))?;
        if out.status.success() {
            eprintln!("{name}: healthy after {:.1} s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        let last = format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
        if start.elapsed() > timeout {
            bail!("{name}: not healthy after {} s (last check: {last})", timeout.as_secs());
        }
        std::thread::sleep(interval);
    }
}

impl flags::Down {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let stack = Stack::load(&crate::project_root())?;
        let podman = Podman::prepare()?;
        let runner = Runner::new(self.dry_run);
        for cmd in down_plan(&podman, &stack, self.volumes) {
            let out = runner.run_captured(&cmd)?;
            if !out.status.success() {
                let err = crate::command::last_line(&out.stderr);
                if !err.contains("no such") && !err.contains("not found") {
                    eprintln!("warning: `{cmd}`: {err}");
                }
            }
        }
        if !self.dry_run {
            eprintln!("stack {} removed{}", stack.project.name, if self.volumes { " with its volumes" } else { " (volumes kept; --volumes removes them)" });
        }
        Ok(())
    }
}

/// Containers in reverse dependency order, then networks, then (optionally) volumes.
pub fn down_plan(podman: &Podman, stack: &Stack, volumes: bool) -> Vec<Cmd> {
    let mut order = stack.start_order().unwrap_or_default();
    order.reverse();
    let mut out: Vec<Cmd> = order
        .iter()
        .map(|n| podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", &stack.container_name(n)]))
        .collect();
    for net in stack.networks.keys() {
        out.push(podman.cmd().args(["network", "rm", "-f", &stack.network_name(net)]));
    }
    if volumes {
        for vol in stack.volumes.keys() {
            out.push(podman.cmd().args(["volume", "rm", "-f", &stack.volume_name(vol)]));
        }
    }
    out
}

impl flags::Status {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let stack = Stack::load(&crate::project_root())?;
        let podman = Podman::prepare()?;
        let runner = Runner::new(false);
        let offline = registry_free::use_registry_free(&stack, false).unwrap_or(false);
        let mut rows = Vec::new();
        for name in stack.start_order().map_err(anyhow::Error::msg)? {
            let container = stack.container_name(name);
            let state = runner
                .query(&podman.cmd().args(["inspect", "--format", "{{.State.Status}}\t{{.ImageName}}", &container]))
                .unwrap_or_default();
            let (state, image) = state.trim().split_once('\t').unwrap_or(("absent", ""));
            let health = if state == "running" && stack.services[name].healthcheck.is_some() {
                let ok = runner.capture(&podman.cmd().args(["healthcheck", "run", &container]))?.status.success();
                if ok { "healthy" } else { "unhealthy" }
            } else {
                "-"
            };
            let note = match placement(&stack, name, offline) {
                Placement::Skipped(why) if state == "absent" => why,
                _ => String::new(),
            };
            let ports: Vec<String> = stack.services[name].ports.iter().map(|p| p.get_ref().clone()).collect();
            rows.push((name.to_string(), state.to_string(), health.to_string(), image.to_string(), ports.join(" "), note));
        }
        if self.json {
            let items: Vec<String> = rows
                .iter()
                .map(|(n, s, h, i, p, note)| {
                    format!(
                        "{{\"service\":{},\"state\":{},\"health\":{},\"image\":{},\"ports\":{},\"note\":{}}}",
                        json_str(n), json_str(s), json_str(h), json_str(i), json_str(p), json_str(note)
                    )
                })
                .collect();
            println!("[{}]", items.join(","));
        } else {
            println!("{:<18} {:<9} {:<10} {:<48} PORTS", "SERVICE", "STATE", "HEALTH", "IMAGE");
            for (n, s, h, i, p, note) in rows {
                println!("{n:<18} {s:<9} {h:<10} {i:<48} {p}{}", if note.is_empty() { String::new() } else { format!("  ({note})") });
            }
        }
        Ok(())
    }
}


impl flags::Logs {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let stack = Stack::load(&crate::project_root())?;
        if !stack.services.contains_key(&self.service) {
            bail!(
                "no service named {:?}; services: {}",
                self.service,
                stack.services.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let podman = Podman::prepare()?;
        let mut cmd = podman.cmd().arg("logs");
        if self.follow {
            cmd = cmd.arg("--follow");
        }
        if let Some(n) = self.tail {
            cmd = cmd.arg("--tail").arg(n.to_string());
        }
        let cmd = cmd.arg(stack.container_name(&self.service));
        cmd.to_expression().unchecked().run().context("cannot run podman logs")?;
        Ok(())
    }
}

impl flags::Verify {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let stack = Stack::load(&crate::project_root())?;
        let podman = Podman::prepare()?;
        // Check what was deployed: services left out (Grafana in registry-free mode) have no container.
        let runner = Runner::new(false);
        let deployed: Vec<String> = stack
            .services
            .keys()
            .filter(|n| runner.capture(&podman.cmd().args(["container", "exists", &stack.container_name(n)])).is_ok_and(|o| o.status.success()))
            .cloned()
            .collect();
        verify(&stack, &deployed)
    }
}

/// The host address of a service's container port, from the manifest.
fn host_url(stack: &Stack, service: &str, container_port: u16) -> Result<String> {
    let svc = stack.services.get(service).with_context(|| format!("docker/stack.toml has no service {service}"))?;
    let port = svc
        .ports
        .iter()
        .filter_map(|p| Port::parse(p.get_ref()))
        .find(|p| p.container == container_port)
        .with_context(|| format!("services.{service}.ports publishes no port for {container_port}"))?;
    Ok(format!("http://{}:{}", port.host_ip, port.host))
}

pub fn verify(stack: &Stack, deployed: &[String]) -> Result<()> {
    let t = Duration::from_secs(5);
    let mut checks: Vec<(&str, String)> = vec![
        ("web serves the dashboard", format!("{}/", host_url(stack, "web", 3000)?)),
        ("web is healthy", format!("{}/healthz", host_url(stack, "web", 3000)?)),
        ("backend is ready (NATS and analytics-engine answer)", format!("{}/readyz", host_url(stack, "backend", 3000)?)),
        ("analytics-engine is ready (NATS, ClickHouse, Python)", format!("{}/readyz", host_url(stack, "analytics-engine", 9100)?)),
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
        match http_client::get(url, t) {
            Ok(r) if r.status == 200 => println!("ok    {what} ({url})"),
            Ok(r) => failures.push(format!("{what}: {url} answered {}: {}", r.status, r.body.trim())),
            Err(e) => failures.push(format!("{what}: {url}: {e:#}")),
        }
    }
    if !failures.is_empty() {
        bail!("the stack is not healthy:\n  {}\n  hint: `cargo xtask status` and `cargo xtask logs SERVICE`", failures.join("\n  "));
    }
    // End to end: an event posted through web's /api proxy is published on NATS, stored in
    // ClickHouse by analytics-engine, and counted by the Python statistics component.
    let web = host_url(stack, "web", 3000)?;
    let kind = format!("verify_{}", std::process::id());
    let before = count_of(&web, &kind)?;
    let body = format!("{{\"kind\":\"{kind}\",\"value\":42.5,\"source\":\"xtask-verify\"}}");
    let r = http_client::request("POST", &format!("{web}/api/events"), Some(("application/json", &body)), t)?;
    if r.status != 202 {
        bail!("POST {web}/api/events answered {} {}: expected 202", r.status, r.body.trim());
    }
    println!("ok    event accepted through web -> backend ({})", r.body.trim());
    let bad = http_client::request("POST", &format!("{web}/api/events"), Some(("application/json", "{\"kind\":\"\"}")), t)?;
    if bad.status != 400 {
        bail!("an invalid event was answered {} instead of 400", bad.status);
    }
    println!("ok    an invalid event is refused with 400 ({})", bad.body.trim());
    let start = Instant::now();
    loop {
        let now = count_of(&web, &kind)?;
        if now == before + 1 {
            println!("ok    the event was stored in ClickHouse and counted by analytics-engine (count {now})");
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the event was accepted but GET /api/stats?kind={kind} still counts {now} after 30 s (expected {})", before + 1);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Prometheus scrapes every 15 s: give the first scrapes time to happen.
    let prometheus = host_url(stack, "prometheus", 9090)?;
    let start = Instant::now();
    let mut pending: Vec<&str> = vec!["backend", "analytics-engine"];
    while !pending.is_empty() {
        let targets = http_client::get(&format!("{prometheus}/api/v1/targets"), t)?;
        pending.retain(|job| {
            let up = targets
                .body
                .split("\"labels\"")
                .any(|t| t.contains(&format!("\"job\":\"{job}\"")) && t.contains("\"health\":\"up\""));
            if up {
                println!("ok    Prometheus scrapes {job}");
            }
            !up
        });
        if !pending.is_empty() {
            if start.elapsed() > Duration::from_secs(45) {
                bail!("Prometheus does not scrape {} successfully after 45 s (GET {prometheus}/api/v1/targets)", pending.join(", "));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    println!("verify: the stack works end to end");
    Ok(())
}

/// The count of `kind` reported by GET /api/stats (0 when the kind is absent).
fn count_of(web: &str, kind: &str) -> Result<u64> {
    let r = http_client::get(&format!("{web}/api/stats?kind={kind}"), Duration::from_secs(5))?;
    if r.status != 200 {
        bail!("GET {web}/api/stats answered {}: {}", r.status, r.body.trim());
    }
    Ok(json_number_after(&r.body, "\"count\"").unwrap_or(0))
}

fn json_number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_command_for_backend_is_planned_from_the_manifest() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c")]);
        let cmd = run_command(&podman, &stack, Path::new("/repo"), "backend", "img:1");
        let args = cmd.args.join(" ");
        assert!(args.starts_with("run -d --init --name v7-backend --label v7.project=v7 --label v7.service=backend"), "{args}");
        assert!(args.contains("--network v7-frontend --network v7-backend --network-alias backend"), "{args}");
        assert!(args.contains("-p 127.0.0.1:3000:3000 -p 127.0.0.1:50053:50053"), "{args}");
        assert!(args.contains("-e V7_ANALYTICS_URL=http://analytics-engine:50051"), "{args}");
        assert!(args.contains("--health-cmd [\"/usr/local/bin/backend\",\"healthcheck\"] --health-interval disable"), "{args}");
        assert!(args.ends_with("--memory 256m img:1"), "{args}");
        let nats = run_command(&podman, &stack, Path::new("/repo"), "nats", "n:1").args.join(" ");
        assert!(nats.contains("-v v7-nats-data:/data -v /repo/docker/nats/nats.conf:/etc/nats/nats.conf:ro"), "{nats}");
        assert!(nats.ends_with("n:1 --config /etc/nats/nats.conf"), "{nats}");
    }

    #[test]
    fn offline_mode_skips_grafana_and_uses_local_images() {
        let stack = Stack::load(&crate::project_root()).unwrap();
        assert!(matches!(placement(&stack, "grafana", true), Placement::Skipped(why) if why.contains("no Debian package")));
        assert_eq!(placement(&stack, "backend", true), Placement::Image(registry_free::image_name(&stack, "backend")));
        assert_eq!(placement(&stack, "backend", false), Placement::Image("ghcr.io/hellocplusplus0/v7/backend:latest".into()));
    }

    #[test]
    fn down_removes_in_reverse_order_and_volumes_only_when_asked() {
        let stack = Stack::load(&crate::project_root()).unwrap();
        let podman = Podman::fixed(&[]);
        let plan: Vec<String> = down_plan(&podman, &stack, false).iter().map(|c| c.args.join(" ")).collect();
        assert_eq!(plan[0], "rm -f -t 5 --ignore v7-web");
        assert!(plan.iter().all(|c| !c.starts_with("volume")));
        assert!(down_plan(&podman, &stack, true).iter().any(|c| c.args.join(" ") == "volume rm -f v7-nats-data"));
    }

    #[test]
    fn json_helpers() {
        assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
        assert_eq!(json_number_after("{\"kinds\":[{\"kind\":\"x\",\"count\": 12}]}", "\"count\""), Some(12));
    }
}
