//! The xtask in a GitHub Actions job (`util/github.rs`): the built binary run with
//! `GITHUB_ACTIONS=true` and `GITHUB_STEP_SUMMARY` naming a temporary file, checking what it
//! printed (`::group::`, `::error file=...,line=...,col=...::`) and what it appended to the
//! summary. The failing cases stop before podman; the `--dry-run` ones need podman on PATH for
//! their read-only queries and run with the podman suite (feature `e2e`). Run with
//! `cargo test -p xtask --features e2e --test github_actions`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "ghs_v7testSecretToken42";

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("v7test-c-gha-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The xtask with the GitHub variables set, and what it wrote to the summary.
fn xtask(dir: &Scratch, stack: Option<&Path>, args: &[&str]) -> (Output, String) {
    let summary = dir.path("summary.md");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .current_dir(root())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("REGISTRY_TOKEN", TOKEN)
        .env("V7_STATE_DIR", dir.path("state"));
    if let Some(s) = stack {
        cmd.env("V7_STACK_FILE", s);
    }
    let out = cmd.output().unwrap();
    (out, std::fs::read_to_string(&summary).unwrap_or_default())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stack_text() -> String {
    std::fs::read_to_string(root().join("docker/stack.toml")).unwrap()
}

#[test]
fn a_stack_file_error_is_annotated_at_its_line_and_column() {
    let dir = Scratch::new("stack");
    let stack = dir.path("stack.toml");
    let text = stack_text().replacen("[project]\n", "[project]\ncolour = \"red\"\n", 1);
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(&stack, text).unwrap();
    let (out, summary) = xtask(&dir, Some(&stack), &["build", "--dry-run"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let file = stack.to_string_lossy();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.first(), Some(&"::group::build"), "{err}");
    let end = lines.iter().position(|l| *l == "::endgroup::").expect("the group is closed");
    let expected = format!(
        "::error file={file},line={line},col=1::unknown key `colour` in [project]; allowed: `name`, `mode`, \
         `debian_mirror`, `debian_suite` (docs/stack.md)"
    );
    let at = lines.iter().position(|l| *l == expected).unwrap_or_else(|| panic!("no {expected}\n{err}"));
    assert!(at > end, "the annotation comes after the group, beside the error: {err}");
    assert!(summary.starts_with("### `cargo xtask build` failed\n\n```text\nerror: "), "{summary}");
    assert!(summary.contains(&format!("{file}:{line}:1: unknown key `colour`")), "{summary}");
}

#[test]
fn a_dockerfile_error_is_annotated_and_secrets_stay_out_of_the_summary() {
    let dir = Scratch::new("dockerfile");
    let dockerfile = dir.path("Dockerfile");
    std::fs::write(&dockerfile, "ARG BASE\n\nFROM ${BASE:?}x AS build\nRUN true\n").unwrap();
    let stack = dir.path("stack.toml");
    let df = dockerfile.to_string_lossy();
    let text = stack_text().replace("dockerfile = \"web/Dockerfile\",", &format!("dockerfile = \"{df}\","));
    assert!(text.contains(df.as_ref()), "web's build in docker/stack.toml changed its form");
    std::fs::write(&stack, &text).unwrap();
    let (out, summary) = xtask(&dir, Some(&stack), &["build", "--dry-run", "web"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let expected = format!("::error file={df},line=3::FROM ${{BASE:?}}x: unsupported substitution ${{BASE:?}}");
    assert!(err.lines().any(|l| l == expected), "no {expected}\n{err}");
    assert!(summary.contains("unsupported substitution"), "{summary}");

    // An error that quotes a secret: the summary and the annotation say *** instead.
    let leaky = stack_text().replacen("name = \"", &format!("name = \"{TOKEN} "), 1);
    std::fs::write(&stack, leaky).unwrap();
    let _ = std::fs::remove_file(dir.path("summary.md"));
    let (out, summary) = xtask(&dir, Some(&stack), &["build", "--dry-run"]);
    assert!(!out.status.success());
    assert!(summary.contains("project.name = \"*** v7"), "{summary}");
    assert!(!summary.contains(TOKEN), "the token reached the summary: {summary}");
}

#[cfg(feature = "e2e")]
fn podman_present() -> bool {
    Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The dry runs query podman's images, so this runs with the podman suite (feature `e2e`, whose
/// prerequisites install podman), never skipped quietly.
#[cfg(feature = "e2e")]
#[test]
fn dry_runs_are_one_group_each_and_keep_stdout_clean() {
    assert!(podman_present(), "podman is not on PATH: `cargo xtask test podman` installs it");
    let dir = Scratch::new("dry-run");
    for command in ["build", "pull"] {
        let (out, summary) = xtask(&dir, None, &[command, "--dry-run"]);
        let err = stderr(&out);
        assert!(out.status.success(), "{command} --dry-run: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.first().copied(), Some(format!("::group::{command}").as_str()), "{err}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("::group::")).count(), 1, "not nested: {err}");
        assert_eq!(lines.last().copied(), Some("::endgroup::"), "{err}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("::"), "workflow commands go to stderr, stdout is for --json: {stdout}");
        assert!(!summary.contains("failed"), "{summary}");
    }
}

#[test]
fn nothing_is_added_outside_github_actions() {
    let dir = Scratch::new("plain");
    let stack = dir.path("stack.toml");
    std::fs::write(&stack, stack_text().replacen("[project]\n", "[project]\ncolour = \"red\"\n", 1)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "--dry-run"])
        .current_dir(root())
        .env_remove("GITHUB_ACTIONS")
        .env("GITHUB_STEP_SUMMARY", dir.path("summary.md"))
        .env("V7_STACK_FILE", &stack)
        .env("V7_STATE_DIR", dir.path("state"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("unknown key `colour`"), "{err}");
    assert!(!err.contains("::"), "{err}");
    assert!(!dir.path("summary.md").exists());
}
