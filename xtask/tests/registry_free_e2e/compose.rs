//! Phase 6 of the registry-free end-to-end test: the compose export run for real by Debian's
//! podman-compose 1.0.3, with the registry-free images phase 1 built, under the test stack's
//! compose project `v7test-rf_compose` (`xtask/src/export/compose.rs`):
//!
//! - `export compose --write --dir` writes compose.yaml and compose.offline.yaml into the
//!   checkout (their paths are relative to the file, so they must sit in it) and makes the
//!   compose project's secret files;
//! - `podman-compose -p v7test-rf_compose -f compose.yaml -f compose.offline.yaml up -d
//!   --no-build` starts every registry-free service under the compose names (Grafana scaled to
//!   nothing), none under deploy's names;
//! - podman-compose 1.0.3 ignores the health conditions and podman runs no health check without
//!   systemd: `verify --compose` runs each service's check until it passes, then proves the
//!   stack works end to end;
//! - `cargo xtask down` of the deployed stack leaves every compose container alone;
//! - `podman-compose down -v` removes the containers and volumes; podman-compose 1.0.3 leaves
//!   the networks (asserted, so a fixed podman-compose shows here), which the phase removes,
//!   then nothing of the compose project is left.
//!
//! Everything it makes is named `v7test-rf_compose-...` (or lives under
//! `.v7/stacks/v7test-rf_compose/`) and is removed at the end, also when it fails (Drop guard).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::stack::{self, text, Podman, TestStack, PROJECT};

/// The test stack's compose project, `<project>_compose` as the xtask names it.
fn project() -> String {
    format!("{PROJECT}_compose")
}

fn object(name: &str) -> String {
    format!("{}-{name}", project())
}

/// What the xtask keeps for the compose project (secrets, verify's marker); the files go below.
fn state() -> PathBuf {
    stack::root().join(".v7/stacks").join(project())
}

/// The compose files' directory, relative to the checkout root (what `--dir` takes).
fn files_dir() -> String {
    format!(".v7/stacks/{}/files", project())
}

/// Removes, on drop and when called, every container, network and volume named
/// `v7test-rf_compose-*` and the compose project's state directory. Nothing else.
struct ComposeCleanup<'a> {
    podman: &'a Podman,
}

impl ComposeCleanup<'_> {
    fn names(&self, args: &[&str]) -> Vec<String> {
        let prefix = format!("{}-", project());
        text(&self.podman.output(args).stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| l.starts_with(&prefix))
            .collect()
    }

    /// (containers, networks, volumes) of the compose project that exist.
    fn left(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            self.names(&["ps", "-a", "--format", "{{.Names}}"]),
            self.names(&["network", "ls", "--format", "{{.Name}}"]),
            self.names(&["volume", "ls", "--format", "{{.Name}}"]),
        )
    }

    fn run(&self) {
        let (containers, networks, volumes) = self.left();
        for c in &containers {
            let _ = self.podman.output(&["rm", "-f", "-v", "-t", "0", c]);
        }
        for n in &networks {
            let _ = self.podman.output(&["network", "rm", "-f", n]);
        }
        for v in &volumes {
            let _ = self.podman.output(&["volume", "rm", "-f", v]);
        }
        let _ = std::fs::remove_dir_all(state());
    }
}

impl Drop for ComposeCleanup<'_> {
    fn drop(&mut self) {
        eprintln!("== cleanup: containers, networks and volumes of {}", project());
        self.run();
    }
}

/// Debian's podman-compose in the compose files' directory, with the containers.conf the
/// xtask wrote for this host (podman-compose runs `podman` from PATH). (success, output)
fn podman_compose(podman: &Podman, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("podman-compose");
    for (k, v) in podman.cmd(&[]).get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    eprintln!("$ podman-compose {}", args.join(" "));
    let out = cmd
        .args(args)
        .current_dir(stack::root().join(files_dir()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run podman-compose: {e}; hint: apt-get install -y podman-compose (`cargo xtask test podman` does)")
        });
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for line in all.lines().filter(|l| l.starts_with("podman ") || l.contains("Error") || l.contains("rror:")) {
        eprintln!("  | {line}");
    }
    (out.status.success(), all)
}

pub fn compose_phase(stack: &TestStack, podman: &Podman, registry_free: &[String], timings: &mut Vec<(String, f64)>) {
    let t = Instant::now();
    eprintln!("\n== phase 6: the compose export under podman-compose 1.0.3, verify --compose, down");
    let cleanup = ComposeCleanup { podman };
    cleanup.run();
    let version = Command::new("podman-compose").arg("version").stdin(Stdio::null()).output();
    let version = version.map(|o| text(&o.stdout)).unwrap_or_default();
    let version = version.lines().find(|l| l.contains("podman-compose")).unwrap_or("?").trim().to_string();
    eprintln!("podman-compose: {version}");

    // --- the files, written into the checkout, and the compose project's secrets --------------
    let dir = files_dir();
    let (ok, out, _) = stack.xtask(&["export", "compose", "--write", "--dir", &dir]);
    assert!(ok, "export compose --write --dir {dir} failed:\n{out}");
    let files = stack::root().join(&dir);
    let yaml = std::fs::read_to_string(files.join("compose.yaml")).expect("compose.yaml written");
    let over = std::fs::read_to_string(files.join("compose.offline.yaml")).expect("compose.offline.yaml written");
    assert!(yaml.contains(&format!("\nname: {}\n", project())), "the project line:\n{yaml}");
    assert!(yaml.contains("\n      context: \"../../../..\"\n"), "paths relative to the file:\n{yaml}");
    assert!(over.contains(&format!("image: localhost/{PROJECT}-registry-free/backend:latest")), "{over}");
    let secrets = state().join("secret-files");
    assert!(secrets.join("clickhouse-password").is_file(), "no secret files in {}:\n{out}", secrets.display());

    // --- up: every registry-free service under the compose names -------------------------------
    let p = project();
    let files_args = ["-p", p.as_str(), "-f", "compose.yaml", "-f", "compose.offline.yaml"];
    let up: Vec<&str> = files_args.iter().copied().chain(["up", "-d", "--no-build"]).collect();
    let started = Instant::now();
    let (ok, out) = podman_compose(podman, &up);
    assert!(ok, "podman-compose up failed:\n{out}");
    timings.push(("podman-compose up".into(), started.elapsed().as_secs_f64()));
    for svc in registry_free {
        let c = object(svc);
        let state = podman.ok(&["inspect", "--format", "{{.State.Status}}", &c]);
        assert_eq!(state, "running", "{c} is not running after podman-compose up:\n{out}");
        let deploys = format!("{PROJECT}-{svc}");
        assert!(!podman.output(&["container", "exists", &deploys]).status.success(), "compose made {deploys}");
    }
    assert!(
        !podman.output(&["container", "exists", &object("grafana")]).status.success(),
        "Grafana was started although the override scales it to 0"
    );
    eprintln!("ok podman-compose started {} containers {}-*, Grafana left out", registry_free.len(), p);

    // --- verify --compose: health first (podman-compose does not wait), then end to end --------
    let (ok, out, secs) = stack.xtask(&["verify", "--compose"]);
    assert!(ok && out.contains("verify: the stack works end to end"), "verify --compose failed:\n{out}");
    for svc in registry_free {
        assert!(out.contains(&format!("ok    {svc} is healthy (")), "verify --compose did not wait for {svc}:\n{out}");
    }
    timings.push(("verify --compose".into(), secs));

    // --- deploy's down leaves the compose project alone ----------------------------------------
    let (ok, out, _) = stack.xtask(&["down", "--volumes"]);
    assert!(ok, "down failed:\n{out}");
    let (containers, networks, volumes) = cleanup.left();
    assert_eq!(containers.len(), registry_free.len(), "`cargo xtask down` removed compose containers: {containers:?}");
    assert_eq!(networks.len(), 2, "`cargo xtask down` removed a compose network: {networks:?}");
    assert!(!volumes.is_empty(), "`cargo xtask down --volumes` removed compose volumes");
    eprintln!("ok `cargo xtask down --volumes` left the {} compose containers, networks and volumes", containers.len());

    // --- podman-compose down -v, then nothing of the project is left ---------------------------
    let down: Vec<&str> = files_args.iter().copied().chain(["down", "-v"]).collect();
    let (ok, out) = podman_compose(podman, &down);
    assert!(ok, "podman-compose down -v failed:\n{out}");
    let (containers, networks, volumes) = cleanup.left();
    assert!(containers.is_empty() && volumes.is_empty(), "left by down -v: {containers:?} {volumes:?}");
    // podman-compose 1.0.3 does not remove networks (docs/compose.md says so, and what to run).
    let mut expected = vec![object("backend"), object("frontend")];
    let mut networks = networks;
    networks.sort();
    expected.sort();
    assert_eq!(networks, expected, "podman-compose 1.0.3 leaves exactly the project's networks");
    for n in &networks {
        podman.ok(&["network", "rm", n]);
    }
    let left = cleanup.left();
    assert_eq!(left, (vec![], vec![], vec![]), "something of compose project {p} is left");
    let labelled = podman.ok(&["ps", "-a", "--filter", &format!("label=io.podman.compose.project={p}"), "-q"]);
    assert!(labelled.is_empty(), "containers labelled with the compose project are left: {labelled}");
    eprintln!("ok podman-compose down -v and `podman network rm` left nothing of {p}");
    timings.push(("phase 6 (compose) in all".into(), t.elapsed().as_secs_f64()));
    drop(cleanup);
}
