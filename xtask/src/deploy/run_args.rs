//! `podman run` for one service, as data: everything that decides its container comes from the
//! stack file (names, labels, networks and aliases, ports, environment, volumes, health check,
//! limits, command).

use std::path::Path;

use crate::podman::Podman;
use crate::process::Cmd;
use crate::stack::names::{PROJECT_LABEL, SERVICE_LABEL};
use crate::stack::Stack;

/// podman cannot schedule health checks without systemd, so every container is created with
/// `--health-interval disable` and the xtask runs `podman healthcheck run` itself
/// (`health.rs`): the same path on every host.
pub fn run_command(podman: &Podman, stack: &Stack, root: &Path, service: &str, image: &str) -> Cmd {
    let svc = &stack.services[service];
    let mut cmd = podman.cmd().args(["run", "-d", "--init", "--name", &stack.container_name(service)]);
    cmd = cmd.arg("--label").arg(format!("{PROJECT_LABEL}={}", stack.project.name));
    cmd = cmd.arg("--label").arg(format!("{SERVICE_LABEL}={service}")).args(["--stop-timeout", "10"]);
    for n in &svc.networks {
        cmd = cmd.arg("--network").arg(stack.network_name(n.get_ref()));
    }
    if !svc.networks.is_empty() {
        cmd = cmd.arg("--network-alias").arg(service);
    }
    for p in svc.published() {
        cmd = cmd.arg("-p").arg(p.to_podman());
    }
    for (k, v) in &svc.environment {
        cmd = cmd.arg("-e").arg(format!("{k}={v}"));
    }
    for v in &svc.volumes {
        let spec = v.get_ref();
        let spec = match spec.strip_prefix("./") {
            Some(rel) => format!("{}/{rel}", root.display()),
            None => {
                let (name, rest) = spec.split_once(':').expect("validated: volume:/path");
                format!("{}:{rest}", stack.volume_name(name))
            }
        };
        cmd = cmd.arg("-v").arg(spec);
    }
    if let Some(hc) = &svc.healthcheck {
        let test: Vec<String> = hc.test.iter().map(|a| format!("\"{}\"", a.replace('"', "\\\""))).collect();
        cmd = cmd.arg("--health-cmd").arg(format!("[{}]", test.join(",")));
        cmd = cmd.args(["--health-interval", "disable", "--health-retries"]).arg(hc.retries.to_string());
        cmd = cmd.arg("--health-timeout").arg(hc.timeout.get_ref().clone());
    }
    if let Some(cpus) = svc.resources.cpus {
        cmd = cmd.arg("--cpus").arg(cpus.to_string());
    }
    if let Some(m) = &svc.resources.memory {
        cmd = cmd.arg("--memory").arg(m.get_ref().clone());
    }
    cmd.arg(image).args(svc.command.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    #[test]
    fn run_command_for_backend_is_planned_from_the_stack_file() {
        let stack = Stack::load(&Workspace::for_tests("run-args")).unwrap();
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c")]);
        let cmd = run_command(&podman, &stack, Path::new("/repo"), "backend", "img:1");
        let args = cmd.args.join(" ");
        assert!(
            args.starts_with("run -d --init --name v7-backend --label v7.project=v7 --label v7.service=backend"),
            "{args}"
        );
        assert!(args.contains("--network v7-frontend --network v7-backend --network-alias backend"), "{args}");
        assert!(args.contains("-p 127.0.0.1:3000:3000 -p 127.0.0.1:50053:50053"), "{args}");
        assert!(args.contains("-e V7_ANALYTICS_URL=http://analytics-engine:50051"), "{args}");
        assert!(
            args.contains("--health-cmd [\"/usr/local/bin/backend\",\"healthcheck\"] --health-interval disable"),
            "{args}"
        );
        assert!(args.ends_with("--memory 256m img:1"), "{args}");
        let nats = run_command(&podman, &stack, Path::new("/repo"), "nats", "n:1").args.join(" ");
        assert!(nats.contains("-v v7-nats-data:/data -v /repo/docker/nats/nats.conf:/etc/nats/nats.conf:ro"), "{nats}");
        assert!(nats.ends_with("n:1 --config /etc/nats/nats.conf"), "{nats}");
    }
}
