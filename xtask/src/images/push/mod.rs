//! `cargo xtask push`: the service images `build` made, published to the registry the manifest
//! names (or `--registry`), tagged `latest`, the git short revision and, on a release tag, the
//! version ([`plan`]).
//!
//! - Credentials come from the environment (`REGISTRY_USER`/`REGISTRY_TOKEN`, or
//!   `GITHUB_ACTOR`/`GITHUB_TOKEN`) and reach podman on standard input (`podman login
//!   --password-stdin`), into an auth file in a private temporary directory that is removed
//!   afterwards, whatever happens: never on a command line, never printed, never in
//!   `~/.config/containers/auth.json`.
//! - Everything is checked before anything is sent: every image is here, every tag valid,
//!   the credentials whole.
//! - `podman push SOURCE docker://TARGET`: no local tag is added for a target.
//! - Transient failures (5xx, 429, resets, timeouts) are retried with backoff like pull's
//!   attempts (one word list for both: `podman/registry_errors.rs`); permanent ones (401, 403, untrusted certificates, unknown names) fail at once
//!   with podman's own last line.

pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::net::backoff::{exponential, Jitter};
use crate::oci::ImageRef;
use crate::podman::images::presence;
use crate::podman::registry_errors::{classify, Class, Operation};
use crate::podman::Podman;
use crate::process::{last_line, Cmd, Runner};
use crate::stack::Stack;
use crate::util::workspace::Workspace;
use plan::{Credentials, ImagePush, Revision};

/// What to push, and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Services to push (all built services when empty).
    pub services: Vec<String>,
    /// `HOST[/PREFIX]`: push `<service>` under it instead of the manifest's names.
    pub registry: Option<String>,
    /// More tags besides latest, the revision and the version.
    pub tags: Vec<String>,
    /// A directory of CA certificates (`*.crt`) for the registry, as podman's `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// Attempts per push and login, first one included (default 4).
    pub attempts: Option<u32>,
    /// Seconds one push attempt may take before it is stopped and retried (default 600).
    pub timeout_secs: Option<u64>,
}

const DEFAULT_ATTEMPTS: u32 = 4;
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// First wait between attempts; doubled each time up to [`BACKOFF_CAP`]: 2, 4, 8 s outlasts
/// a registry restart without making a permanent error slow (those fail at once).
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

pub fn push(ws: &Workspace, runner: &Runner, opts: &Options) -> Result<()> {
    let stack = Stack::load(ws)?;
    let built: Vec<(String, String)> =
        stack.built_services().map(|(name, svc, _)| (name.clone(), svc.image.get_ref().clone())).collect();
    let selected = select(&built, &opts.services)?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let rev = revision(ws, &env)?;
    let plan = plan::plan(&selected, opts.registry.as_deref(), &rev, &opts.tags).map_err(anyhow::Error::msg)?;
    let creds = plan::credentials(&env).map_err(anyhow::Error::msg)?;
    if let Some(dir) = &opts.cert_dir {
        if !dir.is_dir() {
            bail!("--cert-dir {}: not a directory (it holds the registry's CA as *.crt)", dir.display());
        }
    }
    let attempts = opts.attempts.unwrap_or(DEFAULT_ATTEMPTS);
    if attempts == 0 {
        bail!("--attempts 0 would push nothing: give 1 or more");
    }
    let timeout = Duration::from_secs(opts.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1));

    print_plan(&plan, creds.as_ref(), &rev);
    let podman = Podman::prepare(ws)?;
    let auth = AuthDir::create(ws, runner.dry_run)?;
    let hosts = registry_hosts(&plan)?;

    if !runner.dry_run {
        let sources: Vec<ImageRef> =
            plan.iter().map(|p| ImageRef::parse(&p.source).map_err(anyhow::Error::msg)).collect::<Result<_>>()?;
        let found = presence(runner, &podman, &sources)?;
        let missing: Vec<String> = plan
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| format!("{} ({})", p.service, p.source))
            .collect();
        if !missing.is_empty() {
            bail!(
                "not built here: {}; build them first: cargo xtask build {}",
                missing.join(", "),
                plan.iter().map(|p| p.service.as_str()).collect::<Vec<_>>().join(" ")
            );
        }
    }

    if let Some(c) = &creds {
        for host in &hosts {
            login(runner, &podman, &auth.file, opts.cert_dir.as_deref(), host, c, attempts)?;
        }
    }
    let mut pushed = 0;
    for image in &plan {
        for target in &image.targets {
            let digest = push_one(runner, &podman, &auth, opts.cert_dir.as_deref(), image, target, attempts, timeout)?;
            if !runner.dry_run {
                println!("pushed {target} ({digest})");
            }
            pushed += 1;
        }
    }
    if !runner.dry_run {
        eprintln!("push: {pushed} references of {} images pushed", plan.len());
    }
    Ok(())
}

/// The named services among the built ones; none named means all.
fn select(built: &[(String, String)], wanted: &[String]) -> Result<Vec<(String, String)>> {
    if wanted.is_empty() {
        return Ok(built.to_vec());
    }
    let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    wanted
        .iter()
        .map(|w| match built.iter().find(|(n, _)| n == w) {
            Some(b) => Ok(b.clone()),
            None => bail!("push: no service image named {w:?}; the xtask builds and pushes {}", names.join(", ")),
        })
        .collect()
}

/// The revision and release version of the checkout, from git.
fn revision(ws: &Workspace, env: &BTreeMap<String, String>) -> Result<Revision> {
    let git = |args: &[&str]| Cmd::new("git").args(["-C", &ws.root.to_string_lossy()]).args(args.iter().copied());
    let reader = Runner::new(false);
    let short = reader
        .query(&git(&["rev-parse", "--short", "HEAD"]))
        .context("push tags images with the git revision: run it in a git checkout")?
        .trim()
        .to_string();
    let dirty = !reader.query(&git(&["status", "--porcelain", "--untracked-files=no"]))?.trim().is_empty();
    let exact = reader.capture(&git(&["describe", "--tags", "--exact-match", "HEAD"]))?;
    let exact = exact.status.success().then(|| String::from_utf8_lossy(&exact.stdout).trim().to_string());
    let version = plan::version(env, exact.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(Revision { short, dirty, version })
}

fn print_plan(plan: &[ImagePush], creds: Option<&Credentials>, rev: &Revision) {
    for p in plan {
        eprintln!("{}: {}", p.service, p.source);
        for t in &p.targets {
            eprintln!("  -> {t}");
        }
    }
    if rev.dirty {
        eprintln!("note: tracked files differ from {}: the revision tag is {}-dirty", rev.short, rev.short);
    }
    match creds {
        Some(c) => eprintln!("credentials: user {} (from {})", c.user, c.source),
        None => eprintln!(
            "credentials: none (REGISTRY_USER/REGISTRY_TOKEN and GITHUB_ACTOR/GITHUB_TOKEN unset): pushing without login"
        ),
    }
}

/// Every registry host the targets go to, once.
fn registry_hosts(plan: &[ImagePush]) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for t in plan.iter().flat_map(|p| &p.targets) {
        let host = ImageRef::parse(t).map_err(anyhow::Error::msg)?.registry;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// A private directory for the auth file podman writes at login; removed on drop, so the
/// token is on disk only while the push runs, readable by this user alone.
struct AuthDir {
    dir: PathBuf,
    file: PathBuf,
    keep: bool,
}

impl AuthDir {
    fn create(ws: &Workspace, dry_run: bool) -> Result<AuthDir> {
        let dir = ws.state.join(format!("push-auth-{}", std::process::id()));
        let file = dir.join("auth.json");
        if dry_run {
            return Ok(AuthDir { dir, file, keep: true });
        }
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // podman reads `{}` as "no credentials yet" and adds to it.
        std::fs::write(&file, "{}\n").with_context(|| format!("cannot write {}", file.display()))?;
        Ok(AuthDir { dir, file, keep: false })
    }
}

impl Drop for AuthDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn with_trust(cmd: Cmd, cert_dir: Option<&Path>) -> Cmd {
    match cert_dir {
        Some(d) => cmd.arg("--cert-dir").path_arg(d),
        None => cmd,
    }
}

fn login(
    runner: &Runner,
    podman: &Podman,
    authfile: &Path,
    cert_dir: Option<&Path>,
    host: &str,
    creds: &Credentials,
    attempts: u32,
) -> Result<()> {
    let cmd = with_trust(podman.cmd().args(["login", "--authfile"]).path_arg(authfile), cert_dir).args([
        "--username",
        &creds.user,
        "--password-stdin",
        host,
    ]);
    let result = with_retries(&format!("login to {host}"), attempts, 7, || {
        let out = runner.run_with_input(&cmd, creds.secret.as_bytes())?;
        Ok(if out.status.success() { Ok(()) } else { Err(last_line(&out.stderr)) })
    })?;
    match result {
        Ok(()) => {
            if !runner.dry_run {
                eprintln!("logged in to {host} as {}", creds.user);
            }
            Ok(())
        }
        Err(failed) => bail!(
            "push: login to {host} as {} failed: {} (check {}{})",
            creds.user,
            failed.why,
            creds.source,
            if failed.why.contains("x509") || failed.why.contains("certificate") {
                "; for a private CA give --cert-dir DIR with its ca.crt"
            } else {
                ""
            }
        ),
    }
}

/// Pushes `image` to `target`, retrying transient failures; returns the pushed digest.
#[allow(clippy::too_many_arguments)]
fn push_one(
    runner: &Runner,
    podman: &Podman,
    auth: &AuthDir,
    cert_dir: Option<&Path>,
    image: &ImagePush,
    target: &str,
    attempts: u32,
    timeout: Duration,
) -> Result<String> {
    let digest_file = auth.dir.join("digest");
    let cmd = with_trust(podman.cmd().args(["push", "--quiet", "--authfile"]).path_arg(&auth.file), cert_dir)
        .arg("--digestfile")
        .path_arg(&digest_file)
        .args([image.source.clone(), format!("docker://{target}")]);
    if runner.dry_run {
        runner.run(&cmd)?;
        return Ok(String::new());
    }
    let result = with_retries(target, attempts, target.len() as u64, || {
        let _ = std::fs::remove_file(&digest_file);
        let started = Instant::now();
        let running = runner.start(&cmd)?;
        loop {
            if let Some(out) = running.try_wait()? {
                if out.status.success() {
                    return Ok(Ok(std::fs::read_to_string(&digest_file).unwrap_or_default().trim().to_string()));
                }
                return Ok(Err(last_line(&out.stderr)));
            }
            if started.elapsed() > timeout {
                running.terminate(Duration::from_secs(5));
                return Ok(Err(format!("timed out after {} s", timeout.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })?;
    let failed = match result {
        Ok(digest) => return Ok(digest),
        Err(failed) => failed,
    };
    let why = &failed.why;
    let hint = if why.contains("unauthorized") || why.contains("authentication required") || why.contains("denied") {
        "; set REGISTRY_USER and REGISTRY_TOKEN (or GITHUB_ACTOR and GITHUB_TOKEN) to a login that may push there"
    } else if why.contains("x509") || why.contains("certificate") {
        "; for a private CA give --cert-dir DIR with its ca.crt"
    } else if failed.class != Class::Permanent {
        "; the registry kept failing: try again later, or raise --attempts"
    } else {
        ""
    };
    bail!("push: {} to {target} failed after {} attempt(s): {why}{hint}", image.service, failed.attempts);
}

/// How an operation failed for good: podman's reason, what it was taken for, after how many
/// attempts.
struct Failed {
    why: String,
    class: Class,
    attempts: u32,
}

/// The one retry loop of login and push: `attempt` is run up to `attempts` times (its `Err` is
/// podman's reason); a transient or rate-limited failure waits 2, 4, 8 s (jittered, capped at
/// 30 s) and tries again, a permanent one or the last attempt ends it. `Err` of the outer
/// result is the xtask's own failure (podman could not be started).
fn with_retries<T>(
    what: &str,
    attempts: u32,
    seed: u64,
    mut attempt: impl FnMut() -> Result<Result<T, String>>,
) -> Result<Result<T, Failed>> {
    let mut jitter = Jitter::seeded(seed);
    let mut n = 1;
    loop {
        let why = match attempt()? {
            Ok(value) => return Ok(Ok(value)),
            Err(why) => why,
        };
        let class = classify(&why, Operation::Push);
        if class == Class::Permanent || n >= attempts {
            return Ok(Err(Failed { why, class, attempts: n }));
        }
        let wait = exponential(n, BACKOFF_BASE, BACKOFF_CAP, jitter.next());
        eprintln!("{what}: {why}; attempt {} of {attempts} in {:.0} s", n + 1, wait.as_secs_f64());
        std::thread::sleep(wait);
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_a_permanent_answer_or_the_last_attempt() {
        let mut calls = 0;
        let r: Result<Result<(), Failed>> = with_retries("t", 4, 1, || {
            calls += 1;
            Ok(Err("Error: authenticating creds: unauthorized".to_string()))
        });
        let failed = r.unwrap().unwrap_err();
        assert_eq!((calls, failed.attempts, failed.class), (1, 1, Class::Permanent), "a 401 is not asked again");
        let mut calls = 0;
        let r: Result<Result<(), Failed>> = with_retries("t", 1, 1, || {
            calls += 1;
            Ok(Err("received unexpected HTTP status: 503 Service Unavailable".to_string()))
        });
        let failed = r.unwrap().unwrap_err();
        assert_eq!((calls, failed.attempts, failed.class), (1, 1, Class::Transient), "attempts bound the loop");
        let r: Result<Result<u32, Failed>> = with_retries("t", 3, 1, || Ok(Ok(5)));
        assert_eq!(r.unwrap().ok(), Some(5));
    }

    #[test]
    fn services_are_selected_by_name_and_unknown_ones_refused() {
        let built = vec![("backend".to_string(), "b".to_string()), ("web".to_string(), "w".to_string())];
        assert_eq!(select(&built, &[]).unwrap().len(), 2);
        assert_eq!(select(&built, &["web".into()]).unwrap(), [("web".to_string(), "w".to_string())]);
        let e = select(&built, &["nats".into()]).unwrap_err().to_string();
        assert_eq!(e, "push: no service image named \"nats\"; the xtask builds and pushes backend, web");
    }

    #[test]
    fn hosts_are_listed_once() {
        let plan = vec![
            ImagePush {
                service: "a".into(),
                source: "x".into(),
                targets: vec!["ghcr.io/o/a:latest".into(), "ghcr.io/o/a:1".into()],
            },
            ImagePush { service: "b".into(), source: "y".into(), targets: vec!["127.0.0.1:5000/b:latest".into()] },
        ];
        assert_eq!(registry_hosts(&plan).unwrap(), ["ghcr.io", "127.0.0.1:5000"]);
    }
}
