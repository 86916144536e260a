//! Repository-wide checks that run with `cargo test`, in check mode (they fail and say what to
//! change; they never change anything): the xtask's dependency budget, module docs, file sizes,
//! the module graph (`imports.rs`: no circles, dependencies point down), the Rust version the
//! services promise, every recipe against the stack file (`recipes.rs`), every COPY/ADD source
//! in its build context (`contexts.rs`), and the GitHub workflows' action pins and `cargo xtask`
//! commands (`workflows.rs`). `cargo xtask test lint` runs them as one of its gates.

mod contexts;
mod imports;
mod recipes;
mod workflows;

use std::path::{Path, PathBuf};

use crate::util::workspace::Workspace;

fn read(path: &str) -> String {
    let ws = Workspace::for_tests("tidy");
    std::fs::read_to_string(ws.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `xtask/src`, with its path relative to it, sorted.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let base = Workspace::for_tests("tidy").path("xtask/src");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// Each crate here costs cold build time (docs/benchmarks.md): adding one means adding it here
/// and saying why in xtask/Cargo.toml and docs/xtask.md.
const XTASK_DEPENDENCIES: &[&str] = &[
    "anyhow",
    "duct",
    "hmac-sha256",
    "httparse",
    "regex-lite",
    "signal-hook",
    "tinyjson",
    "toml",
    "write-json",
    "xflags",
];

#[test]
fn xtask_dependencies_are_the_budgeted_ones() {
    let manifest: toml::Table = toml::from_str(&read("xtask/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest["dependencies"].as_table().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        deps, XTASK_DEPENDENCIES,
        "xtask dependencies changed: update tidy/mod.rs and say why in xtask/Cargo.toml"
    );
    let doc = read("docs/xtask.md");
    for d in XTASK_DEPENDENCIES {
        assert!(doc.contains(&format!("| {d} |")), "docs/xtask.md does not say why the xtask depends on {d}");
    }
}

#[test]
fn every_xtask_module_has_a_doc_comment() {
    let files = sources();
    assert!(files.len() > 40, "{} files: is xtask/src walked?", files.len());
    for (path, text) in files {
        assert!(text.starts_with("//!"), "xtask/src/{path} must start with a `//!` module doc");
    }
}

/// Past about 600 lines a file holds more than one job; split it (its tests included).
const MAX_LINES: usize = 600;

#[test]
fn no_xtask_file_is_too_long() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(path, text)| format!("xtask/src/{path}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines, split them: {long:?}");
}

#[test]
fn rust_crates_promise_rust_1_87() {
    let root: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    assert_eq!(root["workspace"]["package"]["rust-version"].as_str(), Some("1.87"));
    assert_eq!(root["workspace"]["resolver"].as_str(), Some("3"), "resolver 3 keeps Cargo.lock buildable on 1.87");
    let members = root["workspace"]["members"].as_array().unwrap();
    assert!(members.len() >= 3, "{members:?}");
    for krate in members.iter().map(|m| m.as_str().unwrap()) {
        let m: toml::Table = toml::from_str(&read(&format!("{krate}/Cargo.toml"))).unwrap();
        let rv = &m["package"]["rust-version"];
        assert!(
            rv.get("workspace").and_then(|w| w.as_bool()) == Some(true),
            "{krate} must use rust-version.workspace = true"
        );
    }
    let lock = read("Cargo.lock");
    assert!(lock.contains("version = 4") || lock.contains("version = 3"), "Cargo.lock must be committed");
}
