//! `cargo xtask test`: every test suite of the repository, after installing what they need.
//! This is the README's test command, and all that `.ci/run` calls.
//!
//! Suites: `rust` (cargo test for the workspace: services against real nats-server and
//! clickhouse-server), `python` (pytest for analytics-engine's statistics component), `web`
//! (vitest and a production build), `podman` (the xtask's end-to-end tests with real podman, a
//! real registry and real image builds). Every suite runs even when one fails; the exit code
//! is non-zero when any failed.

use std::time::Instant;

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::flags;
use crate::prereq;

const SUITES: &[&str] = &["rust", "python", "web", "podman"];

impl flags::Test {
    pub fn run(self, sh: &Shell) -> Result<()> {
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
                "rust" => rust(sh),
                "python" => python(sh),
                "web" => web(sh),
                "podman" => podman(sh),
                _ => unreachable!(),
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

fn rust(sh: &Shell) -> Result<()> {
    prereq::ensure(sh, "the Rust tests", prereq::SERVICE_TESTS)?;
    cmd!(sh, "cargo test --workspace --locked").run()?;
    Ok(())
}

fn python(sh: &Shell) -> Result<()> {
    let dir = "analytics-engine/python";
    let python = if crate::podman_host::on_path("python3") { "python3" } else { "python" };
    cmd!(sh, "{python} -m pip install -q --disable-pip-version-check -r {dir}/requirements-dev.txt").run()?;
    let _d = sh.push_dir(dir);
    cmd!(sh, "{python} -m pytest -q").run()?;
    Ok(())
}

fn web(sh: &Shell) -> Result<()> {
    if !crate::podman_host::on_path("npm") {
        bail!("the web tests need Node.js and npm: apt-get install -y nodejs npm");
    }
    let _d = sh.push_dir("web");
    cmd!(sh, "npm ci --no-audit --no-fund").run()?;
    cmd!(sh, "npm test").run()?;
    cmd!(sh, "npm run build").run()?;
    Ok(())
}

fn podman(sh: &Shell) -> Result<()> {
    let mut needs = prereq::PODMAN.to_vec();
    needs.extend_from_slice(prereq::REGISTRY_FREE);
    needs.extend_from_slice(prereq::E2E_TESTS);
    needs.extend_from_slice(prereq::SERVICE_TESTS);
    prereq::ensure(sh, "the podman end-to-end tests", &needs)?;
    // One test thread: the e2e tests share podman's storage and two cores.
    cmd!(sh, "cargo test -p xtask --features e2e --locked -- --test-threads=1").run()?;
    Ok(())
}
