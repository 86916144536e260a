//! The stack as a compose file (Compose Specification: `docker compose`, `podman-compose`).
//!
//! Secrets are file secrets (`secrets: - source: NAME / target: PATH` on the service, and a
//! top-level `secrets:` naming `./.v7/stacks/<project>/secret-files/NAME`): the files `cargo
//! xtask deploy` writes, never the values (see `mod.rs`). `restart: always` is deploy's
//! `--restart always`; its `--health-on-failure restart` has no compose equivalent, which the
//! header says.

use std::path::Path;

use super::yaml::{document, num, s, strs, Entry, Map, Node};
use super::{header, labels, mounts, secret_file, secret_mounts, used, Mount};
use crate::stack::placement::plan;
use crate::stack::{Mode, Port, Stack};

/// The stack as a compose file (Compose Specification; `docker compose`, `podman-compose`).
pub fn compose(stack: &Stack, root: &Path, mode: Mode) -> String {
    let plan = plan(stack, mode);
    let mut head = header("compose", root, mode, &plan.skipped);
    head.push(
        "depends_on conditions (service_healthy) are honoured by `docker compose`; podman-compose 1.0.3 ignores them \
         and only orders the starts: `cargo xtask deploy` waits for each health check."
            .to_string(),
    );
    head.push(
        "restart: always brings back a container that exits; `cargo xtask deploy` also restarts one whose health check \
         fails (podman --health-on-failure restart), which compose has no setting for."
            .to_string(),
    );
    let mut services = Map::new();
    for name in stack.start_order().expect("validated") {
        if let Some((_, why)) = plan.skipped.iter().find(|(n, _)| *n == name) {
            services.comment(&format!("{name}: left out: {why}"));
            continue;
        }
        let image = &plan.run.iter().find(|(n, _)| *n == name).unwrap().1;
        services.put(name, compose_service(stack, root, name, image));
    }
    let running =
        |pred: &dyn Fn(&crate::stack::Service) -> bool| plan.run.iter().any(|(n, _)| pred(&stack.services[*n]));
    let mut networks = Map::new();
    for net in used(stack.networks.keys(), |n| running(&|svc| svc.networks.iter().any(|x| x.get_ref() == n))) {
        let mut m = Map::new().kv("name", s(stack.network_name(net)));
        if stack.networks[net].internal {
            m.put("internal", num(true));
        }
        m.put("labels", labels(stack, None));
        networks.put(net, m.node());
    }
    let mut volumes = Map::new();
    for vol in used(stack.volumes.keys(), |v| {
        running(&|svc| svc.volumes.iter().any(|x| x.get_ref().split(':').next() == Some(v)))
    }) {
        volumes.put(vol, Map::new().kv("name", s(stack.volume_name(vol))).kv("labels", labels(stack, None)).node());
    }
    let mut body = Map::new()
        .kv("name", s(&stack.project.name))
        .kv("services", services.node())
        .kv("networks", networks.node())
        .kv("volumes", volumes.node());
    let secrets = used(stack.secrets.keys(), |x| {
        plan.run.iter().any(|(n, _)| secret_mounts(stack, n).iter().any(|(name, _)| name == x))
    });
    if !secrets.is_empty() {
        let dir = format!("./.v7/stacks/{}/secret-files/", stack.project.name);
        body.comment(&format!(
            "The secrets' files under {dir} are written by `cargo xtask deploy`: deploy once before `up`."
        ));
        body.comment(&format!(
            "Their paths are relative to the compose project directory: save and run this file in the checkout root \
             ({}), or pass `--project-directory {}`.",
            root.display(),
            root.display()
        ));
        let decl = secrets
            .into_iter()
            .map(|x| Entry::Kv(x.clone(), Map::new().kv("file", s(format!("./{}", secret_file(stack, x)))).node()));
        body.put("secrets", Node::Map(decl.collect()));
    }
    document(&head, body.node())
}

fn compose_service(stack: &Stack, root: &Path, name: &str, image: &str) -> Node {
    let svc = &stack.services[name];
    let mut m = Map::new().kv("image", s(image)).kv("container_name", s(stack.container_name(name)));
    if !svc.command.is_empty() {
        m.put("command", strs(svc.command.iter().cloned()));
    }
    if !svc.environment.is_empty() {
        m.put("environment", Node::Map(svc.environment.iter().map(|(k, v)| Entry::Kv(k.clone(), s(v))).collect()));
    }
    if !svc.ports.is_empty() {
        m.put("ports", strs(svc.published().iter().map(Port::to_podman)));
    }
    if !svc.networks.is_empty() {
        let nets =
            svc.networks.iter().map(|n| Entry::Kv(n.get_ref().clone(), Map::new().kv("aliases", strs([name])).node()));
        m.put("networks", Node::Map(nets.collect()));
    }
    let mounts = mounts(stack, root, name);
    if !mounts.is_empty() {
        let items = mounts.into_iter().map(|mount| {
            let (kind, source, target, ro) = match mount {
                Mount::Named { volume, target, read_only } => ("volume", volume, target, read_only),
                Mount::Bind { source, target, read_only } => ("bind", source, target, read_only),
            };
            let mut v = Map::new().kv("type", s(kind)).kv("source", s(source)).kv("target", s(target));
            if ro {
                v.put("read_only", num(true));
            }
            v.node()
        });
        m.put("volumes", Node::Seq(items.collect()));
    }
    let secrets = secret_mounts(stack, name);
    if !secrets.is_empty() {
        let items = secrets.into_iter().map(|(x, target)| Map::new().kv("source", s(x)).kv("target", s(target)).node());
        m.put("secrets", Node::Seq(items.collect()));
    }
    if !svc.depends_on.is_empty() {
        let deps = svc.depends_on.iter().map(|d| {
            let healthy = stack.services[d.get_ref()].healthcheck.is_some();
            let condition = if healthy { "service_healthy" } else { "service_started" };
            Entry::Kv(d.get_ref().clone(), Map::new().kv("condition", s(condition)).node())
        });
        m.comment("podman-compose 1.0.3 ignores these conditions (it only orders the starts)");
        m.put("depends_on", Node::Map(deps.collect()));
    }
    if let Some(hc) = &svc.healthcheck {
        let test = std::iter::once("CMD".to_string()).chain(hc.test.iter().cloned());
        m.put(
            "healthcheck",
            Map::new()
                .kv("test", strs(test))
                .kv("interval", s(hc.interval.get_ref()))
                .kv("timeout", s(hc.timeout.get_ref()))
                .kv("retries", num(hc.retries))
                .kv("start_period", s(hc.start_period.get_ref()))
                .node(),
        );
    }
    let mut limits = Map::new();
    if let Some(cpus) = svc.resources.cpus {
        limits.put("cpus", s(cpus.to_string()));
    }
    if let Some(mem) = &svc.resources.memory {
        limits.put("memory", s(mem.get_ref()));
    }
    if !limits.0.is_empty() {
        m.put("deploy", Map::new().kv("resources", Map::new().kv("limits", limits.node()).node()).node());
    }
    m.put("restart", s("always"));
    m.put("init", num(true));
    m.put("stop_grace_period", s("10s"));
    m.put("labels", labels(stack, Some(name)));
    m.node()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::{block, repo_stack};

    #[test]
    fn compose_backend_and_nats() {
        let stack = repo_stack();
        let out = compose(&stack, Path::new("/repo"), Mode::Registry);
        assert!(out.contains("\nname: v7\nservices:\n"), "{out}");
        let backend = block(&out, "  backend:");
        let want = r#"  backend:
    image: ghcr.io/hellocplusplus0/v7/backend:latest
    container_name: v7-backend
    environment:
      RUST_LOG: info
      V7_ANALYTICS_URL: http://analytics-engine:50051
      V7_NATS_STREAM: V7_EVENTS
      V7_NATS_URL: nats://nats:4222
      V7_PROMETHEUS_URL: http://prometheus:9090
      V7_STREAM_MAX_AGE_SECS: "604800"
      V7_STREAM_MAX_BYTES: "1073741824"
    ports:
      - "127.0.0.1:3000:3000"
      - "127.0.0.1:50053:50053"
    networks:
      frontend:
        aliases:
          - backend
      backend:
        aliases:
          - backend
    # podman-compose 1.0.3 ignores these conditions (it only orders the starts)
    depends_on:
      nats:
        condition: service_healthy
      analytics-engine:
        condition: service_healthy
    healthcheck:
      test:
        - CMD
        - /usr/local/bin/backend
        - healthcheck
      interval: 10s
      timeout: 3s
      retries: 3
      start_period: 5s
    deploy:
      resources:
        limits:
          cpus: "1"
          memory: 256m
    restart: always
    init: true
    stop_grace_period: 10s
    labels:
      v7.project: v7
      v7.service: backend"#;
        assert_eq!(backend, want);
        let nats = block(&out, "  nats:");
        for line in [
            "    image: docker.io/library/nats:2.10-alpine",
            "    container_name: v7-nats",
            "    command:\n      - \"--config\"\n      - /etc/nats/nats.conf",
            "      - type: volume\n        source: nats-data\n        target: /data",
            "      - type: bind\n        source: /repo/docker/nats/nats.conf\n        target: /etc/nats/nats.conf\n        read_only: true",
            "        - wget\n        - \"-q\"\n        - \"-O\"\n        - /dev/null\n        - http://127.0.0.1:8222/healthz",
            "          cpus: \"0.5\"\n          memory: 128m",
        ] {
            assert!(nats.contains(line), "{line:?} not in:\n{nats}");
        }
        assert!(!nats.contains("depends_on"), "{nats}");
        assert!(out.contains("\nnetworks:\n  backend:\n    name: v7-backend\n"), "{out}");
        assert!(out.contains("\nvolumes:\n  clickhouse-data:\n    name: v7-clickhouse-data\n"), "{out}");
        // The secrets: mounted where deploy mounts them, declared once as deploy's files.
        assert!(
            block(&out, "  clickhouse:").contains(
                "\n    secrets:\n      - source: clickhouse-users\n        target: /etc/clickhouse-server/users.d/v7-password.xml\n    healthcheck:\n"
            ),
            "clickhouse's secrets line:\n{out}"
        );
        let engine = block(&out, "  analytics-engine:");
        assert!(engine.contains("      V7_CLICKHOUSE_PASSWORD_FILE: /run/secrets/clickhouse-password\n"), "{engine}");
        assert!(
            engine.contains("\n    secrets:\n      - source: clickhouse-password\n        target: /run/secrets/clickhouse-password\n"),
            "analytics-engine's secrets line:\n{engine}"
        );
        assert!(!backend.contains("secrets:"), "{backend}");
        let secrets = block(&out, "secrets:");
        assert_eq!(
            secrets,
            "secrets:\n  clickhouse-password:\n    file: \"./.v7/stacks/v7/secret-files/clickhouse-password\"\n  clickhouse-users:\n    file: \"./.v7/stacks/v7/secret-files/clickhouse-users\"\n  grafana-admin-password:\n    file: \"./.v7/stacks/v7/secret-files/grafana-admin-password\"",
            "the top-level secrets section"
        );
        assert!(out.ends_with(&format!("{secrets}\n")), "the secrets section comes last:\n{out}");
        assert!(
            out.contains(
                "\n# The secrets' files under ./.v7/stacks/v7/secret-files/ are written by `cargo xtask deploy`"
            ) && out.contains(
                "save and run this file in the checkout root (/repo), or pass `--project-directory /repo`.\nsecrets:\n"
            ),
            "the comment above the secrets section:\n{out}"
        );
        // Grafana in registry mode, with its environment values kept strings.
        assert!(out.contains("      GF_AUTH_ANONYMOUS_ENABLED: \"false\"\n"), "{out}");
    }
}
