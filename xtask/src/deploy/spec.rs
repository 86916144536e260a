//! What one service's container should be, as data: its `podman run` arguments, grouped by
//! aspect (image, command, environment, mounts, secrets, networks, ports, limits, health,
//! runtime), everything coming from the stack file. The fingerprint of every aspect is stored on
//! the container as labels (`v7.fingerprint`, `v7.fingerprint.aspects`), so the next deploy can
//! tell an unchanged container from a changed one, and say which aspect changed, without
//! reading anything back from podman but two labels.

use std::collections::BTreeMap;
use std::path::Path;

use crate::podman::Podman;
use crate::process::Cmd;
use crate::stack::names::{ASPECTS_LABEL, FINGERPRINT_LABEL, PROJECT_LABEL, SERVICE_LABEL};
use crate::stack::Stack;
use crate::util::hash::Sha256;

/// The aspects of a container, in the order their arguments are given to `podman run`.
pub const ASPECTS: &[&str] =
    &["image", "runtime", "environment", "mounts", "secrets", "networks", "ports", "limits", "health", "command"];

/// What one container should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub service: String,
    pub container: String,
    /// The image reference podman runs.
    pub image: String,
    /// `(aspect, arguments)`, in [`ASPECTS`] order. `command` is what follows the image.
    pub aspects: Vec<(&'static str, Vec<String>)>,
}

/// The inputs of a spec that are not in the stack file: the image's ID (a rebuilt image under
/// the same tag is a change) and a digest of each secret's content.
pub struct Inputs<'a> {
    pub image: &'a str,
    pub image_id: &'a str,
    pub secret_digests: &'a BTreeMap<String, String>,
}

/// podman cannot schedule health checks without systemd, so every container is created with
/// `--health-interval disable`; the xtask's health supervisor (`supervisor.rs`) runs
/// `podman healthcheck run` on the manifest's interval, and `--health-on-failure restart` makes
/// podman itself restart a container whose check fails `retries` times in a row (verified on
/// podman 4.3.1). `--restart always` brings back a container whose process exits (podman's own
/// `container cleanup`, no systemd needed); `podman stop` is not undone by it.
pub fn spec(stack: &Stack, root: &Path, service: &str, inputs: &Inputs) -> Spec {
    let svc = &stack.services[service];
    let mut aspects: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut add = |aspect: &'static str, args: Vec<String>| aspects.push((aspect, args));
    add("image", vec![format!("{}@{}", inputs.image, inputs.image_id)]);
    add("runtime", strings(&["--init", "--restart", "always", "--stop-timeout", "10"]));
    add("environment", svc.environment.iter().flat_map(|(k, v)| ["-e".to_string(), format!("{k}={v}")]).collect());
    let mounts = svc.volumes.iter().flat_map(|v| {
        let spec = v.get_ref();
        let mount = match spec.strip_prefix("./") {
            Some(rel) => format!("{}/{rel}", root.display()),
            None => {
                let (name, rest) = spec.split_once(':').expect("validated: volume:/path");
                format!("{}:{rest}", stack.volume_name(name))
            }
        };
        ["-v".to_string(), mount]
    });
    add("mounts", mounts.collect());
    let mut secrets = Vec::new();
    for s in &svc.secrets {
        let (name, target) = secret_target(s.get_ref());
        let digest = inputs.secret_digests.get(name).map(String::as_str).unwrap_or("");
        // The digest is not an argument podman gets; it is in the aspect so that a changed
        // secret replaces the containers that read it.
        secrets.push("--secret".to_string());
        secrets.push(format!("{},target={target}", stack.secret_name(name)));
        secrets.push(format!("#{digest}"));
    }
    add("secrets", secrets);
    let mut networks = Vec::new();
    for n in &svc.networks {
        networks.extend(["--network".to_string(), stack.network_name(n.get_ref())]);
    }
    if !svc.networks.is_empty() {
        networks.extend(["--network-alias".to_string(), service.to_string()]);
    }
    add("networks", networks);
    add("ports", svc.published().iter().flat_map(|p| ["-p".to_string(), p.to_podman()]).collect());
    let mut limits = Vec::new();
    if let Some(cpus) = svc.resources.cpus {
        limits.extend(["--cpus".to_string(), cpus.to_string()]);
    }
    if let Some(m) = &svc.resources.memory {
        limits.extend(["--memory".to_string(), m.get_ref().clone()]);
    }
    add("limits", limits);
    let mut health = Vec::new();
    if let Some(hc) = &svc.healthcheck {
        let test: Vec<String> = hc.test.iter().map(|a| format!("\"{}\"", a.replace('"', "\\\""))).collect();
        health.extend(["--health-cmd".to_string(), format!("[{}]", test.join(","))]);
        health.extend(strings(&["--health-interval", "disable", "--health-on-failure", "restart"]));
        health.extend(["--health-retries".to_string(), hc.retries.to_string()]);
        health.extend(["--health-timeout".to_string(), hc.timeout.get_ref().clone()]);
        health.extend(["--health-start-period".to_string(), hc.start_period.get_ref().clone()]);
    }
    add("health", health);
    add("command", svc.command.clone());
    Spec {
        service: service.to_string(),
        container: stack.container_name(service),
        image: inputs.image.to_string(),
        aspects,
    }
}

/// `NAME` -> (`NAME`, `/run/secrets/NAME`); `NAME:/path` -> (`NAME`, `/path`).
pub fn secret_target(entry: &str) -> (&str, String) {
    match entry.split_once(':') {
        Some((name, path)) => (name, path.to_string()),
        None => (entry, format!("/run/secrets/{entry}")),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl Spec {
    /// `aspect=<12 hex digits>` for every aspect, space-separated: the `v7.fingerprint.aspects` label.
    pub fn aspect_digests(&self) -> String {
        let parts: Vec<String> = self
            .aspects
            .iter()
            .map(|(aspect, args)| {
                let mut h = Sha256::new();
                for a in args {
                    h.field(a);
                }
                format!("{aspect}={}", &h.hex()[..12])
            })
            .collect();
        parts.join(" ")
    }

    /// The `v7.fingerprint` label: one digest of all aspects.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.field(&self.container).field(self.aspect_digests());
        h.hex()[..16].to_string()
    }

    /// The aspects whose digest differs from a container's `v7.fingerprint.aspects` label
    /// (all of them when the label is missing or unreadable).
    pub fn changed_aspects(&self, label: &str) -> Vec<&'static str> {
        let theirs: BTreeMap<&str, &str> = label.split_whitespace().filter_map(|p| p.split_once('=')).collect();
        let ours = self.aspect_digests();
        let mut changed = Vec::new();
        for (aspect, digest) in ours.split_whitespace().filter_map(|p| p.split_once('=')) {
            if theirs.get(aspect) != Some(&digest) {
                changed.push(ASPECTS.iter().copied().find(|a| *a == aspect).unwrap_or("image"));
            }
        }
        changed
    }

    /// `podman run -d` for this spec under `name` (the service's container name, normally).
    pub fn run_command(&self, podman: &Podman, stack: &Stack, name: &str) -> Cmd {
        self.command(podman.cmd().args(["run", "-d", "--name", name]), stack)
    }

    /// `podman create`: the container made, not started (a replacement prepares it while the
    /// old one still serves).
    pub fn create_command(&self, podman: &Podman, stack: &Stack, name: &str) -> Cmd {
        self.command(podman.cmd().args(["create", "--name", name]), stack)
    }

    fn command(&self, mut cmd: Cmd, stack: &Stack) -> Cmd {
        cmd = cmd.arg("--label").arg(format!("{PROJECT_LABEL}={}", stack.project.name));
        cmd = cmd.arg("--label").arg(format!("{SERVICE_LABEL}={}", self.service));
        cmd = cmd.arg("--label").arg(format!("{FINGERPRINT_LABEL}={}", self.fingerprint()));
        cmd = cmd.arg("--label").arg(format!("{ASPECTS_LABEL}={}", self.aspect_digests()));
        for (aspect, args) in &self.aspects {
            if matches!(*aspect, "image" | "command") {
                continue;
            }
            // Digest markers (`#...`) are for the fingerprint only.
            cmd = cmd.args(args.iter().filter(|a| !a.starts_with('#')).cloned());
        }
        cmd = cmd.arg(&self.image);
        let command = self.aspects.iter().find(|(a, _)| *a == "command").map(|(_, args)| args.clone());
        cmd.args(command.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    fn backend(stack: &Stack, image_id: &str, digests: &BTreeMap<String, String>) -> Spec {
        spec(stack, Path::new("/repo"), "backend", &Inputs { image: "img:1", image_id, secret_digests: digests })
    }

    #[test]
    fn the_run_command_for_backend_is_planned_from_the_stack_file() {
        let stack = Stack::load(&Workspace::for_tests("spec")).unwrap();
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c")]);
        let none = BTreeMap::new();
        let s = backend(&stack, "sha256:aa", &none);
        let args = s.run_command(&podman, &stack, "v7-backend").args.join(" ");
        assert!(
            args.starts_with("run -d --name v7-backend --label v7.project=v7 --label v7.service=backend"),
            "{args}"
        );
        assert!(args.contains(&format!("--label v7.fingerprint={} ", s.fingerprint())), "{args}");
        assert!(args.contains("--init --restart always --stop-timeout 10"), "{args}");
        assert!(args.contains("--network v7-frontend --network v7-backend --network-alias backend"), "{args}");
        assert!(args.contains("-p 127.0.0.1:3000:3000 -p 127.0.0.1:50053:50053"), "{args}");
        assert!(args.contains("-e V7_ANALYTICS_URL=http://analytics-engine:50051"), "{args}");
        assert!(
            args.contains("--health-cmd [\"/usr/local/bin/backend\",\"healthcheck\"] --health-interval disable"),
            "{args}"
        );
        assert!(args.contains("--health-on-failure restart --health-retries 3 --health-timeout 3s"), "{args}");
        assert!(args.ends_with("--health-start-period 5s img:1"), "{args}");
        let nats =
            spec(&stack, Path::new("/repo"), "nats", &Inputs { image: "n:1", image_id: "x", secret_digests: &none })
                .run_command(&podman, &stack, "v7-nats")
                .args
                .join(" ");
        assert!(nats.contains("-v v7-nats-data:/data -v /repo/docker/nats/nats.conf:/etc/nats/nats.conf:ro"), "{nats}");
        assert!(nats.ends_with("n:1 --config /etc/nats/nats.conf"), "{nats}");
        let engine = spec(
            &stack,
            Path::new("/repo"),
            "analytics-engine",
            &Inputs { image: "a:1", image_id: "x", secret_digests: &none },
        )
        .run_command(&podman, &stack, "v7-analytics-engine")
        .args
        .join(" ");
        assert!(
            engine.contains("--secret v7-clickhouse-password,target=/run/secrets/clickhouse-password --network"),
            "no digest marker reaches podman: {engine}"
        );
    }

    /// Without `--profile` every service's run spec (arguments, fingerprint) is byte for byte
    /// what the stack file gave before it had profiles, so adding them replaces no running
    /// container on the next deploy; a profile does change what it says, and only that.
    #[test]
    fn without_a_profile_the_run_specs_are_the_ones_before_profiles() {
        let ws = Workspace::for_tests("spec-profiles");
        let text = std::fs::read_to_string(ws.path("docker/stack.toml")).unwrap();
        let before = Stack::parse("docker/stack.toml", &crate::stack::profile::without_profiles(&text)).unwrap();
        let now = Stack::load(&ws).unwrap();
        assert!(before.profiles.is_empty() && !now.profiles.is_empty() && now.profile.is_none());
        let digests = BTreeMap::from([("clickhouse-password".to_string(), "d".to_string())]);
        let inputs = Inputs { image: "i:1", image_id: "sha256:aa", secret_digests: &digests };
        let podman = Podman::fixed(&[]);
        let dev = Stack::load_profile(&ws, Some("dev")).unwrap();
        for name in now.services.keys() {
            let (old, new) =
                (spec(&before, Path::new("/r"), name, &inputs), spec(&now, Path::new("/r"), name, &inputs));
            assert_eq!(old, new, "line: {name}'s spec");
            assert_eq!(old.fingerprint(), new.fingerprint(), "line: {name}'s fingerprint");
            let run = |s: &Spec, st: &Stack| s.run_command(&podman, st, name).args;
            assert_eq!(run(&old, &before), run(&new, &now), "line: {name}'s podman run");
            let changed = spec(&dev, Path::new("/r"), name, &inputs).changed_aspects(&new.aspect_digests());
            let want: &[&str] = match name.as_str() {
                "backend" | "analytics-engine" => &["environment"],
                _ => &[],
            };
            assert_eq!(changed, want, "line: what dev changes in {name}");
        }
    }

    #[test]
    fn the_fingerprint_names_what_changed() {
        let stack = Stack::load(&Workspace::for_tests("spec-diff")).unwrap();
        let none = BTreeMap::new();
        let old = backend(&stack, "sha256:aa", &none);
        assert_eq!(old.fingerprint(), backend(&stack, "sha256:aa", &none).fingerprint(), "stable");
        assert!(old.changed_aspects(&old.aspect_digests()).is_empty());
        assert_eq!(backend(&stack, "sha256:bb", &none).changed_aspects(&old.aspect_digests()), ["image"]);
        let text =
            std::fs::read_to_string(Workspace::for_tests("spec-diff").path("docker/stack.toml")).unwrap().replace(
                "V7_ANALYTICS_URL = \"http://analytics-engine:50051\", RUST_LOG = \"info\"",
                "V7_ANALYTICS_URL = \"http://analytics-engine:50051\", RUST_LOG = \"debug\"",
            );
        let changed = Stack::parse("docker/stack.toml", &text).unwrap();
        let new = backend(&changed, "sha256:aa", &none);
        assert_ne!(new.fingerprint(), old.fingerprint());
        assert_eq!(new.changed_aspects(&old.aspect_digests()), ["environment"]);
        assert_eq!(old.changed_aspects("").len(), ASPECTS.len(), "no label: everything counts as changed");
        let engine = |d: &str| {
            let digests = BTreeMap::from([("clickhouse-password".to_string(), d.to_string())]);
            spec(
                &stack,
                Path::new("/r"),
                "analytics-engine",
                &Inputs { image: "a", image_id: "x", secret_digests: &digests },
            )
        };
        assert_eq!(engine("new").changed_aspects(&engine("old").aspect_digests()), ["secrets"]);
    }
}
