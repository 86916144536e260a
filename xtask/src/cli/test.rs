//! `cargo xtask test`: every test suite of the repository, after installing what they need.
//! This is the README's test command, and all that `.ci/run` calls.
//!
//! Suites: `lint` (`cargo fmt --check` and `cargo clippy -D warnings` on every target, the
//! xtask's end-to-end tests included), `rust` (cargo test for the workspace: the services
//! against real nats-server and clickhouse-server), `python` (pytest for analytics-engine's
//! statistics component), `web` (vitest and a production build), `podman` (the xtask's
//! end-to-end tests with real podman, a real registry and real image builds). Every suite runs
//! even when one fails; the exit code is non-zero when any failed.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::flags;
use crate::podman::prereq;
use crate::process::{on_path, python, Cmd, Runner};
use crate::util::workspace::Workspace;

const SUITES: &[&str] = &["lint", "rust", "python", "web", "podman"];

impl flags::Test {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        for s in &self.suite {
            if !SUITES.contains(&s.as_str()) {
                bail!("unknown suite {s:?}: choose from {}", SUITES.join(", "));
            }
        }
        let chosen: Vec<&str> =
            SUITES.iter().copied().filter(|s| self.suite.is_empty() || self.suite.iter().any(|x| x == s)).collect();
        let mut results: Vec<(&str, Result<()>, f64)> = Vec::new();
        for suite in chosen {
            eprintln!("\n=== suite {suite} ===");
            let start = Instant::now();
            let result = match suite {
                "lint" => lint(ws),
                "rust" => rust(ws),
                "python" => python_suite(ws),
                "web" => web(ws),
                "podman" => podman(ws),
                _ => unreachable!("checked above"),
            };
            if let Err(e) = &result {
                eprintln!("suite {suite} FAILED: {e:#}");
            }
            results.push((suite, result, start.elapsed().as_secs_f64()));
        }
        eprintln!("\n=== summary ===");
        for (suite, result, secs) in &results {
            eprintln!("{:<8} {:<6} {secs:>7.1} s", suite, if result.is_ok() { "ok" } else { "FAILED" });
        }
        let failed = results.iter().filter(|r| r.1.is_err()).count();
        println!("suites: {} passed, {} failed", results.len() - failed, failed);
        if failed > 0 {
            bail!("{failed} suite(s) failed; rerun one with `cargo xtask test SUITE`");
        }
        Ok(())
    }
}

fn cargo(ws: &Workspace, args: &[&str]) -> Cmd {
    Cmd::new("cargo").args(args.iter().copied()).dir(&ws.root)
}

/// Formatting (rustfmt.toml) and clippy with warnings as errors, so CI holds the line.
fn lint(ws: &Workspace) -> Result<()> {
    // clippy runs the services' build scripts, which compile protos.
    prereq::ensure("the lint suite", prereq::PROTOC)?;
    let runner = Runner::new(false);
    runner.run(&cargo(ws, &["fmt", "--all", "--", "--check"]))?;
    runner.run(&cargo(ws, &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    // The xtask's end-to-end tests are behind a feature: lint them too.
    runner.run(&cargo(
        ws,
        &["clippy", "-p", "xtask", "--all-targets", "--features", "e2e", "--locked", "--", "-D", "warnings"],
    ))
}

fn rust(ws: &Workspace) -> Result<()> {
    prereq::ensure("the Rust tests", prereq::SERVICE_TESTS)?;
    Runner::new(false).run(&cargo(ws, &["test", "--workspace", "--locked", "--no-fail-fast"]))
}

fn python_suite(ws: &Workspace) -> Result<()> {
    let dir = ws.path("analytics-engine/python");
    let runner = Runner::new(false);
    let install = Cmd::new(python()).args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"]);
    runner.run(&install.path_arg(&dir.join("requirements-dev.txt")))?;
    runner.run(&Cmd::new(python()).args(["-m", "pytest", "-q"]).dir(&dir))
}

fn web(ws: &Workspace) -> Result<()> {
    if !on_path("npm") {
        bail!("the web tests need Node.js and npm: apt-get install -y nodejs npm");
    }
    let dir = ws.path("web");
    let runner = Runner::new(false);
    runner.run(&Cmd::new("npm").args(["ci", "--no-audit", "--no-fund"]).dir(&dir))?;
    runner.run(&Cmd::new("npm").arg("test").dir(&dir))?;
    runner.run(&Cmd::new("npm").args(["run", "build"]).dir(&dir))
}

fn podman(ws: &Workspace) -> Result<()> {
    let mut needs = prereq::PODMAN.to_vec();
    needs.extend_from_slice(prereq::REGISTRY_FREE);
    needs.extend_from_slice(prereq::E2E_TESTS);
    needs.extend_from_slice(prereq::SERVICE_TESTS);
    prereq::ensure("the podman end-to-end tests", &needs)?;
    // One test thread: the e2e tests share podman's storage and two cores.
    Runner::new(false).run(&cargo(
        ws,
        &["test", "-p", "xtask", "--features", "e2e", "--locked", "--no-fail-fast", "--", "--test-threads=1"],
    ))
}
