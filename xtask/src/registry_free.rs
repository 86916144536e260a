//! Registry-free mode: every image of the stack made on this machine, for networks where no
//! container registry answers (and for these development machines, which are such a network).
//!
//! 1. Base: `debootstrap --variant=minbase` from the configured Debian mirror, slimmed by
//!    `docker/base/customize.sh`, imported with `podman import` as
//!    `localhost/v7-offline/base:<suite>`, with labels recording suite, mirror, archive date,
//!    package count and recipe. It is reused while its recipe label matches; rebuilding it is
//!    explicit (`build --offline --rebuild-base`).
//! 2. Dependencies are fetched on the host, where HTTPS to the registries works (inside a
//!    container it does not: the host trusts a CA the containers do not): `cargo vendor` for the
//!    workspace, the npm cache for web, pip wheels for the Python component. They reach the
//!    builds as read-only `podman build -v` mounts, not through the context, so they neither
//!    bloat it nor leak into an image layer.
//! 3. Images: NATS, ClickHouse and Prometheus from Debian packages (`docker/<name>/Containerfile`)
//!    and the three services (`<service>/Dockerfile.offline`, beside the production recipe),
//!    built in parallel on the base with `--pull=never`. Rust builds share a target directory
//!    mounted from `.v7/offline/cargo-target`, so a one-line change recompiles one crate.
//!    Grafana has no Debian package: this mode runs without it and says so.
//!
//! What an image is (binary, user, ports, health check) has one source of truth,
//! `docker/stack.toml`; the `tidy` tests check both recipes of every service against it.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::build::{self, ImageBuild};
use crate::command::{Cmd, Runner};
use crate::deploy::PROJECT_LABEL;
use crate::image_ref::ImageRef;
use crate::manifest::{Mode, Stack};
use crate::podman_host::{self, Podman};
use crate::prereq;
use crate::proxy;

/// Bump when docker/base/customize.sh or the debootstrap options change what the base holds.
pub const BASE_RECIPE: &str = "v7-base-2";

/// The local name of a service's registry-free image (`localhost/v7-offline/backend:latest`).
pub fn image_name(stack: &Stack, service: &str) -> String {
    format!("localhost/{}-offline/{service}:latest", stack.project.name)
}

pub fn base_image(stack: &Stack) -> String {
    format!("localhost/{}-offline/base:{}", stack.project.name, stack.project.debian_suite)
}

fn offline_dir() -> PathBuf {
    crate::state_dir().join("offline")
}

/// The flag, then the manifest's `project.mode`; in `auto` mode, registry-free when none of
/// the registries the stack's images come from (or their mirrors) answers within a few seconds.
pub fn use_registry_free(stack: &Stack, flag: bool) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    match stack.project.mode {
        Mode::Offline => Ok(true),
        Mode::Registry => Ok(false),
        Mode::Auto => {
            let hosts = registry_hosts(stack);
            let reachable = any_reachable(&hosts, Duration::from_secs(3));
            match &reachable {
                Some(h) => eprintln!("mode: registry ({h} answers)"),
                None => eprintln!(
                    "mode: registry-free: no registry answered within 3 s ({}); images are made here from Debian packages \
                     (set project.mode in docker/stack.toml or pass --offline to choose)",
                    hosts.join(", ")
                ),
            }
            Ok(reachable.is_none())
        }
    }
}

/// The registry hosts the stack's images come from, and the configured mirrors.
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
    for m in &stack.pull.registry_mirrors {
        let rest = m.get_ref().split("://").nth(1).unwrap_or("");
        let host = rest.split('/').next().unwrap_or("").to_string();
        if !host.is_empty() && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// The first host that accepts a TCP connection (port 443 unless one is given), all probed at once.
fn any_reachable(hosts: &[String], timeout: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    for h in hosts {
        let tx = tx.clone();
        let h = h.clone();
        std::thread::spawn(move || {
            let target = if h.contains(':') { h.clone() } else { format!("{h}:443") };
            let ok = target
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok());
            let _ = tx.send((h, ok));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + timeout + Duration::from_millis(500);
    while let Ok((h, ok)) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if ok {
            return Some(h);
        }
    }
    None
}

/// Builds everything registry-free mode needs: the base, the dependencies, the images.
pub fn build_all(sh: &Shell, stack: &Stack, services: &[String], force: bool, rebuild_base: bool, dry_run: bool) -> Result<()> {
    let mut needs = prereq::PODMAN.to_vec();
    needs.extend_from_slice(prereq::REGISTRY_FREE);
    if !dry_run {
        prereq::ensure(sh, "registry-free mode", &needs)?;
    }
    let root = crate::project_root();
    let podman = Podman::prepare()?;
    let runner = Runner::new(dry_run);
    let builds = plan(&root, stack, services)?;
    ensure_base(&runner, &podman, stack, &root, rebuild_base)?;
    let deps = fetch_dependencies(sh, &root, &builds, dry_run)?;
    let base_id = runner
        .query(&podman.cmd().args(["image", "inspect", "--format", "{{.Id}}", &base_image(stack)]))
        .unwrap_or_default();
    let builds = builds
        .into_iter()
        .map(|b| {
            let mut b = with_dependencies(b, &deps);
            b.extra_inputs.push(format!("base {}", base_id.trim()));
            b
        })
        .collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    build::run_builds(&runner, &podman, &proxy::detect(&env), &stack.project.name, builds, force)?;
    for (name, svc) in &stack.services {
        if let Some(why) = svc.offline.as_ref().and_then(|o| o.unavailable.as_ref()) {
            if services.is_empty() || services.contains(name) {
                eprintln!("{name}: no registry-free image: {why}");
            }
        }
    }
    Ok(())
}

/// The registry-free builds for `services` (all that have a recipe when empty).
pub fn plan(root: &Path, stack: &Stack, services: &[String]) -> Result<Vec<ImageBuild>> {
    let buildable: Vec<&str> = stack
        .services
        .iter()
        .filter(|(_, s)| s.offline.as_ref().is_some_and(|o| o.dockerfile.is_some()))
        .map(|(n, _)| n.as_str())
        .collect();
    let chosen = build::select_services(stack, services, &buildable)?;
    let base = base_image(stack);
    let mut out = Vec::new();
    for name in chosen {
        let off = stack.services[name].offline.as_ref().unwrap();
        let dockerfile = root.join(off.dockerfile.as_ref().unwrap());
        if !dockerfile.exists() {
            bail!(
                "services.{name}.offline.dockerfile = {:?} does not exist (docker/stack.toml)",
                off.dockerfile.as_ref().unwrap()
            );
        }
        let context = off.context.as_deref().unwrap_or(".");
        out.push(ImageBuild {
            service: name.to_string(),
            image: image_name(stack, name),
            context: root.join(context),
            dockerfile,
            ignorefile: off.ignorefile.as_ref().map(|i| root.join(i)),
            build_args: vec![("BASE".to_string(), base.clone())],
            labels: vec![("v7.mode".to_string(), "registry-free".to_string())],
            pull_never: true,
            volumes: Vec::new(),
            extra_inputs: Vec::new(),
        });
    }
    Ok(out)
}

/// Host directories with the fetched dependencies, by kind.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    pub cargo_vendor: Option<PathBuf>,
    pub cargo_target: Option<PathBuf>,
    pub npm_cache: Option<PathBuf>,
    pub pip_wheels: Option<PathBuf>,
}

/// The mounts each build gets: Rust builds the vendored crates and the shared target
/// directory, web the npm cache, analytics-engine also the wheels.
pub fn with_dependencies(mut b: ImageBuild, deps: &Dependencies) -> ImageBuild {
    let text = std::fs::read_to_string(&b.dockerfile).unwrap_or_default();
    let mut mount = |host: &Option<PathBuf>, target: &str, mode: &str| {
        if let Some(h) = host {
            if text.contains(target) {
                b.volumes.push(format!("{}:{target}:{mode}", h.display()));
            }
        }
    };
    mount(&deps.cargo_vendor, "/deps/cargo-vendor", "ro");
    mount(&deps.cargo_target, "/deps/cargo-target", "rw");
    mount(&deps.npm_cache, "/deps/npm-cache", "rw");
    mount(&deps.pip_wheels, "/deps/pip-wheels", "ro");
    b
}

/// Fetches what the chosen builds need, each kind skipped while its lock file is unchanged.
fn fetch_dependencies(sh: &Shell, root: &Path, builds: &[ImageBuild], dry_run: bool) -> Result<Dependencies> {
    let dir = offline_dir();
    let mut deps = Dependencies::default();
    let uses = |needle: &str| {
        builds.iter().any(|b| std::fs::read_to_string(&b.dockerfile).unwrap_or_default().contains(needle))
    };
    if uses("/deps/cargo-vendor") {
        let vendor = dir.join("cargo-vendor");
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
        fetch_once(&dir.join("cargo-vendor.stamp"), &lock, dry_run, "Rust crates (cargo vendor)", || {
            let _ = std::fs::remove_dir_all(&vendor);
            cmd!(sh, "cargo vendor --locked --quiet {vendor}").ignore_stdout().run()?;
            Ok(())
        })?;
        deps.cargo_vendor = Some(vendor);
        let target = dir.join("cargo-target");
        std::fs::create_dir_all(&target)?;
        deps.cargo_target = Some(target);
    }
    if uses("/deps/npm-cache") {
        let cache = dir.join("npm-cache");
        let lock = std::fs::read_to_string(root.join("web/package-lock.json")).context("cannot read web/package-lock.json")?;
        fetch_once(&dir.join("npm-cache.stamp"), &lock, dry_run, "npm packages (npm ci into a cache)", || {
            // A scratch copy of the manifests: the host's own web/node_modules is not touched.
            let scratch = dir.join("npm-fetch");
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch)?;
            for f in ["package.json", "package-lock.json"] {
                std::fs::copy(root.join("web").join(f), scratch.join(f))?;
            }
            let _d = sh.push_dir(&scratch);
            cmd!(sh, "npm ci --ignore-scripts --no-audit --no-fund --cache {cache}").quiet().ignore_stdout().run()?;
            std::fs::remove_dir_all(&scratch)?;
            Ok(())
        })?;
        deps.npm_cache = Some(cache);
    }
    if uses("/deps/pip-wheels") {
        let wheels = dir.join("pip-wheels");
        let req = root.join("analytics-engine/python/requirements.txt");
        let pyproject = root.join("analytics-engine/python/pyproject.toml");
        let key = format!("{}\n{}", std::fs::read_to_string(&req)?, std::fs::read_to_string(&pyproject)?);
        let python = if podman_host::on_path("python3") { "python3" } else { "python" };
        fetch_once(&dir.join("pip-wheels.stamp"), &key, dry_run, "Python packages (pip download)", || {
            let _ = std::fs::remove_dir_all(&wheels);
            // The build backend pip needs for `pip install .` comes along too.
            cmd!(sh, "{python} -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 -d {wheels} -r {req} setuptools>=61 wheel")
                .run()?;
            Ok(())
        })?;
        deps.pip_wheels = Some(wheels);
    }
    Ok(deps)
}

/// Runs `fetch` unless the stamp says it already ran for the same `key` (a lock file's text).
fn fetch_once(stamp: &Path, key: &str, dry_run: bool, what: &str, fetch: impl FnOnce() -> Result<()>) -> Result<()> {
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        format!("{:016x}", h.finish())
    };
    if std::fs::read_to_string(stamp).ok().as_deref() == Some(digest.as_str()) {
        eprintln!("dependencies: {what}: up to date");
        return Ok(());
    }
    if dry_run {
        eprintln!("dependencies: {what}: would fetch on the host");
        return Ok(());
    }
    eprintln!("dependencies: {what}: fetching on the host");
    // The stamp goes only after a complete fetch: an interrupted one is redone.
    let _ = std::fs::remove_file(stamp);
    fetch().with_context(|| format!("fetching {what} failed (the registries must be reachable from this host)"))?;
    podman_host::write_if_changed(stamp, &digest)
}

/// Debian's security archive beside a mirror: `.../debian` -> `.../debian-security`; a mirror
/// laid out otherwise gets Debian's own.
pub fn security_mirror(mirror: &str) -> String {
    let m = mirror.trim_end_matches('/');
    match m.strip_suffix("/debian") {
        Some(prefix) => format!("{prefix}/debian-security"),
        None => "http://deb.debian.org/debian-security".to_string(),
    }
}

/// The commands that make the base image, as data (see `ensure_base`).
pub fn base_commands(podman: &Podman, stack: &Stack, root: &Path, work: &Path, labels: &[(String, String)]) -> Vec<Cmd> {
    let rootfs = work.join("rootfs");
    let tar = work.join("rootfs.tar");
    let debcache = offline_dir().join("debcache");
    let image = base_image(stack);
    let mut import = podman.cmd().args(["import", "--change", "CMD [\"/bin/bash\"]", "--change", "ENV LANG=C.UTF-8"]);
    // The project label like every build's (build.rs); images built FROM the base inherit it.
    import = import.arg("--change").arg(format!("LABEL {PROJECT_LABEL}=\"{}\"", stack.project.name));
    for (k, v) in labels {
        import = import.arg("--change").arg(format!("LABEL {k}=\"{v}\""));
    }
    import = import
        .arg("--message")
        .arg(format!("debootstrap --variant=minbase {} {}", stack.project.debian_suite, stack.project.debian_mirror))
        .arg(tar.display().to_string())
        .arg(&image);
    vec![
        Cmd::new("debootstrap").args([
            "--variant=minbase".to_string(),
            format!("--cache-dir={}", debcache.display()),
            stack.project.debian_suite.clone(),
            rootfs.display().to_string(),
            stack.project.debian_mirror.clone(),
        ]),
        // debootstrap lists only the release itself: add its updates and security suites and
        // upgrade, so no image starts with known-vulnerable packages (and the security suite's
        // newer rustc-web is installable). debootstrap left the host's resolv.conf in the
        // rootfs for exactly this; customize.sh removes it afterwards.
        Cmd::new("chroot").args([
            rootfs.display().to_string(),
            "sh".to_string(),
            "-c".to_string(),
            format!(
                "printf '%s\\n' 'deb {mirror} {suite} main' 'deb {mirror} {suite}-updates main' \
                 'deb {security} {suite}-security main' > /etc/apt/sources.list && apt-get update -q && \
                 DEBIAN_FRONTEND=noninteractive apt-get -y -q upgrade && apt-get clean",
                mirror = stack.project.debian_mirror,
                suite = stack.project.debian_suite,
                security = security_mirror(&stack.project.debian_mirror),
            ),
        ]),
        Cmd::new("sh").args([
            root.join("docker/base/customize.sh").display().to_string(),
            rootfs.display().to_string(),
            work.join("facts").display().to_string(),
        ]),
        Cmd::new("tar").args(["--numeric-owner", "--xattrs", "--acls", "-C"]).arg(rootfs.display().to_string()).args([
            "-cf",
            &tar.display().to_string(),
            ".",
        ]),
        import,
    ]
}

/// Makes the base image unless one with the current recipe is here (or `rebuild`).
fn ensure_base(runner: &Runner, podman: &Podman, stack: &Stack, root: &Path, rebuild: bool) -> Result<()> {
    let image = base_image(stack);
    let recipe = runner
        .query(&podman.cmd().args(["image", "inspect", "--format", "{{index .Labels \"org.v7.base.recipe\"}}", &image]))
        .unwrap_or_default();
    if !rebuild && recipe.trim() == BASE_RECIPE {
        eprintln!("base: {image} is here (recipe {BASE_RECIPE}); `build --offline --rebuild-base` makes it anew");
        return Ok(());
    }
    let work = offline_dir().join("base");
    let clean = || {
        let _ = std::fs::remove_dir_all(&work);
    };
    clean();
    std::fs::create_dir_all(offline_dir().join("debcache"))?;
    std::fs::create_dir_all(&work)?;
    eprintln!("base: making {image} with debootstrap from {} ({})", stack.project.debian_mirror, stack.project.debian_suite);
    let cmds = base_commands(podman, stack, root, &work, &[]);
    let result = (|| -> Result<()> {
        for cmd in &cmds[..4] {
            runner.run_captured(cmd).and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    bail!("`{cmd}` failed: {}", crate::command::last_line(&out.stderr))
                }
            })?;
        }
        let facts = std::fs::read_to_string(work.join("facts")).unwrap_or_default();
        let fact = |k: &str| {
            facts
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('\'').replace('"', ""))
                .unwrap_or_default()
        };
        let labels = vec![
            ("org.v7.base.suite".to_string(), stack.project.debian_suite.clone()),
            ("org.v7.base.mirror".to_string(), stack.project.debian_mirror.clone()),
            ("org.v7.base.variant".to_string(), "minbase".to_string()),
            ("org.v7.base.archive-date".to_string(), fact("archive_date")),
            ("org.v7.base.debian-version".to_string(), fact("debian_version")),
            ("org.v7.base.packages".to_string(), fact("pkg_count")),
            ("org.v7.base.package-list".to_string(), fact("pkg_list")),
            ("org.v7.base.recipe".to_string(), BASE_RECIPE.to_string()),
        ];
        let import = base_commands(podman, stack, root, &work, &labels).pop().unwrap();
        let out = runner.run_captured(&import)?;
        if !out.status.success() {
            bail!("`podman import` failed: {}", crate::command::last_line(&out.stderr));
        }
        Ok(())
    })();
    clean();
    result.context("making the registry-free base image failed; nothing was tagged")?;
    eprintln!("base: {image} made");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_planned_as_debootstrap_customize_tar_import() {
        let stack = Stack::load(&crate::project_root()).unwrap();
        let podman = Podman::fixed(&[]);
        let labels = vec![("org.v7.base.suite".to_string(), "bookworm".to_string())];
        let cmds = base_commands(&podman, &stack, Path::new("/repo"), Path::new("/w"), &labels);
        let shown: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        assert!(shown[0].starts_with("debootstrap --variant=minbase --cache-dir="), "{}", shown[0]);
        assert!(shown[0].ends_with(" bookworm /w/rootfs http://deb.debian.org/debian"), "{}", shown[0]);
        assert!(shown[1].starts_with("chroot /w/rootfs sh -c"), "{}", shown[1]);
        assert!(
            shown[1].contains("'deb http://deb.debian.org/debian-security bookworm-security main'"),
            "{}",
            shown[1]
        );
        assert_eq!(shown[2], "sh /repo/docker/base/customize.sh /w/rootfs /w/facts");
        assert_eq!(shown[3], "tar --numeric-owner --xattrs --acls -C /w/rootfs -cf /w/rootfs.tar .");
        assert!(shown[4].contains("--change 'LABEL v7.project=\"v7\"'"), "{}", shown[4]);
        assert!(shown[4].contains("--change 'LABEL org.v7.base.suite=\"bookworm\"'"), "{}", shown[4]);
        assert!(shown[4].ends_with("/w/rootfs.tar localhost/v7-offline/base:bookworm"), "{}", shown[4]);
        assert_eq!(security_mirror("http://mirrors.aliyun.com/debian/"), "http://mirrors.aliyun.com/debian-security");
        assert_eq!(security_mirror("http://10.0.0.1:3142/deb"), "http://deb.debian.org/debian-security");
    }

    #[test]
    fn every_service_but_grafana_has_a_registry_free_recipe() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let builds = plan(&root, &stack, &[]).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(names, ["analytics-engine", "backend", "clickhouse", "nats", "prometheus", "web"]);
        assert!(builds.iter().all(|b| b.pull_never && b.build_args == [("BASE".to_string(), base_image(&stack))]));
        let e = plan(&root, &stack, &["grafana".to_string()]).unwrap_err().to_string();
        assert!(e.starts_with("grafana is not built by the xtask"), "{e}");
    }

    #[test]
    fn builds_get_only_the_dependency_mounts_their_recipe_uses() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let deps = Dependencies {
            cargo_vendor: Some("/v".into()),
            cargo_target: Some("/t".into()),
            npm_cache: Some("/n".into()),
            pip_wheels: Some("/w".into()),
        };
        for b in plan(&root, &stack, &[]).unwrap() {
            let b = with_dependencies(b, &deps);
            let expected: &[&str] = match b.service.as_str() {
                "backend" => &["/v:/deps/cargo-vendor:ro", "/t:/deps/cargo-target:rw"],
                "analytics-engine" => &["/v:/deps/cargo-vendor:ro", "/t:/deps/cargo-target:rw", "/w:/deps/pip-wheels:ro"],
                "web" => &["/n:/deps/npm-cache:rw"],
                _ => &[],
            };
            assert_eq!(b.volumes, expected, "{}", b.service);
        }
    }
}
