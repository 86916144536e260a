//! `down`: the stack's containers in reverse dependency order, then its networks, then (only
//! when asked) its volumes. Only names of this project are touched.

use crate::podman::Podman;
use crate::process::{last_line, Cmd, Runner};
use crate::stack::Stack;

/// Containers in reverse dependency order, then networks, then (optionally) volumes.
pub fn plan(podman: &Podman, stack: &Stack, volumes: bool) -> Vec<Cmd> {
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

/// Runs the plan; what is already gone is not an error.
pub fn down(runner: &Runner, podman: &Podman, stack: &Stack, volumes: bool) -> anyhow::Result<()> {
    for cmd in plan(podman, stack, volumes) {
        let out = runner.run_captured(&cmd)?;
        if !out.status.success() {
            let err = last_line(&out.stderr);
            if !err.contains("no such") && !err.contains("not found") {
                eprintln!("warning: `{cmd}`: {err}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    #[test]
    fn down_removes_in_reverse_order_and_volumes_only_when_asked() {
        let stack = Stack::load(&Workspace::for_tests("down")).unwrap();
        let podman = Podman::fixed(&[]);
        let plan_of =
            |volumes| -> Vec<String> { plan(&podman, &stack, volumes).iter().map(|c| c.args.join(" ")).collect() };
        let without = plan_of(false);
        assert_eq!(without[0], "rm -f -t 5 --ignore v7-web");
        assert_eq!(without.iter().filter(|c| c.starts_with("rm ")).count(), 7);
        assert!(without.contains(&"network rm -f v7-frontend".to_string()));
        assert!(without.iter().all(|c| !c.starts_with("volume")));
        assert!(plan_of(true).contains(&"volume rm -f v7-nats-data".to_string()));
    }
}
