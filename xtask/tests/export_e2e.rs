//! `cargo xtask export compose|kube`, checked by real validators: the compose file against the
//! Compose Specification's JSON schema (PyPI's check-jsonschema), the Kubernetes manifests
//! against the API schemas (PyPI's kubernetes-validate, `--strict`: unknown fields are errors).
//! Both modes (registry and `--registry-free`). Run by `cargo test -p xtask --features e2e`.
//!
//! The validators are installed with `python3 -m pip` when missing; if that fails the test
//! fails (it never skips). The compose schema is the pinned copy in `../shared/specs` beside
//! the checkout (or `V7_COMPOSE_SCHEMA`), else the one check-jsonschema ships
//! (`--builtin-schema vendor.compose-spec`).
//!
//! No podman object is made: `podman kube play` would need the stack's images on the machine.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::TempDir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The Python modules of both validators, installed when missing (one pip at a time).
fn ensure_validators() {
    static PIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = PIP.lock().unwrap_or_else(|e| e.into_inner());
    let have = |module: &str| {
        Command::new("python3").args(["-m", module, "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
    };
    let modules = ["check_jsonschema", "kubernetes_validate"];
    if modules.iter().all(|m| have(m)) {
        return;
    }
    eprintln!("installing check-jsonschema and kubernetes-validate with pip");
    let pip = Command::new("python3")
        .args(["-m", "pip", "install", "-q", "check-jsonschema", "kubernetes-validate"])
        .output();
    let missing: Vec<&str> = modules.iter().copied().filter(|m| !have(m)).collect();
    if !missing.is_empty() {
        let why = match pip {
            Ok(o) => text(&o),
            Err(e) => format!("cannot run python3: {e}"),
        };
        panic!(
            "the validators are missing ({}) and `python3 -m pip install -q check-jsonschema kubernetes-validate` \
             did not install them:\n{why}\nhint: install them (PyPI) and run the test again",
            missing.join(", ")
        );
    }
}

/// `cargo xtask export FORMAT [--registry-free]`, written to a file of `dir`.
fn export(dir: &Path, format: &str, registry_free: bool) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["export", format]);
    if registry_free {
        cmd.arg("--registry-free");
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "`xtask export {format}` failed:\n{}", text(&out));
    assert!(!out.stdout.is_empty(), "`xtask export {format}` printed nothing");
    let path = dir.join(format!("{format}{}.yaml", if registry_free { "-registry-free" } else { "" }));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn compose_export_matches_the_compose_spec_schema() {
    ensure_validators();
    let dir = TempDir::new("export-compose");
    let pinned = std::env::var_os("V7_COMPOSE_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/specs/compose-spec.json"));
    let schema_args: Vec<String> = if pinned.is_file() {
        vec!["--schemafile".into(), pinned.display().to_string()]
    } else {
        eprintln!("{} not found: using check-jsonschema's own copy of the compose schema", pinned.display());
        vec!["--builtin-schema".into(), "vendor.compose-spec".into()]
    };
    for registry_free in [false, true] {
        let file = export(dir.path(), "compose", registry_free);
        let out = run(Command::new("python3").args(["-m", "check_jsonschema"]).args(&schema_args).arg(&file));
        assert!(
            out.status.success(),
            "check-jsonschema {} {}: the compose export (registry_free: {registry_free}) does not match the schema:\n{}",
            schema_args.join(" "),
            file.display(),
            text(&out)
        );
        let yaml = std::fs::read_to_string(&file).unwrap();
        assert!(yaml.contains("\nname: v7\n") && yaml.contains("\n  backend:\n"), "{yaml}");
        assert_eq!(yaml.contains("# grafana: left out:"), registry_free, "{yaml}");
        assert!(yaml.contains("\nsecrets:\n  clickhouse-password:\n    file: "), "the secrets section:\n{yaml}");
        assert_eq!(yaml.contains("grafana-admin-password"), !registry_free, "{yaml}");
    }
}

#[test]
fn kube_export_passes_strict_kubernetes_validation() {
    ensure_validators();
    let dir = TempDir::new("export-kube");
    for registry_free in [false, true] {
        let file = export(dir.path(), "kube", registry_free);
        let out = run(Command::new("python3").args(["-m", "kubernetes_validate", "--strict"]).arg(&file));
        let report = text(&out);
        assert!(
            out.status.success() && !report.contains("ERROR"),
            "kubernetes-validate --strict {}: the kube export (registry_free: {registry_free}) is not valid:\n{report}",
            file.display()
        );
        let yaml = std::fs::read_to_string(&file).unwrap();
        let objects = yaml.split("\n---\n").count();
        let passed = report.matches(" passed for resource ").count();
        assert_eq!(passed, objects, "every object of the export is validated:\n{report}");
        let resources = [
            "pod/backend",
            "service/backend",
            "pod/nats",
            "persistentvolumeclaim/v7-nats-data",
            "secret/v7-clickhouse-users",
        ];
        for resource in resources {
            assert!(
                report.contains(&format!("passed for resource {resource} ")),
                "{resource} not validated:\n{report}"
            );
        }
        assert_eq!(report.contains("pod/grafana "), !registry_free, "{report}");
    }
}

#[test]
fn unknown_format_lists_the_formats() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["export", "helm"]));
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("unknown export format \"helm\"") && err.contains("`compose`, `kube`"), "{err}");
}
