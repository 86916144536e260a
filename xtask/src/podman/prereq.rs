//! Host prerequisites: what a command needs on this machine and, where it can (root, or
//! passwordless sudo, with apt-get), installs what is missing, saying exactly what it did.
//! Nothing else in the xtask installs host packages.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

use crate::process::{on_path, Cmd, Runner};

/// One thing a command needs, and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// A program on PATH (or in /usr/sbin, /sbin), or an absolute path that must exist.
    pub check: &'static str,
    pub package: &'static str,
}

const fn need(check: &'static str, package: &'static str) -> Need {
    Need { check, package }
}

/// podman as ../shared/notes/podman.md says it must be installed here: runc (crun cannot do
/// hybrid cgroups), aardvark-dns (container names resolve), catatonit (`--init`).
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

/// The services' tests run against real servers; the Rust services compile protos (so does
/// clippy, which runs their build scripts).
pub const SERVICE_TESTS: &[Need] = &[
    need("nats-server", "nats-server"),
    need("clickhouse-server", "clickhouse-server"),
    need("protoc", "protobuf-compiler"),
];

/// The lint suite: clippy compiles protos (the Rust services' build scripts); actionlint (from
/// PyPI, `cli/test.rs`) checks the workflows' `run:` scripts with shellcheck, and skips them
/// silently without it.
pub const LINT: &[Need] = &[need("protoc", "protobuf-compiler"), need("shellcheck", "shellcheck")];

/// The podman end-to-end tests run a real registry, drive the deployed dashboard in a real
/// browser (Debian's headless chromium through its chromedriver; Selenium comes from PyPI), and
/// start the compose export with Debian's podman-compose (1.0.3 on bookworm).
pub const E2E_TESTS: &[Need] = &[
    need("docker-registry", "docker-registry"),
    // push_e2e: the registry's TLS certificate and its bcrypt htpasswd file.
    need("openssl", "openssl"),
    need("htpasswd", "apache2-utils"),
    need("chromium", "chromium"),
    need("chromedriver", "chromium-driver"),
    need("podman-compose", "podman-compose"),
    // build_e2e and pull_e2e: an authenticated proxy (the binary alone: `tinyproxy` would start
    // a daemon) and curl (the fixture build runs it through the proxy; the pull relay's TLS
    // client).
    need("tinyproxy", "tinyproxy-bin"),
    need("curl", "curl"),
    // mirror_e2e: the live apt mirror builds go through.
    need("apt-cacher-ng", "apt-cacher-ng"),
];

fn present(n: &Need) -> bool {
    if n.check.starts_with('/') {
        Path::new(n.check).exists()
    } else {
        on_path(n.check) || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(n.check).exists())
    }
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Makes sure every need is met, installing the missing packages with apt-get as root (or
/// through passwordless sudo, as on GitHub's runners); otherwise fails with the command to run.
pub fn ensure(what_for: &str, needs: &[Need]) -> Result<()> {
    let mut missing: Vec<&str> = needs.iter().filter(|n| !present(n)).map(|n| n.package).collect();
    missing.dedup();
    if missing.is_empty() {
        let names: Vec<&str> = needs.iter().map(|n| n.package).collect();
        eprintln!("prerequisites for {what_for}: present ({})", names.join(", "));
        return Ok(());
    }
    let list = missing.join(" ");
    let runner = Runner::new(false);
    let root = is_root();
    let sudo = !root && on_path("sudo") && runner.succeeds(&Cmd::new("sudo").args(["-n", "true"])).unwrap_or(false);
    if !(root || sudo) || !on_path("apt-get") {
        bail!(
            "{what_for} needs packages that are not installed: {list}\n  hint: sudo apt-get update && sudo apt-get install -y {list}"
        );
    }
    let apt = |args: &[&str]| -> Cmd {
        let cmd = if root {
            Cmd::new("apt-get")
        } else {
            Cmd::new("sudo").args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"])
        };
        cmd.args(args.iter().copied()).env("DEBIAN_FRONTEND", "noninteractive")
    };
    eprintln!("prerequisites for {what_for}: installing with apt-get: {list}");
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        runner.run_checked(&apt(&["update", "-q"])).map_err(|e| e.context("apt-get update failed"))?;
    }
    let mut install = vec!["install", "-y", "-q"];
    install.extend(missing.iter().copied());
    runner.run_checked(&apt(&install)).map_err(|e| e.context(format!("apt-get install {list} failed")))?;
    let still: Vec<&str> = needs.iter().filter(|n| !present(n)).map(|n| n.check).collect();
    if !still.is_empty() {
        bail!("installed {list}, but these are still missing: {}", still.join(", "));
    }
    eprintln!("prerequisites for {what_for}: installed {list}");
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
