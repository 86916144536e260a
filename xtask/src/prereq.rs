//! Host prerequisites: checks what a command needs and, where it can (root with apt-get),
//! installs what is missing, saying exactly what it did. Nothing else in the xtask installs
//! host packages.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::podman_host::on_path;

/// One thing a command needs, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// A program on PATH, or an absolute path that must exist.
    pub check: &'static str,
    pub package: &'static str,
}

const fn need(check: &'static str, package: &'static str) -> Need {
    Need { check, package }
}

/// podman as podman.md says it must be installed here: runc (crun cannot do hybrid cgroups),
/// aardvark-dns (container names resolve), catatonit (`--init`).
pub const PODMAN: &[Need] = &[
    need("podman", "podman"),
    need("runc", "runc"),
    need("/usr/lib/podman/aardvark-dns", "aardvark-dns"),
    need("/usr/libexec/podman/catatonit", "catatonit"),
    need("buildah", "buildah"),
    need("skopeo", "skopeo"),
];

/// Registry-free mode: the Debian base image is made with debootstrap.
pub const REGISTRY_FREE: &[Need] = &[need("debootstrap", "debootstrap")];

/// The services' tests run against real servers; the Rust services compile protos.
pub const SERVICE_TESTS: &[Need] = &[
    need("nats-server", "nats-server"),
    need("clickhouse-server", "clickhouse-server"),
    need("protoc", "protobuf-compiler"),
];

/// The podman end-to-end tests run a real registry.
pub const E2E_TESTS: &[Need] = &[need("docker-registry", "docker-registry")];

fn present(n: &Need) -> bool {
    if n.check.starts_with('/') {
        std::path::Path::new(n.check).exists()
    } else {
        on_path(n.check) || ["/usr/sbin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(n.check).exists())
    }
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Makes sure every need is met, installing the missing packages with apt-get when running as
/// root; otherwise fails with the command to run.
pub fn ensure(sh: &Shell, what_for: &str, needs: &[Need]) -> Result<()> {
    let mut missing: Vec<&str> = needs.iter().filter(|n| !present(n)).map(|n| n.package).collect();
    missing.dedup();
    if missing.is_empty() {
        let names: Vec<&str> = needs.iter().map(|n| n.package).collect();
        eprintln!("prerequisites for {what_for}: present ({})", names.join(", "));
        return Ok(());
    }
    let list = missing.join(" ");
    let root = is_root_uid();
    // GitHub's runners are not root but have passwordless sudo.
    let sudo = !root && on_path("sudo") && cmd!(sh, "sudo -n true").quiet().ignore_stderr().run().is_ok();
    if !(root || sudo) || !on_path("apt-get") {
        bail!(
            "{what_for} needs packages that are not installed: {list}\n  hint: sudo apt-get update && sudo apt-get install -y {list}"
        );
    }
    let (apt, pre): (&str, &[&str]) =
        if root { ("apt-get", &[]) } else { ("sudo", &["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]) };
    eprintln!("prerequisites for {what_for}: installing with apt-get: {list}");
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        cmd!(sh, "{apt} {pre...} update -q").quiet().ignore_stdout().run().context("apt-get update failed")?;
    }
    cmd!(sh, "{apt} {pre...} install -y -q {missing...}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("apt-get install {list} failed"))?;
    let still: Vec<&str> = needs.iter().filter(|n| !present(n)).map(|n| n.check).collect();
    if !still.is_empty() {
        bail!("installed {list}, but these are still missing: {}", still.join(", "));
    }
    eprintln!("prerequisites for {what_for}: installed {list}");
    Ok(())
}

fn is_root_uid() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
