//! The registry-free builds' dependencies, fetched on the host (where HTTPS to crates.io, npm and
//! PyPI works; inside a container it does not): `cargo vendor` for the workspace, the npm cache
//! for web, pip wheels for the Python component. Each kind is fetched only when a chosen recipe
//! mounts it, and only again when its lock file changes (a stamp holds the lock file's SHA-256).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::images::build::ImageBuild;
use crate::process::{python, Cmd, Runner};
use crate::util::fs::write_if_changed;
use crate::util::hash::sha256_hex;
use crate::util::workspace::Workspace;

/// Where the recipes find each kind (`podman build -v HOST:TARGET`).
pub const CARGO_VENDOR: &str = "/deps/cargo-vendor";
pub const CARGO_TARGET: &str = "/deps/cargo-target";
pub const NPM_CACHE: &str = "/deps/npm-cache";
pub const PIP_WHEELS: &str = "/deps/pip-wheels";

/// Host directories with the fetched dependencies, by kind.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    pub cargo_vendor: Option<PathBuf>,
    pub cargo_target: Option<PathBuf>,
    pub npm_cache: Option<PathBuf>,
    pub pip_wheels: Option<PathBuf>,
}

/// Fetches what `builds` need, each kind skipped while its lock file is unchanged.
/// `dir`: registry-free mode's cache directory.
pub fn fetch(ws: &Workspace, runner: &Runner, dir: &Path, builds: &[ImageBuild]) -> Result<Dependencies> {
    let mut deps = Dependencies::default();
    let uses = |needle: &str| {
        builds.iter().any(|b| std::fs::read_to_string(&b.dockerfile).unwrap_or_default().contains(needle))
    };
    if uses(CARGO_VENDOR) {
        let vendor = dir.join("cargo-vendor");
        let lock = std::fs::read_to_string(ws.path("Cargo.lock")).context("cannot read Cargo.lock")?;
        fetch_once(runner, &dir.join("cargo-vendor.stamp"), &lock, "Rust crates (cargo vendor)", || {
            let _ = std::fs::remove_dir_all(&vendor);
            let vendor_cmd = Cmd::new("cargo").args(["vendor", "--locked", "--quiet"]).path_arg(&vendor).dir(&ws.root);
            runner.run_checked(&vendor_cmd)?;
            Ok(())
        })?;
        deps.cargo_vendor = Some(vendor);
        let target = dir.join("cargo-target");
        std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
        deps.cargo_target = Some(target);
    }
    if uses(NPM_CACHE) {
        let cache = dir.join("npm-cache");
        let lock =
            std::fs::read_to_string(ws.path("web/package-lock.json")).context("cannot read web/package-lock.json")?;
        fetch_once(runner, &dir.join("npm-cache.stamp"), &lock, "npm packages (npm ci into a cache)", || {
            // A scratch copy of the manifests: the host's own web/node_modules is not touched.
            let scratch = dir.join("npm-fetch");
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch)?;
            for f in ["package.json", "package-lock.json"] {
                std::fs::copy(ws.path("web").join(f), scratch.join(f))?;
            }
            let npm =
                Cmd::new("npm").args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache"]).path_arg(&cache);
            runner.run_checked(&npm.dir(&scratch))?;
            std::fs::remove_dir_all(&scratch)?;
            Ok(())
        })?;
        deps.npm_cache = Some(cache);
    }
    if uses(PIP_WHEELS) {
        let wheels = dir.join("pip-wheels");
        let req = ws.path("analytics-engine/python/requirements.txt");
        let pyproject = ws.path("analytics-engine/python/pyproject.toml");
        let key = format!("{}\n{}", std::fs::read_to_string(&req)?, std::fs::read_to_string(&pyproject)?);
        fetch_once(runner, &dir.join("pip-wheels.stamp"), &key, "Python packages (pip download)", || {
            let _ = std::fs::remove_dir_all(&wheels);
            // The build backend pip needs for `pip install .` comes along too.
            let pip = Cmd::new(python())
                .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"])
                .args(["--python-version", "3.11", "-d"])
                .path_arg(&wheels)
                .arg("-r")
                .path_arg(&req)
                .args(["setuptools>=61", "wheel"]);
            runner.run_checked(&pip)?;
            Ok(())
        })?;
        deps.pip_wheels = Some(wheels);
    }
    Ok(deps)
}

/// Runs `fetch` unless the stamp says it already ran for the same `key` (a lock file's text).
fn fetch_once(runner: &Runner, stamp: &Path, key: &str, what: &str, fetch: impl FnOnce() -> Result<()>) -> Result<()> {
    let digest = sha256_hex(key);
    if std::fs::read_to_string(stamp).ok().as_deref() == Some(digest.as_str()) {
        eprintln!("dependencies: {what}: up to date");
        return Ok(());
    }
    if runner.dry_run {
        eprintln!("dependencies: {what}: would fetch on the host");
        return Ok(());
    }
    eprintln!("dependencies: {what}: fetching on the host");
    // The stamp goes only after a complete fetch: an interrupted one is redone.
    let _ = std::fs::remove_file(stamp);
    fetch().with_context(|| format!("fetching {what} failed (the registries must be reachable from this host)"))?;
    write_if_changed(stamp, &digest)
}
