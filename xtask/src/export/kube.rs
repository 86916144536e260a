//! The stack as Kubernetes manifests: Secrets, PersistentVolumeClaims, then per service (in
//! start order) a ClusterIP Service and a Pod, separated by `---`.
//!
//! Secrets: one Opaque `Secret` per secret the exported services use, named as deploy names the
//! podman secret (`<project>-<name>`, kept a DNS name), with one key, `value`, holding the
//! placeholder `REPLACE_ME`: the value is never exported (see `mod.rs`). A comment above each
//! gives the `kubectl` command that makes the real one from the file `cargo xtask deploy`
//! writes. A Pod mounts the key with `subPath: value` at the full path deploy uses, so every
//! target, `/run/secrets/NAME` or a file in an image's directory (ClickHouse's `users.d/`), is
//! one file and the directory keeps its other files.

use std::path::Path;

use super::yaml::{document, num, s, strs, Map, Node};
use super::{header, labels, mounts, secret_file, secret_mounts, used, Mount};
use crate::stack::placement::plan;
use crate::stack::{parse_duration, Mode, Port, Stack};

/// The stack as Kubernetes manifests: Secrets, PersistentVolumeClaims, then per service (in
/// start order) a ClusterIP Service and a Pod, separated by `---`.
pub fn kube(stack: &Stack, root: &Path, mode: Mode) -> String {
    let plan = plan(stack, mode);
    let mut head = header("kube", root, mode, &plan.skipped);
    head.extend([
        "`podman kube play` runs the Pods and PersistentVolumeClaims (as podman volumes) and ignores the Services,"
            .to_string(),
        "which give each service its name (nats, backend, ...) in a real cluster. Kubernetes has no depends_on:"
            .to_string(),
        "services wait for their dependencies themselves, and the readiness probes gate the Services.".to_string(),
        "The Secrets hold the placeholder REPLACE_ME, never a value: replace it before applying, or run the kubectl command"
            .to_string(),
        "above each Secret after each apply of this file (which puts the placeholder back) and recreate the Pods that mount"
            .to_string(),
        "it (a subPath mount does not follow a change).".to_string(),
        format!(
            "The networks ({}) are not separated: a Kubernetes pod network is flat.",
            stack.networks.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ]);
    let mut docs: Vec<Node> = Vec::new();
    let uses_secret = |x: &str| plan.run.iter().any(|(n, _)| secret_mounts(stack, n).iter().any(|(s, _)| s == x));
    for secret in used(stack.secrets.keys(), uses_secret) {
        docs.push(secret_object(stack, secret));
    }
    let uses_volume = |v: &str| {
        plan.run.iter().any(|(n, _)| {
            mounts(stack, root, n).iter().any(|m| matches!(m, Mount::Named { volume, .. } if volume == v))
        })
    };
    for vol in used(stack.volumes.keys(), uses_volume) {
        let mut spec = Map::new().kv("accessModes", strs(["ReadWriteOnce"]));
        spec.comment("podman ignores the size; a cluster's provisioner needs one");
        spec.put("resources", Map::new().kv("requests", Map::new().kv("storage", s("1Gi")).node()).node());
        docs.push(object("PersistentVolumeClaim", &stack.volume_name(vol), labels(stack, None), spec.node()));
    }
    for (name, image) in &plan.run {
        let selector = labels(stack, Some(name));
        let ports: Vec<Port> = stack.services[*name].published();
        if !ports.is_empty() {
            let mut seen = Vec::new();
            let items = ports.iter().filter(|p| {
                let new = !seen.contains(&p.container);
                seen.push(p.container);
                new
            });
            let items = items.map(|p| {
                Map::new()
                    .kv("name", s(format!("tcp-{}", p.container)))
                    .kv("port", num(p.container))
                    .kv("targetPort", num(p.container))
                    .kv("protocol", s("TCP"))
                    .node()
            });
            let spec = Map::new()
                .kv("type", s("ClusterIP"))
                .kv("selector", selector.clone())
                .kv("ports", Node::Seq(items.collect()))
                .node();
            docs.push(object("Service", name, selector.clone(), spec));
        }
        docs.push(object("Pod", name, selector, pod_spec(stack, root, name, image)));
    }
    let mut out = String::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&document(if i == 0 { &head } else { &[] }, doc));
    }
    out
}

fn object(kind: &str, name: &str, labels: Node, spec: Node) -> Node {
    Map::new()
        .kv("apiVersion", s("v1"))
        .kv("kind", s(kind))
        .kv("metadata", Map::new().kv("name", s(name)).kv("labels", labels).node())
        .kv("spec", spec)
        .node()
}

/// The Kubernetes Secret of a stack secret: deploy's podman secret name, made a DNS name.
fn secret_object_name(stack: &Stack, secret: &str) -> String {
    let name: String = stack.secret_name(secret).to_ascii_lowercase().chars().map(dns_char).collect();
    let mut name = name.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

/// The key every exported Secret keeps its value under.
const SECRET_KEY: &str = "value";

/// A placeholder Secret and, as comments, how to make the real one.
fn secret_object(stack: &Stack, secret: &str) -> Node {
    let name = secret_object_name(stack, secret);
    let mut m = Map::new();
    m.comment(&format!(
        "Placeholder, not the value: the value is the file `cargo xtask deploy` writes (from the passwords it keeps in \
         .v7/stacks/{}/secrets); from the checkout root:",
        stack.project.name
    ));
    m.comment(&format!(
        "  kubectl create secret generic {name} --from-file={SECRET_KEY}={} --dry-run=client -o yaml | kubectl apply -f -",
        secret_file(stack, secret)
    ));
    m.put("apiVersion", s("v1"));
    m.put("kind", s("Secret"));
    m.put("metadata", Map::new().kv("name", s(name)).kv("labels", labels(stack, None)).node());
    m.put("type", s("Opaque"));
    m.put("stringData", Map::new().kv(SECRET_KEY, s("REPLACE_ME")).node());
    m.node()
}

/// `0.5` -> `500m`, `1.0` -> `1`.
fn kube_cpu(cpus: f64) -> String {
    let milli = (cpus * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// podman's `256m`, `1g`, `512k`, `1048576b` -> `256Mi`, `1Gi`, `512Ki`, `1048576`.
fn kube_memory(text: &str) -> String {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    match unit.to_ascii_lowercase().as_str() {
        "k" => format!("{num}Ki"),
        "m" => format!("{num}Mi"),
        "g" => format!("{num}Gi"),
        _ => num.to_string(),
    }
}

/// Whole seconds, rounded up, at least `min` (Kubernetes probes count in seconds).
fn seconds(duration: &str, min: u64) -> u64 {
    (parse_duration(duration).expect("validated").ceil() as u64).max(min)
}

fn dns_char(c: char) -> char {
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
        c
    } else {
        '-'
    }
}

/// A DNS-1123 label for a bind mount's volume: `host-` and the file name (`host-nats-conf`).
fn host_volume_name(source: &str, taken: &[String]) -> String {
    let file = Path::new(source).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    volume_label("host", &file, taken)
}

/// A DNS-1123 label, unique among `taken`: `prefix-` and `text` made lowercase letters,
/// digits and single `-`s.
fn volume_label(prefix: &str, text: &str, taken: &[String]) -> String {
    let lower = text.to_ascii_lowercase();
    let mut base: String = lower.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    base = base.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    base.truncate(50);
    let base = format!("{prefix}-{}", base.trim_end_matches('-')).trim_end_matches('-').to_string();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn pod_spec(stack: &Stack, root: &Path, name: &str, image: &str) -> Node {
    let svc = &stack.services[name];
    let mut c = Map::new().kv("name", s(name)).kv("image", s(image)).kv("imagePullPolicy", s("IfNotPresent"));
    if !svc.command.is_empty() {
        c.put("args", strs(svc.command.iter().cloned()));
    }
    if !svc.environment.is_empty() {
        let env = svc.environment.iter().map(|(k, v)| Map::new().kv("name", s(k)).kv("value", s(v)).node());
        c.put("env", Node::Seq(env.collect()));
    }
    if !svc.ports.is_empty() {
        let ports = svc.published().into_iter().map(|p| {
            Map::new()
                .kv("containerPort", num(p.container))
                .kv("hostPort", num(p.host))
                .kv("hostIP", s(p.host_ip))
                .kv("protocol", s("TCP"))
                .node()
        });
        c.put("ports", Node::Seq(ports.collect()));
    }
    let mut limits = Map::new();
    if let Some(cpus) = svc.resources.cpus {
        limits.put("cpu", s(kube_cpu(cpus)));
    }
    if let Some(mem) = &svc.resources.memory {
        limits.put("memory", s(kube_memory(mem.get_ref())));
    }
    if !limits.0.is_empty() {
        c.put("resources", Map::new().kv("limits", limits.node()).node());
    }
    if let Some(hc) = &svc.healthcheck {
        let probe = Map::new()
            .kv("exec", Map::new().kv("command", strs(hc.test.iter().cloned())).node())
            .kv("initialDelaySeconds", num(seconds(hc.start_period.get_ref(), 0)))
            .kv("periodSeconds", num(seconds(hc.interval.get_ref(), 1)))
            .kv("timeoutSeconds", num(seconds(hc.timeout.get_ref(), 1)))
            .kv("failureThreshold", num(hc.retries.max(1)))
            .node();
        c.put("livenessProbe", probe.clone());
        c.put("readinessProbe", probe);
    }
    let mut mounts_out = Vec::new();
    let mut volumes = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for mount in mounts(stack, root, name) {
        let (vol_name, target, ro, source) = match mount {
            Mount::Named { volume, target, read_only } => {
                let claim = Map::new().kv("claimName", s(stack.volume_name(&volume)));
                let source = Map::new().kv("name", s(&volume)).kv("persistentVolumeClaim", claim.node());
                (volume, target, read_only, source)
            }
            Mount::Bind { source, target, read_only } => {
                let vol_name = host_volume_name(&source, &taken);
                let path = Path::new(&source);
                let mut host = Map::new().kv("path", s(&source));
                if path.is_dir() {
                    host.put("type", s("Directory"));
                } else if path.is_file() {
                    host.put("type", s("File"));
                }
                (vol_name.clone(), target, read_only, Map::new().kv("name", s(vol_name)).kv("hostPath", host.node()))
            }
        };
        let mut m = Map::new().kv("name", s(&vol_name)).kv("mountPath", s(target));
        if ro {
            m.put("readOnly", num(true));
        }
        mounts_out.push(m.node());
        volumes.push(source.node());
        taken.push(vol_name);
    }
    for (secret, target) in secret_mounts(stack, name) {
        let vol_name = volume_label("secret", &secret, &taken);
        mounts_out.push(
            Map::new()
                .kv("name", s(&vol_name))
                .kv("mountPath", s(target))
                .kv("subPath", s(SECRET_KEY))
                .kv("readOnly", num(true))
                .node(),
        );
        let source = Map::new().kv("secretName", s(secret_object_name(stack, &secret)));
        volumes.push(Map::new().kv("name", s(&vol_name)).kv("secret", source.node()).node());
        taken.push(vol_name);
    }
    if !mounts_out.is_empty() {
        c.put("volumeMounts", Node::Seq(mounts_out));
    }
    let mut spec = Map::new()
        .kv("restartPolicy", s("Always"))
        .kv("terminationGracePeriodSeconds", num(10))
        .kv("enableServiceLinks", num(false))
        .kv("containers", Node::Seq(vec![c.node()]));
    if !volumes.is_empty() {
        spec.put("volumes", Node::Seq(volumes));
    }
    spec.node()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::repo_stack;

    #[test]
    fn unit_conversions() {
        assert_eq!(kube_cpu(0.5), "500m");
        assert_eq!(kube_cpu(1.0), "1");
        assert_eq!(kube_cpu(0.25), "250m");
        assert_eq!(kube_memory("256m"), "256Mi");
        assert_eq!(kube_memory("1g"), "1Gi");
        assert_eq!(kube_memory("2G"), "2Gi");
        assert_eq!(kube_memory("512k"), "512Ki");
        assert_eq!(kube_memory("4096b"), "4096");
        assert_eq!(seconds("500ms", 1), 1);
        assert_eq!(seconds("2m", 1), 120);
        assert_eq!(host_volume_name("/r/docker/nats/nats.conf", &[]), "host-nats-conf");
        assert_eq!(host_volume_name("/r/x/nats.conf", &["host-nats-conf".to_string()]), "host-nats-conf-2");
        assert_eq!(volume_label("secret", "Grafana_Admin--pw", &[]), "secret-grafana-admin-pw");
        let stack = repo_stack();
        assert_eq!(secret_object_name(&stack, "clickhouse-users"), "v7-clickhouse-users");
        assert_eq!(secret_object_name(&stack, "Admin_PW"), "v7-admin-pw");
    }

    #[test]
    fn kube_backend_and_nats() {
        let stack = repo_stack();
        let out = kube(&stack, Path::new("/repo"), Mode::Registry);
        let docs: Vec<&str> = out.split("---\n").collect();
        assert_eq!(docs.len(), 3 + 5 + 2 * 7, "3 secrets, 5 claims, a Service and a Pod per service:\n{out}");
        assert!(docs[0].starts_with("# Generated by `cargo xtask export kube`"));
        assert!(out.contains("\n# The Secrets hold the placeholder REPLACE_ME, never a value:"), "header:\n{out}");
        let secret = docs
            .iter()
            .find(|d| d.contains("kind: Secret\nmetadata:\n  name: v7-clickhouse-users\n"))
            .expect("the clickhouse-users Secret");
        assert!(
            secret.ends_with(
                "# Placeholder, not the value: the value is the file `cargo xtask deploy` writes (from the passwords it keeps in .v7/stacks/v7/secrets); from the checkout root:\n\
                 # kubectl create secret generic v7-clickhouse-users --from-file=value=.v7/stacks/v7/secret-files/clickhouse-users --dry-run=client -o yaml | kubectl apply -f -\n\
                 apiVersion: v1\nkind: Secret\nmetadata:\n  name: v7-clickhouse-users\n  labels:\n    v7.project: v7\n\
                 type: Opaque\nstringData:\n  value: REPLACE_ME\n"
            ),
            "the clickhouse-users Secret, its comment lines and its placeholder:\n{secret}"
        );
        for name in ["v7-clickhouse-password", "v7-grafana-admin-password"] {
            assert!(out.contains(&format!("kind: Secret\nmetadata:\n  name: {name}\n")), "Secret {name}:\n{out}");
        }
        let clickhouse =
            docs.iter().find(|d| d.contains("kind: Pod\nmetadata:\n  name: clickhouse\n")).expect("clickhouse pod");
        for line in [
            "        - name: secret-clickhouse-users\n          mountPath: /etc/clickhouse-server/users.d/v7-password.xml\n          subPath: value\n          readOnly: true\n",
            "    - name: secret-clickhouse-users\n      secret:\n        secretName: v7-clickhouse-users\n",
        ] {
            assert!(clickhouse.contains(line), "clickhouse's secret volumeMount / volume {line:?} not in:\n{clickhouse}");
        }
        let engine = docs
            .iter()
            .find(|d| d.contains("kind: Pod\nmetadata:\n  name: analytics-engine\n"))
            .expect("analytics-engine pod");
        for line in [
            "        - name: V7_CLICKHOUSE_PASSWORD_FILE\n          value: /run/secrets/clickhouse-password\n",
            "      volumeMounts:\n        - name: secret-clickhouse-password\n          mountPath: /run/secrets/clickhouse-password\n          subPath: value\n          readOnly: true\n",
            "  volumes:\n    - name: secret-clickhouse-password\n      secret:\n        secretName: v7-clickhouse-password\n",
        ] {
            assert!(engine.contains(line), "analytics-engine's env / volumeMount / volume {line:?} not in:\n{engine}");
        }
        let pod = docs.iter().find(|d| d.contains("kind: Pod\nmetadata:\n  name: backend\n")).expect("backend pod");
        let want = r#"apiVersion: v1
kind: Pod
metadata:
  name: backend
  labels:
    v7.project: v7
    v7.service: backend
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 10
  enableServiceLinks: false
  containers:
    - name: backend
      image: ghcr.io/hellocplusplus0/v7/backend:latest
      imagePullPolicy: IfNotPresent
      env:
        - name: RUST_LOG
          value: info
        - name: V7_ANALYTICS_URL
          value: http://analytics-engine:50051
        - name: V7_NATS_STREAM
          value: V7_EVENTS
        - name: V7_NATS_URL
          value: nats://nats:4222
        - name: V7_PROMETHEUS_URL
          value: http://prometheus:9090
        - name: V7_STREAM_MAX_AGE_SECS
          value: "604800"
        - name: V7_STREAM_MAX_BYTES
          value: "1073741824"
      ports:
        - containerPort: 3000
          hostPort: 3000
          hostIP: "127.0.0.1"
          protocol: TCP
        - containerPort: 50053
          hostPort: 50053
          hostIP: "127.0.0.1"
          protocol: TCP
      resources:
        limits:
          cpu: "1"
          memory: 256Mi
      livenessProbe:
        exec:
          command:
            - /usr/local/bin/backend
            - healthcheck
        initialDelaySeconds: 5
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        exec:
          command:
            - /usr/local/bin/backend
            - healthcheck
        initialDelaySeconds: 5
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
"#;
        assert_eq!(*pod, want);
        let service =
            docs.iter().find(|d| d.contains("kind: Service\nmetadata:\n  name: nats\n")).expect("nats service");
        assert!(service.ends_with(
            "spec:\n  type: ClusterIP\n  selector:\n    v7.project: v7\n    v7.service: nats\n  ports:\n    - name: tcp-4222\n      port: 4222\n      targetPort: 4222\n      protocol: TCP\n    - name: tcp-8222\n      port: 8222\n      targetPort: 8222\n      protocol: TCP\n"
        ), "{service}");
        let nats = docs.iter().find(|d| d.contains("kind: Pod\nmetadata:\n  name: nats\n")).expect("nats pod");
        for line in [
            "      args:\n        - \"--config\"\n        - /etc/nats/nats.conf\n",
            "          cpu: 500m\n          memory: 128Mi\n",
            "        initialDelaySeconds: 2\n        periodSeconds: 5\n        timeoutSeconds: 3\n        failureThreshold: 5\n",
            "      volumeMounts:\n        - name: nats-data\n          mountPath: /data\n        - name: host-nats-conf\n          mountPath: /etc/nats/nats.conf\n          readOnly: true\n",
            "  volumes:\n    - name: nats-data\n      persistentVolumeClaim:\n        claimName: v7-nats-data\n    - name: host-nats-conf\n      hostPath:\n        path: /repo/docker/nats/nats.conf\n",
        ] {
            assert!(nats.contains(line), "{line:?} not in:\n{nats}");
        }
        let claim = docs
            .iter()
            .find(|d| d.contains("kind: PersistentVolumeClaim\nmetadata:\n  name: v7-nats-data\n"))
            .expect("claim");
        assert!(claim.contains("  accessModes:\n    - ReadWriteOnce\n"), "{claim}");
        assert!(out.contains("      memory: 2Gi\n"), "clickhouse's 2g:\n{out}");
    }

    #[test]
    fn host_path_types_follow_what_the_bind_mount_names() {
        let dir = crate::util::fs::TempDir::create(&std::env::temp_dir(), "v7-xtask-kube").unwrap();
        std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("app.conf"), "x").unwrap();
        let text = r#"
[project]
name = "v7"
[services.app]
image = "docker.io/library/nginx:1"
volumes = ["./app.conf:/etc/app.conf:ro", "./conf.d:/etc/conf.d", "./absent:/absent"]
"#;
        let stack = Stack::parse("docker/stack.toml", text).unwrap();
        let out = kube(&stack, dir.path(), Mode::Registry);
        let root = dir.path().display();
        assert!(out.contains(&format!("        path: {root}/app.conf\n        type: File\n")), "{out}");
        assert!(out.contains(&format!("        path: {root}/conf.d\n        type: Directory\n")), "{out}");
        assert!(
            out.contains(&format!("        path: {root}/absent\n    - name"))
                || out.ends_with(&format!("        path: {root}/absent\n")),
            "no type for a path that is not there:\n{out}"
        );
    }
}
