//! Image builds: each one planned as an [`ImageBuild`] value, fingerprinted
//! (`fingerprint.rs`, over its context as `context.rs` reads it), skipped when the image already
//! here carries the same fingerprint, otherwise built by podman, each with its own log, as many
//! at once as `--jobs` allows (`schedule.rs` decides, `run.rs` runs, `report.rs` shows and
//! reports, `interrupt.rs` and `working.rs` stop them cleanly on SIGINT/SIGTERM). `plan.rs`
//! makes the production builds of `*/Dockerfile` (rewritten for package mirrors with
//! `--mirror`, whose argument `mirror_spec.rs` reads); `images/registry_free` makes the
//! registry-free ones.
//!
//! Proxies from the environment reach the builds through podman's `--http-proxy` (on by
//! default): given to podman as environment, never as build arguments, so no image stores them
//! (`net/proxy.rs` says what was verified).

pub mod context;
pub mod fingerprint;
pub mod interrupt;
pub mod mirror_spec;
pub mod mirrors;
pub mod plan;
pub mod report;
pub mod run;
pub mod schedule;
pub mod working;

pub use run::run_builds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::images::dockerfile::base_images::external_images;
use crate::net::proxy::Proxies;
use crate::oci::ImageRef;
use crate::podman::images::{podman_reference, LocalImage};
use crate::podman::Podman;
use crate::process::Cmd;
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
    /// builds on ([`Bases::record`]), `builder IMAGE INPUTS` of the build it copies from.
    pub extra_inputs: Vec<String>,
    /// The service name of another build of the same run that must have been built (or
    /// skipped as unchanged) before this one starts: registry-free mode's workspace builder,
    /// whose image the Rust runtime builds copy their binary from.
    pub after: Option<String>,
}

impl ImageBuild {
    /// `podman build`, which writes the image's ID to `iidfile` and tags nothing: the image is
    /// tagged by [`tag_command`] once the build succeeded and was not stopped.
    pub fn command(&self, podman: &Podman, proxies: &Proxies, iidfile: &Path) -> Cmd {
        let mut cmd = podman.cmd();
        for (k, v) in proxies.env() {
            cmd = cmd.env(k, v);
        }
        // `--format docker`: the OCI image format has no HEALTHCHECK, and podman drops it silently.
        cmd = cmd.args(["build", "--format", "docker", "--layers", "--iidfile"]).path_arg(iidfile);
        cmd = cmd.arg("-f").path_arg(&self.dockerfile);
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
pub fn with_labels(mut b: ImageBuild, project: &str, inputs: String) -> ImageBuild {
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

    /// Leaves `image` out: an image another build of the same run makes (the workspace
    /// builder), whose ID is not known before that build; its fingerprint goes in instead.
    pub fn without(mut self, image: &ImageRef) -> Bases {
        self.all.retain(|r| r != image);
        for refs in &mut self.per_build {
            refs.retain(|r| r != image);
        }
        self
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

/// `podman tag ID IMAGE`: a build's image gets its name only after the build succeeded.
pub fn tag_command(podman: &Podman, id: &str, image: &str) -> Cmd {
    podman.cmd().args(["tag", id, image])
}

/// Errors of podman's shared image store while another process adds or removes images at the
/// same moment; the same build succeeds when tried again.
pub const TRANSIENT_STORE_ERRORS: &[&str] = &["layer not known", "image not known"];

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
            after: None,
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
            after: None,
        };
        assert_eq!(
            b.base_images().unwrap_err().to_string().split(':').next(),
            Some("cannot read /repo/backend/Dockerfile")
        );
        let b = with_labels(b, "v7test-x", "sha256:abc".into());
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c.conf")]);
        let proxies = Proxies { http: Some("http://u:pw@proxy:3128".into()), ..Default::default() };
        let cmd = b.command(&podman, &proxies, Path::new("/s/backend.iid"));
        assert_eq!(
            cmd.args,
            [
                "build",
                "--format",
                "docker",
                "--layers",
                "--iidfile",
                "/s/backend.iid",
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
        assert!(cmd.to_string().contains("HTTP_PROXY='http://u:***@proxy:3128'"), "{cmd}");
        assert!(!cmd.args.iter().any(|a| a == "-t"), "nothing is tagged by the build itself");
        let tag = tag_command(&podman, "sha256:1", "ghcr.io/x/backend:latest");
        assert_eq!(tag.args, ["tag", "sha256:1", "ghcr.io/x/backend:latest"]);
    }
}
