//! The running stack: `deploy` (here), `down`, `status`, `verify`.
//!
//! deploy converges: it computes what every container should be (`spec.rs`), reads what runs
//! (`actual.rs`), and compares them (`diff.rs`): unchanged containers are kept (same ID, not
//! restarted), changed ones replaced, missing ones created, the project's containers the
//! manifest no longer has removed. Before it creates or stops anything it checks that the plan
//! can be carried out (`preflight.rs`: images, ports), and reports every problem at once. The
//! rollout (`rollout.rs`) starts services whose dependencies are healthy together, each behind
//! its health gate (`health.rs`), and puts the previous container back when a new one does not
//! get healthy. Afterwards the health supervisor (`supervisor.rs`) keeps checking. Secrets are
//! generated once and handed over as podman secrets (`secrets.rs`). Services the mode cannot
//! run (`stack/placement.rs`) are named and left out.

pub mod actual;
pub mod diff;
pub mod down;
pub mod health;
pub mod preflight;
pub mod rollout;
pub mod secrets;
pub mod spec;
pub mod status;
pub mod subject;
pub mod supervisor;
pub mod verify;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::oci::ImageRef;
use crate::podman::images::presence;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::placement::plan;
use crate::stack::{Mode, Stack};
use crate::util::workspace::Workspace;
use diff::Action;

pub struct Options {
    /// Seconds each service may take to become healthy.
    pub timeout: Duration,
    /// Replace every container, changed or not.
    pub force_recreate: bool,
}

/// Converges the stack of `mode` onto the images that are here.
pub fn deploy(
    ws: &Workspace,
    runner: &Runner,
    podman: &Podman,
    stack: &Stack,
    mode: Mode,
    opts: &Options,
) -> Result<()> {
    let started = Instant::now();
    let plan = plan(stack, mode);
    // The image IDs decide the fingerprints: one `podman image inspect` for all.
    let images = plan.images();
    let refs: Vec<ImageRef> = images.iter().filter_map(|i| ImageRef::parse(i).ok()).collect();
    let found = presence(runner, podman, &refs)?;
    let mut missing = Vec::new();
    let mut ids = std::collections::BTreeMap::new();
    for (image, local) in images.iter().zip(&found) {
        match local {
            Some(l) => {
                ids.insert(image.clone(), l.id.clone());
            }
            None => {
                let services: Vec<&str> = plan.run.iter().filter(|(_, i)| i == image).map(|(n, _)| *n).collect();
                missing.push(format!(
                    "{}: image {image} is not here (make it: `{}`)",
                    services.join(", "),
                    mode.makes_images()
                ));
            }
        }
    }
    let secrets = secrets::load(ws, stack, !runner.dry_run)?;
    let specs: Vec<spec::Spec> = plan
        .run
        .iter()
        .map(|(name, image)| {
            let id = ids.get(image).map(String::as_str).unwrap_or("missing");
            spec::spec(stack, &ws.root, name, &spec::Inputs { image, image_id: id, secret_digests: &secrets.digests })
        })
        .collect();
    let mut actual = actual::containers(runner, podman, stack)?;
    if recover_interrupted(runner, podman, &actual)? {
        actual = actual::containers(runner, podman, stack)?;
    }
    let changes = diff::diff(&specs, &actual, &plan.skipped, opts.force_recreate);
    eprintln!("deploy plan for {} ({mode} mode):\n{}", stack.project.name, diff::describe(&changes));
    let others = if changes.iter().any(|c| c.action == diff::Action::Create) {
        actual::others(runner, podman, &actual)?
    } else {
        Vec::new()
    };
    preflight::check(&preflight::problems(stack, &changes, &actual, &others, &missing))?;
    for (name, why) in &plan.skipped {
        eprintln!("{name}: not started: {why}");
    }
    if diff::is_noop(&changes) {
        supervisor::ensure(ws, runner, stack)?;
        eprintln!(
            "stack {} is up to date: nothing to change ({:.2} s)",
            stack.project.name,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    create_missing(runner, podman, stack, &plan.run.iter().map(|(n, _)| *n).collect::<Vec<_>>())?;
    let starting: Vec<&str> = changes.iter().filter(|c| c.action.starts()).map(|c| c.service.as_str()).collect();
    let mut secret_names: Vec<String> = Vec::new();
    for s in &starting {
        for entry in &stack.services[*s].secrets {
            let name = spec::secret_target(entry.get_ref()).0.to_string();
            if !secret_names.contains(&name) {
                secret_names.push(name);
            }
        }
    }
    secrets.ensure_in_podman(ws, runner, podman, stack, &secret_names)?;
    rollout::Rollout { runner, podman, stack, timeout: opts.timeout }.run(&specs, &changes)?;
    for c in changes.iter().filter(|c| c.action == Action::Remove) {
        runner.run_checked(&podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", &c.container]))?;
        eprintln!("{}: removed ({})", c.service, c.why);
    }
    supervisor::ensure(ws, runner, stack)?;
    if !runner.dry_run {
        eprintln!("stack {} is up ({:.1} s)", stack.project.name, started.elapsed().as_secs_f64());
        if let Some(p) = stack.services.get("web").and_then(|w| w.published().into_iter().next()) {
            eprintln!("dashboard: http://{}:{}/   check it end to end: cargo xtask verify", p.host_ip, p.host);
        }
    }
    Ok(())
}

/// `podman logs` of a service's container: what `cargo xtask logs` runs and `verify` checks.
pub fn logs_command(podman: &Podman, container: &str, tail: Option<usize>, follow: bool) -> crate::process::Cmd {
    let mut cmd = podman.cmd().arg("logs");
    if follow {
        cmd = cmd.arg("--follow");
    }
    if let Some(n) = tail {
        cmd = cmd.arg("--tail").arg(n.to_string());
    }
    cmd.arg(container)
}

/// A deploy interrupted during a replacement: a prepared `-next` is removed; between stopping a
/// container and removing its `-previous`: the
/// service's own container wins when it runs; otherwise the previous one is put back under
/// the service's name, so the diff sees what last ran. Whether it changed anything.
fn recover_interrupted(runner: &Runner, podman: &Podman, all: &[actual::Container]) -> Result<bool> {
    let mut changed = false;
    for next in all.iter().filter(|c| c.name.ends_with("-next")) {
        runner.run_checked(&podman.cmd().args(["rm", "-f", "--ignore", &next.name]))?;
        eprintln!("{}: removed {}, prepared by an interrupted deploy", next.service, next.name);
        changed = true;
    }
    for prev in all.iter().filter(|c| c.name.ends_with("-previous")) {
        changed = true;
        let own = prev.name.trim_end_matches("-previous");
        match all.iter().find(|c| c.name == own) {
            Some(c) if c.running() => {
                runner.run_checked(&podman.cmd().args(["rm", "-f", "--ignore", &prev.name]))?;
                eprintln!("{}: removed {}, left by an interrupted deploy", prev.service, prev.name);
            }
            found => {
                if found.is_some() {
                    runner.run_checked(&podman.cmd().args(["rm", "-f", "--ignore", own]))?;
                }
                runner.run_checked(&podman.cmd().args(["rename", &prev.name, own]))?;
                eprintln!("{}: put {} back, left by an interrupted deploy", prev.service, prev.name);
            }
        }
    }
    Ok(changed)
}

/// The networks, and the volumes of the services that run, that podman does not have yet:
/// one listing each, then a create for each missing one.
fn create_missing(runner: &Runner, podman: &Podman, stack: &Stack, services: &[&str]) -> Result<()> {
    let label = stack.project_label();
    let networks = runner.query(&podman.cmd().args(["network", "ls", "--format", "{{.Name}}"]))?;
    for (net, cfg) in &stack.networks {
        let name = stack.network_name(net);
        if networks.lines().any(|l| l.trim() == name) {
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
        services.iter().any(|n| stack.services[*n].volumes.iter().any(|v| v.get_ref().split(':').next() == Some(vol)))
    };
    let volumes = runner.query(&podman.cmd().args(["volume", "ls", "--format", "{{.Name}}"]))?;
    for vol in stack.volumes.keys().filter(|v| used(v)) {
        let name = stack.volume_name(vol);
        if !volumes.lines().any(|l| l.trim() == name) {
            runner.run_checked(&podman.cmd().args(["volume", "create", "--label", &label, &name]))?;
        }
    }
    Ok(())
}
