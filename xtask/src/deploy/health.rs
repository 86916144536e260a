//! Where services are health gated: a service counts as up once its health check passes, and
//! the services that depend on it start only then.
//!
//! The gate runs the manifest's check command with `podman exec`, not `podman healthcheck run`:
//! every container has `--health-on-failure restart`, and podman would restart a container
//! that is still starting after `retries` failed gate polls. Once the command passes, one
//! `podman healthcheck run` records `healthy` in podman's state, which `podman ps`, `status`
//! and the supervisor (`supervisor.rs`) read.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::model::parse_duration;
use crate::stack::Stack;

/// How often the gate asks while a service starts: short, because every poll of a replaced
/// service is outage.
const POLL: Duration = Duration::from_millis(200);

/// Runs the service's check command in its container until it passes, the container stops,
/// or `timeout` runs out. Returns the time it took.
pub fn wait_healthy(
    runner: &Runner,
    podman: &Podman,
    stack: &Stack,
    name: &str,
    timeout: Duration,
) -> Result<Duration> {
    wait_container_healthy(runner, podman, stack, name, &stack.container_name(name), timeout)
}

/// [`wait_healthy`] for a container of the service under another name.
pub fn wait_container_healthy(
    runner: &Runner,
    podman: &Podman,
    stack: &Stack,
    name: &str,
    container: &str,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let Some(hc) = &stack.services[name].healthcheck else {
        let state = state(runner, podman, container)?;
        if state != "running" {
            bail!("{name}: the container is {state}, not running");
        }
        return Ok(start.elapsed());
    };
    let check_timeout = Duration::from_secs_f64(parse_duration(hc.timeout.get_ref()).unwrap_or(3.0));
    let mut exec = podman.cmd().args(["exec", container]);
    exec = exec.args(hc.test.iter().cloned());
    let mut last = String::new();
    loop {
        let state = state(runner, podman, container)?;
        if state != "running" {
            bail!("{name}: the container stopped ({state}) before it became healthy (last check: {last})");
        }
        let running = runner.start(&exec)?;
        let polled = Instant::now();
        let outcome = loop {
            if let Some(out) = running.try_wait()? {
                break Some(out.clone());
            }
            if polled.elapsed() > check_timeout {
                running.terminate(Duration::from_millis(500));
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match outcome {
            Some(out) if out.status.success() => {
                // Recorded in podman's state for `podman ps` and `status`.
                let _ = runner.capture(&podman.cmd().args(["healthcheck", "run", container]));
                return Ok(start.elapsed());
            }
            Some(out) => {
                let code = out.status.code().map_or("a signal".to_string(), |c| c.to_string());
                last = format!("exit {code}: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            None => last = format!("no answer within {} s", check_timeout.as_secs_f64()),
        }
        if start.elapsed() > timeout {
            bail!("{name}: not healthy after {} s (last check: {last})", timeout.as_secs());
        }
        std::thread::sleep(POLL);
    }
}

fn state(runner: &Runner, podman: &Podman, container: &str) -> Result<String> {
    let out = runner.capture(&podman.cmd().args(["inspect", "--format", "{{.State.Status}}", container]))?;
    Ok(if out.status.success() { String::from_utf8_lossy(&out.stdout).trim().to_string() } else { "gone".into() })
}
