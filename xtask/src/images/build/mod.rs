//! Image builds: each one planned as an [`ImageBuild`] value, fingerprinted
//! (`fingerprint.rs`, over its context as `context.rs` reads it), skipped when the image already
//! here carries the same fingerprint, otherwise built by podman, all at once, each with its own
//! log. `plan.rs` makes the production builds of `*/Dockerfile` (rewritten for package mirrors
//! with `--mirror`); `images/registry_free` makes the registry-free ones.
//!
//! Proxies from the environment reach the builds through podman's `--http-proxy` (on by
//! default): given to podman as environment, never as build arguments, so no image stores them.

pub mod context;
pub mod fingerprint;
pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::images::dockerfile::base_images::external_images;
use crate::net::proxy::Proxies;
use crate::oci::ImageRef;
use crate::podman::errors::explain_failure;
use crate::podman::images::{podman_reference, LocalImage};
use crate::podman::Podman;
use crate::process::{Cmd, Runner};
use crate::stack::names::{INPUTS_LABEL, PROJECT_LABEL};
use context::IgnoreRules;

/// One image build, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBuild {
    pub service: String,
    pub image: String,
    /// Absolute paths.
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub ignorefile: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// Never contact a registry for base images (registry-free mode: they are local).
    pub pull_never: bool,
    /// Host directories mounted into the build's RUN steps (`podman build -v`): dependencies
    /// fetched on the host, shared caches. Not part of the context or of any layer.
    pub volumes: Vec<String>,
    /// More fingerprint inputs that are not files: `base REF ID` of every image the Dockerfile
    /// builds on ([`Bases::record`]).
    pub extra_inputs: Vec<String>,
}

impl ImageBuild {
    pub fn command(&self, podman: &Podman, proxies: &Proxies) -> Cmd {
        let mut cmd = podman.cmd();
        for (k, v) in proxies.env() {
            cmd = cmd.env(k, v);
        }
        // `--format docker`: the OCI image format has no HEALTHCHECK, and podman drops it silently.
        cmd = cmd.args(["build", "--format", "docker", "--layers", "-t", &self.image, "-f"]).path_arg(&self.dockerfile);
        if let Some(ignore) = &self.ignorefile {
            cmd = cmd.arg("--ignorefile").path_arg(ignore);
        }
        for (k, v) in &self.build_args {
            cmd = cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for (k, v) in &self.labels {
            cmd = cmd.arg("--label").arg(format!("{k}={v}"));
        }
        for v in &self.volumes {
            cmd = cmd.arg("-v").arg(v);
        }
        if self.pull_never {
            cmd = cmd.arg("--pull=never");
        }
        cmd.path_arg(&self.context)
    }

    fn dockerfile_text(&self) -> Result<String> {
        std::fs::read_to_string(&self.dockerfile).with_context(|| format!("cannot read {}", self.dockerfile.display()))
    }

    /// The images this build's Dockerfile builds on, with its build arguments applied.
    pub fn base_images(&self) -> Result<Vec<ImageRef>> {
        let args: BTreeMap<String, String> = self.build_args.iter().cloned().collect();
        let images = external_images(&self.dockerfile_text()?, &args)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", self.dockerfile.display(), e.line, e.message))?;
        Ok(images.into_iter().map(|x| x.image).collect())
    }

    /// The fingerprint of everything this build reads.
    pub fn fingerprint(&self) -> Result<fingerprint::Fingerprint> {
        let ignore = match &self.ignorefile {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            None => String::new(),
        };
        let dockerfile = self.dockerfile_text()?;
        let args: Vec<String> = self.build_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut inputs: Vec<&str> = vec![&dockerfile, &ignore];
        inputs.extend(args.iter().map(String::as_str));
        inputs.extend(self.extra_inputs.iter().map(String::as_str));
        fingerprint::fingerprint(&self.context, &IgnoreRules::parse(&ignore), &inputs)
    }
}

/// The labels every build gets: the project (`v7.project=<project.name>`, so everything a
/// project's builds leave behind can be found and removed by label) and the fingerprint.
///
/// podman 4.3.1 (buildah 1.28.2) puts `--label` on EVERY image a `--layers` build commits: the
/// builder stages' images and each step's intermediate image too, not only the tagged result
/// (checked with a two-stage Containerfile: all six images it made carried the label). Labels
/// are not part of the layer cache key: a build with another project label reused those
/// intermediates ("Using cache"), so a shared intermediate keeps the label of its first maker.
fn with_labels(mut b: ImageBuild, project: &str, inputs: String) -> ImageBuild {
    b.labels.push((PROJECT_LABEL.to_string(), project.to_string()));
    b.labels.push((INPUTS_LABEL.to_string(), inputs));
    b
}

/// The images a set of builds builds on: per build, and all of them once each (one
/// `podman image inspect` answers for `all`).
pub struct Bases {
    per_build: Vec<Vec<ImageRef>>,
    pub all: Vec<ImageRef>,
}

impl Bases {
    pub fn of(builds: &[ImageBuild]) -> Result<Bases> {
        let per_build: Vec<Vec<ImageRef>> = builds.iter().map(ImageBuild::base_images).collect::<Result<_>>()?;
        let mut all: Vec<ImageRef> = Vec::new();
        for b in per_build.iter().flatten() {
            if !all.contains(b) {
                all.push(b.clone());
            }
        }
        Ok(Bases { per_build, all })
    }

    /// Adds `base REF ID` (or `base REF absent`) to each build's fingerprint inputs. `found`:
    /// what the image store holds of [`Bases::all`], in order.
    pub fn record(&self, builds: Vec<ImageBuild>, found: &[Option<LocalImage>]) -> Vec<ImageBuild> {
        builds
            .into_iter()
            .zip(&self.per_build)
            .map(|(mut b, refs)| {
                for r in refs {
                    let i = self.all.iter().position(|a| a == r);
                    let id = i.and_then(|i| found.get(i)).and_then(Option::as_ref).map(|l| l.id.as_str());
                    b.extra_inputs.push(format!("base {} {}", podman_reference(r), id.unwrap_or("absent")));
                }
                b
            })
            .collect()
    }
}

/// Errors of podman's shared image store while another process adds or removes images at the
/// same moment; the same build succeeds when tried again.
const TRANSIENT_STORE_ERRORS: &[&str] = &["layer not known", "image not known"];

/// Runs one build with its output in `log`; tried a second time after a transient store error.
fn build_one(runner: &Runner, b: &ImageBuild, cmd: &Cmd, log: &Path) -> Result<f64, String> {
    let start = Instant::now();
    for attempt in 1..=2 {
        let status = runner.run_logged(cmd, log).map_err(|e| format!("{e:#}"))?;
        let secs = start.elapsed().as_secs_f64();
        if status.success() {
            eprintln!("{}: built {} in {secs:.0} s", b.service, b.image);
            return Ok(secs);
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if attempt == 1 && TRANSIENT_STORE_ERRORS.iter().any(|e| text.contains(e)) {
            eprintln!("{}: podman's image store changed under the build; trying once more", b.service);
            continue;
        }
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        eprintln!("{}: FAILED after {secs:.0} s; last lines of {}:\n  {}", b.service, log.display(), tail.join("\n  "));
        if let Some(hint) = explain_failure(&text) {
            eprintln!("  hint: {hint}");
        }
        return Err(b.service.clone());
    }
    unreachable!("the loop returns")
}

/// Builds in parallel, each skipped when its fingerprint matches the image here. Output of each
/// build goes to `<log_dir>/<service>.log`; a failure prints the log's tail.
pub fn run_builds(
    runner: &Runner,
    podman: &Podman,
    proxies: &Proxies,
    project: &str,
    log_dir: &Path,
    builds: Vec<ImageBuild>,
    force: bool,
) -> Result<()> {
    let mut to_run = Vec::new();
    let images: Vec<String> = builds.iter().map(|b| b.image.clone()).collect();
    let labels = crate::podman::images::labels(runner, podman, &images, INPUTS_LABEL);
    for (b, current) in builds.into_iter().zip(labels) {
        let fp = b.fingerprint()?;
        let current = current.unwrap_or_default();
        if !force && current == fp.label {
            eprintln!(
                "{}: unchanged since {} was built (inputs {}, {} files); skipped (--force rebuilds)",
                b.service, b.image, fp.label, fp.files
            );
            continue;
        }
        to_run.push(with_labels(b, project, fp.label));
    }
    if to_run.is_empty() {
        return Ok(());
    }
    if runner.dry_run {
        for b in &to_run {
            runner.run(&b.command(podman, proxies))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    // One thread per build, so each one's time is its own and a failure is reported when it
    // happens; podman runs them concurrently.
    let results: Vec<(String, Result<f64, String>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = to_run
            .iter()
            .map(|b| {
                let cmd = b.command(podman, proxies);
                let log = log_dir.join(format!("{}.log", b.service));
                eprintln!("{}: building {} (log: {})\n  $ {cmd}", b.service, b.image, log.display());
                scope.spawn(move || (b.service.clone(), build_one(runner, b, &cmd, &log)))
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("build thread")).collect()
    });
    let failed: Vec<String> = results.iter().filter(|(_, r)| r.is_err()).map(|(s, _)| s.clone()).collect();
    if !failed.is_empty() {
        bail!("build failed for {} (nothing was tagged for them; see the logs above)", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_image_ids_go_into_the_fingerprint_inputs() {
        let dir = crate::util::fs::TempDir::create(&std::env::temp_dir(), "v7-xtask-bases").unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let build = |dockerfile: PathBuf, args: Vec<(String, String)>| ImageBuild {
            service: "s".into(),
            image: "i".into(),
            context: dir.path().into(),
            dockerfile,
            ignorefile: None,
            build_args: args,
            labels: vec![],
            pull_never: false,
            volumes: vec![],
            extra_inputs: vec![],
        };
        let a = build(write("a", "FROM rust:1.87-alpine AS b\nFROM alpine:3.19\nCOPY --from=b /x /x\n"), vec![]);
        let b = build(write("b", "ARG BASE\nFROM ${BASE}\n"), vec![("BASE".into(), "alpine:3.19".into())]);
        let bases = Bases::of(&[a.clone(), b.clone()]).unwrap();
        let all: Vec<String> = bases.all.iter().map(|r| r.to_string()).collect();
        assert_eq!(all, ["docker.io/library/rust:1.87-alpine", "docker.io/library/alpine:3.19"], "once each");
        let found = [None, Some(LocalImage { id: "f".repeat(64), size: 1 })];
        let recorded = bases.record(vec![a.clone(), b], &found);
        let f = "f".repeat(64);
        assert_eq!(
            recorded[0].extra_inputs,
            [
                "base docker.io/library/rust:1.87-alpine absent".to_string(),
                format!("base docker.io/library/alpine:3.19 {f}")
            ]
        );
        assert_eq!(recorded[1].extra_inputs, [format!("base docker.io/library/alpine:3.19 {f}")]);
        let fp = |b: &ImageBuild| b.fingerprint().unwrap().label;
        assert_ne!(fp(&recorded[0]), fp(&a), "a base's ID changes the fingerprint");
    }

    #[test]
    fn build_command_is_planned_as_data() {
        let b = ImageBuild {
            service: "backend".into(),
            image: "ghcr.io/x/backend:latest".into(),
            context: "/repo".into(),
            dockerfile: "/repo/backend/Dockerfile".into(),
            ignorefile: Some("/repo/backend/.dockerignore".into()),
            build_args: vec![("A".into(), "1".into())],
            labels: vec![("v7.mode".into(), "registry-free".into())],
            pull_never: true,
            volumes: vec!["/h/vendor:/deps/cargo-vendor:ro".into()],
            extra_inputs: vec!["base x sha256:1".into()],
        };
        assert_eq!(
            b.base_images().unwrap_err().to_string().split(':').next(),
            Some("cannot read /repo/backend/Dockerfile")
        );
        let b = with_labels(b, "v7test-x", "sha256:abc".into());
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c.conf")]);
        let proxies = Proxies { http: Some("http://u:pw@proxy:3128".into()), ..Default::default() };
        let cmd = b.command(&podman, &proxies);
        assert_eq!(
            cmd.args,
            [
                "build",
                "--format",
                "docker",
                "--layers",
                "-t",
                "ghcr.io/x/backend:latest",
                "-f",
                "/repo/backend/Dockerfile",
                "--ignorefile",
                "/repo/backend/.dockerignore",
                "--build-arg",
                "A=1",
                "--label",
                "v7.mode=registry-free",
                "--label",
                "v7.project=v7test-x",
                "--label",
                "v7.inputs=sha256:abc",
                "-v",
                "/h/vendor:/deps/cargo-vendor:ro",
                "--pull=never",
                "/repo"
            ]
        );
        assert!(cmd.env.contains(&("HTTP_PROXY".into(), "http://u:pw@proxy:3128".into())), "proxies go in as env");
        assert!(!cmd.args.iter().any(|a| a.contains("pw@")), "and never as build args");
        assert!(!cmd.to_string().contains("pw@"), "and are masked when printed: {cmd}");
    }
}
