//! The two modes: registry mode (the production images of `*/Dockerfile` and the
//! infrastructure images, from registries or their mirrors) and registry-free mode (every image
//! made on this machine from Debian packages). `--registry-free`, then `project.mode`; in `auto`,
//! registry-free when none of the registries the stack's images come from (or their mirrors)
//! answers within a few seconds.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{ModeSetting, Stack};
use crate::net::http::authority;
use crate::net::reachable::first_reachable;
use crate::oci::ImageRef;
use crate::podman::registries_conf::RegistryMirror;
use crate::util::time::{now_unix, utc_timestamp};
use crate::util::workspace::Workspace;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Registry,
    RegistryFree,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Registry => "registry",
            Mode::RegistryFree => "registry-free",
        })
    }
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "registry" => Some(Mode::Registry),
            "registry-free" => Some(Mode::RegistryFree),
            _ => None,
        }
    }

    /// The command that makes this mode's images.
    pub fn makes_images(self) -> &'static str {
        match self {
            Mode::Registry => "cargo xtask pull && cargo xtask build",
            Mode::RegistryFree => "cargo xtask build --registry-free",
        }
    }
}

/// The flag, then `project.mode`; in `auto` mode the decision remembered for this project
/// (`.v7/stacks/<project>/mode`), else the registries are probed (at most ~3 s), and the
/// decision is remembered and printed with its reason. Remembered because every command would
/// otherwise wait up to 3 s for black-holed registries (the networks we are for); deleting the
/// file, or `cargo xtask doctor`, decides again.
pub fn decide(ws: &Workspace, stack: &Stack, registry_free_flag: bool) -> Mode {
    if registry_free_flag {
        return Mode::RegistryFree;
    }
    match stack.project.mode {
        ModeSetting::RegistryFree => Mode::RegistryFree,
        ModeSetting::Registry => Mode::Registry,
        ModeSetting::Auto => match remembered(ws, stack) {
            Some((mode, why)) => {
                eprintln!("mode: {mode} ({why}; delete {} to decide again)", memory(ws, stack).display());
                mode
            }
            None => probe_and_remember(ws, stack),
        },
    }
}

fn memory(ws: &Workspace, stack: &Stack) -> PathBuf {
    ws.stack_state(&stack.project.name).join("mode")
}

/// The remembered `auto` decision and its reason.
pub fn remembered(ws: &Workspace, stack: &Stack) -> Option<(Mode, String)> {
    let text = std::fs::read_to_string(memory(ws, stack)).ok()?;
    let (mode, why) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    Some((Mode::parse(mode)?, why.to_string()))
}

/// Probes the registries now and remembers the answer (`doctor` calls this to decide again).
pub fn probe_and_remember(ws: &Workspace, stack: &Stack) -> Mode {
    let hosts = registry_hosts(stack);
    let (mode, why) = match first_reachable(&hosts, Duration::from_secs(3)) {
        Some(h) => (Mode::Registry, format!("{h} answered")),
        None => (Mode::RegistryFree, format!("no registry answered within 3 s: {}", hosts.join(", "))),
    };
    let why = format!("decided {}: {why}", utc_timestamp(now_unix()));
    let path = remember(ws, stack, mode, &why);
    eprintln!(
        "mode: {mode} ({why}); remembered in {} (set project.mode in docker/stack.toml or pass --registry-free to choose)",
        path.display()
    );
    mode
}

/// Remembers `mode` for the project (also a mode chosen with `--registry-free`: `status` and
/// the health supervisor then describe the stack that was deployed). Returns the file.
pub fn remember(ws: &Workspace, stack: &Stack, mode: Mode, why: &str) -> PathBuf {
    let path = memory(ws, stack);
    let _ = std::fs::create_dir_all(path.parent().expect("in a directory"));
    if remembered(ws, stack).map(|(m, _)| m) != Some(mode) {
        let _ = std::fs::write(&path, format!("{mode} {why}\n"));
    }
    path
}

/// The mode of output that must not wait for the network (`status`): the flag, the setting,
/// the remembered decision, else registry mode.
pub fn without_waiting(ws: &Workspace, stack: &Stack) -> Mode {
    match stack.project.mode {
        ModeSetting::RegistryFree => Mode::RegistryFree,
        ModeSetting::Registry => Mode::Registry,
        ModeSetting::Auto => remembered(ws, stack).map_or(Mode::Registry, |(m, _)| m),
    }
}

/// Without probing anything: the flag, then `project.mode`, `auto` counting as registry mode.
/// For output that must not depend on the network (`export`: the same checkout always exports
/// the same text).
pub fn without_probing(stack: &Stack, registry_free_flag: bool) -> Mode {
    if registry_free_flag || stack.project.mode == ModeSetting::RegistryFree {
        Mode::RegistryFree
    } else {
        Mode::Registry
    }
}

/// The registry hosts the stack's images come from, and the configured registry mirrors.
pub fn registry_hosts(stack: &Stack) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for svc in stack.services.values() {
        if let Ok(r) = ImageRef::parse(svc.image.get_ref()) {
            let host = if r.registry == "docker.io" { "registry-1.docker.io".to_string() } else { r.registry };
            if host != "localhost" && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    // Mirrors with their scheme's port: an `http://` mirror is probed on 80 unless it names one.
    for m in stack.pull.registry_mirrors.iter().filter_map(|m| RegistryMirror::parse(m.get_ref()).ok()) {
        let (host, port) = m.host_port();
        let target = authority(&host, port);
        if !hosts.contains(&target) {
            hosts.push(target);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    #[test]
    fn the_flag_and_the_setting_decide_without_probing() {
        let ws = Workspace::for_tests("mode");
        let stack = Stack::load(&ws).unwrap();
        assert_eq!(decide(&ws, &stack, true), Mode::RegistryFree, "the flag wins without a probe");
        std::fs::create_dir_all(ws.stack_state("v7")).unwrap();
        std::fs::write(ws.stack_state("v7").join("mode"), "registry-free decided then: nothing answered\n").unwrap();
        assert_eq!(decide(&ws, &stack, false), Mode::RegistryFree, "remembered, not probed");
        assert_eq!(without_waiting(&ws, &stack), Mode::RegistryFree);
        assert_eq!(remembered(&ws, &stack).unwrap().1, "decided then: nothing answered");
        std::fs::remove_dir_all(&ws.state).unwrap();
        assert_eq!(without_probing(&stack, false), Mode::Registry, "the repository's stack is `auto`");
        assert_eq!(registry_hosts(&stack), ["ghcr.io", "registry-1.docker.io"], "localhost images need no registry");
        let text = std::fs::read_to_string(Workspace::for_tests("mode").path("docker/stack.toml")).unwrap().replace(
            "registry_mirrors = []",
            "registry_mirrors = [\"http://127.0.0.1:5000\", \"https://m.example/hub\", \"http://lan\"]",
        );
        let mirrored = Stack::parse("docker/stack.toml", &text).unwrap();
        assert_eq!(registry_hosts(&mirrored)[2..], ["127.0.0.1:5000", "m.example:443", "lan:80"]);
        assert_eq!(Mode::parse(&Mode::RegistryFree.to_string()), Some(Mode::RegistryFree));
        assert_eq!(Mode::parse("offline"), None);
    }
}
