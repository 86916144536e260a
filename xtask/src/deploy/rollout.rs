//! Carrying out the plan (`diff.rs`): services whose dependencies are all healthy start
//! together, each behind its health gate (`health.rs`), one live line per service.
//!
//! A replacement keeps service as long as podman allows: the new container is created (as
//! `<name>-next`) while the old one still serves, then the old one is stopped and renamed
//! `<name>-previous` (not removed), the new one renamed to the service's name and started,
//! and only once the whole deploy has succeeded are the previous containers removed. When a
//! new container does not get healthy, the previous one is put back and started at once, the
//! other changes of this deploy are undone (containers it created are removed, containers it
//! replaced get their previous one back), and the deploy fails saying so. Nothing is left in
//! state Created.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::diff::{Action, Change};
use super::health::{wait_container_healthy, wait_healthy};
use super::spec::Spec;
use crate::podman::errors::explain_failure;
use crate::podman::Podman;
use crate::process::{last_line, Runner};
use crate::stack::Stack;
use crate::util::live::Live;

pub struct Rollout<'a> {
    pub runner: &'a Runner,
    pub podman: &'a Podman,
    pub stack: &'a Stack,
    /// Seconds each service may take to become healthy.
    pub timeout: Duration,
}

/// What a finished step changed, so that a failed deploy can undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    Nothing,
    Started,
    Created,
    Replaced,
}

#[derive(Clone, Debug)]
enum Row {
    Waiting(Vec<String>),
    Going(&'static str, Instant),
    Healthy(&'static str, Duration),
    Kept,
    Failed(String),
    NotStarted,
}

fn render(service: &str, row: &Row) -> String {
    match row {
        Row::Waiting(deps) => format!("{service}: waiting for {}", deps.join(", ")),
        Row::Going(what, since) => format!("{service}: {what}, {:.1} s", since.elapsed().as_secs_f64()),
        Row::Healthy(what, took) => format!("{service}: healthy after {:.1} s ({what})", took.as_secs_f64()),
        Row::Kept => format!("{service}: unchanged, kept running"),
        Row::Failed(e) => format!("{service}: failed: {e}"),
        Row::NotStarted => format!("{service}: not started (a dependency failed)"),
    }
}

impl Rollout<'_> {
    /// Applies the changes of the services in `specs` (start order); removals are the
    /// caller's, after this succeeded.
    pub fn run(&self, specs: &[Spec], changes: &[Change]) -> Result<()> {
        let change_of = |s: &str| changes.iter().find(|c| c.service == s && c.action != Action::Remove);
        let names: Vec<&str> = specs.iter().map(|s| s.service.as_str()).collect();
        let deps_of = |s: &str| -> Vec<String> {
            self.stack.services[s]
                .depends_on
                .iter()
                .map(|d| d.get_ref().clone())
                .filter(|d| names.contains(&d.as_str()))
                .collect()
        };
        let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
        for s in &names {
            let kept = change_of(s).is_none_or(|c| c.action == Action::Keep);
            rows.insert(s, if kept { Row::Kept } else { Row::Waiting(deps_of(s)) });
        }
        let mut live = Live::new();
        for s in &names {
            if matches!(rows[s], Row::Kept) {
                live.line(&render(s, &rows[s]));
            }
        }
        let mut done: Vec<(&str, Done)> = Vec::new();
        let mut failure: Option<anyhow::Error> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(&str, Result<Done>)>();
            let mut in_flight = 0;
            loop {
                if failure.is_none() {
                    for spec in specs {
                        let s = spec.service.as_str();
                        let ready = matches!(rows[s], Row::Waiting(_))
                            && deps_of(s).iter().all(|d| matches!(rows[d.as_str()], Row::Healthy(..) | Row::Kept));
                        if !ready {
                            continue;
                        }
                        let change = change_of(s).expect("a waiting service has a change");
                        let what = match change.action {
                            Action::Start => "starting",
                            Action::Create => "creating",
                            _ => "replacing",
                        };
                        live.line(&format!("{s}: {what} ({})", change.why));
                        rows.insert(s, Row::Going(what, Instant::now()));
                        in_flight += 1;
                        if self.runner.dry_run {
                            // Printed in order, not interleaved.
                            let _ = tx.send((s, self.apply(spec, change)));
                        } else {
                            let tx = tx.clone();
                            scope.spawn(move || {
                                let _ = tx.send((s, self.apply(spec, change)));
                            });
                        }
                    }
                }
                live.redraw(&names.iter().map(|s| render(s, &rows[s])).collect::<Vec<_>>());
                if in_flight == 0 {
                    break;
                }
                let Ok((s, result)) = rx.recv_timeout(Duration::from_millis(250)) else { continue };
                in_flight -= 1;
                let Row::Going(what, since) = rows[s].clone() else { unreachable!("only going services report") };
                match result {
                    Ok(d) => {
                        done.push((s, d));
                        rows.insert(s, Row::Healthy(what, since.elapsed()));
                    }
                    Err(e) => {
                        rows.insert(s, Row::Failed(format!("{e:#}")));
                        failure.get_or_insert(e);
                    }
                }
                if !self.runner.dry_run {
                    live.line(&render(s, &rows[s]));
                }
            }
        });
        let Some(failure) = failure else {
            // Every new container is healthy: the previous ones can go.
            for (s, d) in &done {
                if *d == Done::Replaced {
                    self.remove(&self.stack.previous_container_name(s));
                }
            }
            return Ok(());
        };
        for s in &names {
            if matches!(rows[s], Row::Waiting(_)) {
                rows.insert(s, Row::NotStarted);
                live.line(&render(s, &rows[s]));
            }
        }
        let mut undone = Vec::new();
        for (s, d) in done.iter().rev() {
            match d {
                Done::Nothing => {}
                Done::Created => {
                    self.remove(&self.stack.container_name(s));
                    undone.push(format!("removed {s}, which this deploy created"));
                }
                Done::Started => {
                    let _ = self.runner.run_captured(&self.podman.cmd().args(["stop", &self.stack.container_name(s)]));
                    undone.push(format!("stopped {s} again"));
                }
                Done::Replaced => match self.put_back(s) {
                    Ok(()) => undone.push(format!("rolled back {s} to the previous container")),
                    Err(e) => undone.push(format!("could not roll back {s}: {e:#}")),
                },
            }
        }
        let undone = if undone.is_empty() { String::new() } else { format!("\n  {}", undone.join("\n  ")) };
        Err(failure.context(format!("deploy failed; volumes are kept{undone}")))
    }

    /// One service's change, gated on its health. A failed replacement puts the previous
    /// container back before it returns.
    fn apply(&self, spec: &Spec, change: &Change) -> Result<Done> {
        let (runner, podman, stack) = (self.runner, self.podman, self.stack);
        let s = spec.service.as_str();
        let container = spec.container.as_str();
        match change.action {
            Action::Keep | Action::Remove => Ok(Done::Nothing),
            Action::Start => {
                runner.run_checked(&podman.cmd().args(["start", container]))?;
                if !runner.dry_run {
                    if let Err(e) = wait_healthy(runner, podman, stack, s, self.timeout) {
                        self.print_logs(s, container);
                        let _ = runner.run_captured(&podman.cmd().args(["stop", container]));
                        return Err(e);
                    }
                }
                Ok(Done::Started)
            }
            Action::Create => {
                self.run_new(spec)?;
                if !runner.dry_run {
                    if let Err(e) = wait_healthy(runner, podman, stack, s, self.timeout) {
                        self.print_logs(s, container);
                        self.remove(container);
                        return Err(e.context(format!("{s}: its new container was removed")));
                    }
                }
                Ok(Done::Created)
            }
            Action::Replace => {
                let previous = stack.previous_container_name(s);
                let next = format!("{container}-next");
                self.remove(&previous);
                self.remove(&next);
                // Created while the old one still serves: the outage is stop + start + health,
                // not image and storage setup. A create that fails costs no outage at all.
                self.podman_run(spec, &spec.create_command(podman, stack, &next), &next)?;
                // The stop is where the outage starts; it ends when the new one answers.
                runner.run_checked(&podman.cmd().args(["stop", "-t", "10", container]))?;
                runner.run_checked(&podman.cmd().args(["rename", container, &previous]))?;
                let healthy = runner
                    .run_checked(&podman.cmd().args(["rename", &next, container]))
                    .and_then(|_| runner.run_checked(&podman.cmd().args(["start", container])))
                    .and_then(|_| {
                        if runner.dry_run {
                            return Ok(Duration::ZERO);
                        }
                        wait_healthy(runner, podman, stack, s, self.timeout)
                            .inspect_err(|_| self.print_logs(s, container))
                    });
                if let Err(e) = healthy {
                    self.remove(&next);
                    return match self.put_back(s) {
                        Ok(()) => Err(e.context(format!("rolled back {s} to the previous container"))),
                        Err(back) => {
                            Err(e.context(format!("{s}: putting the previous container back failed too: {back:#}")))
                        }
                    };
                }
                Ok(Done::Replaced)
            }
        }
    }

    /// `podman run` of the spec under the service's name; a container that did not start is
    /// removed (podman leaves it in state Created when, say, a port cannot be bound).
    fn run_new(&self, spec: &Spec) -> Result<()> {
        self.podman_run(spec, &spec.run_command(self.podman, self.stack, &spec.container), &spec.container)
    }

    /// `podman run` or `podman create` of a spec as `name`; what a failure left is removed.
    fn podman_run(&self, spec: &Spec, cmd: &crate::process::Cmd, name: &str) -> Result<()> {
        let mut out = self.runner.run_captured(cmd)?;
        // podman 4.3 can release a removed container's name a moment after `rm` returns.
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is already in use") {
            std::thread::sleep(Duration::from_secs(1));
            out = self.runner.run_captured(cmd)?;
        }
        if out.status.success() {
            return Ok(());
        }
        self.remove(name);
        let err = last_line(&out.stderr);
        let hint = explain_failure(&err).map(|h| format!("\n  hint: {h}")).unwrap_or_default();
        bail!("{}: podman {} failed: {err}{hint}", spec.service, cmd.args.first().map_or("run", String::as_str))
    }

    /// The new container removed, the previous one renamed back, started and checked.
    fn put_back(&self, s: &str) -> Result<()> {
        let (runner, podman, stack) = (self.runner, self.podman, self.stack);
        let container = stack.container_name(s);
        let previous = stack.previous_container_name(s);
        self.remove(&container);
        runner.run_checked(&podman.cmd().args(["rename", &previous, &container]))?;
        runner.run_checked(&podman.cmd().args(["start", &container]))?;
        if !runner.dry_run {
            let took = wait_container_healthy(runner, podman, stack, s, &container, self.timeout)
                .map_err(|e| anyhow!("the previous container does not get healthy either: {e:#}"))?;
            eprintln!("{s}: the previous container is back and healthy after {:.1} s", took.as_secs_f64());
        }
        Ok(())
    }

    fn remove(&self, container: &str) {
        let _ = self.runner.run_captured(&self.podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", container]));
    }

    fn print_logs(&self, s: &str, container: &str) {
        if let Ok(logs) = self.runner.capture(&self.podman.cmd().args(["logs", "--tail", "20", container])) {
            eprintln!(
                "{s}: last log lines:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
    }
}
