//! `cargo xtask build`: the service images, built by podman in parallel, each skipped when
//! its inputs (context after `.dockerignore`, Dockerfile, build arguments) match the `v7.inputs`
//! label of the image already here. With `--mirror`, the Dockerfiles are rewritten out of tree
//! (see `mirror_rewrite.rs`) and the rewritten copy is built; the source is never touched.
//! Proxies from the environment reach the build through podman's `--http-proxy` (default on):
//! they are given to podman as environment, never as build arguments, so no image stores them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::build_inputs::{self, IgnoreRules};
use crate::command::{Cmd, Runner};
use crate::deploy::PROJECT_LABEL;
use crate::flags;
use crate::manifest::{MirrorPreset, Stack};
use crate::mirror_rewrite;
use crate::podman_host::{explain_failure, Podman};
use crate::proxy::{self, Proxies};

/// The label that records what an image was built from.
pub const INPUTS_LABEL: &str = "v7.inputs";

/// The labels every build gets: the project (`v7.project=<project.name>`, so everything a
/// project's builds leave behind can be found and removed by label) and the fingerprint of
/// the inputs.
///
/// podman 4.3.1 (buildah 1.28.2) puts `--label` on EVERY image a `--layers` build commits: the
/// builder stages' images and each step's intermediate image too, not only the tagged result
/// (checked with a two-stage Containerfile: all six images it made carried the label, and
/// `podman images -a --filter label=v7.project=NAME` listed them all). Labels are not part of
/// the layer cache key: a build with another project label reused those intermediates ("Using
/// cache"), so a shared intermediate keeps the label of the project that made it first.
fn with_labels(mut b: ImageBuild, project: &str, inputs: String) -> ImageBuild {
    b.labels.push((PROJECT_LABEL.to_string(), project.to_string()));
    b.labels.push((INPUTS_LABEL.to_string(), inputs));
    b
}

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
    /// More inputs for the fingerprint that are not files, e.g. the ID of a local base image
    /// (a rebuilt base must rebuild what stands on it, though its name did not change).
    pub extra_inputs: Vec<String>,
}

impl ImageBuild {
    pub fn command(&self, podman: &Podman, proxies: &Proxies) -> Cmd {
        let mut cmd = podman.cmd();
        for (k, v) in proxies.env() {
            cmd = cmd.env(k, v);
        }
        // `--format docker`: the OCI image format has no HEALTHCHECK, and podman drops it silently.
        cmd = cmd.args(["build", "--format", "docker", "--layers", "-t", &self.image, "-f"]).arg(self.dockerfile.display().to_string());
        if let Some(ignore) = &self.ignorefile {
            cmd = cmd.arg("--ignorefile").arg(ignore.display().to_string());
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
        cmd.arg(self.context.display().to_string())
    }

    /// The fingerprint of everything this build reads.
    pub fn fingerprint(&self) -> Result<String> {
        let ignore = match &self.ignorefile {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            None => String::new(),
        };
        let dockerfile = std::fs::read_to_string(&self.dockerfile)
            .with_context(|| format!("cannot read {}", self.dockerfile.display()))?;
        let args: Vec<String> = self.build_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut extra: Vec<&str> = vec![&dockerfile, &ignore];
        extra.extend(args.iter().map(String::as_str));
        extra.extend(self.extra_inputs.iter().map(String::as_str));
        build_inputs::fingerprint(&self.context, &IgnoreRules::parse(&ignore), &extra)
    }
}

impl flags::Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = crate::project_root();
        let stack = Stack::load(&root)?;
        if self.offline {
            return crate::registry_free::build_all(sh, &stack, &self.service, self.force, self.rebuild_base, self.dry_run);
        }
        if self.rebuild_base {
            bail!("--rebuild-base only applies with --offline (the registry-free base image)");
        }
        let preset = if self.mirror { Some(choose_preset(&stack, self.preset.as_deref())?) } else { None };
        if self.preset.is_some() && !self.mirror {
            bail!("--preset only applies with --mirror: add --mirror");
        }
        let builds = plan(&root, &stack, &self.service, preset.as_ref().map(|(n, p)| (n.as_str(), p)))?;
        let podman = Podman::prepare()?;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let proxies = proxy::detect(&env);
        if !proxies.is_empty() {
            eprintln!("proxies for builds: {}", proxies.http.as_deref().or(proxies.https.as_deref()).map(crate::command::mask_url_credentials).unwrap_or_default());
        }
        run_builds(&Runner::new(self.dry_run), &podman, &proxies, &stack.project.name, builds, self.force)
    }
}

fn choose_preset(stack: &Stack, flag: Option<&str>) -> Result<(String, MirrorPreset)> {
    let name = match flag {
        Some(n) => n.to_string(),
        None => match &stack.mirrors.default_preset {
            Some(d) => d.get_ref().clone(),
            None => bail!("--mirror needs a preset: give --preset NAME or set mirrors.default_preset in docker/stack.toml"),
        },
    };
    match stack.mirrors.presets.get(&name) {
        Some(p) => Ok((name, p.clone())),
        None => bail!(
            "mirror preset {name:?} is not in docker/stack.toml; presets: {}",
            stack.mirrors.presets.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Checks that the named services exist and are built; none named means all built services.
pub fn select_services<'a>(stack: &'a Stack, wanted: &[String], buildable: &[&'a str]) -> Result<Vec<&'a str>> {
    if wanted.is_empty() {
        return Ok(buildable.to_vec());
    }
    let mut out = Vec::new();
    for w in wanted {
        match buildable.iter().find(|b| **b == w) {
            Some(b) => out.push(*b),
            None if stack.services.contains_key(w) => {
                bail!("{w} is not built by the xtask (it has no build recipe); buildable: {}", buildable.join(", "))
            }
            None => bail!("no service named {w:?}; buildable: {}", buildable.join(", ")),
        }
    }
    Ok(out)
}

/// The production builds for `services` (all when empty), with Dockerfiles rewritten for the
/// mirror preset when one is given.
pub fn plan(root: &Path, stack: &Stack, services: &[String], preset: Option<(&str, &MirrorPreset)>) -> Result<Vec<ImageBuild>> {
    let buildable: Vec<&str> = stack.built_services().map(|(n, _, _)| n.as_str()).collect();
    let chosen = select_services(stack, services, &buildable)?;
    let mut out = Vec::new();
    for name in chosen {
        let svc = &stack.services[name];
        let b = svc.build.as_ref().unwrap();
        let source_dockerfile = root.join(&b.dockerfile);
        let text = std::fs::read_to_string(&source_dockerfile).with_context(|| {
            format!("services.{name}.build.dockerfile = {:?}: cannot read it (docker/stack.toml)", b.dockerfile)
        })?;
        let dockerfile = match preset {
            Some((preset_name, preset)) => {
                let (rewritten, inserted) = mirror_rewrite::rewrite(&text, preset);
                let dir = crate::state_dir().join("build").join(name);
                let path = dir.join("Dockerfile");
                crate::podman_host::write_if_changed(&path, &rewritten)?;
                let managers: Vec<&str> = inserted.iter().map(|i| i.manager).collect();
                eprintln!(
                    "{name}: {} rewritten for mirror preset {preset_name} ({}) -> {}",
                    b.dockerfile,
                    if managers.is_empty() { "no package manager to redirect".to_string() } else { managers.join(", ") },
                    path.strip_prefix(root).unwrap_or(&path).display()
                );
                path
            }
            None => source_dockerfile,
        };
        out.push(ImageBuild {
            service: name.to_string(),
            image: svc.image.get_ref().clone(),
            context: root.join(&b.context),
            dockerfile,
            ignorefile: b.ignorefile.as_ref().map(|i| root.join(i)),
            build_args: b.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: Vec::new(),
            pull_never: false,
            volumes: Vec::new(),
            extra_inputs: Vec::new(),
        });
    }
    Ok(out)
}

/// Errors of podman's shared image store while another process adds or removes images at the
/// same moment; the same build succeeds when tried again.
const TRANSIENT_STORE_ERRORS: &[&str] = &["layer not known", "image not known"];

/// Runs one build with its output in `log`; tried a second time after a transient store error.
fn build_one(b: &ImageBuild, cmd: &Cmd, log: &Path) -> Result<f64, String> {
    let start = Instant::now();
    for attempt in 1..=2 {
        let out = cmd
            .to_expression()
            .stdin_null()
            .stderr_to_stdout()
            .stdout_path(log)
            .unchecked()
            .run()
            .map_err(|e| format!("cannot start podman build: {e}"))?;
        let secs = start.elapsed().as_secs_f64();
        if out.status.success() {
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
/// build goes to `.v7/build/<project>/<service>.log`; a failure prints the log's tail.
pub fn run_builds(runner: &Runner, podman: &Podman, proxies: &Proxies, project: &str, builds: Vec<ImageBuild>, force: bool) -> Result<()> {
    let mut to_run = Vec::new();
    for b in builds {
        let fp = b.fingerprint()?;
        let current = runner
            .query(&podman.cmd().args(["image", "inspect", "--format", &format!("{{{{index .Labels \"{INPUTS_LABEL}\"}}}}"), &b.image]))
            .unwrap_or_default();
        if !force && current.trim() == fp {
            eprintln!("{}: unchanged since {} was built (inputs {fp}); skipped (--force rebuilds)", b.service, b.image);
            continue;
        }
        to_run.push(with_labels(b, project, fp));
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
    let log_dir = crate::state_dir().join("build").join(project);
    std::fs::create_dir_all(&log_dir)?;
    // One thread per build, so each one's time is its own and a failure is reported when it
    // happens; podman runs them concurrently.
    let results: Vec<(String, Result<f64, String>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = to_run
            .iter()
            .map(|b| {
                let cmd = b.command(podman, proxies);
                let log = log_dir.join(format!("{}.log", b.service));
                eprintln!("{}: building {} (log: {})\n  $ {cmd}", b.service, b.image, log.display());
                scope.spawn(move || (b.service.clone(), build_one(b, &cmd, &log)))
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
            extra_inputs: vec!["sha256:base".into()],
        };
        let b = with_labels(b, "v7test-x", "abc-3".into());
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/c.conf")]);
        let proxies = Proxies { http: Some("http://u:pw@proxy:3128".into()), ..Default::default() };
        let cmd = b.command(&podman, &proxies);
        assert_eq!(
            cmd.args,
            [
                "build", "--format", "docker", "--layers", "-t", "ghcr.io/x/backend:latest", "-f", "/repo/backend/Dockerfile",
                "--ignorefile", "/repo/backend/.dockerignore", "--build-arg", "A=1", "--label", "v7.mode=registry-free",
                "--label", "v7.project=v7test-x", "--label", "v7.inputs=abc-3",
                "-v", "/h/vendor:/deps/cargo-vendor:ro", "--pull=never", "/repo"
            ]
        );
        assert!(cmd.env.contains(&("HTTP_PROXY".into(), "http://u:pw@proxy:3128".into())), "proxies go in as env");
        assert!(!cmd.args.iter().any(|a| a.contains("pw@")), "and never as build args");
        assert!(!cmd.to_string().contains("pw@"), "and are masked when printed: {cmd}");
    }

    #[test]
    fn the_repository_plans_three_builds_and_mirror_rewrites_out_of_tree() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let builds = plan(&root, &stack, &[], None).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(names, ["analytics-engine", "backend", "web"]);
        assert_eq!(builds[1].dockerfile, root.join("backend/Dockerfile"));

        let before = std::fs::read_to_string(root.join("web/Dockerfile")).unwrap();
        let preset = MirrorPreset { npm: Some("http://host.containers.internal:4873".into()), ..Default::default() };
        let builds = plan(&root, &stack, &["web".to_string()], Some(("t", &preset))).unwrap();
        assert_eq!(builds[0].dockerfile, crate::state_dir().join("build/web/Dockerfile"));
        let rewritten = std::fs::read_to_string(&builds[0].dockerfile).unwrap();
        assert!(rewritten.contains("ARG NPM_CONFIG_REGISTRY=http://host.containers.internal:4873/"), "{rewritten}");
        assert_eq!(std::fs::read_to_string(root.join("web/Dockerfile")).unwrap(), before, "the source is untouched");
    }

    #[test]
    fn unknown_services_and_presets_are_refused() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let e = plan(&root, &stack, &["frontend".to_string()], None).unwrap_err().to_string();
        assert_eq!(e, "no service named \"frontend\"; buildable: analytics-engine, backend, web");
        let e = plan(&root, &stack, &["nats".to_string()], None).unwrap_err().to_string();
        assert!(e.starts_with("nats is not built by the xtask"), "{e}");
        let e = choose_preset(&stack, Some("nope")).unwrap_err().to_string();
        assert!(e.starts_with("mirror preset \"nope\" is not in docker/stack.toml; presets: aliyun, local"), "{e}");
    }
}
