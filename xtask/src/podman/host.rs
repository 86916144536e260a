//! How podman must be configured on this host: a pure function of the host's facts.
//!
//! On hosts with hybrid cgroups (v1 controllers plus an empty v2 "unified" mount) crun fails
//! with `cgroups in hybrid mode not supported`, and where the hard RLIMIT_NOFILE / NPROC is
//! below podman's defaults every `podman run` fails with `setrlimit ... operation not
//! permitted`. CI runners and nested containers look like that. Instead of asking users to edit
//! system files, the xtask writes its own `containers.conf` under `.v7/podman/` and passes it
//! to every podman call with `CONTAINERS_CONF` (podman 4.3 ignores CONTAINERS_CONF_OVERRIDE,
//! and CONTAINERS_CONF replaces rather than merges, so the file is complete on its own).
//! The decision is a pure function of [`HostFacts`], tested below; [`super::Podman`] applies it.

use std::path::Path;

use crate::process::on_path;

/// podman's built-in default ulimits for root containers.
const PODMAN_DEFAULT_NOFILE: u64 = 1_048_576;
const PODMAN_DEFAULT_NPROC: u64 = 4_194_304;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    /// v1 controllers with an additional cgroup2 mount at /sys/fs/cgroup/unified.
    Hybrid,
    V2,
}

/// What podman's defaults depend on, read from the host (or written by a test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub cgroups: Cgroups,
    pub has_runc: bool,
    pub has_crun: bool,
    pub nofile_hard: Option<u64>,
    pub nproc_hard: Option<u64>,
    pub has_systemd: bool,
}

/// The settings the xtask applies, each with the reason it prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adaptation {
    pub runtime: Option<String>,
    pub ulimits: Vec<String>,
    pub reasons: Vec<String>,
    /// No systemd: podman cannot schedule health checks, so the xtask runs them itself.
    pub manual_healthchecks: bool,
}

pub fn adapt(facts: &HostFacts) -> Adaptation {
    let mut a = Adaptation::default();
    if facts.has_runc && (facts.cgroups == Cgroups::Hybrid || !facts.has_crun) {
        a.runtime = Some("runc".to_string());
        a.reasons.push(if facts.cgroups == Cgroups::Hybrid {
            "cgroups are in hybrid mode, which crun cannot use: runtime = runc".to_string()
        } else {
            "crun is not installed: runtime = runc".to_string()
        });
    }
    for (name, hard, default) in
        [("nofile", facts.nofile_hard, PODMAN_DEFAULT_NOFILE), ("nproc", facts.nproc_hard, PODMAN_DEFAULT_NPROC)]
    {
        if let Some(hard) = hard.filter(|&h| h < default) {
            a.ulimits.push(format!("{name}={hard}:{hard}"));
            a.reasons.push(format!(
                "hard RLIMIT_{} is {hard}, below podman's default {default}, and cannot be raised \
                 here: default_ulimits {name}={hard}:{hard}",
                name.to_uppercase()
            ));
        }
    }
    if !facts.has_systemd {
        a.manual_healthchecks = true;
        a.reasons.push(
            "no systemd: podman cannot schedule health checks, so deploy runs `podman healthcheck run` itself"
                .to_string(),
        );
    }
    a
}

/// The complete containers.conf for an adaptation (CONTAINERS_CONF replaces, never merges).
pub fn containers_conf(a: &Adaptation) -> String {
    let mut out = String::from("# Written by `cargo xtask` for its own podman calls; see `cargo xtask doctor`.\n");
    out.push_str("[containers]\n");
    if !a.ulimits.is_empty() {
        let list: Vec<String> = a.ulimits.iter().map(|u| format!("\"{u}\"")).collect();
        out.push_str(&format!("default_ulimits = [{}]\n", list.join(", ")));
    }
    out.push_str("\n[engine]\n");
    if let Some(rt) = &a.runtime {
        out.push_str(&format!("runtime = \"{rt}\"\n"));
    }
    out
}

/// Reads the facts from this host.
pub fn gather_facts() -> HostFacts {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let unified = Path::new("/sys/fs/cgroup/unified").is_dir();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    HostFacts {
        cgroups: if v2 {
            Cgroups::V2
        } else if unified {
            Cgroups::Hybrid
        } else {
            Cgroups::V1
        },
        has_runc: on_path("runc"),
        has_crun: on_path("crun"),
        nofile_hard: hard_limit(&limits, "Max open files"),
        // runc cannot set RLIMIT_NPROC above kernel.pid_max (32768 here) even when the hard limit is higher.
        nproc_hard: hard_limit(&limits, "Max processes").map(|h| {
            std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|m| m.trim().parse::<u64>().ok())
                .map_or(h, |m| h.min(m))
        }),
        has_systemd: Path::new("/run/systemd/system").is_dir(),
    }
}

/// The hard limit column of a `/proc/self/limits` row; `None` for "unlimited".
pub fn hard_limit(limits: &str, row: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    line[row.len()..].split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci_like() -> HostFacts {
        HostFacts {
            cgroups: Cgroups::Hybrid,
            has_runc: true,
            has_crun: true,
            nofile_hard: Some(20000),
            nproc_hard: Some(96365),
            has_systemd: false,
        }
    }

    #[test]
    fn hybrid_host_with_low_limits_gets_runc_and_ulimits() {
        let a = adapt(&ci_like());
        assert_eq!(a.runtime.as_deref(), Some("runc"));
        assert_eq!(a.ulimits, vec!["nofile=20000:20000", "nproc=96365:96365"]);
        assert!(a.manual_healthchecks);
        assert_eq!(
            containers_conf(&a),
            "# Written by `cargo xtask` for its own podman calls; see `cargo xtask doctor`.\n\
             [containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=96365:96365\"]\n\n\
             [engine]\nruntime = \"runc\"\n"
        );
    }

    #[test]
    fn ordinary_host_changes_nothing() {
        let facts = HostFacts {
            cgroups: Cgroups::V2,
            nofile_hard: Some(PODMAN_DEFAULT_NOFILE),
            nproc_hard: None,
            has_systemd: true,
            ..ci_like()
        };
        let a = adapt(&facts);
        assert_eq!(a, Adaptation::default());
    }

    #[test]
    fn runc_only_when_installed() {
        let a = adapt(&HostFacts { has_runc: false, ..ci_like() });
        assert_eq!(a.runtime, None);
    }

    #[test]
    fn reads_hard_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             96365                96365                processes\n\
                      Max open files            1024                 20000                files\n\
                      Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(hard_limit(limits, "Max open files"), Some(20000));
        assert_eq!(hard_limit(limits, "Max processes"), Some(96365));
        assert_eq!(hard_limit(limits, "Max locked memory"), None);
    }
}
