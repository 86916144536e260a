//! What deploy checks before it creates or stops anything, reporting every problem at once:
//! the images are here, every host port a starting service publishes is free (or held by that
//! service's own container, which the rollout stops first), and podman's storage has room for
//! what will be built. Duplicate host ports in the manifest are refused earlier, when the
//! stack file is read (`stack/validate.rs`), so no command ever plans them. That podman works
//! is proven by the listing `actual.rs` makes before this runs.

use anyhow::{bail, Result};

use super::actual::Container;
use super::diff::{Action, Change};
use crate::net::listeners::{can_bind, holder};
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::text::human_size;

/// The problems of a planned deploy; empty when it can go ahead. `others` are the host's
/// containers deploy did not make for this project ([`super::actual::others`]).
pub fn problems(
    stack: &Stack,
    changes: &[Change],
    actual: &[Container],
    others: &[Container],
    missing_images: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = missing_images.to_vec();
    for change in changes.iter().filter(|c| c.action == Action::Create) {
        if let Some(other) = others.iter().find(|o| o.name == change.container) {
            let owner = if other.made_by.is_empty() { "a container deploy did not make" } else { &other.made_by };
            out.push(format!(
                "{}: the container name {} is taken by {owner}: remove that container (`podman rm -f {}`), or \
                 deploy under another [project] name",
                change.service, change.container, change.container
            ));
        }
    }
    for change in changes.iter().filter(|c| c.action.starts()) {
        for port in stack.services[&change.service].published() {
            // Its own container (kept, or about to be stopped by the replacement) may hold it.
            let own = actual.iter().any(|c| {
                c.name == change.container && c.ports.iter().any(|(ip, p)| *p == port.host && *ip == port.host_ip)
            });
            if own || can_bind(&port.host_ip, port.host) {
                continue;
            }
            let by = match actual.iter().find(|c| c.running() && c.ports.iter().any(|(_, p)| *p == port.host)) {
                Some(c) => format!("this project's container {} holds it", c.name),
                None => match holder(port.host) {
                    Some(h) => format!("{h} listens on it"),
                    None => "a process this user cannot see holds it".to_string(),
                },
            };
            out.push(format!("{}: host port {}:{} is taken: {by}", change.service, port.host_ip, port.host));
        }
    }
    out
}

/// Fails with every problem, one per line, and a hint; nothing has been changed yet.
pub fn check(problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "deploy cannot go ahead; nothing was created, stopped or removed:\n  {}\n  hint: stop what holds the port \
         or change `ports` in the stack file; make missing images with the command named",
        problems.join("\n  ")
    )
}

/// Room in podman's image store for `builds` image builds: at least 1 GiB, plus 1 GiB per image
/// that is not here yet (a registry-free service image and its build layers take 0.2-0.9 GB
/// here). Asked only when something may be built: `podman info` costs a tenth of a second.
pub fn disk(runner: &Runner, podman: &Podman, missing: usize) -> Result<()> {
    const GIB: u64 = 1 << 30;
    let need = GIB * (1 + missing as u64);
    let root = runner.query(&podman.cmd().args(["info", "--format", "{{.Store.GraphRoot}}"]))?;
    let root = root.trim();
    let df = runner.query(&crate::process::Cmd::new("df").args(["-P", "-k", root]))?;
    let free = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| k * 1024);
    match free {
        Some(free) if free < need => bail!(
            "not enough disk for the images to build: {} free in {root}, {} needed ({missing} image(s) to make)\n  \
             hint: free space, or `podman image prune` what you no longer need",
            human_size(free),
            human_size(need)
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_the_service_and_the_process_and_its_own_container_may_hold_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Only this port: a test must not depend on what else runs on the machine.
        let text = format!(
            "[project]\nname = \"v7\"\n[services.backend]\nimage = \"b:1\"\nports = [\"127.0.0.1:{port}:3000\"]\n"
        );
        let stack = Stack::parse("docker/stack.toml", &text).unwrap();
        let change =
            |action| Change { service: "backend".into(), container: "v7-backend".into(), action, why: String::new() };
        let found = problems(&stack, &[change(Action::Create)], &[], &[], &["web: image x is missing".into()]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], "web: image x is missing");
        assert!(
            found[1]
                .starts_with(&format!("backend: host port 127.0.0.1:{port} is taken: pid {} (", std::process::id())),
            "{found:?}"
        );
        let own = Container {
            name: "v7-backend".into(),
            state: "running".into(),
            ports: vec![("127.0.0.1".into(), port)],
            ..Container::default()
        };
        assert!(
            problems(&stack, &[change(Action::Replace)], std::slice::from_ref(&own), &[], &[]).is_empty(),
            "its own container"
        );
        assert!(problems(&stack, &[change(Action::Keep)], &[], &[], &[]).is_empty(), "a kept service is not checked");
        let other = Container { name: "v7-web".into(), ..own };
        let found = problems(&stack, &[change(Action::Create)], &[other], &[], &[]);
        assert!(found[0].ends_with("this project's container v7-web holds it"), "{found:?}");
        let e = check(&found).unwrap_err().to_string();
        assert!(e.contains("nothing was created, stopped or removed") && e.contains("hint:"), "{e}");
        drop(listener);
    }

    #[test]
    fn a_name_taken_by_a_container_deploy_did_not_make_names_its_owner() {
        let stack =
            Stack::parse("docker/stack.toml", "[project]\nname = \"backend\"\n[services.backend]\nimage = \"b:1\"\n")
                .unwrap();
        let change = |action| Change {
            service: "backend".into(),
            container: "backend-backend".into(),
            action,
            why: String::new(),
        };
        let kube = Container {
            name: "backend-backend".into(),
            made_by: "podman kube play (project backend)".into(),
            ..Container::default()
        };
        let found = problems(&stack, &[change(Action::Create)], &[], std::slice::from_ref(&kube), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "backend: the container name backend-backend is taken by podman kube play (project backend): remove"
            ),
            "{found:?}"
        );
        let stray = Container { made_by: String::new(), ..kube.clone() };
        let found = problems(&stack, &[change(Action::Create)], &[], &[stray], &[]);
        assert!(found[0].contains("taken by a container deploy did not make"), "{found:?}");
        let elsewhere = Container { name: "backend-web".into(), ..kube };
        assert!(problems(&stack, &[change(Action::Create)], &[], &[elsewhere], &[]).is_empty(), "other names are free");
        assert!(
            problems(&stack, &[change(Action::Keep)], &[], &[], &[]).is_empty(),
            "a kept container has its own name"
        );
    }
}
