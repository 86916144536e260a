//! `cargo xtask bench NAME`: benchmarks whose figures go into docs/benchmarks.md. Timings live
//! here, never in tests. Each benchmark measures its baseline in the same run and reports
//! medians and ratios, so figures from a busy or slow machine still compare fairly.
//!
//! - `cold-build`: cold `cargo build -p xtask` (debug, fresh target dir, dependencies already
//!   downloaded), and, alternating with it, two empty crates: one with rust-analyzer's xtask
//!   dependencies (xtask/bench/ra-xtask-deps, the baseline) and one with the V7 xtask's own
//!   (generated from xtask/Cargo.toml). The budget compares like with like: our dependencies
//!   must build no slower than rust-analyzer's; our own code comes on top, as rust-analyzer's
//!   own code does on its (the baseline crate cannot contain that code: it is not ours to copy).
//!   Also warm `cargo xtask --help`, budget 0.3 s.
//! - `dependencies`: each crate the xtask depends on, and the alternatives weighed against them,
//!   alone in an empty crate, built cold (docs/xtask.md has the figures).
//! - `pull` and `registry-free` are scripts under xtask/bench/ (they need registries and
//!   images): see docs/benchmarks.md.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::flags;
use crate::process::{Cmd, Runner};
use crate::util::workspace::Workspace;

impl flags::Bench {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let runs = self.runs.unwrap_or(3).max(1);
        match self.name.as_str() {
            "cold-build" => cold_build(ws, runs),
            "dependencies" => dependencies(ws, runs),
            other => bail!(
                "unknown benchmark {other:?}: `cold-build` and `dependencies` run here; the pull and registry-free \
                 benchmarks are xtask/bench/pull.sh and xtask/bench/registry-free.sh (see docs/benchmarks.md)"
            ),
        }
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Seconds `cmd` took; its output is kept out of the way, and a failure is an error.
fn timed(cmd: &Cmd) -> Result<f64> {
    let start = Instant::now();
    Runner::new(false).run_checked(cmd)?;
    Ok(start.elapsed().as_secs_f64())
}

/// The `[dependencies]` section of xtask/Cargo.toml.
fn xtask_dependencies(ws: &Workspace) -> Result<String> {
    let manifest = std::fs::read_to_string(ws.path("xtask/Cargo.toml"))?;
    Ok(manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .context("xtask/Cargo.toml has no [dependencies] section")?
        .split("\n[")
        .next()
        .unwrap_or("")
        .to_string())
}

/// An empty binary crate with the `[dependencies]` section of xtask/Cargo.toml, in `dir`.
fn write_deps_only_crate(ws: &Workspace, dir: &Path) -> Result<()> {
    write_crate(ws, dir, &xtask_dependencies(ws)?)
}

/// An empty binary crate with these `[dependencies]` lines, in `dir`, resolved like the
/// workspace where the workspace has the crates.
fn write_crate(ws: &Workspace, dir: &Path, deps: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"v7-xtask-deps\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\n{deps}\n[workspace]\n"
        ),
    )?;
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n")?;
    // The same versions as the workspace resolved.
    std::fs::copy(ws.path("Cargo.lock"), dir.join("Cargo.lock"))?;
    Ok(())
}

fn cold_build(ws: &Workspace, runs: usize) -> Result<()> {
    let baseline_dir = ws.path("xtask/bench/ra-xtask-deps");
    let scratch = std::env::temp_dir().join(format!("v7-bench-cold-{}", std::process::id()));
    let ours_deps_dir = scratch.join("v7-xtask-deps");
    write_deps_only_crate(ws, &ours_deps_dir)?;
    eprintln!("downloading dependencies first (not timed)");
    let runner = Runner::new(false);
    runner.run_checked(&Cmd::new("cargo").args(["fetch", "--locked"]).dir(&ws.root))?;
    for dir in [&baseline_dir, &ours_deps_dir] {
        runner.run_checked(&Cmd::new("cargo").arg("fetch").dir(dir))?;
    }
    let (mut ours, mut ours_deps, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        for (which, out) in [("xtask", &mut ours), ("xtask's dependencies", &mut ours_deps), ("baseline", &mut base)] {
            let target = scratch.join(format!("target-{i}-{}", out.len()));
            let cmd = match which {
                "xtask" => Cmd::new("cargo").args(["build", "-q", "-p", "xtask", "--locked"]).dir(&ws.root),
                "baseline" => Cmd::new("cargo").args(["build", "-q"]).dir(&baseline_dir),
                _ => Cmd::new("cargo").args(["build", "-q"]).dir(&ours_deps_dir),
            };
            let secs = timed(&cmd.env("CARGO_TARGET_DIR", target.display().to_string()))?;
            eprintln!("run {}: cold build of {which}: {secs:.2} s", i + 1);
            out.push(secs);
            std::fs::remove_dir_all(&target).with_context(|| format!("cannot remove {}", target.display()))?;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    // Warm: the binary is built; this is what a user waits for on every invocation.
    runner.run_checked(&Cmd::new("cargo").args(["build", "-q", "-p", "xtask", "--locked"]).dir(&ws.root))?;
    let mut help = Vec::new();
    for _ in 0..10 {
        help.push(timed(&Cmd::new("cargo").args(["xtask", "--help"]).dir(&ws.root))?);
    }
    let (m_ours, m_deps, m_base, m_help) =
        (median(&mut ours), median(&mut ours_deps), median(&mut base), median(&mut help));
    println!("| measure | median | runs |");
    println!("|---|---|---|");
    println!("| cold `cargo build -p xtask` | {m_ours:.2} s | {runs} |");
    println!("| cold build of the xtask's dependencies alone (empty main) | {m_deps:.2} s | {runs} |");
    println!("| cold build of rust-analyzer's xtask dependencies alone (baseline) | {m_base:.2} s | {runs} |");
    println!("| ratio: our dependencies / rust-analyzer's | {:.2} | |", m_deps / m_base);
    println!("| warm `cargo xtask --help` | {m_help:.3} s | 10 |");
    let mut failed = Vec::new();
    if m_deps > m_base {
        failed.push(format!("our dependencies ({m_deps:.2} s) build slower than rust-analyzer's ({m_base:.2} s)"));
    }
    if m_help > 0.3 {
        failed.push(format!("warm help {m_help:.3} s is over the 0.3 s budget"));
    }
    if !failed.is_empty() {
        bail!("over budget: {}", failed.join("; "));
    }
    Ok(())
}

/// Crates weighed against the ones the xtask uses (docs/xtask.md, dependencies).
const ALTERNATIVES: &[(&str, &str)] = &[
    ("serde_json", r#"{ version = "1", default-features = false, features = ["std"] }"#),
    ("sha2", r#""0.10""#),
    ("minreq", r#"{ version = "2", default-features = false }"#),
    ("regex", r#""1""#),
    ("xshell", r#""0.2""#),
];

/// Each dependency of the xtask, and each alternative weighed, alone in an empty binary crate,
/// built cold (fresh target directory, sources already downloaded): what a crate costs by itself.
fn dependencies(ws: &Workspace, runs: usize) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("v7-bench-deps-{}", std::process::id()));
    let mut crates: Vec<(String, String, &str)> = Vec::new();
    for line in xtask_dependencies(ws)?.lines().map(str::trim) {
        if let Some((name, spec)) = line.split_once(" = ").filter(|_| !line.starts_with('#')) {
            crates.push((name.to_string(), spec.to_string(), "used"));
        }
    }
    crates.extend(ALTERNATIVES.iter().map(|(n, s)| (n.to_string(), s.to_string(), "weighed")));
    let runner = Runner::new(false);
    for (name, spec, _) in &crates {
        let dir = scratch.join(name);
        write_crate(ws, &dir, &format!("{name} = {spec}\n"))?;
        runner.run_checked(&Cmd::new("cargo").arg("fetch").dir(&dir))?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); crates.len()];
    for run in 0..runs {
        for (i, (name, _, _)) in crates.iter().enumerate() {
            let target = scratch.join(format!("target-{name}-{run}"));
            let cmd = Cmd::new("cargo").args(["build", "-q"]).dir(&scratch.join(name));
            let secs = timed(&cmd.env("CARGO_TARGET_DIR", target.display().to_string()))?;
            eprintln!("run {}: {name} alone: {secs:.2} s", run + 1);
            times[i].push(secs);
            std::fs::remove_dir_all(&target).with_context(|| format!("cannot remove {}", target.display()))?;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("| crate | cold build alone, median of {runs} | |");
    println!("|---|---|---|");
    for ((name, _, what), t) in crates.iter().zip(&mut times) {
        println!("| {name} | {:.2} s | {what} |", median(t));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
