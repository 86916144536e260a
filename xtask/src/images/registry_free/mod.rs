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
//!    on the base with `--pull=never`. The two Rust services are compiled once, together, by
//!    the workspace builder (`docker/rust-builder/Dockerfile.registry-free`, one `cargo build
//!    -p backend -p analytics-engine` on a target directory mounted from
//!    `<state>/registry-free/cargo-target`, so a one-line change recompiles one crate); it is
//!    built first, as a build of its own that is skipped when unchanged, and the recipes that
//!    declare `ARG BUILDER` get `--build-arg BUILDER=<its image>`, wait for it, and copy their
//!    binary from it ([`link_builder`]; why: docs/registry-free.md). Grafana has no Debian
//!    package: this mode runs without it and says so.
//!
//! What an image is (binary, user, ports, health check) has one source of truth,
//! `docker/stack.toml`; the `tidy` tests check both recipes of every service against it.

pub mod base;
pub mod dependencies;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::build::plan::select_services;
use super::build::schedule::Controls;
use super::build::{run_builds, Bases, ImageBuild};
use crate::images::dockerfile::rewrite::rewrite_out_of_tree;
use crate::net::proxy;
use crate::oci::ImageRef;
use crate::podman::images::presence;
use crate::podman::prereq;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::names::MODE_LABEL;
use crate::stack::{PackageMirrors, Stack};
use crate::util::workspace::Workspace;
use dependencies::Dependencies;

/// Where registry-free mode keeps its caches (vendored crates, npm cache, wheels, the shared
/// Rust target directory, debootstrap's packages).
pub fn cache_dir(ws: &Workspace) -> PathBuf {
    ws.state.join("registry-free")
}

/// Builds everything registry-free mode needs for `services` (all when empty): the base, the
/// dependencies, the images.
// Eight: the mirrors joined the flags it already took one by one (`images::BuildOptions` is
// its parent's, which a child does not use).
#[allow(clippy::too_many_arguments)]
pub fn build_all(
    ws: &Workspace,
    runner: &Runner,
    stack: &Stack,
    services: &[String],
    mirrors: Option<(&str, &PackageMirrors)>,
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
    let mut builds = plan(ws, stack, services)?;
    if let Some((label, mirrors)) = mirrors {
        // `--mirror`: each recipe rewritten out of tree like the production Dockerfiles, for apt
        // alone: crates, npm packages and wheels are fetched on the host and mounted, and the
        // recipes install them offline (docs/build-mirrors.md).
        let apt_only = PackageMirrors { apt: mirrors.apt.clone(), ..PackageMirrors::default() };
        for b in &mut builds {
            let out = ws.state.join("build").join("registry-free").join(&b.service).join("Dockerfile");
            b.dockerfile = rewrite_out_of_tree(&b.service, &b.dockerfile, &out, label, &apt_only)?;
        }
    }
    let cache = cache_dir(ws);
    base::ensure(ws, runner, &podman, stack, &cache, rebuild_base)?;
    let deps = dependencies::fetch(ws, runner, &cache, &builds)?;
    let builds: Vec<ImageBuild> = builds.into_iter().map(|b| with_dependencies(b, &deps)).collect();
    let mut bases = Bases::of(&builds)?;
    if let Some(b) = builds.iter().find(|b| b.service == BUILDER) {
        bases = bases.without(&ImageRef::parse(&b.image).map_err(anyhow::Error::msg)?);
    }
    let builds = link_builder(bases.record(builds, &presence(runner, &podman, &bases.all)?))?;
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

/// The workspace builder's build name (it is no service: docker/stack.toml has no entry for it;
/// its image is `localhost/<project>-registry-free/rust-builder:latest`).
pub const BUILDER: &str = "rust-builder";
/// Its recipe; the ignore file is beside it, `<recipe>.dockerignore`, the context the checkout.
pub const BUILDER_DOCKERFILE: &str = "docker/rust-builder/Dockerfile.registry-free";

/// Whether a recipe copies from the workspace builder: it declares `ARG BUILDER`.
pub fn needs_builder(dockerfile_text: &str) -> bool {
    dockerfile_text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next().is_some_and(|k| k.eq_ignore_ascii_case("ARG"))
            && w.next().is_some_and(|a| a == "BUILDER" || a.starts_with("BUILDER="))
    })
}

/// The registry-free builds for `services` (all that have a recipe when empty), with the
/// workspace builder first when one of them copies from it.
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
            after: None,
        });
    }
    let builder_image = stack.registry_free_image(BUILDER);
    let mut wanted = false;
    for b in &mut out {
        let text = std::fs::read_to_string(&b.dockerfile)
            .with_context(|| format!("cannot read {}", b.dockerfile.display()))?;
        if needs_builder(&text) {
            b.build_args.push(("BUILDER".to_string(), builder_image.clone()));
            b.after = Some(BUILDER.to_string());
            wanted = true;
        }
    }
    if wanted {
        let dockerfile = ws.path(BUILDER_DOCKERFILE);
        if !dockerfile.exists() {
            bail!("{BUILDER_DOCKERFILE} (the registry-free workspace builder) does not exist");
        }
        out.insert(
            0,
            ImageBuild {
                service: BUILDER.to_string(),
                image: builder_image,
                context: ws.root.clone(),
                ignorefile: Some(ws.path(&format!("{BUILDER_DOCKERFILE}.dockerignore"))),
                dockerfile,
                build_args: vec![("BASE".to_string(), base)],
                labels: vec![(MODE_LABEL.to_string(), "registry-free".to_string())],
                pull_never: true,
                volumes: Vec::new(),
                extra_inputs: Vec::new(),
                after: None,
            },
        );
    }
    Ok(out)
}

/// Puts the workspace builder's fingerprint (`builder IMAGE INPUTS`) into the fingerprint of
/// every build that copies from it, instead of its image ID, which is not known before it is
/// built: a runtime image is rebuilt exactly when the builder's inputs (or its own) changed,
/// and a no-op run skips all of them without building anything. Call after [`Bases::record`],
/// whose base IDs are part of the builder's inputs.
pub fn link_builder(mut builds: Vec<ImageBuild>) -> Result<Vec<ImageBuild>> {
    let Some(builder) = builds.iter().find(|b| b.service == BUILDER) else { return Ok(builds) };
    let line = format!("builder {} {}", builder.image, builder.fingerprint()?.label);
    for b in builds.iter_mut().filter(|b| b.after.as_deref() == Some(BUILDER)) {
        b.extra_inputs.push(line.clone());
    }
    Ok(builds)
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
        assert_eq!(names, ["rust-builder", "analytics-engine", "backend", "clickhouse", "nats", "prometheus", "web"]);
        let base = ("BASE".to_string(), "localhost/v7-registry-free/base:bookworm".to_string());
        assert!(builds.iter().all(|b| b.pull_never && b.build_args[0] == base));
        assert_eq!(builds[2].image, "localhost/v7-registry-free/backend:latest");
        let e = plan(&ws, &stack, &["grafana".to_string()]).unwrap_err().to_string();
        assert!(e.starts_with("grafana is not built by the xtask"), "{e}");
    }

    #[test]
    fn the_workspace_builder_comes_first_and_the_rust_runtimes_wait_for_it() {
        let ws = Workspace::for_tests("rf-builder");
        let stack = Stack::load(&ws).unwrap();
        let builds = plan(&ws, &stack, &[]).unwrap();
        let builder = &builds[0];
        assert_eq!(builder.image, "localhost/v7-registry-free/rust-builder:latest");
        assert_eq!(builder.dockerfile, ws.path(BUILDER_DOCKERFILE));
        assert_eq!(builder.context, ws.root);
        assert!(builder.ignorefile.as_ref().unwrap().exists(), "its ignore file is beside it");
        assert_eq!(builder.after, None);
        let arg = ("BUILDER".to_string(), builder.image.clone());
        for b in &builds[1..] {
            let rust = matches!(b.service.as_str(), "backend" | "analytics-engine");
            assert_eq!(b.after.as_deref() == Some(BUILDER), rust, "{}", b.service);
            assert_eq!(b.build_args.contains(&arg), rust, "{}", b.service);
        }
        let only_web = plan(&ws, &stack, &["web".to_string()]).unwrap();
        assert_eq!(only_web.len(), 1, "no Rust image asked for: no builder");
        let backend = plan(&ws, &stack, &["backend".to_string()]).unwrap();
        let names: Vec<&str> = backend.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(names, ["rust-builder", "backend"]);
        let bases = Bases::of(&builds).unwrap();
        assert!(bases.all.iter().any(|r| r.to_string().contains("rust-builder")), "FROM ${{BUILDER}} is read");
        let bases = bases.without(&ImageRef::parse(&builder.image).unwrap());
        let names: Vec<String> = bases.all.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["localhost/v7-registry-free/base:bookworm"], "its ID is not waited for");
    }

    #[test]
    fn the_builders_inputs_go_into_the_runtimes_fingerprints() {
        let ws = Workspace::for_tests("rf-link");
        let stack = Stack::load(&ws).unwrap();
        let builds = plan(&ws, &stack, &["backend".to_string(), "web".to_string()]).unwrap();
        let linked = link_builder(builds.clone()).unwrap();
        let line = format!("builder {} {}", builds[0].image, builds[0].fingerprint().unwrap().label);
        assert_eq!(linked[1].extra_inputs, [line], "backend");
        assert!(linked[0].extra_inputs.is_empty() && linked[2].extra_inputs.is_empty(), "builder, web");
        let fp = |b: &ImageBuild| b.fingerprint().unwrap().label;
        assert_eq!(fp(&link_builder(builds.clone()).unwrap()[1]), fp(&linked[1]), "unchanged inputs: skipped");
        let mut changed = builds.clone();
        changed[0].extra_inputs.push("base localhost/v7-registry-free/base:bookworm sha256:2".into());
        let relinked = link_builder(changed).unwrap();
        assert_ne!(fp(&relinked[1]), fp(&linked[1]), "a changed builder rebuilds the runtime");
        assert_eq!(fp(&relinked[2]), fp(&linked[2]), "and not web");
        assert!(needs_builder("ARG BASE\narg BUILDER\nFROM ${BUILDER} AS b\n"));
        assert!(needs_builder("ARG BUILDER=localhost/x:1\n"));
        assert!(!needs_builder("# ARG BUILDER\nARG BUILDERS\nFROM x\n"));
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
                "rust-builder" => &["/v:/deps/cargo-vendor:ro", "/t:/deps/cargo-target:rw"],
                "analytics-engine" => &["/w:/deps/pip-wheels:ro"],
                "web" => &["/n:/deps/npm-cache:rw"],
                _ => &[],
            };
            assert_eq!(b.volumes, expected, "{}", b.service);
            checked += 1;
        }
        assert_eq!(checked, 7);
    }
}
