//! `cargo xtask export compose|kube`: the stack of `docker/stack.toml` as a compose file or as
//! Kubernetes manifests, printed on stdout.
//!
//! Both follow what `deploy` does ([`crate::deploy::run_command`]): the same container, network
//! and volume names (`v7-nats`, `v7-backend-net`... see [`Stack::container_name`]), an init
//! process, a 10 s stop timeout, the same labels, and in registry-free mode the same images and
//! the same services left out (with the reason, as a YAML comment). A service that depends on a
//! left-out service is left out too, as deploy does, so no `depends_on` names a missing service.
//!
//! Decisions:
//! - Bind mounts (`./docker/nats/nats.conf:...`) become absolute paths of this checkout: the
//!   output goes to stdout and may be saved anywhere, so paths relative to the file would break.
//! - Registry-free mode is `--offline` or `project.mode = "offline"`; `auto` does not probe the
//!   registries here, so the same checkout always exports the same text.
//! - YAML is written by hand (no YAML crate: the xtask's cold build time is budgeted). A small
//!   tree ([`Node`]) is emitted in block style; every string goes through [`yaml_str`], which
//!   quotes anything a YAML 1.1 or 1.2 reader could take for another type or for syntax.
//! - kube: one Pod per service (what `podman kube play` runs most simply), a ClusterIP Service
//!   per service with ports so `nats`, `backend`... resolve in a real cluster, and one
//!   PersistentVolumeClaim per named volume (`podman kube play` makes a podman volume of the same
//!   name, i.e. the volume deploy uses). Health checks become exec liveness and readiness probes.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::deploy::{placement, Placement, PROJECT_LABEL};
use crate::flags;
use crate::manifest::{parse_duration, Mode, Port, Stack};

const FORMATS: &str = "`compose`, `kube`";

impl flags::Export {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let render: fn(&Stack, &Path, bool) -> String = match self.format.as_str() {
            "compose" => compose,
            "kube" | "kubernetes" => kube,
            other => bail!("unknown export format {other:?}; formats: {FORMATS} (e.g. `cargo xtask export compose > compose.yaml`)"),
        };
        let root = crate::project_root();
        let stack = Stack::load(&root)?;
        let offline = self.offline || stack.project.mode == Mode::Offline;
        let text = render(&stack, &root, offline);
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------------------------------ YAML

/// A YAML value, emitted in block style by [`Node::emit`].
#[derive(Clone, Debug)]
enum Node {
    /// A string, quoted when needed ([`yaml_str`]).
    Str(String),
    /// Written as is: numbers and booleans.
    Raw(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug)]
enum Entry {
    Kv(String, Node),
    Comment(String),
}

fn s(text: impl Into<String>) -> Node {
    Node::Str(text.into())
}
fn num(n: impl std::fmt::Display) -> Node {
    Node::Raw(n.to_string())
}
fn strs<I: IntoIterator<Item = T>, T: Into<String>>(items: I) -> Node {
    Node::Seq(items.into_iter().map(|t| s(t)).collect())
}

/// A map under construction, in insertion order.
#[derive(Default)]
struct Map(Vec<Entry>);

impl Map {
    fn new() -> Map {
        Map(Vec::new())
    }
    fn kv(mut self, key: &str, value: Node) -> Map {
        self.0.push(Entry::Kv(key.to_string(), value));
        self
    }
    fn put(&mut self, key: &str, value: Node) {
        self.0.push(Entry::Kv(key.to_string(), value));
    }
    fn comment(&mut self, text: &str) {
        self.0.push(Entry::Comment(text.to_string()));
    }
    fn node(self) -> Node {
        Node::Map(self.0)
    }
}

fn comment_line(indent: usize, text: &str, out: &mut String) {
    // A comment ends at the line's end: fold any line break of the text into a space.
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    out.push_str(&" ".repeat(indent));
    out.push_str(&format!("# {}\n", text.trim()));
}

impl Node {
    fn is_block(&self) -> bool {
        matches!(self, Node::Seq(v) if !v.is_empty()) || matches!(self, Node::Map(v) if !v.is_empty())
    }

    fn scalar(&self) -> String {
        match self {
            Node::Str(t) => yaml_str(t),
            Node::Raw(t) => t.clone(),
            Node::Seq(_) => "[]".into(),
            Node::Map(_) => "{}".into(),
        }
    }

    /// Writes a block node whose lines start at `indent` columns.
    fn emit(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::Map(entries) if !entries.is_empty() => {
                for e in entries {
                    match e {
                        Entry::Comment(c) => comment_line(indent, c, out),
                        Entry::Kv(k, v) if v.is_block() => {
                            out.push_str(&format!("{pad}{}:\n", yaml_str(k)));
                            v.emit(indent + 2, out);
                        }
                        Entry::Kv(k, v) => out.push_str(&format!("{pad}{}: {}\n", yaml_str(k), v.scalar())),
                    }
                }
            }
            Node::Seq(items) if !items.is_empty() => {
                for item in items {
                    if item.is_block() {
                        // The item's first line goes on the dash line: `- key: value`.
                        let mut sub = String::new();
                        item.emit(indent + 2, &mut sub);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&sub[indent + 2..]);
                    } else {
                        out.push_str(&format!("{pad}- {}\n", item.scalar()));
                    }
                }
            }
            scalar => out.push_str(&format!("{pad}{}\n", scalar.scalar())),
        }
    }
}

/// `text` as a YAML scalar that every YAML 1.1 and 1.2 reader reads back as that same string:
/// plain when it is obviously a string (`docker.io/library/nats:2.10-alpine`, `/data`, `256Mi`),
/// else double-quoted. Quoted: empty; anything starting with other than a letter, `/` or `_`
/// (numbers, `-x`, `*alias`, `&anchor`, `!tag`, `@`, quotes, `[`, `{`, `#`, `.inf`...), except
/// a number with a unit (`256Mi`, `10s`: a letter no number form has, and no `0x`/`0o`/`0b`);
/// anything with a character outside `A-Za-z0-9_./-+=:@` (spaces, `#`, `,`, quotes, non-ASCII);
/// a trailing `:`; and the words YAML 1.1 reads as booleans or null (`yes`, `No`, `on`, `OFF`,
/// `y`, `true`, `null`...), in any case.
pub fn yaml_str(text: &str) -> String {
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let lower = text.to_ascii_lowercase();
    // `256Mi`, `10s`, `500m`: a digit first, then a letter no number form has (not e, x, o, b).
    let unit_like = text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        && text.chars().any(|c| c.is_ascii_alphabetic() && !"eExXoObB".contains(c))
        && !["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p));
    let plain = unit_like
        || text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "_./-+=:@".contains(c))
            && !text.ends_with(':')
            && !SPECIAL.contains(&lower.as_str());
    if plain {
        return text.to_string();
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn document(header: &[String], body: Node) -> String {
    let mut out = String::new();
    for line in header {
        comment_line(0, line, &mut out);
    }
    body.emit(0, &mut out);
    out
}

// ------------------------------------------------------------------------- the stack model

/// The services exported, in start order, and those left out with why.
struct Plan<'a> {
    run: Vec<(&'a str, String)>,
    skipped: Vec<(&'a str, String)>,
}

fn plan(stack: &Stack, offline: bool) -> Plan<'_> {
    let order = stack.start_order().expect("docker/stack.toml was validated");
    let mut plan = Plan { run: Vec::new(), skipped: Vec::new() };
    for name in order {
        match placement(stack, name, offline) {
            Placement::Skipped(why) => plan.skipped.push((name, why)),
            Placement::Image(image) => {
                // As deploy: a service whose dependency is left out is left out too.
                let missing = stack.services[name]
                    .depends_on
                    .iter()
                    .find(|d| plan.skipped.iter().any(|(s, _)| s == d.get_ref()));
                match missing {
                    Some(dep) => plan.skipped.push((
                        name,
                        format!("it depends on {}, which is not available in this mode", dep.get_ref()),
                    )),
                    None => plan.run.push((name, image)),
                }
            }
        }
    }
    plan
}

/// A `volumes` entry of a service: a named volume, or a file or directory of the repository.
enum Mount {
    Named { volume: String, target: String, read_only: bool },
    Bind { source: String, target: String, read_only: bool },
}

fn mounts(stack: &Stack, root: &Path, service: &str) -> Vec<Mount> {
    stack.services[service]
        .volumes
        .iter()
        .map(|v| {
            let mut parts = v.get_ref().splitn(3, ':');
            let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
            let read_only = parts.next() == Some("ro");
            match source.strip_prefix("./") {
                Some(rel) => Mount::Bind { source: root.join(rel).display().to_string(), target, read_only },
                None => Mount::Named { volume: source.to_string(), target, read_only },
            }
        })
        .collect()
}

fn header(kind: &str, root: &Path, offline: bool, skipped: &[(&str, String)]) -> Vec<String> {
    let mut h = vec![
        format!("Generated by `cargo xtask export {kind}{}` from docker/stack.toml; regenerate, do not edit.", if offline { " --offline" } else { "" }),
        if offline {
            "Registry-free mode: images built on this machine by `cargo xtask build --offline`.".to_string()
        } else {
            "Registry mode: images from their registries and `cargo xtask build`.".to_string()
        },
        format!("Bind mounts are absolute paths of the checkout at {}.", root.display()),
    ];
    for (name, why) in skipped {
        h.push(format!("{name}: left out: {why}"));
    }
    h
}

fn labels(stack: &Stack, service: Option<&str>) -> Node {
    let mut m = Map::new().kv(PROJECT_LABEL, s(&stack.project.name));
    if let Some(service) = service {
        m.put("v7.service", s(service));
    }
    m.node()
}

/// The volumes and networks the exported services use, in declaration order.
fn used<'a>(all: impl Iterator<Item = &'a String>, used: impl Fn(&str) -> bool) -> Vec<&'a String> {
    all.filter(|n| used(n)).collect()
}

// ---------------------------------------------------------------------------------- compose

/// The stack as a compose file (Compose Specification; `docker compose`, `podman-compose`).
pub fn compose(stack: &Stack, root: &Path, offline: bool) -> String {
    let plan = plan(stack, offline);
    let mut head = header("compose", root, offline, &plan.skipped);
    head.push(
        "depends_on conditions (service_healthy) are honoured by `docker compose`; podman-compose 1.0.3 ignores them \
         and only orders the starts: `cargo xtask deploy` waits for each health check."
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
    let running = |pred: &dyn Fn(&crate::manifest::Service) -> bool| {
        plan.run.iter().any(|(n, _)| pred(&stack.services[*n]))
    };
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
    let body = Map::new()
        .kv("name", s(&stack.project.name))
        .kv("services", services.node())
        .kv("networks", networks.node())
        .kv("volumes", volumes.node())
        .node();
    document(&head, body)
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
        m.put("ports", strs(svc.ports.iter().map(|p| Port::parse(p.get_ref()).expect("validated").to_podman())));
    }
    if !svc.networks.is_empty() {
        let nets = svc.networks.iter().map(|n| Entry::Kv(n.get_ref().clone(), Map::new().kv("aliases", strs([name])).node()));
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
    m.put("init", num(true));
    m.put("stop_grace_period", s("10s"));
    m.put("labels", labels(stack, Some(name)));
    m.node()
}

// ------------------------------------------------------------------------------------- kube

/// The stack as Kubernetes manifests: PersistentVolumeClaims, then per service (in start
/// order) a ClusterIP Service and a Pod, separated by `---`.
pub fn kube(stack: &Stack, root: &Path, offline: bool) -> String {
    let plan = plan(stack, offline);
    let mut head = header("kube", root, offline, &plan.skipped);
    head.extend([
        "`podman kube play` runs the Pods and PersistentVolumeClaims (as podman volumes) and ignores the Services,".to_string(),
        "which give each service its name (nats, backend, ...) in a real cluster. Kubernetes has no depends_on:".to_string(),
        "services wait for their dependencies themselves, and the readiness probes gate the Services.".to_string(),
        format!(
            "The networks ({}) are not separated: a Kubernetes pod network is flat.",
            stack.networks.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ]);
    let mut docs: Vec<Node> = Vec::new();
    let uses_volume = |v: &str| {
        plan.run.iter().any(|(n, _)| mounts(stack, root, n).iter().any(|m| matches!(m, Mount::Named { volume, .. } if volume == v)))
    };
    for vol in used(stack.volumes.keys(), uses_volume) {
        let mut spec = Map::new().kv("accessModes", strs(["ReadWriteOnce"]));
        spec.comment("podman ignores the size; a cluster's provisioner needs one");
        spec.put("resources", Map::new().kv("requests", Map::new().kv("storage", s("1Gi")).node()).node());
        docs.push(object("PersistentVolumeClaim", &stack.volume_name(vol), labels(stack, None), spec.node()));
    }
    for (name, image) in &plan.run {
        let selector = labels(stack, Some(name));
        let ports: Vec<Port> = stack.services[*name].ports.iter().map(|p| Port::parse(p.get_ref()).expect("validated")).collect();
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

/// A DNS-1123 label for a bind mount's volume: `host-` and the file name (`host-nats-conf`).
fn host_volume_name(source: &str, taken: &[String]) -> String {
    let file = Path::new(source).file_name().map(|f| f.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let mut base: String = file.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    base = base.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    base.truncate(50);
    let base = format!("host-{}", base.trim_end_matches('-')).trim_end_matches('-').to_string();
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
        let ports = svc.ports.iter().map(|p| {
            let p = Port::parse(p.get_ref()).expect("validated");
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

    fn repo_stack() -> Stack {
        Stack::load(&crate::project_root()).unwrap()
    }

    /// The lines of `text` from the one equal to `start` up to (not including) the next line
    /// indented no deeper than `start`.
    fn block(text: &str, start: &str) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let i = lines.iter().position(|l| *l == start).unwrap_or_else(|| panic!("no line {start:?} in:\n{text}"));
        let indent = start.len() - start.trim_start().len();
        let deeper = |l: &&&str| l.len() - l.trim_start().len() > indent;
        let mut out = vec![lines[i]];
        out.extend(lines[i + 1..].iter().take_while(deeper).copied());
        out.join("\n")
    }

    #[test]
    fn yaml_strings_are_quoted_when_a_reader_would_take_them_for_something_else() {
        for plain in ["backend", "docker.io/library/nats:2.10-alpine", "/etc/nats/nats.conf", "nats://nats:4222", "V7_NATS_URL", "info", "v7.project", "500m", "256Mi", "10s", "1.5Gi", "Yesterday"] {
            assert_eq!(yaml_str(plain), plain);
        }
        let cases = [
            ("", r#""""#),
            ("127.0.0.1:3000:3000", r#""127.0.0.1:3000:3000""#),
            ("a: b", r#""a: b""#),
            ("key:", r#""key:""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("it's", r#""it's""#),
            ("*alias", r#""*alias""#),
            ("&anchor", r#""&anchor""#),
            ("!tag", r#""!tag""#),
            ("yes", r#""yes""#),
            ("No", r#""No""#),
            ("on", r#""on""#),
            ("OFF", r#""OFF""#),
            ("y", r#""y""#),
            ("true", r#""true""#),
            ("null", r#""null""#),
            ("~", r#""~""#),
            ("0.5", r#""0.5""#),
            ("1", r#""1""#),
            ("0x1F", r#""0x1F""#),
            ("1e3", r#""1e3""#),
            ("0xff", r#""0xff""#),
            ("0o17", r#""0o17""#),
            ("1_000", r#""1_000""#),
            ("2001-12-14", r#""2001-12-14""#),
            ("1:20", r#""1:20""#),
            (".inf", r#"".inf""#),
            ("--config", r#""--config""#),
            ("- item", r#""- item""#),
            ("a # b", r#""a # b""#),
            ("[x]", r#""[x]""#),
            ("{x}", r#""{x}""#),
            ("%TAG", r#""%TAG""#),
            ("@at", r#""@at""#),
            ("back\\slash", r#""back\\slash""#),
            ("two\nlines\ttab", r#""two\nlines\ttab""#),
            ("bell\u{7}", r#""bell\x07""#),
            ("Grafana has no Debian package", r#""Grafana has no Debian package""#),
            ("é", "\"é\""),
        ];
        for (input, want) in cases {
            assert_eq!(yaml_str(input), want, "yaml_str({input:?})");
        }
    }

    #[test]
    fn emitter_writes_block_style() {
        let mut m = Map::new().kv("a", strs(["x", "yes"]));
        m.comment("why");
        m.put("b", Node::Seq(vec![Map::new().kv("k", num(1)).kv("l", Map::new().kv("m", s("v")).node()).node()]));
        m.put("e", Node::Seq(vec![]));
        let got = document(&["head".to_string()], m.node());
        assert_eq!(got, "# head\na:\n  - x\n  - \"yes\"\n# why\nb:\n  - k: 1\n    l:\n      m: v\ne: []\n");
    }

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
    }

    #[test]
    fn compose_backend_and_nats() {
        let stack = repo_stack();
        let out = compose(&stack, Path::new("/repo"), false);
        assert!(out.contains("\nname: v7\nservices:\n"), "{out}");
        let backend = block(&out, "  backend:");
        let want = r#"  backend:
    image: ghcr.io/hellocplusplus0/v7/backend:latest
    container_name: v7-backend
    environment:
      RUST_LOG: info
      V7_ANALYTICS_URL: http://analytics-engine:50051
      V7_NATS_URL: nats://nats:4222
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
        // Grafana in registry mode, with its environment values kept strings.
        assert!(out.contains("      GF_AUTH_ANONYMOUS_ENABLED: \"true\"\n"), "{out}");
    }

    #[test]
    fn kube_backend_and_nats() {
        let stack = repo_stack();
        let out = kube(&stack, Path::new("/repo"), false);
        let docs: Vec<&str> = out.split("---\n").collect();
        assert_eq!(docs.len(), 5 + 2 * 7, "5 claims, a Service and a Pod per service:\n{out}");
        assert!(docs[0].starts_with("# Generated by `cargo xtask export kube`"));
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
        - name: V7_NATS_URL
          value: nats://nats:4222
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
        let service = docs.iter().find(|d| d.contains("kind: Service\nmetadata:\n  name: nats\n")).expect("nats service");
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
        let claim = docs.iter().find(|d| d.contains("kind: PersistentVolumeClaim\nmetadata:\n  name: v7-nats-data\n")).expect("claim");
        assert!(claim.contains("  accessModes:\n    - ReadWriteOnce\n"), "{claim}");
        assert!(out.contains("      memory: 2Gi\n"), "clickhouse's 2g:\n{out}");
    }

    #[test]
    fn kube_host_path_type_follows_the_checkout() {
        let root = crate::project_root();
        let out = kube(&repo_stack(), &root, false);
        let path = root.join("docker/nats/nats.conf");
        if path.is_file() {
            assert!(out.contains(&format!("        path: {}\n        type: File\n", path.display())), "{out}");
        }
    }

    #[test]
    fn offline_leaves_grafana_out_and_says_why() {
        let stack = repo_stack();
        for (kind, out) in [("compose", compose(&stack, Path::new("/repo"), true)), ("kube", kube(&stack, Path::new("/repo"), true))] {
            assert!(
                out.contains("# grafana: left out: Grafana has no Debian package, so registry-free mode runs the stack without dashboards\n"),
                "{kind}:\n{out}"
            );
            assert!(!out.contains("grafana/grafana") && !out.contains("grafana-data") && !out.contains("name: grafana"), "{kind}:\n{out}");
            assert!(out.contains("image: localhost/v7-offline/backend:latest\n"), "{kind}:\n{out}");
            assert!(out.contains(&format!("export {kind} --offline`")), "{kind}:\n{out}");
        }
        let online = compose(&stack, Path::new("/repo"), false);
        assert!(online.contains("\n  grafana:\n    image: docker.io/grafana/grafana:11.1.0\n"), "{online}");
        assert!(block(&online, "  grafana:").contains("    depends_on:\n      prometheus:\n        condition: service_healthy"));
    }

    #[test]
    fn dependents_of_a_left_out_service_are_left_out_too() {
        let text = r#"
[project]
name = "v7"
[services.dash]
image = "docker.io/grafana/grafana:11.1.0"
offline = { unavailable = "no package" }
[services.viewer]
image = "docker.io/library/nginx:1"
offline = { dockerfile = "x" }
depends_on = ["dash"]
[services.other]
image = "docker.io/library/nginx:1"
"#;
        let stack = Stack::parse("docker/stack.toml", text).unwrap();
        let out = compose(&stack, Path::new("/repo"), true);
        assert!(out.contains("  # dash: left out: no package\n"), "{out}");
        assert!(out.contains("  # viewer: left out: it depends on dash, which is not available in this mode\n"), "{out}");
        assert!(out.contains("  other:\n") && !out.contains("depends_on:"), "{out}");
        assert!(out.ends_with("networks: {}\nvolumes: {}\n"), "{out}");
        let k = kube(&stack, Path::new("/repo"), true);
        assert!(!k.contains("name: viewer") && k.contains("name: other"), "{k}");
    }

    /// The quoting helper against a real YAML 1.1 reader (PyYAML, which kubernetes-validate
    /// installs): every string reads back as itself.
    #[cfg(feature = "e2e")]
    #[test]
    fn yaml_strings_read_back_with_pyyaml() {
        let inputs = [
            "", "yes", "No", "on", "OFF", "y", "n", "true", "null", "~", "0.5", "1", "0x1F", "1e3", "0xff", "0o17", "0b101", "1_000", "256Mi", "10s", "1.5Gi", ".inf", "1:20",
            "2001-12-14", "127.0.0.1:3000:3000", "a: b", "key:", "say \"hi\"", "it's", "*alias", "&anchor", "!tag",
            "--config", "- item", "a # b", "[x]", "{x}", "%TAG", "@at", "back\\slash", "two\nlines\ttab", "bell\u{7}",
            "é", "=", "<<", "?x", "|x", ">x", "nats://nats:4222", "docker.io/library/nats:2.10-alpine",
        ];
        let mut doc = String::new();
        for (i, t) in inputs.iter().enumerate() {
            doc.push_str(&format!("k{i}: {}\n", yaml_str(t)));
        }
        let script = "import sys, yaml, json; d = yaml.safe_load(sys.stdin.read()); print(json.dumps([d['k%d' % i] for i in range(len(d))], ensure_ascii=False))";
        let out = duct::cmd!("python3", "-c", script).stdin_bytes(doc.clone()).stdout_capture().unchecked().run().expect("python3");
        assert!(out.status.success(), "python3 with PyYAML failed (pip install pyyaml):\n{doc}");
        let expected: Vec<String> = inputs.iter().map(|t| crate::text_format::json_str(t)).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("[{}]", expected.join(", ")), "{doc}");
    }
}
