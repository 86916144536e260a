//! `down`: the health supervisor stopped, the stack's containers removed in reverse dependency
//! order (then any other container carrying the project's label: a `-previous` of an
//! interrupted deploy, a service the manifest dropped), then its networks and podman secrets
//! (made again from `.v7/` on the next deploy), then (only when asked) its volumes. Only
//! objects of this project are touched.

use super::{actual, supervisor};
use crate::podman::Podman;
use crate::process::{last_line, Cmd, Runner};
use crate::stack::Stack;
use crate::util::workspace::Workspace;

/// Containers in reverse dependency order, then the other labelled containers (`others`),
/// then networks and secrets, then (optionally) volumes.
pub fn plan(podman: &Podman, stack: &Stack, others: &[String], volumes: bool) -> Vec<Cmd> {
    let mut order = stack.start_order().unwrap_or_default();
    order.reverse();
    let mut names: Vec<String> = order.iter().map(|n| stack.container_name(n)).collect();
    for o in others {
        if !names.contains(o) {
            names.push(o.clone());
        }
    }
    let mut out: Vec<Cmd> =
        names.iter().map(|n| podman.cmd().args(["rm", "-f", "-t", "5", "--ignore", n.as_str()])).collect();
    for net in stack.networks.keys() {
        out.push(podman.cmd().args(["network", "rm", "-f", &stack.network_name(net)]));
    }
    for secret in stack.secrets.keys() {
        out.push(podman.cmd().args(["secret", "rm", &stack.secret_name(secret)]));
    }
    if volumes {
        for vol in stack.volumes.keys() {
            out.push(podman.cmd().args(["volume", "rm", "-f", &stack.volume_name(vol)]));
        }
    }
    out
}

/// Runs the plan; what is already gone is not an error.
pub fn down(ws: &Workspace, runner: &Runner, podman: &Podman, stack: &Stack, volumes: bool) -> anyhow::Result<()> {
    supervisor::stop(ws, runner, stack);
    let others: Vec<String> = actual::containers(runner, podman, stack)?.into_iter().map(|c| c.name).collect();
    for cmd in plan(podman, stack, &others, volumes) {
        let out = runner.run_captured(&cmd)?;
        if !out.status.success() {
            let err = last_line(&out.stderr);
            if !err.contains("no such") && !err.contains("not found") && !err.contains("no secret") {
                eprintln!("warning: `{cmd}`: {err}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_removes_in_reverse_order_and_volumes_only_when_asked() {
        let stack = Stack::load(&Workspace::for_tests("down")).unwrap();
        let podman = Podman::fixed(&[]);
        let plan_of = |volumes| -> Vec<String> {
            plan(&podman, &stack, &["v7-web".into(), "v7-backend-previous".into()], volumes)
                .iter()
                .map(|c| c.args.join(" "))
                .collect()
        };
        let without = plan_of(false);
        assert_eq!(without[0], "rm -f -t 5 --ignore v7-web");
        assert_eq!(without.iter().filter(|c| c.starts_with("rm ")).count(), 8, "{without:?}");
        assert_eq!(without[7], "rm -f -t 5 --ignore v7-backend-previous");
        assert!(without.contains(&"secret rm v7-clickhouse-password".to_string()));
        assert!(without.contains(&"network rm -f v7-frontend".to_string()));
        assert!(without.iter().all(|c| !c.starts_with("volume")));
        assert!(plan_of(true).contains(&"volume rm -f v7-nats-data".to_string()));
    }
}
