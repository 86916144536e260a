//! The running stack: `deploy` (here), `down`, `status`, `verify`.
//!
//! deploy checks that every image is here, creates the networks and volumes that are missing,
//! then starts each service in dependency order (`run_args.rs` plans its `podman run`) and
//! waits until its health check passes (`health.rs`) before starting the services that depend
//! on it. If a service does not become healthy, its last log lines are printed and the
//! containers this deploy started are removed (volumes are kept): no half-started stack is
//! left behind. Services the mode cannot run (`stack/placement.rs`) are named and left out.

pub mod down;
pub mod health;
pub mod run_args;
pub mod status;
pub mod verify;

use std::time::Duration;

use anyhow::{bail, Result};

use crate::podman::errors::explain_failure;
use crate::podman::Podman;
use crate::process::{last_line, Runner};
use crate::stack::placement::plan;
use crate::stack::{Mode, Stack};
use crate::util::workspace::Workspace;

/// Starts the stack of `mode` from images that are here.
pub fn deploy(
    ws: &Workspace,
    runner: &Runner,
    podman: &Podman,
    stack: &Stack,
    mode: Mode,
    timeout: Duration,
) -> Result<()> {
    let plan = plan(stack, mode);
    // Every image is here before anything is created.
    let mut missing = Vec::new();
    for (name, image) in &plan.run {
        if !runner.succeeds(&podman.cmd().args(["image", "exists", image]))? {
            missing.push(format!("{name} ({image})"));
        }
    }
    if !missing.is_empty() && !runner.dry_run {
        bail!(
            "images missing, nothing was started: {}\n  hint: run `{}` first, or deploy without --no-build",
            missing.join(", "),
            mode.makes_images()
        );
    }
    let label = stack.project_label();
    for (net, cfg) in &stack.networks {
        let name = stack.network_name(net);
        if runner.succeeds(&podman.cmd().args(["network", "exists", &name]))? {
            continue;
        }
        let mut cmd = podman.cmd().args(["network", "create", "--label", &label]);
        if cfg.internal {
            cmd = cmd.arg("--internal");
        }
        runner.run_checked(&cmd.arg(&name))?;
    }
    // Only the volumes of services this mode runs (no grafana-data without Grafana).
    let used = |vol: &str| {
        plan.run
            .iter()
            .any(|(n, _)| stack.services[*n].volumes.iter().any(|v| v.get_ref().split(':').next() == Some(vol)))
    };
    for vol in stack.volumes.keys().filter(|v| used(v)) {
        let name = stack.volume_name(vol);
        if runner.succeeds(&podman.cmd().args(["volume", "exists", &name]))? {
            continue;
        }
        runner.run_checked(&podman.cmd().args(["volume", "create", "--label", &label, &name]))?;
    }
    for (name, why) in &plan.skipped {
        eprintln!("{name}: not started: {why}");
    }
    let mut started: Vec<&str> = Vec::new();
    for (name, image) in &plan.run {
        let container = stack.container_name(name);
        let remove = podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", &container]);
        runner.run_captured(&remove)?;
        let run = run_args::run_command(podman, stack, &ws.root, name, image);
        let mut out = runner.run_captured(&run)?;
        // podman 4.3 can release a removed container's name in its storage a moment after
        // `rm` returns (seen when the old container was started with --rm); one more try.
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is already in use") {
            runner.run_captured(&remove)?;
            std::thread::sleep(Duration::from_secs(2));
            out = runner.run_captured(&run)?;
        }
        if !out.status.success() {
            let err = last_line(&out.stderr);
            let hint = explain_failure(&err).map(|h| format!("\n  hint: {h}")).unwrap_or_default();
            remove_started(runner, podman, stack, &started);
            bail!("{name}: podman run failed: {err}{hint}\n  the containers this deploy started were removed");
        }
        started.push(name);
        if runner.dry_run {
            continue;
        }
        if let Err(e) = health::wait_healthy(runner, podman, stack, name, timeout) {
            let logs = runner.capture(&podman.cmd().args(["logs", "--tail", "20", &container]))?;
            eprintln!(
                "{name}: last log lines:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
            remove_started(runner, podman, stack, &started);
            return Err(e.context(
                "the containers this deploy started were removed (volumes kept); fix the cause and deploy again",
            ));
        }
    }
    if !runner.dry_run {
        eprintln!("stack {} is up: {}", stack.project.name, started.join(", "));
        if let Some(p) = stack.services.get("web").and_then(|w| w.published().into_iter().next()) {
            eprintln!("dashboard: http://{}:{}/   check it end to end: cargo xtask verify", p.host_ip, p.host);
        }
    }
    Ok(())
}

fn remove_started(runner: &Runner, podman: &Podman, stack: &Stack, started: &[&str]) {
    for name in started.iter().rev() {
        let _ =
            runner.run_captured(&podman.cmd().args(["rm", "-f", "-t", "3", "--ignore", &stack.container_name(name)]));
    }
}
