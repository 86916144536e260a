//! `cargo xtask verify`: proof that the running stack works (`deploy/verify.rs`), for the
//! services that have a container. Which containers those are is one [`Subject`]
//! (`deploy/subject.rs`), named here by the module that makes them:
//!
//! - deploy's (`stack/names.rs`): `<project>-<service>`, volumes `<project>-<volume>`;
//! - `--compose`: the compose project (`export/compose.rs`), i.e. the stack under the compose
//!   project's name, whose containers, volumes and secrets are named by the same scheme;
//! - `--kube-play`: what `podman kube play` made of `export kube --target podman`
//!   (`export/kube/pod.rs`): containers `<service>-<service>`, volumes
//!   `<project>-kube-<volume>`, deploy's secrets.
//!
//! podman-compose 1.0.3 and `podman kube play` start the containers without waiting for
//! health, and podman runs no health check without systemd, so for those two each service's
//! check is run here until it passes first (`deploy/health.rs`, as deploy's gate), and every
//! container must carry the starter's project label (never someone else's `backend-backend`).

use std::time::Duration;

use anyhow::{bail, Result};

use crate::deploy::health::wait_container_healthy;
use crate::deploy::subject::{Starter, Subject};
use crate::deploy::verify::{take_passed, verify};
use crate::export::compose;
use crate::export::kube::objects::PODMAN_PROJECT_LABEL;
use crate::export::kube::pod::{podman_claim, podman_container};
use crate::flags;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::github;
use crate::util::workspace::Workspace;

/// How long verify waits for one service's health check of a stack it did not start.
const STARTED_ELSEWHERE_HEALTH_TIMEOUT: Duration = Duration::from_secs(180);

impl flags::Verify {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        if self.compose && self.kube_play {
            bail!("--compose and --kube-play name two different stacks; hint: give one of them (docs/compose.md, README.md)");
        }
        let mut stack = Stack::load_profile(ws, self.profile.as_deref())?;
        let starter = match (self.compose, self.kube_play) {
            (true, _) => Starter::Compose,
            (_, true) => Starter::KubePlay,
            _ => Starter::Deploy,
        };
        if starter == Starter::Compose {
            stack.project.name = compose::project_name(&stack);
        }
        let mut subject = subject(ws, &stack, starter);
        let podman = Podman::prepare(ws)?;
        let runner = Runner::new(false);
        let example: Vec<String> = subject.containers.iter().take(2).map(|(_, c)| c.clone()).collect();
        // Services left out in this mode (Grafana when registry-free) have no container.
        subject.retain(|c| runner.succeeds(&podman.cmd().args(["container", "exists", c])).unwrap_or(false));
        if let Some((label, value)) = &subject.owner {
            if subject.containers.is_empty() {
                bail!(
                    "no container of the stack under the names {} gives ({}, ...): nothing to verify; hint: {}",
                    starter_name(starter),
                    example.join(", "),
                    start_hint(&stack, starter)
                );
            }
            let names: Vec<&str> = subject.containers.iter().map(|(_, c)| c.as_str()).collect();
            let format = format!("{{{{.Name}}}} {{{{index .Config.Labels \"{label}\"}}}}");
            let labels = runner.query(&podman.cmd().args(["inspect", "--format", &format]).args(names))?;
            let foreign = not_of_project(&labels, value);
            if !foreign.is_empty() {
                bail!(
                    "{} {} the name {} gives but not its label {label}={value}: not verifying someone else's \
                     containers; hint: remove or rename them (`podman rm -f NAME`), then {}",
                    foreign.join(", "),
                    if foreign.len() == 1 { "has" } else { "have" },
                    starter_name(starter),
                    start_hint(&stack, starter)
                );
            }
            for name in stack.start_order().map_err(anyhow::Error::msg)? {
                if subject.has(name) {
                    let container = subject.container(name);
                    let took = wait_container_healthy(
                        &runner,
                        &podman,
                        &stack,
                        name,
                        &container,
                        STARTED_ELSEWHERE_HEALTH_TIMEOUT,
                    )?;
                    println!(
                        "ok    {name} is healthy ({:.1} s; {} does not wait)",
                        took.as_secs_f64(),
                        starter_name(starter)
                    );
                }
            }
        }
        let result = verify(ws, &runner, &podman, &stack, &subject);
        github::append_summary(&summary_markdown(&stack.project.name, starter_name(starter), &take_passed(), &result));
        result
    }
}

/// verify's outcome for GitHub's job summary: one row per check that passed (in order), then
/// the failure, one row per line of the error (verify stops at the first failing end-to-end
/// check, so what did not run is not listed).
fn summary_markdown(project: &str, starter: &str, passed: &[String], result: &Result<()>) -> String {
    let mut rows: Vec<Vec<String>> = passed.iter().map(|p| vec!["ok".to_string(), p.clone()]).collect();
    let head = match result {
        Ok(()) => "every check passed",
        Err(e) => {
            rows.extend(format!("{e:#}").lines().map(|l| vec!["FAILED".to_string(), l.trim().to_string()]));
            "FAILED"
        }
    };
    format!(
        "### verify: {head}\n\nstack `{project}`, containers named by {starter}\n\n{}",
        github::markdown_table(&["result", "check"], &rows)
    )
}

/// The containers and volumes `starter` names for `stack` (already renamed for compose).
fn subject(ws: &Workspace, stack: &Stack, starter: Starter) -> Subject {
    let state = ws.stack_state(&stack.project.name);
    match starter {
        Starter::Deploy | Starter::Compose => {
            let mut s = Subject::new(
                starter,
                stack,
                |svc| stack.container_name(svc),
                |v| stack.volume_name(v),
                state.join("verify-kept"),
            );
            if starter == Starter::Compose {
                s.owner = Some((compose::COMPOSE_PROJECT_LABEL.to_string(), stack.project.name.clone()));
            }
            s
        }
        Starter::KubePlay => {
            let mut s = Subject::new(
                starter,
                stack,
                podman_container,
                |v| podman_claim(stack, v),
                state.join("kube-verify-kept"),
            );
            s.owner = Some((PODMAN_PROJECT_LABEL.to_string(), stack.project.name.clone()));
            s
        }
    }
}

fn starter_name(starter: Starter) -> &'static str {
    match starter {
        Starter::Deploy => "cargo xtask deploy",
        Starter::Compose => "podman-compose",
        Starter::KubePlay => "podman kube play",
    }
}

fn start_hint(stack: &Stack, starter: Starter) -> String {
    match starter {
        Starter::Deploy => "`cargo xtask deploy`".to_string(),
        Starter::Compose => {
            format!("`podman-compose -p {} up -d` in the checkout root (docs/compose.md)", stack.project.name)
        }
        Starter::KubePlay => format!(
            "`cargo xtask export kube --target podman > FILE`, `podman network create {0}-kube`, `podman kube play \
             --network {0}-kube FILE` (README.md)",
            stack.project.name
        ),
    }
}

/// The containers of `podman inspect --format '{{.Name}} {{index .Config.Labels "LABEL"}}'`
/// lines whose project label is not `project`.
fn not_of_project(lines: &str, project: &str) -> Vec<String> {
    let rows = lines.lines().filter_map(|l| {
        let (name, label) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
        (!name.is_empty() && label.trim() != project).then(|| name.to_string())
    });
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::kube::kube;
    use crate::export::kube::options::Options;
    use crate::stack::Mode;

    #[test]
    fn the_job_summary_says_which_checks_failed() {
        let passed = vec!["web serves the dashboard (http://127.0.0.1:5173/)".to_string()];
        assert_eq!(
            summary_markdown("v7", "cargo xtask deploy", &passed, &Ok(())),
            "### verify: every check passed\n\nstack `v7`, containers named by cargo xtask deploy\n\n\
             | result | check |\n|---|---|\n| ok | web serves the dashboard (http://127.0.0.1:5173/) |\n"
        );
        let failed = Err(anyhow::anyhow!("web is healthy: http://127.0.0.1:3000/healthz answered 502 Bad Gateway: x"));
        assert_eq!(
            summary_markdown("v7", "podman-compose", &passed, &failed),
            "### verify: FAILED\n\nstack `v7`, containers named by podman-compose\n\n| result | check |\n|---|---|\n\
             | ok | web serves the dashboard (http://127.0.0.1:5173/) |\n\
             | FAILED | web is healthy: http://127.0.0.1:3000/healthz answered 502 Bad Gateway: x |\n"
        );
    }

    #[test]
    fn containers_without_the_compose_label_are_named() {
        let lines = "v7_compose-nats v7_compose\nv7_compose-web <no value>\nv7_compose-backend\n\n";
        assert_eq!(not_of_project(lines, "v7_compose"), ["v7_compose-web", "v7_compose-backend"], "line: two foreign");
        assert!(not_of_project("v7_compose-nats v7_compose\n", "v7_compose").is_empty(), "line: all ours");
    }

    /// `verify --kube-play` looks for the containers, volumes and label `export kube --target
    /// podman` writes: each Pod's `<name>-<container name>`, each claim, `v7.kube.project`.
    #[test]
    fn kube_play_names_are_the_ones_the_podman_target_writes() {
        let ws = Workspace::for_tests("verify-kube-names");
        let stack = Stack::load(&ws).unwrap();
        let s = subject(&ws, &stack, Starter::KubePlay);
        let mut opts = Options::podman(Mode::RegistryFree);
        opts.secret_files = Some("/s".into());
        let text = kube(&stack, &ws.root, &opts).unwrap();
        let mut pods = 0;
        for doc in text.split("---\n").filter(|d| d.contains("\nkind: Pod\n")) {
            let after = |marker: &str| {
                let rest =
                    &doc[doc.find(marker).unwrap_or_else(|| panic!("no {marker:?} in:\n{doc}")) + marker.len()..];
                rest.lines().next().unwrap().trim().to_string()
            };
            let (pod, container) = (after("metadata:\n  name: "), after("  containers:\n    - name: "));
            assert_eq!(s.container(&pod), format!("{pod}-{container}"), "line: kube play's name for {pod}");
            pods += 1;
        }
        assert_eq!(pods, 6, "six Pods in registry-free mode:\n{text}");
        for v in stack.volumes.keys().filter(|v| *v != "grafana-data") {
            assert!(text.contains(&format!("claimName: {}\n", s.volume(v))), "line: claim {v}");
        }
        assert!(text.contains(&format!("{PODMAN_PROJECT_LABEL}: v7\n")), "line: the owner label");
        assert_eq!(s.owner, Some((PODMAN_PROJECT_LABEL.to_string(), "v7".to_string())));
        assert_eq!(s.kept, ws.stack_state("v7").join("kube-verify-kept"), "line: data of its own, count of its own");
        let deploy = subject(&ws, &stack, Starter::Deploy);
        assert!(deploy.owner.is_none());
        for (svc, c) in &s.containers {
            assert_ne!(*c, deploy.container(svc), "line: kube play and deploy never share {svc}'s name");
        }
    }
}
