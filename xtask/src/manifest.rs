//! `docker/stack.toml`: the one manifest the xtask reads, as a model. Reading the text is in
//! `manifest_reader.rs`: a typo is reported as "unknown key `prots` in [services.api]; allowed:
//! ...", and every error names the file, line and column, and the key. After parsing, [`Stack::validate`]
//! checks what reading cannot (references between services, networks and volumes; ports; image
//! references; durations; dependency cycles), pointing at the offending value's line.
//! The format is documented in docs/stack.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use toml::Spanned;

use crate::image_ref::ImageRef;

pub const STACK_FILE: &str = "docker/stack.toml";

#[derive(Debug)]
pub struct Stack {
    pub project: Project,
    pub pull: PullSettings,
    pub mirrors: Mirrors,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug)]
pub struct Project {
    /// Prefix of every container, network and volume the stack creates.
    pub name: String,
    /// `auto` (probe registries, fall back to registry-free), `registry` or `offline`.
    pub mode: Mode,
    pub debian_mirror: String,
    pub debian_suite: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Auto,
    Registry,
    Offline,
}


#[derive(Debug)]
pub struct PullSettings {
    pub jobs: usize,
    pub timeout_secs: u64,
    pub deadline_secs: u64,
    pub attempts: u32,
    /// Registry mirrors for docker.io, tried in order before the origin.
    pub registry_mirrors: Vec<Spanned<String>>,
    /// Values for `ARG`s used in `FROM` lines, as `--build-arg` would give them.
    pub build_args: BTreeMap<String, String>,
}

fn default_jobs() -> usize {
    3
}
fn default_timeout() -> u64 {
    300
}
fn default_deadline() -> u64 {
    1800
}
fn default_attempts() -> u32 {
    3
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            jobs: default_jobs(),
            timeout_secs: default_timeout(),
            deadline_secs: default_deadline(),
            attempts: default_attempts(),
            registry_mirrors: Vec::new(),
            build_args: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Mirrors {
    /// The preset `build --mirror` uses when `--preset` is not given.
    pub default_preset: Option<Spanned<String>>,
    pub presets: BTreeMap<String, MirrorPreset>,
}

/// Package mirrors for builds; a missing entry leaves that package manager alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorPreset {
    /// Alpine repository base, e.g. `https://mirrors.tuna.tsinghua.edu.cn/alpine`.
    pub apk: Option<String>,
    /// Debian archive base, e.g. `http://host.containers.internal:3142/deb.debian.org/debian`.
    pub apt: Option<String>,
    /// npm registry URL.
    pub npm: Option<String>,
    /// PyPI simple index URL.
    pub pip: Option<String>,
    /// crates.io sparse index URL (`sparse+https://...`).
    pub cargo: Option<String>,
}

#[derive(Debug, Default)]
pub struct Network {
    /// No route out of the network (containers only talk to each other).
    pub internal: bool,
}

#[derive(Debug, Default)]
pub struct Volume {}

#[derive(Debug)]
pub struct Service {
    /// Image reference of the production image.
    pub image: Spanned<String>,
    /// How the production image is built; absent for infrastructure pulled as is.
    pub build: Option<Build>,
    /// How the image is made in registry-free mode.
    pub offline: Option<Offline>,
    /// `[host_ip:]host_port:container_port`; host_ip defaults to 127.0.0.1.
    pub ports: Vec<Spanned<String>>,
    pub environment: BTreeMap<String, String>,
    pub networks: Vec<Spanned<String>>,
    /// `volume_name:/path[:ro]` or `./relative/host/path:/path[:ro]`.
    pub volumes: Vec<Spanned<String>>,
    pub depends_on: Vec<Spanned<String>>,
    /// Arguments after the image (the image's CMD is used when empty).
    pub command: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub resources: Resources,
}

#[derive(Debug)]
pub struct Build {
    /// Directory sent to the build, relative to the repository root.
    pub context: String,
    /// Dockerfile path relative to the repository root.
    pub dockerfile: String,
    /// Ignore file (`.dockerignore` beside the Dockerfile), relative to the repository root.
    pub ignorefile: Option<String>,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Offline {
    /// Registry-free recipe (built on the local Debian base), relative to the repository root.
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub ignorefile: Option<String>,
    /// Set instead of a recipe when the service cannot be made from Debian packages; the
    /// stack then runs without it and says why.
    pub unavailable: Option<String>,
}

#[derive(Debug)]
pub struct Healthcheck {
    /// Command run inside the container (exec form).
    pub test: Vec<String>,
    pub interval: Spanned<String>,
    pub timeout: Spanned<String>,
    pub retries: u32,
    pub start_period: Spanned<String>,
}


#[derive(Debug, Default)]
pub struct Resources {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Memory limit, e.g. `256m`, `1g`.
    pub memory: Option<Spanned<String>>,
}

/// A parsed port mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub host_ip: String,
    pub host: u16,
    pub container: u16,
}

impl Port {
    pub fn parse(text: &str) -> Option<Port> {
        let parts: Vec<&str> = text.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [h, c] => ("127.0.0.1", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return None,
        };
        let ip_ok = ip.split('.').count() == 4 && ip.split('.').all(|o| o.parse::<u8>().is_ok());
        if !ip_ok {
            return None;
        }
        Some(Port { host_ip: ip.to_string(), host: host.parse().ok()?, container: container.parse().ok()? })
    }

    pub fn to_podman(&self) -> String {
        format!("{}:{}:{}", self.host_ip, self.host, self.container)
    }
}

/// `10s`, `500ms`, `2m` -> seconds (fractions kept).
pub fn parse_duration(text: &str) -> Option<f64> {
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| text.split_at(i))?;
    let n: f64 = num.parse().ok()?;
    let factor = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(n * factor)
}

fn memory_ok(text: &str) -> bool {
    let t = text.trim_end_matches(['b', 'k', 'm', 'g', 'B', 'K', 'M', 'G']);
    !t.is_empty() && t.len() + 1 >= text.len() && t.parse::<u64>().is_ok()
}

/// An error about `docker/stack.toml`, already formatted as `file:line:col: cause (hint)`.
fn located(file: &str, text: &str, span: std::ops::Range<usize>, msg: String) -> anyhow::Error {
    let (line, col) = line_col(text, span.start);
    anyhow::anyhow!("{file}:{line}:{col}: {msg}")
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

impl Stack {
    /// Reads and validates `docker/stack.toml` under `root`, or the file named by the
    /// environment variable `V7_STACK_FILE` (relative to `root` or absolute): the end-to-end
    /// tests use it to run a stack under their own project name, so every container, network,
    /// volume and registry-free image they make carries their prefix.
    pub fn load(root: &Path) -> Result<Stack> {
        let file = std::env::var("V7_STACK_FILE").unwrap_or_else(|_| STACK_FILE.to_string());
        let path = root.join(&file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}: it describes the stack (see docs/stack.md)", path.display()))?;
        Stack::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Stack> {
        let stack = crate::manifest_reader::read_stack(&crate::manifest_reader::Reader { file, text })?;
        stack.validate(file, text)?;
        Ok(stack)
    }

    fn validate(&self, file: &str, text: &str) -> Result<()> {
        let err = |span: std::ops::Range<usize>, msg: String| located(file, text, span, msg);
        let name_ok = |n: &str| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !name_ok(&self.project.name) {
            anyhow::bail!(
                "{file}: project.name = {:?}: use lowercase letters, digits and '-' (it prefixes container names)",
                self.project.name
            );
        }
        if let Some(preset) = &self.mirrors.default_preset {
            if !self.mirrors.presets.contains_key(preset.get_ref()) {
                return Err(err(
                    preset.span(),
                    format!(
                        "mirrors.default_preset = {:?} is not a preset; defined: {}",
                        preset.get_ref(),
                        join_keys(self.mirrors.presets.keys())
                    ),
                ));
            }
        }
        for m in &self.pull.registry_mirrors {
            if !(m.get_ref().starts_with("http://") || m.get_ref().starts_with("https://")) {
                return Err(err(
                    m.span(),
                    format!("pull.registry_mirrors: {:?} must start with http:// or https://", m.get_ref()),
                ));
            }
        }
        for (name, svc) in &self.services {
            if !name_ok(name) {
                anyhow::bail!("{file}: [services.{name}]: service names use lowercase letters, digits and '-'");
            }
            if let Err(e) = ImageRef::parse(svc.image.get_ref()) {
                return Err(err(svc.image.span(), format!("services.{name}.image: {e}")));
            }
            for p in &svc.ports {
                if Port::parse(p.get_ref()).is_none() {
                    return Err(err(
                        p.span(),
                        format!(
                            "services.{name}.ports: {:?} is not `[ip:]host_port:container_port` (e.g. \"127.0.0.1:3000:3000\")",
                            p.get_ref()
                        ),
                    ));
                }
            }
            for n in &svc.networks {
                if !self.networks.contains_key(n.get_ref()) {
                    return Err(err(
                        n.span(),
                        format!(
                            "services.{name}.networks: {:?} is not declared; declared networks: {}",
                            n.get_ref(),
                            join_keys(self.networks.keys())
                        ),
                    ));
                }
            }
            for v in &svc.volumes {
                let spec = v.get_ref();
                let mut parts = spec.splitn(3, ':');
                let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let mode = parts.next();
                let bad = |why: &str| {
                    err(v.span(), format!("services.{name}.volumes: {spec:?}: {why}"))
                };
                if !target.starts_with('/') {
                    return Err(bad("expected `volume:/container/path[:ro]` or `./host/path:/container/path[:ro]`"));
                }
                if !matches!(mode, None | Some("ro") | Some("rw")) {
                    return Err(bad("the mode after the second ':' must be ro or rw"));
                }
                if source.starts_with("./") {
                    // A file of the repository: it must exist, or the container would get an empty dir.
                    continue;
                }
                if !self.volumes.contains_key(source) {
                    return Err(bad(&format!(
                        "volume {source:?} is not declared; declared volumes: {}",
                        join_keys(self.volumes.keys())
                    )));
                }
            }
            for d in &svc.depends_on {
                if !self.services.contains_key(d.get_ref()) || d.get_ref() == name {
                    return Err(err(
                        d.span(),
                        format!(
                            "services.{name}.depends_on: {:?} is not another service; services: {}",
                            d.get_ref(),
                            join_keys(self.services.keys())
                        ),
                    ));
                }
            }
            if let Some(hc) = &svc.healthcheck {
                if hc.test.is_empty() {
                    anyhow::bail!("{file}: services.{name}.healthcheck.test is empty: give the command to run");
                }
                for d in [&hc.interval, &hc.timeout, &hc.start_period] {
                    if parse_duration(d.get_ref()).is_none() {
                        return Err(err(
                            d.span(),
                            format!("services.{name}.healthcheck: {:?} is not a duration like 10s, 500ms, 2m", d.get_ref()),
                        ));
                    }
                }
            }
            if let Some(m) = &svc.resources.memory {
                if !memory_ok(m.get_ref()) {
                    return Err(err(
                        m.span(),
                        format!("services.{name}.resources.memory: {:?} is not like 256m or 1g", m.get_ref()),
                    ));
                }
            }
            if let Some(off) = &svc.offline {
                if off.dockerfile.is_none() == off.unavailable.is_none() {
                    anyhow::bail!(
                        "{file}: services.{name}.offline: give either `dockerfile` (the registry-free recipe) or `unavailable` (why there is none)"
                    );
                }
            }
        }
        self.start_order().map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        Ok(())
    }

    /// Services in dependency order (dependencies first; ties by name). Errors on a cycle.
    pub fn start_order(&self) -> Result<Vec<&str>, String> {
        let mut order: Vec<&str> = Vec::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        while order.len() < self.services.len() {
            let ready = self.services.iter().find(|(name, svc)| {
                !done.contains(name.as_str())
                    && svc.depends_on.iter().all(|d| done.contains(d.get_ref().as_str()))
            });
            match ready {
                Some((name, _)) => {
                    done.insert(name);
                    order.push(name);
                }
                None => {
                    let left: Vec<&str> =
                        self.services.keys().map(String::as_str).filter(|n| !done.contains(n)).collect();
                    return Err(format!(
                        "depends_on forms a cycle among: {} (hint: remove one of the dependencies)",
                        left.join(", ")
                    ));
                }
            }
        }
        Ok(order)
    }

    /// Services that the xtask builds (they have a `build` section), by name.
    pub fn built_services(&self) -> impl Iterator<Item = (&String, &Service, &Build)> {
        self.services.iter().filter_map(|(n, s)| s.build.as_ref().map(|b| (n, s, b)))
    }

    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{}", self.project.name, service)
    }

    pub fn network_name(&self, network: &str) -> String {
        format!("{}-{}", self.project.name, network)
    }

    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}-{}", self.project.name, volume)
    }
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[project]
name = "v7"

[networks.backend]

[volumes.data]

[services.nats]
image = "docker.io/library/nats:2.10-alpine"
networks = ["backend"]
volumes = ["data:/data"]

[services.api]
image = "ghcr.io/x/api:latest"
depends_on = ["nats"]
ports = ["3000:3000"]
healthcheck = { test = ["/api", "healthcheck"] }
"#;

    fn parse_err(text: &str) -> String {
        format!("{:#}", Stack::parse("docker/stack.toml", text).unwrap_err())
    }

    #[test]
    fn minimal_stack_parses_in_dependency_order() {
        let stack = Stack::parse("docker/stack.toml", MINIMAL).unwrap();
        assert_eq!(stack.start_order().unwrap(), vec!["nats", "api"]);
        assert_eq!(Port::parse(stack.services["api"].ports[0].get_ref()).unwrap().to_podman(), "127.0.0.1:3000:3000");
    }

    #[test]
    fn unknown_key_names_line_and_allowed_keys() {
        let text = MINIMAL.replace("ports = [", "prots = [");
        let e = parse_err(&text);
        assert!(e.starts_with("docker/stack.toml:17:1: unknown key `prots` in [services.api]; allowed: `image`"), "{e}");
        assert!(e.contains("`ports`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse_err(&MINIMAL.replace("name = \"v7\"", "name = 7"));
        assert_eq!(e, "docker/stack.toml:3:8: project.name: expected a string, found integer");
        let e = parse_err(&MINIMAL.replace("name = \"v7\"", "name = \"v7\"\nmode = \"sometimes\""));
        assert!(e.starts_with("docker/stack.toml:4:8: project.mode: \"sometimes\" is not a mode; allowed: \"auto\""), "{e}");
        let e = parse_err(&MINIMAL.replace("image = \"ghcr.io/x/api:latest\"\n", ""));
        assert!(e.starts_with("docker/stack.toml:14:1: [services.api]: `image` is required"), "{e}");
        let e = parse_err(&MINIMAL.replace("[volumes.data]", "[volumes.data"));
        assert!(e.starts_with("docker/stack.toml:7:") && e.ends_with("(the file is not valid TOML)"), "{e}");
        let e = parse_err(&MINIMAL.replace("ports = [\"3000:3000\"]", "ports = [3000]"));
        assert_eq!(e, "docker/stack.toml:17:10: services.api.ports: expected a string, found integer");
    }

    #[test]
    fn bad_port_names_line_and_form() {
        let e = parse_err(&MINIMAL.replace("\"3000:3000\"", "\"3000\""));
        assert!(e.starts_with("docker/stack.toml:17:10: services.api.ports: \"3000\" is not"), "{e}");
    }

    #[test]
    fn undeclared_network_and_volume_and_dependency() {
        let e = parse_err(&MINIMAL.replace("networks = [\"backend\"]", "networks = [\"front\"]"));
        assert!(e.starts_with("docker/stack.toml:11:13: services.nats.networks: \"front\" is not declared; declared networks: backend"), "{e}");
        let e = parse_err(&MINIMAL.replace("\"data:/data\"", "\"dat:/data\""));
        assert!(e.contains(":12:12: services.nats.volumes: \"dat:/data\": volume \"dat\" is not declared"), "{e}");
        let e = parse_err(&MINIMAL.replace("depends_on = [\"nats\"]", "depends_on = [\"natz\"]"));
        assert!(e.contains(":16:15: services.api.depends_on: \"natz\" is not another service"), "{e}");
    }

    #[test]
    fn cycle_is_reported() {
        let text = MINIMAL.replace(
            "networks = [\"backend\"]\nvolumes",
            "networks = [\"backend\"]\ndepends_on = [\"api\"]\nvolumes",
        );
        let e = parse_err(&text);
        assert!(e.contains("depends_on forms a cycle among: api, nats"), "{e}");
    }

    #[test]
    fn bad_image_and_duration() {
        let e = parse_err(&MINIMAL.replace("ghcr.io/x/api:latest", "ghcr.io/x/API:latest"));
        assert!(e.contains(":15:9: services.api.image:"), "{e}");
        let e = parse_err(&MINIMAL.replace("healthcheck = { test", "healthcheck = { interval = \"10 sec\", test"));
        assert!(e.contains("is not a duration"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(10.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("2m"), Some(120.0));
        assert_eq!(parse_duration("10"), None);
        assert!(memory_ok("256m") && memory_ok("1g") && !memory_ok("lots"));
    }

    #[test]
    fn the_repository_stack_is_valid() {
        let stack = Stack::load(&crate::project_root()).unwrap();
        let order = stack.start_order().unwrap();
        let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("nats") < pos("analytics-engine"));
        assert!(pos("clickhouse") < pos("analytics-engine"));
        assert!(pos("analytics-engine") < pos("backend"));
        assert!(pos("backend") < pos("web"));
        assert_eq!(stack.built_services().count(), 3);
    }
}
