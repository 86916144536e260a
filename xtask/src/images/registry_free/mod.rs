//! Registry-free mode: every image of the stack made on this machine, for networks where no
//! container registry answers (and for these development machines, which are such a network).
//!
//! 1. Base (`base.rs`): `debootstrap --variant=minbase` from the configured Debian mirror,
//!    slimmed by `docker/base/customize.sh`, imported with `podman import` as
//!    `localhost/<project>-registry-free/base:<suite>`, with labels recording suite, mirror,
//!    archive date, package count and recipe. It is reused while its recipe label matches;
//!    making it anew is explicit (`build --registry-free --rebuild-base`).
//! 2. Dependencies (`dependencies.rs`) are fetched on the host, where HTTPS to the registries
//!    works (inside a container it does not: the host trusts a CA the containers do not):
//!    `cargo vendor` for the workspace, the npm cache for web, pip wheels for the Python
//!    component. They reach the builds as read-only `podman build -v` mounts, not through the
//!    context, so they neither bloat it nor leak into an image layer.
//! 3. Images: NATS, ClickHouse and Prometheus from Debian packages
//!    (`docker/<name>/Dockerfile.registry-free`) and the three services
//!    (`<service>/Dockerfile.registry-free`, beside the production recipe), built in parallel
//!    on the base with `--pull=never`. Rust builds share a target directory mounted from
//!    `<state>/registry-free/cargo-target`, so a one-line change recompiles one crate. Grafana
//!    has no Debian package: this mode runs without it and says so.
//!
//! What an image is (binary, user, ports, health check) has one source of truth,
//! `docker/stack.toml`; the `tidy` tests check both recipes of every service against it.

pub mod base;
pub mod dependencies;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::build::plan::select_services;
use super::build::schedule::Controls;
use super::build::{run_builds, Bases, ImageBuild};
use crate::net::proxy;
use crate::podman::images::presence;
use crate::podman::prereq;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::names::MODE_LABEL;
use crate::stack::Stack;
use crate::util::workspace::Workspace;
use dependencies::Dependencies;

/// Where registry-free mode keeps its caches (vendored crates, npm cache, wheels, the shared
/// Rust target directory, debootstrap's packages).
pub fn cache_dir(ws: &Workspace) -> PathBuf {
    ws.state.join("registry-free")
}

/// Builds everything registry-free mode needs for `services` (all when empty): the base, the
/// dependencies, the images.
pub fn build_all(
    ws: &Workspace,
    runner: &Runner,
    stack: &Stack,
    services: &[String],
    force: bool,
    rebuild_base: bool,
    controls: &Controls,
) -> Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let proxies = proxy::checked(&env)?;
    let mut needs = prereq::PODMAN.to_vec();
    needs.extend_from_slice(prereq::REGISTRY_FREE);
    if !runner.dry_run {
        prereq::ensure("registry-free mode", &needs)?;
    }
    let podman = Podman::prepare(ws)?;
    let builds = plan(ws, stack, services)?;
    let cache = cache_dir(ws);
    base::ensure(ws, runner, &podman, stack, &cache, rebuild_base)?;
    let deps = dependencies::fetch(ws, runner, &cache, &builds)?;
    let builds: Vec<ImageBuild> = builds.into_iter().map(|b| with_dependencies(b, &deps)).collect();
    let bases = Bases::of(&builds)?;
    let builds = bases.record(builds, &presence(runner, &podman, &bases.all)?);
    let log_dir = ws.state.join("build").join(&stack.project.name);
    run_builds(runner, &podman, &proxies, &stack.project.name, &log_dir, builds, force, controls)?;
    for (name, svc) in &stack.services {
        if let Some(why) = svc.registry_free.as_ref().and_then(|r| r.unavailable.as_ref()) {
            if services.is_empty() || services.contains(name) {
                eprintln!("{name}: no registry-free image: {why}");
            }
        }
    }
    Ok(())
}

/// The registry-free builds for `services` (all that have a recipe when empty).
pub fn plan(ws: &Workspace, stack: &Stack, services: &[String]) -> Result<Vec<ImageBuild>> {
    let buildable: Vec<&str> = stack.registry_free_recipes().map(|(n, _, _)| n.as_str()).collect();
    let base = stack.registry_free_base();
    let mut out = Vec::new();
    for name in select_services(stack, services, &buildable)? {
        let recipe = stack.services[name].registry_free.as_ref().expect("a buildable service has a recipe");
        let file = recipe.dockerfile.as_deref().expect("a buildable service has a recipe");
        let dockerfile = ws.path(file);
        if !dockerfile.exists() {
            bail!("services.{name}.registry_free.dockerfile = {file:?} does not exist ({})", ws.stack_file);
        }
        out.push(ImageBuild {
            service: name.to_string(),
            image: stack.registry_free_image(name),
            context: ws.path(recipe.context.as_deref().unwrap_or(".")),
            dockerfile,
            ignorefile: recipe.ignorefile.as_ref().map(|i| ws.path(i)),
            build_args: vec![("BASE".to_string(), base.clone())],
            labels: vec![(MODE_LABEL.to_string(), "registry-free".to_string())],
            pull_never: true,
            volumes: Vec::new(),
            extra_inputs: Vec::new(),
        });
    }
    Ok(out)
}

/// The mounts each build gets, by what its recipe uses: Rust builds the vendored crates and the
/// shared target directory, web the npm cache, analytics-engine also the wheels.
pub fn with_dependencies(mut b: ImageBuild, deps: &Dependencies) -> ImageBuild {
    let text = std::fs::read_to_string(&b.dockerfile).unwrap_or_default();
    let mut mount = |host: &Option<PathBuf>, target: &str, mode: &str| {
        if let Some(h) = host {
            if text.contains(target) {
                b.volumes.push(format!("{}:{target}:{mode}", h.display()));
            }
        }
    };
    mount(&deps.cargo_vendor, dependencies::CARGO_VENDOR, "ro");
    mount(&deps.cargo_target, dependencies::CARGO_TARGET, "rw");
    mount(&deps.npm_cache, dependencies::NPM_CACHE, "rw");
    mount(&deps.pip_wheels, dependencies::PIP_WHEELS, "ro");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_but_grafana_has_a_registry_free_recipe() {
        let ws = Workspace::for_tests("rf-plan");
        let stack = Stack::load(&ws).unwrap();
        let builds = plan(&ws, &stack, &[]).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(names, ["analytics-engine", "backend", "clickhouse", "nats", "prometheus", "web"]);
        let base = [("BASE".to_string(), "localhost/v7-registry-free/base:bookworm".to_string())];
        assert!(builds.iter().all(|b| b.pull_never && b.build_args == base));
        assert_eq!(builds[1].image, "localhost/v7-registry-free/backend:latest");
        let e = plan(&ws, &stack, &["grafana".to_string()]).unwrap_err().to_string();
        assert!(e.starts_with("grafana is not built by the xtask"), "{e}");
    }

    #[test]
    fn builds_get_only_the_dependency_mounts_their_recipe_uses() {
        let ws = Workspace::for_tests("rf-mounts");
        let stack = Stack::load(&ws).unwrap();
        let deps = Dependencies {
            cargo_vendor: Some("/v".into()),
            cargo_target: Some("/t".into()),
            npm_cache: Some("/n".into()),
            pip_wheels: Some("/w".into()),
        };
        let mut checked = 0;
        for b in plan(&ws, &stack, &[]).unwrap() {
            let b = with_dependencies(b, &deps);
            let expected: &[&str] = match b.service.as_str() {
                "backend" => &["/v:/deps/cargo-vendor:ro", "/t:/deps/cargo-target:rw"],
                "analytics-engine" => {
                    &["/v:/deps/cargo-vendor:ro", "/t:/deps/cargo-target:rw", "/w:/deps/pip-wheels:ro"]
                }
                "web" => &["/n:/deps/npm-cache:rw"],
                _ => &[],
            };
            assert_eq!(b.volumes, expected, "{}", b.service);
            checked += 1;
        }
        assert_eq!(checked, 6);
    }
}
