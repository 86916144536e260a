//! The health supervisor: podman schedules health checks with systemd timers, and there is no
//! systemd on the hosts we are for (CI runners, containers, WSL), so `podman ps` would show the
//! health of deploy time forever. deploy starts `cargo xtask supervise` (this module's `run`)
//! in the background, one per project; it runs each service's `podman healthcheck run` on the
//! manifest's interval. podman itself restarts a container whose check fails `retries` times in
//! a row (`--health-on-failure restart`, `spec.rs`); the supervisor logs the failures and the
//! restarts. `status` shows it, `down` stops it.
//!
//! Files in `.v7/stacks/<project>/`: `supervisor.pid` (`<pid> <schedule digest>`: deploy
//! starts a new supervisor when the schedule changed, and an old one exits when the file no
//! longer names it) and `supervisor.log`. It exits by itself once the project has had no
//! container for a minute.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::actual;
use crate::podman::Podman;
use crate::process::{Cmd, Runner};
use crate::stack::model::parse_duration;
use crate::stack::placement::plan;
use crate::stack::{mode, Stack};
use crate::util::hash::Sha256;
use crate::util::time::{now_unix, utc_timestamp};
use crate::util::workspace::Workspace;

fn pid_file(ws: &Workspace, stack: &Stack) -> PathBuf {
    ws.stack_state(&stack.project.name).join("supervisor.pid")
}

pub fn log_file(ws: &Workspace, stack: &Stack) -> PathBuf {
    ws.stack_state(&stack.project.name).join("supervisor.log")
}

/// What the supervisor checks and how often: every service the mode runs that has a check.
fn schedule(ws: &Workspace, stack: &Stack) -> Vec<(String, Duration)> {
    let runs = plan(stack, mode::without_waiting(ws, stack));
    stack
        .services
        .iter()
        .filter(|(name, _)| runs.run.iter().any(|(r, _)| r == name))
        .filter_map(|(name, svc)| {
            let hc = svc.healthcheck.as_ref()?;
            Some((name.clone(), Duration::from_secs_f64(parse_duration(hc.interval.get_ref()).unwrap_or(10.0))))
        })
        .collect()
}

fn schedule_digest(ws: &Workspace, stack: &Stack) -> String {
    let mut h = Sha256::new();
    h.field(&ws.stack_file);
    for (name, every) in schedule(ws, stack) {
        h.field(name).field(every.as_millis().to_string());
    }
    h.hex()[..12].to_string()
}

/// The running supervisor of the project: its pid and schedule digest.
pub fn running(ws: &Workspace, stack: &Stack) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(pid_file(ws, stack)).ok()?;
    let mut parts = text.split_whitespace();
    let pid: u32 = parts.next()?.parse().ok()?;
    let digest = parts.next().unwrap_or("").to_string();
    is_supervisor(pid).then_some((pid, digest))
}

/// Whether `pid` is a live `xtask supervise` (a pid file outlives its process; pids are reused).
fn is_supervisor(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.first().is_some_and(|a| a.ends_with(b"xtask")) && args.get(1) == Some(&&b"supervise"[..])
}

/// Starts the supervisor unless one with the same schedule runs already.
pub fn ensure(ws: &Workspace, runner: &Runner, stack: &Stack) -> Result<()> {
    let digest = schedule_digest(ws, stack);
    if let Some((pid, theirs)) = running(ws, stack) {
        if theirs == digest {
            return Ok(());
        }
        stop_pid(runner, pid);
    }
    let exe = std::env::current_exe().context("cannot find the xtask binary to start the health supervisor")?;
    // Rebuilt while this one ran (cargo replaced the file): the new binary is at the old path.
    let exe = match exe.to_str().and_then(|e| e.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    };
    let cmd = Cmd::new(exe.display().to_string())
        .arg("supervise")
        .env("V7_STACK_FILE", ws.stack_file.clone())
        .env("V7_STATE_DIR", ws.state.display().to_string());
    let dir = ws.stack_state(&stack.project.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = log_file(ws, stack);
    let pid = runner.spawn_detached(&cmd, &log)?;
    if !runner.dry_run {
        std::fs::write(pid_file(ws, stack), format!("{pid} {digest}\n"))?;
        eprintln!("health supervisor: pid {pid}, checks every service on its interval (log: {})", log.display());
    }
    Ok(())
}

/// Stops the project's supervisor, if one runs.
pub fn stop(ws: &Workspace, runner: &Runner, stack: &Stack) {
    if let Some((pid, _)) = running(ws, stack) {
        stop_pid(runner, pid);
        if !runner.dry_run {
            eprintln!("health supervisor (pid {pid}) stopped");
        }
    }
    if !runner.dry_run {
        let _ = std::fs::remove_file(pid_file(ws, stack));
    }
}

fn stop_pid(runner: &Runner, pid: u32) {
    let _ = runner.run_captured(&Cmd::new("kill").args(["-TERM", &pid.to_string()]));
    let start = Instant::now();
    while !runner.dry_run && is_supervisor(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log(line: &str) {
    eprintln!("{} {line}", utc_timestamp(now_unix()));
}

/// Closes every file descriptor above stderr that the supervisor inherited: std marks its own
/// close-on-exec, but a parent shell or CI runner may pass others (a pipe its caller waits on
/// to end), and a process that outlives the deploy must not keep them open.
fn close_inherited_descriptors() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect(),
        Err(_) => return,
    };
    for fd in fds {
        // The directory's own descriptor was among them and is closed already: closing a
        // number that is not open fails harmlessly; nothing else is open yet.
        if std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok() {
            // SAFETY: nothing in this process owns these descriptors; they came from the parent.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// The supervisor's loop (`cargo xtask supervise`).
pub fn run(ws: &Workspace, stack: &Stack) -> Result<()> {
    close_inherited_descriptors();
    let runner = Runner::new(false);
    let podman = Podman::prepare(ws)?;
    let me = std::process::id();
    let plan = schedule(ws, stack);
    let listed: Vec<String> = plan.iter().map(|(s, every)| format!("{s} every {} s", every.as_secs_f64())).collect();
    log(&format!("supervisor pid {me} for project {}: {}", stack.project.name, listed.join(", ")));
    let mut due: BTreeMap<String, Instant> =
        plan.iter().map(|(s, every)| (s.clone(), Instant::now() + *every)).collect();
    let mut started: BTreeMap<String, u64> = BTreeMap::new();
    let mut failing: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_seen = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mine = std::fs::read_to_string(pid_file(ws, stack)).ok();
        if mine.as_deref().and_then(|t| t.split_whitespace().next()) != Some(me.to_string().as_str()) {
            log("the pid file names another supervisor (or none): exiting");
            return Ok(());
        }
        let now = Instant::now();
        if !due.values().any(|t| *t <= now) {
            continue;
        }
        let containers = match actual::containers(&runner, &podman, stack) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("cannot list the containers: {e:#}"));
                continue;
            }
        };
        if containers.is_empty() {
            if last_seen.elapsed() > Duration::from_secs(60) {
                log("the project has had no container for a minute: exiting");
                return Ok(());
            }
        } else {
            last_seen = Instant::now();
        }
        // The due checks run together: a check that hangs until its timeout (a wedged
        // service) does not delay the others.
        let mut checks: Vec<(&String, String)> = Vec::new();
        for (service, every) in &plan {
            if due[service] > now {
                continue;
            }
            due.insert(service.clone(), now + *every);
            let name = stack.container_name(service);
            let Some(c) = containers.iter().find(|c| c.name == name) else { continue };
            if let Some(before) = started.insert(service.clone(), c.started_at) {
                if before != c.started_at && c.started_at != 0 {
                    log(&format!("{service}: restarted (container started again at {})", utc_timestamp(c.started_at)));
                }
            }
            if c.running() {
                checks.push((service, name));
            }
        }
        let results: Vec<(&String, Option<std::process::Output>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = checks
                .iter()
                .map(|(service, name)| {
                    let (runner, podman) = (&runner, &podman);
                    (
                        *service,
                        scope.spawn(move || runner.capture(&podman.cmd().args(["healthcheck", "run", name])).ok()),
                    )
                })
                .collect();
            handles.into_iter().map(|(s, h)| (s, h.join().ok().flatten())).collect()
        });
        for (service, out) in results {
            let Some(out) = out else { continue };
            if out.status.success() {
                if failing.remove(service).is_some() {
                    log(&format!("{service}: healthy again"));
                }
                continue;
            }
            let n = failing.entry(service.clone()).or_insert(0);
            *n += 1;
            let retries = stack.services[service].healthcheck.as_ref().map_or(0, |h| h.retries);
            let said = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            log(&format!(
                "{service}: health check failed ({n} in a row; podman restarts it at {retries}): {}",
                said.trim().replace('\n', " | ")
            ));
            if *n >= retries {
                failing.insert(service.clone(), 0);
            }
        }
    }
}
