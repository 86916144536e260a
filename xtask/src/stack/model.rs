//! The stack file as values: what `reader.rs` makes of `docker/stack.toml` and
//! `validate.rs` has checked. The format is documented in docs/stack.md.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

#[derive(Debug)]
pub struct Stack {
    pub project: Project,
    pub pull: PullSettings,
    pub package_mirrors: PackageMirrorPresets,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, Secret>,
    pub services: BTreeMap<String, Service>,
    /// `[profiles.NAME]`: overlays `--profile NAME` applies (`profile.rs`).
    pub profiles: BTreeMap<String, Profile>,
    /// The profile applied to this stack, if any.
    pub profile: Option<String>,
}

/// `[profiles.NAME]`: what `--profile NAME` changes in the stack (docs/stack.md).
#[derive(Debug, Default)]
pub struct Profile {
    /// The host address of every published port, after the services' `ports` (dev: loopback).
    pub host_ip: Option<Spanned<String>>,
    /// `[profiles.NAME.services.SERVICE]`, of services the stack has.
    pub services: BTreeMap<String, ServiceOverlay>,
}

/// What a profile may change in one service: `environment` is merged into the service's
/// (a profile's value wins), `ports`, `resources` and `command` replace the service's.
#[derive(Debug, Default)]
pub struct ServiceOverlay {
    pub environment: BTreeMap<String, String>,
    pub ports: Option<Vec<Spanned<String>>>,
    pub resources: Option<Resources>,
    pub command: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct Project {
    /// Prefix of every container, network, volume and registry-free image the stack makes.
    pub name: String,
    pub mode: ModeSetting,
    pub debian_mirror: String,
    pub debian_suite: String,
}

/// `project.mode`: which images the stack runs (see `mode.rs` for how `auto` decides).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ModeSetting {
    /// Registry mode when a registry answers, registry-free otherwise.
    #[default]
    Auto,
    Registry,
    RegistryFree,
}

#[derive(Debug)]
pub struct PullSettings {
    pub jobs: usize,
    pub timeout_secs: u64,
    pub deadline_secs: u64,
    pub attempts: u32,
    /// Registry mirrors for docker.io (or `REGISTRY=URL`), tried in order before the origin.
    pub registry_mirrors: Vec<Spanned<String>>,
    /// Values for `ARG`s used in `FROM` lines, as `--build-arg` would give them.
    pub build_args: BTreeMap<String, String>,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            jobs: 3,
            timeout_secs: 300,
            deadline_secs: 1800,
            attempts: 3,
            registry_mirrors: Vec::new(),
            build_args: BTreeMap::new(),
        }
    }
}

/// `[package_mirrors]`: named sets of package mirrors for `build --mirror`.
#[derive(Debug, Default)]
pub struct PackageMirrorPresets {
    /// The preset `build --mirror default` uses.
    pub default_preset: Option<Spanned<String>>,
    pub presets: BTreeMap<String, PackageMirrors>,
}

/// Package mirrors for builds, one per package manager; a missing one leaves that manager alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackageMirrors {
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

/// `[secrets.NAME]`: made on the first deploy and kept in `.v7/stacks/<project>/secrets`
/// (mode 0600), given to containers as podman secrets (files, never `-e`: podman 4.3 shows a
/// secret of `type=env` in `podman inspect`).
#[derive(Debug, Default)]
pub struct Secret {
    /// A file made from this template (relative to the checkout): every `{{NAME}}` is replaced
    /// by the generated secret NAME. Without a template the secret is a generated password.
    pub template: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct Service {
    /// Image reference of the production image.
    pub image: Spanned<String>,
    /// How the production image is built; absent for infrastructure pulled as is.
    pub build: Option<Build>,
    /// How the image is made in registry-free mode.
    pub registry_free: Option<RegistryFreeRecipe>,
    /// `[host_ip:]host_port:container_port`; host_ip defaults to 127.0.0.1.
    pub ports: Vec<Spanned<String>>,
    pub environment: BTreeMap<String, String>,
    pub networks: Vec<Spanned<String>>,
    /// `volume_name:/path[:ro]` or `./relative/host/path:/path[:ro]`.
    pub volumes: Vec<Spanned<String>>,
    /// `NAME` (mounted at `/run/secrets/NAME`) or `NAME:/absolute/path`.
    pub secrets: Vec<Spanned<String>>,
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

/// `services.NAME.registry_free`: the recipe of the service's registry-free image.
#[derive(Debug)]
pub struct RegistryFreeRecipe {
    /// Built on the local Debian base, relative to the repository root.
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

#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// CPUs, e.g. 0.5.
    pub cpus: Option<f64>,
    /// Memory limit, e.g. `256m`, `1g`.
    pub memory: Option<Spanned<String>>,
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub host_ip: String,
    pub host: u16,
    pub container: u16,
}

impl Port {
    /// `[ip:]host:container`, IPv4 only (what podman publishes on loopback here).
    pub fn parse(text: &str) -> Option<Port> {
        let parts: Vec<&str> = text.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [h, c] => ("127.0.0.1", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return None,
        };
        ip.parse::<std::net::Ipv4Addr>().ok()?;
        Some(Port { host_ip: ip.to_string(), host: host.parse().ok()?, container: container.parse().ok()? })
    }

    pub fn to_podman(&self) -> String {
        format!("{}:{}:{}", self.host_ip, self.host, self.container)
    }
}

impl Service {
    /// The published ports (validated when the stack was read).
    pub fn published(&self) -> Vec<Port> {
        self.ports.iter().filter_map(|p| Port::parse(p.get_ref())).collect()
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

impl Stack {
    /// Services in dependency order (dependencies first; ties by name). Errors on a cycle.
    pub fn start_order(&self) -> Result<Vec<&str>, String> {
        let mut order: Vec<&str> = Vec::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        while order.len() < self.services.len() {
            let ready = self.services.iter().find(|(name, svc)| {
                !done.contains(name.as_str()) && svc.depends_on.iter().all(|d| done.contains(d.get_ref().as_str()))
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

    /// Services the xtask builds (they have a `build` section), by name.
    pub fn built_services(&self) -> impl Iterator<Item = (&String, &Service, &Build)> {
        self.services.iter().filter_map(|(n, s)| s.build.as_ref().map(|b| (n, s, b)))
    }

    /// Services with a registry-free recipe (a Dockerfile, not `unavailable`), by name.
    pub fn registry_free_recipes(&self) -> impl Iterator<Item = (&String, &RegistryFreeRecipe, &str)> {
        self.services.iter().filter_map(|(n, s)| {
            let recipe = s.registry_free.as_ref()?;
            recipe.dockerfile.as_deref().map(|d| (n, recipe, d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ports() {
        assert_eq!(parse_duration("10s"), Some(10.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("2m"), Some(120.0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(Port::parse("3000:3000").unwrap().to_podman(), "127.0.0.1:3000:3000");
        assert_eq!(
            Port::parse("0.0.0.0:80:3000").unwrap(),
            Port { host_ip: "0.0.0.0".into(), host: 80, container: 3000 }
        );
        assert_eq!(Port::parse("3000"), None);
        assert_eq!(Port::parse("1.2.3:80:80"), None);
        assert_eq!(Port::parse("80:99999"), None);
    }
}
