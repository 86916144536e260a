//! Making the stack's images exist: pulled (`pull/`), built (`build/`, production recipes
//! rewritten for package mirrors by `dockerfile/`), made without any registry
//! (`registry_free/`), or loaded from a bundle (`bundle/`); and the service images published
//! (`push/`). `deploy` asks for them through one entry point, [`ensure`]; `build` through
//! [`build`].

pub mod build;
pub mod bundle;
pub mod dockerfile;
pub mod pull;
pub mod push;
pub mod registry_free;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::net::proxy;
use crate::oci::ImageRef;
use crate::podman::images::{podman_reference, presence};
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::{Mode, PackageMirrors, Stack};
use crate::util::workspace::Workspace;
use build::schedule::Controls;
use build::Bases;

/// What to build, and how.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Services to build (all when empty).
    pub services: Vec<String>,
    /// Package mirrors (what they are, for the output: `preset aliyun`, `--mirror npm=...`;
    /// the mirrors) to rewrite the Dockerfiles for (production or registry-free recipes).
    pub package_mirrors: Option<(String, PackageMirrors)>,
    /// Build even when nothing changed.
    pub force: bool,
    /// Registry-free mode: make the Debian base anew.
    pub rebuild_base: bool,
    /// How many builds at once, stop or keep going, `--json`.
    pub controls: Controls,
}

/// Every image the stack runs in `mode`, here: in registry mode, the base and infrastructure
/// images pulled (with the pull's retries and mirrors rather than podman build's and podman
/// run's single attempt), then the service images built; in registry-free mode, all of it made
/// on this machine. What is up to date is left as it is.
pub fn ensure(ws: &Workspace, runner: &Runner, stack: &Stack, mode: Mode) -> Result<()> {
    match mode {
        Mode::RegistryFree => {
            registry_free::build_all(ws, runner, stack, &[], None, false, false, &Controls::default())
        }
        Mode::Registry => {
            pull::pull(ws, runner, &pull::Options::default())?;
            build_registry(ws, runner, stack, &BuildOptions::default(), false)
        }
    }
}

/// How many of the images the stack runs in `mode` are not here (what deploy's disk check
/// makes room for).
pub fn missing(runner: &Runner, podman: &Podman, stack: &Stack, mode: Mode) -> Result<usize> {
    let refs: Vec<ImageRef> =
        crate::stack::placement::plan(stack, mode).images().iter().filter_map(|i| ImageRef::parse(i).ok()).collect();
    Ok(presence(runner, podman, &refs)?.iter().filter(|f| f.is_none()).count())
}

/// `cargo xtask build`: the service images of `mode`.
pub fn build(ws: &Workspace, runner: &Runner, stack: &Stack, mode: Mode, opts: &BuildOptions) -> Result<()> {
    match mode {
        Mode::RegistryFree => {
            let mirrors = opts.package_mirrors.as_ref().map(|(n, m)| (n.as_str(), m));
            registry_free::build_all(
                ws,
                runner,
                stack,
                &opts.services,
                mirrors,
                opts.force,
                opts.rebuild_base,
                &opts.controls,
            )
        }
        Mode::Registry => build_registry(ws, runner, stack, opts, true),
    }
}

/// The production builds; with `pull_bases`, the base images that are missing are pulled first
/// (their IDs go into the fingerprints, so a re-pulled base rebuilds what stands on it).
fn build_registry(ws: &Workspace, runner: &Runner, stack: &Stack, opts: &BuildOptions, pull_bases: bool) -> Result<()> {
    let mirrors = opts.package_mirrors.as_ref().map(|(n, m)| (n.as_str(), m));
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let proxies = proxy::checked(&env)?;
    let builds = build::plan::plan(ws, stack, &opts.services, mirrors, runner.dry_run)?;
    let bases = Bases::of(&builds)?;
    let mut podman = Podman::prepare(ws)?;
    let mut found = presence(runner, &podman, &bases.all)?;
    let missing: Vec<String> =
        bases.all.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(r, _)| podman_reference(r)).collect();
    if pull_bases && !missing.is_empty() {
        pull::pull(ws, runner, &pull::Options { images: missing, ..pull::Options::default() })?;
        // Prepared again: the pull may have written the registries.conf for registry mirrors.
        podman = Podman::prepare(ws)?;
        found = presence(runner, &podman, &bases.all)?;
    }
    let builds = bases.record(builds, &found);
    if !proxies.is_empty() {
        eprintln!("proxies for builds (podman passes them to RUN steps, not into images): {}", proxies.describe());
    }
    for w in proxies.warnings() {
        eprintln!("warning: {w}");
    }
    let log_dir = ws.state.join("build").join(&stack.project.name);
    build::run_builds(runner, &podman, &proxies, &stack.project.name, &log_dir, builds, opts.force, &opts.controls)
}
