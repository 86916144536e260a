//! The Kubernetes objects around the workloads, each a pure function of the stack: the
//! Namespace (which enforces the Pod Security "restricted" profile), ClusterIP Services,
//! ConfigMaps of the files the stack mounts, placeholder Secrets, NetworkPolicies that keep the
//! stack's networks apart; and the unit conversions and DNS names they share.

use std::path::Path;

use crate::export::labels;
use crate::export::secret_file;
use crate::export::yaml::{num, s, strs, text_block, Map, Node};
use crate::stack::{parse_duration, Stack};

/// The podman target's labels: not deploy's `v7.project`/`v7.service`, which podman copies onto
/// the pods, containers and volumes `kube play` makes (measured), and by which `cargo xtask
/// deploy` and `down` find their own objects: they would take the played ones for theirs.
pub use crate::stack::names::KUBE_PROJECT_LABEL as PODMAN_PROJECT_LABEL;
pub const PODMAN_SERVICE_LABEL: &str = "v7.kube.service";

pub fn podman_labels(stack: &Stack, service: Option<&str>) -> Node {
    let mut m = Map::new().kv(PODMAN_PROJECT_LABEL, s(&stack.project.name));
    if let Some(service) = service {
        m.put(PODMAN_SERVICE_LABEL, s(service));
    }
    m.node()
}

/// The label a Pod carries for each stack network it is on (`v7.network/backend: "true"`).
pub fn network_label(network: &str) -> String {
    format!("v7.network/{network}")
}

/// `apiVersion`, `kind`, `metadata` (name, namespace when given, labels), then `rest`.
pub fn object(
    api: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    labels: Node,
    rest: Vec<(&str, Node)>,
) -> Node {
    let mut meta = Map::new().kv("name", s(name));
    if let Some(ns) = namespace {
        meta.put("namespace", s(ns));
    }
    meta.put("labels", labels);
    let mut m = Map::new().kv("apiVersion", s(api)).kv("kind", s(kind)).kv("metadata", meta.node());
    for (k, v) in rest {
        m.put(k, v);
    }
    m.node()
}

/// The namespace, labelled so the cluster itself enforces (and warns about) the restricted
/// profile every Pod template here meets.
pub fn namespace(stack: &Stack, name: &str) -> Node {
    let mut l = Map::new().kv(crate::stack::names::PROJECT_LABEL, s(&stack.project.name));
    for mode in ["enforce", "warn", "audit"] {
        l.put(&format!("pod-security.kubernetes.io/{mode}"), s("restricted"));
    }
    l.put("pod-security.kubernetes.io/enforce-version", s("latest"));
    object("v1", "Namespace", name, None, l.node(), vec![])
}

/// A ClusterIP Service on the container side of the service's published ports, so `nats`,
/// `backend`... resolve as they do on the stack's networks; headless when it publishes none
/// (a StatefulSet still needs a governing Service).
pub fn service(stack: &Stack, name: &str, ns: Option<&str>) -> Node {
    let selector = labels(stack, Some(name));
    let mut ports: Vec<u16> = stack.services[name].published().iter().map(|p| p.container).collect();
    ports.dedup();
    let mut spec = Map::new();
    if ports.is_empty() {
        spec.put("clusterIP", s("None"));
    } else {
        spec.put("type", s("ClusterIP"));
    }
    spec.put("selector", selector.clone());
    if !ports.is_empty() {
        let items = ports.iter().map(|p| {
            Map::new()
                .kv("name", s(format!("tcp-{p}")))
                .kv("port", num(p))
                .kv("targetPort", num(p))
                .kv("protocol", s("TCP"))
                .node()
        });
        spec.put("ports", Node::Seq(items.collect()));
    }
    object("v1", "Service", name, ns, selector, vec![("spec", spec.node())])
}

/// What a bind mount's source holds: one file, or a directory's files by path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(String),
    Dir(Vec<(String, String)>),
}

/// A ConfigMap key for a path inside a mounted directory (`datasources/prometheus.yml` ->
/// `datasources_prometheus.yml`: keys allow letters, digits, `-`, `_` and `.`).
pub fn config_key(path: &str) -> String {
    path.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// The ConfigMap of one bind mount: the file under its own name, or each file of the directory
/// under [`config_key`].
pub fn config_map(stack: &Stack, name: &str, ns: Option<&str>, from: &str, source: &Source) -> Node {
    let mut data = Map::new();
    match source {
        Source::File(text) => data.put(&file_name(from), text_block(text)),
        Source::Dir(files) => {
            for (path, text) in files {
                data.put(&config_key(path), text_block(text));
            }
        }
    }
    let mut body = object("v1", "ConfigMap", name, ns, labels(stack, None), vec![("data", data.node())]);
    if let Node::Map(entries) = &mut body {
        entries.insert(0, crate::export::yaml::Entry::Comment(format!("From {from} (docker/stack.toml mounts it).")));
    }
    body
}

pub fn file_name(path: &str) -> String {
    Path::new(path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The Kubernetes Secret of a stack secret: deploy's podman secret name, made a DNS name.
pub fn secret_object_name(stack: &Stack, secret: &str) -> String {
    let name: String = stack.secret_name(secret).to_ascii_lowercase().chars().map(dns_char).collect();
    let mut name = name.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

/// The key every exported Secret keeps its value under.
pub const SECRET_KEY: &str = "value";

/// A placeholder Secret and, as comments, how to make the real one.
pub fn secret_object(stack: &Stack, secret: &str, ns: Option<&str>) -> Node {
    let name = secret_object_name(stack, secret);
    let mut m = Map::new();
    m.comment(&format!(
        "Placeholder, not the value: the value is the file `cargo xtask deploy` writes (from the passwords it keeps in \
         .v7/stacks/{}/secrets); from the checkout root:",
        stack.project.name
    ));
    let ns_flag = ns.map(|n| format!(" -n {n}")).unwrap_or_default();
    m.comment(&format!(
        "  kubectl{ns_flag} create secret generic {name} --from-file={SECRET_KEY}={} --dry-run=client -o yaml | kubectl apply -f -",
        secret_file(stack, secret)
    ));
    m.put("apiVersion", s("v1"));
    m.put("kind", s("Secret"));
    let mut meta = Map::new().kv("name", s(name));
    if let Some(ns) = ns {
        meta.put("namespace", s(ns));
    }
    meta.put("labels", labels(stack, None));
    m.put("metadata", meta.node());
    m.put("type", s("Opaque"));
    m.put("stringData", Map::new().kv(SECRET_KEY, s("REPLACE_ME")).node());
    m.node()
}

fn match_labels(key: &str) -> Node {
    Map::new().kv("matchLabels", Map::new().kv(key, s("true")).node()).node()
}

/// The stack's networks as NetworkPolicies: all ingress to the project's Pods denied, then per
/// network, ingress to its Pods allowed from its Pods. Policies add up, so a Pod on two
/// networks (backend, Grafana) is reached from both, and web never reaches NATS or ClickHouse,
/// as on podman's networks. Egress stays open (no stack network is `internal`).
pub fn network_policies(stack: &Stack, networks: &[String], ns: Option<&str>) -> Vec<Node> {
    let project = &stack.project.name;
    let project_pods =
        Map::new().kv("matchLabels", Map::new().kv(crate::stack::names::PROJECT_LABEL, s(project)).node()).node();
    let deny = Map::new().kv("podSelector", project_pods).kv("policyTypes", strs(["Ingress"]));
    let mut out = vec![object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        &format!("{project}-deny-ingress"),
        ns,
        labels(stack, None),
        vec![("spec", deny.node())],
    )];
    for net in networks {
        let key = network_label(net);
        let from = Map::new().kv("podSelector", match_labels(&key)).node();
        let spec = Map::new()
            .kv("podSelector", match_labels(&key))
            .kv("policyTypes", strs(["Ingress"]))
            .kv("ingress", Node::Seq(vec![Map::new().kv("from", Node::Seq(vec![from])).node()]));
        let name = format!("{project}-network-{}", net.to_ascii_lowercase());
        out.push(object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            &name,
            ns,
            labels(stack, None),
            vec![("spec", spec.node())],
        ));
    }
    out
}

/// `0.5` -> `500m`, `1.0` -> `1`.
pub fn kube_cpu(cpus: f64) -> String {
    let milli = (cpus * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// podman's `256m`, `1g`, `512k`, `1048576b` -> `256Mi`, `1Gi`, `512Ki`, `1048576`.
pub fn kube_memory(text: &str) -> String {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    match unit.to_ascii_lowercase().as_str() {
        "k" => format!("{num}Ki"),
        "m" => format!("{num}Mi"),
        "g" => format!("{num}Gi"),
        _ => num.to_string(),
    }
}

/// Whole seconds, rounded up, at least `min` (Kubernetes probes count in seconds).
pub fn seconds(duration: &str, min: u64) -> u64 {
    (parse_duration(duration).expect("validated").ceil() as u64).max(min)
}

fn dns_char(c: char) -> char {
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
        c
    } else {
        '-'
    }
}

/// A DNS-1123 label, unique among `taken`: `prefix-` and `text` made lowercase letters,
/// digits and single `-`s.
pub fn volume_label(prefix: &str, text: &str, taken: &[String]) -> String {
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
