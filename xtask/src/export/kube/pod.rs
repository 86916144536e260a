//! A service's Pod template: its one container (image, arguments, environment, ports,
//! requests and limits, startup, liveness and readiness probes, a securityContext that meets
//! the Pod Security "restricted" profile) and its volumes: named volumes as claims, bind mounts
//! as ConfigMaps (cluster) or hostPath (podman), secrets as Secret files (cluster) or deploy's
//! secret files (podman), an `emptyDir` for each directory the service writes.

use std::collections::BTreeMap;
use std::path::Path;

use super::facts::{endpoints, writable, RunAs};
use super::objects::{kube_cpu, kube_memory, seconds, secret_object_name, volume_label, Source, SECRET_KEY};
use super::options::{Options, Target};
use crate::export::yaml::{num, s, strs, Map, Node};
use crate::export::{mounts, secret_file, secret_mounts, Mount};
use crate::stack::Stack;

/// The files bind mounts name, read beforehand: absolute source path -> what it holds.
pub type Files = BTreeMap<String, Source>;

/// The ConfigMap a bind mount of `service` becomes: `<service>-<file name>`.
pub fn config_map_name(service: &str, source: &str) -> String {
    volume_label(service, &super::objects::file_name(source), &[])
}

/// The claim a named volume becomes on the podman target: `<project>-kube-<volume>`, not the
/// volume deploy uses, so `podman kube down` and `cargo xtask down` never share one.
pub fn podman_claim(stack: &Stack, volume: &str) -> String {
    format!("{}-kube-{volume}", stack.project.name)
}

/// The container `podman kube play` makes of a service's Pod: `<pod>-<container>`, and the
/// podman target names both as the service (`backend-backend`).
pub fn podman_container(service: &str) -> String {
    format!("{service}-{service}")
}

/// The Pod template's `spec`, and the named volumes it mounts (a StatefulSet's claims).
pub fn pod_spec(
    stack: &Stack,
    root: &Path,
    name: &str,
    image: &str,
    opts: &Options,
    user: Option<RunAs>,
    files: &Files,
) -> (Node, Vec<String>) {
    let svc = &stack.services[name];
    let mut c = Map::new().kv("name", s(name)).kv("image", s(image)).kv("imagePullPolicy", s("IfNotPresent"));
    if !svc.command.is_empty() {
        c.put("args", strs(svc.command.iter().cloned()));
    }
    let mut env: Vec<(String, String)> = svc.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if opts.target == Target::Cluster && name == "web" && !svc.environment.contains_key("V7_BACKEND_ADDR") {
        // nginx's resolver does not use the search domains: backend by its full name.
        env.push(("V7_BACKEND_ADDR".into(), format!("backend.{}.svc.{}:3000", opts.namespace, opts.cluster_domain)));
    }
    if !env.is_empty() {
        c.put(
            "env",
            Node::Seq(env.iter().map(|(k, v)| Map::new().kv("name", s(k)).kv("value", s(v)).node()).collect()),
        );
    }
    let published = svc.published();
    if !published.is_empty() {
        let ports = published.into_iter().map(|p| {
            let mut m = Map::new().kv("containerPort", num(p.container));
            if opts.target == Target::Podman {
                m.put("hostPort", num(p.host));
                m.put("hostIP", s(p.host_ip));
            }
            m.kv("protocol", s("TCP")).node()
        });
        c.put("ports", Node::Seq(ports.collect()));
    }
    c.put("resources", resources(stack, name));
    for (key, probe) in probes(stack, name, opts.target) {
        c.put(key, probe);
    }
    let mut sc = Map::new()
        .kv("allowPrivilegeEscalation", num(false))
        .kv("readOnlyRootFilesystem", num(true))
        .kv("runAsNonRoot", num(true));
    sc.put("capabilities", Map::new().kv("drop", strs(["ALL"])).node());
    c.put("securityContext", sc.node());

    let mut mounts_out = Vec::new();
    let mut volumes = Vec::new();
    let mut claims = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for mount in mounts(stack, root, name) {
        let (vol_name, target, ro, sub_path, source) = match mount {
            Mount::Named { volume, target, read_only } => {
                claims.push(volume.clone());
                let source = (opts.target == Target::Podman).then(|| {
                    let claim = Map::new().kv("claimName", s(podman_claim(stack, &volume)));
                    Map::new().kv("name", s(&volume)).kv("persistentVolumeClaim", claim.node())
                });
                (volume, target, read_only, None, source)
            }
            Mount::Bind { source, target, read_only } => {
                let vol_name = volume_label("conf", &super::objects::file_name(&source), &taken);
                let (sub_path, volume) = bind_volume(name, &source, &vol_name, opts.target, files);
                (vol_name, target, read_only, sub_path, Some(volume))
            }
        };
        let mut m = Map::new().kv("name", s(&vol_name)).kv("mountPath", s(target));
        if let Some(p) = sub_path {
            m.put("subPath", s(p));
        }
        if ro {
            m.put("readOnly", num(true));
        }
        mounts_out.push(m.node());
        volumes.extend(source.map(Map::node));
        taken.push(vol_name);
    }
    for (secret, target) in secret_mounts(stack, name) {
        let vol_name = volume_label("secret", &secret, &taken);
        let mut m = Map::new().kv("name", s(&vol_name)).kv("mountPath", s(target));
        let source = match opts.target {
            Target::Cluster => {
                m.put("subPath", s(SECRET_KEY));
                Map::new().kv("secret", Map::new().kv("secretName", s(secret_object_name(stack, &secret))).node())
            }
            Target::Podman => {
                let path = match &opts.secret_files {
                    Some(dir) => format!("{}/{secret}", dir.trim_end_matches('/')),
                    None => root.join(secret_file(stack, &secret)).display().to_string(),
                };
                Map::new().kv("hostPath", Map::new().kv("path", s(path)).kv("type", s("File")).node())
            }
        };
        mounts_out.push(m.kv("readOnly", num(true)).node());
        let mut v = Map::new().kv("name", s(&vol_name));
        v.0.extend(source.0);
        volumes.push(v.node());
        taken.push(vol_name);
    }
    for dir in writable(name) {
        let vol_name = volume_label("writable", dir, &taken);
        mounts_out.push(Map::new().kv("name", s(&vol_name)).kv("mountPath", s(dir)).node());
        volumes.push(Map::new().kv("name", s(&vol_name)).kv("emptyDir", Map::new().node()).node());
        taken.push(vol_name);
    }
    c.put("volumeMounts", Node::Seq(mounts_out));

    let mut pod_sc = Map::new().kv("runAsNonRoot", num(true));
    if let Some(u) = user {
        pod_sc.put("runAsUser", num(u.uid));
        pod_sc.put("runAsGroup", num(u.gid));
        pod_sc.put("fsGroup", num(u.gid));
    }
    pod_sc.put("seccompProfile", Map::new().kv("type", s("RuntimeDefault")).node());
    let mut spec = Map::new()
        .kv("restartPolicy", s("Always"))
        .kv("terminationGracePeriodSeconds", num(10))
        .kv("enableServiceLinks", num(false))
        .kv("automountServiceAccountToken", num(false))
        .kv("securityContext", pod_sc.node())
        .kv("containers", Node::Seq(vec![c.node()]));
    if !volumes.is_empty() {
        spec.put("volumes", Node::Seq(volumes));
    }
    (spec.node(), claims)
}

/// A bind mount's volume: on a cluster the ConfigMap of its files (a file by `subPath`, so
/// the directory keeps the image's other files; a directory with an item per file); on podman
/// the checkout path itself.
fn bind_volume(service: &str, source: &str, vol_name: &str, target: Target, files: &Files) -> (Option<String>, Map) {
    let v = Map::new().kv("name", s(vol_name));
    if target == Target::Podman {
        let mut host = Map::new().kv("path", s(source));
        match files.get(source) {
            Some(Source::File(_)) => host.put("type", s("File")),
            Some(Source::Dir(_)) => host.put("type", s("Directory")),
            None if Path::new(source).is_dir() => host.put("type", s("Directory")),
            None if Path::new(source).is_file() => host.put("type", s("File")),
            None => {}
        }
        return (None, v.kv("hostPath", host.node()));
    }
    let cm = Map::new().kv("name", s(config_map_name(service, source)));
    match files.get(source) {
        Some(Source::Dir(entries)) => {
            let items = entries
                .iter()
                .map(|(path, _)| Map::new().kv("key", s(super::objects::config_key(path))).kv("path", s(path)).node());
            (None, v.kv("configMap", cm.kv("items", Node::Seq(items.collect())).node()))
        }
        _ => (Some(super::objects::file_name(source)), v.kv("configMap", cm.node())),
    }
}

/// Requests and limits: the stack's limits, and as requests all of the memory (a container
/// that may grow to its limit should be placed where that fits) and half of the CPU, at least
/// 50m. Without limits in the stack file: requests of 100m and 128Mi, no limits.
fn resources(stack: &Stack, name: &str) -> Node {
    let r = &stack.services[name].resources;
    let mut limits = Map::new();
    let mut requests = Map::new();
    match r.cpus {
        Some(cpus) => {
            limits.put("cpu", s(kube_cpu(cpus)));
            requests.put("cpu", s(kube_cpu((cpus / 2.0).max(0.05))));
        }
        None => requests.put("cpu", s("100m")),
    }
    match &r.memory {
        Some(mem) => {
            limits.put("memory", s(kube_memory(mem.get_ref())));
            requests.put("memory", s(kube_memory(mem.get_ref())));
        }
        None => requests.put("memory", s("128Mi")),
    }
    let mut m = Map::new().kv("requests", requests.node());
    if !limits.0.is_empty() {
        m.put("limits", limits.node());
    }
    m.node()
}

/// startupProbe, livenessProbe and readinessProbe from the service's health endpoints (httpGet)
/// or, for a health check of its own, the same command (exec). The startup probe allows the
/// health check's start period and then a minute (every 2 s) before liveness takes over;
/// liveness and readiness run on the health check's interval, timeout and retries. On podman
/// always the stack's own command: podman 4.3 turns an httpGet probe into a `curl` health check,
/// and the images have no curl (measured: `unhealthy`).
fn probes(stack: &Stack, name: &str, target: Target) -> Vec<(&'static str, Node)> {
    let svc = &stack.services[name];
    let Some(hc) = &svc.healthcheck else { return Vec::new() };
    let http = if target == Target::Cluster { endpoints(name, Some(hc)) } else { None };
    let action = |kind: &str| -> (&'static str, Node) {
        match &http {
            Some(e) => {
                let p = if kind == "ready" { &e.ready } else { &e.live };
                ("httpGet", Map::new().kv("path", s(p)).kv("port", num(e.port)).node())
            }
            None => ("exec", Map::new().kv("command", strs(hc.test.iter().cloned())).node()),
        }
    };
    let timeout = seconds(hc.timeout.get_ref(), 1);
    let period = seconds(hc.interval.get_ref(), 1);
    let probe = |kind: &str, period: u64, failures: u64| {
        let (k, v) = action(kind);
        Map::new()
            .kv(k, v)
            .kv("periodSeconds", num(period))
            .kv("timeoutSeconds", num(timeout))
            .kv("failureThreshold", num(failures))
            .node()
    };
    let startup_failures = 30 + seconds(hc.start_period.get_ref(), 0).div_ceil(2);
    let retries = u64::from(hc.retries.max(1));
    vec![
        ("startupProbe", probe("live", 2, startup_failures)),
        ("livenessProbe", probe("live", period, retries)),
        ("readinessProbe", probe("ready", period, retries)),
    ]
}
