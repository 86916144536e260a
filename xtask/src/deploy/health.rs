//! Where services are health gated: a service counts as up once its health check passes
//! (`podman healthcheck run`, which also updates what `podman ps` shows), and the services that
//! depend on it start only then.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;

/// Runs the service's health check once: did it pass?
pub fn check(runner: &Runner, podman: &Podman, container: &str) -> Result<bool> {
    runner.succeeds(&podman.cmd().args(["healthcheck", "run", container]))
}

/// Runs the service's health check until it passes, the container stops, or time runs out.
pub fn wait_healthy(runner: &Runner, podman: &Podman, stack: &Stack, name: &str, timeout: Duration) -> Result<()> {
    let container = stack.container_name(name);
    let start = Instant::now();
    let has_check = stack.services[name].healthcheck.is_some();
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
        let last =
            format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim());
        if start.elapsed() > timeout {
            bail!("{name}: not healthy after {} s (last check: {last})", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
