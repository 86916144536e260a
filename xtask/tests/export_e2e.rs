//! `cargo xtask export compose|kube`, checked by real validators: the checked-in compose.yaml
//! and compose.offline.yaml (what `export compose [--registry-free]` prints) against the
//! Compose Specification's JSON schema (PyPI's check-jsonschema), the Kubernetes manifests
//! against the API schemas (PyPI's kubernetes-validate, `--strict`: unknown fields are errors,
//! for the oldest and the newest Kubernetes it knows).
//! Both modes (registry and `--registry-free`). Run by `cargo test -p xtask --features e2e`.
//!
//! The validators are installed with `python3 -m pip` when missing; if that fails the test
//! fails (it never skips). The compose schema is the pinned copy in `../shared/specs` beside
//! the checkout (or `V7_COMPOSE_SCHEMA`), else the one check-jsonschema ships
//! (`--builtin-schema vendor.compose-spec`).
//!
//! The Kubernetes manifests are also checked by checkov (PyPI, in a venv of its own under
//! `.v7/test-tools/`). No podman object is made here: `kube_play_e2e.rs` plays the podman target.

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
    // The checked-in compose.yaml and its override, and what `export compose [--registry-free]`
    // prints: the same texts (that they are current is `cargo test`'s check-mode test).
    for (registry_free, name) in [(false, "compose.yaml"), (true, "compose.offline.yaml")] {
        let file = root().join(name);
        let checked_in = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let printed = std::fs::read_to_string(export(dir.path(), "compose", registry_free)).unwrap();
        assert!(printed == checked_in, "`export compose` (registry_free: {registry_free}) does not print {name}");
        let out = run(Command::new("python3").args(["-m", "check_jsonschema"]).args(&schema_args).arg(&file));
        assert!(
            out.status.success(),
            "check-jsonschema {} {}: {name} does not match the schema:\n{}",
            schema_args.join(" "),
            file.display(),
            text(&out)
        );
    }
    let yaml = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    assert!(yaml.contains("\nname: v7_compose\n") && yaml.contains("\n  backend:\n"), "{yaml}");
    assert!(yaml.contains("\nsecrets:\n  clickhouse-password:\n    file: "), "the secrets section:\n{yaml}");
    assert!(yaml.contains("grafana-admin-password") && !yaml.contains("left out"), "{yaml}");
    let over = std::fs::read_to_string(root().join("compose.offline.yaml")).unwrap();
    assert!(over.contains("# grafana: left out:") && !over.contains("secrets:"), "{over}");
}

/// `cargo xtask export kube ARGS...`, written to `dir/name`.
fn export_kube(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["export", "kube"]).args(args));
    assert!(out.status.success(), "`xtask export kube {}` failed:\n{}", args.join(" "), text(&out));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// The oldest and the newest Kubernetes versions the installed kubernetes-validate knows.
fn kubernetes_versions() -> (String, String) {
    let script = "import kubernetes_validate.utils as u\n\
                  from packaging.version import Version\n\
                  v = sorted(set(u.all_versions()), key=Version)\n\
                  print(v[0], v[-1])";
    let out = run(Command::new("python3").args(["-c", script]));
    let versions = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (oldest, newest) = versions.split_once(' ').unwrap_or_else(|| {
        panic!("kubernetes-validate's version list (kubernetes_validate.utils.all_versions):\n{}", text(&out))
    });
    (oldest.to_string(), newest.to_string())
}

/// The cluster manifests (registry mode) and the podman target (both modes), strictly valid
/// for the oldest and the newest Kubernetes kubernetes-validate knows; every object validated.
#[test]
fn kube_export_passes_strict_kubernetes_validation() {
    ensure_validators();
    let dir = TempDir::new("export-kube");
    let (oldest, newest) = kubernetes_versions();
    let files = [
        (export_kube(dir.path(), "cluster.yaml", &["--tag", "abc1234", "--storage-class", "standard"]), "cluster"),
        (export_kube(dir.path(), "podman.yaml", &["--target", "podman"]), "podman"),
        (
            export_kube(dir.path(), "podman-registry-free.yaml", &["--target", "podman", "--registry-free"]),
            "podman-free",
        ),
    ];
    for (file, target) in &files {
        for version in [&oldest, &newest] {
            let out = run(Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", version])
                .arg(file));
            let report = text(&out);
            assert!(
                out.status.success() && !report.contains("ERROR"),
                "kubernetes-validate --strict --kubernetes-version {version} {}: the {target} export is not valid:\n{report}",
                file.display()
            );
            let yaml = std::fs::read_to_string(file).unwrap();
            let objects = yaml.split("\n---\n").count();
            let passed = report.matches(" passed for resource ").count();
            assert_eq!(passed, objects, "{target}, Kubernetes {version}: every object is validated:\n{report}");
            let resources: &[&str] = match *target {
                "cluster" => &[
                    "namespace/v7",
                    "deployment/backend",
                    "statefulset/nats",
                    "service/backend",
                    "configmap/nats-nats-conf",
                    "secret/v7-clickhouse-users",
                    "networkpolicy/v7-network-frontend",
                ],
                _ => &["pod/backend", "pod/nats", "persistentvolumeclaim/v7-kube-nats-data"],
            };
            for resource in resources {
                assert!(
                    report.contains(&format!("passed for resource {resource} ")),
                    "{target}, Kubernetes {version}: {resource} not validated:\n{report}"
                );
            }
            let grafana = if *target == "cluster" { "statefulset/grafana " } else { "pod/grafana " };
            assert_eq!(report.contains(grafana), *target != "podman-free", "{report}");
        }
    }
    // The ConfigMaps, read back by a YAML reader, hold the files byte for byte.
    let script = "import sys, yaml, json\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d['kind'] == 'ConfigMap']\n\
                  print(json.dumps({d['metadata']['name']: d['data'] for d in docs}))";
    let out = run(Command::new("python3").args(["-c", script]).arg(&files[0].0));
    let maps = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "PyYAML on the cluster manifests:\n{}", text(&out));
    for (map, key, path) in [
        ("nats-nats-conf", "nats.conf", "docker/nats/nats.conf"),
        ("clickhouse-listen-xml", "listen.xml", "docker/clickhouse/listen.xml"),
        ("prometheus-prometheus-yml", "prometheus.yml", "docker/prometheus/prometheus.yml"),
        (
            "grafana-provisioning",
            "datasources_prometheus.yml",
            "docker/grafana/provisioning/datasources/prometheus.yml",
        ),
    ] {
        let want = std::fs::read_to_string(root().join(path)).unwrap();
        let got = python_json_field(&maps, map, key);
        assert_eq!(got, want, "ConfigMap/{map} data.{key} read back by PyYAML is not {path}");
    }
    let cluster = std::fs::read_to_string(&files[0].0).unwrap();
    for banned in ["hostPath", "hostPort", ":latest", "localhost/"] {
        assert!(!cluster.contains(banned), "{banned} in the cluster manifests:\n{cluster}");
    }
}

/// `json[map][key]` as a string, the JSON printed by the ConfigMap script.
fn python_json_field(json: &str, map: &str, key: &str) -> String {
    let value: support::JsonValue = json.trim().parse().unwrap_or_else(|e| panic!("not JSON ({e:?}): {json}"));
    let got = support::field(&value, map).and_then(|m| support::string(m, key));
    got.unwrap_or_else(|| panic!("no {map}.{key} in {json}"))
}

/// Checkov (PyPI, pinned), installed into a venv of its own under `.v7/test-tools/` (its
/// dependencies must not meet the validators' jsonschema): its path.
fn ensure_checkov() -> PathBuf {
    const VERSION: &str = "3.3.30";
    let venv = root().join(".v7/test-tools/checkov");
    let bin = venv.join("bin/checkov");
    let ok = |b: &Path| {
        Command::new(b).arg("--version").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == VERSION)
    };
    if ok(&bin) {
        return bin;
    }
    eprintln!("installing checkov {VERSION} into {}", venv.display());
    let made = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    assert!(made.status.success(), "python3 -m venv {}:\n{}", venv.display(), text(&made));
    let pip = run(Command::new(venv.join("bin/pip")).args(["install", "-q", &format!("checkov=={VERSION}")]));
    assert!(
        pip.status.success() && ok(&bin),
        "pip install checkov=={VERSION} into {}:\n{}\nhint: PyPI must be reachable",
        venv.display(),
        text(&pip)
    );
    bin
}

/// Checkov's Kubernetes checks, written by others, on the cluster manifests: every check that
/// the restricted profile, the probes, the limits and pinned images imply passes for every
/// workload. Left out, as opinions the stack does not follow: image digests (CKV_K8S_43; the
/// images are pinned by the tags `push` publishes), `imagePullPolicy: Always` (CKV_K8S_15), and
/// UIDs above 10000 (CKV_K8S_40; web, ClickHouse and Grafana run as their images' own users).
#[test]
fn kube_export_passes_checkov_security_checks() {
    let checkov = ensure_checkov();
    let dir = TempDir::new("export-kube-checkov");
    export_kube(dir.path(), "cluster.yaml", &["--tag", "abc1234"]);
    let checks = [
        ("CKV_K8S_8", "liveness probe"),
        ("CKV_K8S_9", "readiness probe"),
        ("CKV_K8S_10", "CPU requests"),
        ("CKV_K8S_11", "CPU limits"),
        ("CKV_K8S_12", "memory requests"),
        ("CKV_K8S_13", "memory limits"),
        ("CKV_K8S_14", "image tag fixed, not latest"),
        ("CKV_K8S_16", "not privileged"),
        ("CKV_K8S_17", "no host PID"),
        ("CKV_K8S_18", "no host IPC"),
        ("CKV_K8S_19", "no host network"),
        ("CKV_K8S_20", "no privilege escalation"),
        ("CKV_K8S_21", "not the default namespace"),
        ("CKV_K8S_22", "read-only root file system"),
        ("CKV_K8S_23", "no root containers"),
        ("CKV_K8S_25", "no added capabilities"),
        ("CKV_K8S_26", "no hostPort"),
        ("CKV_K8S_27", "no docker socket"),
        ("CKV_K8S_28", "NET_RAW dropped"),
        ("CKV_K8S_29", "pod securityContext"),
        ("CKV_K8S_30", "container securityContext"),
        ("CKV_K8S_31", "seccomp RuntimeDefault"),
        ("CKV_K8S_37", "capabilities dropped"),
        ("CKV_K8S_38", "no service account token"),
        ("CKV_K8S_39", "no CAP_SYS_ADMIN"),
    ];
    let ids: Vec<&str> = checks.iter().map(|(id, _)| *id).collect();
    let out = run(Command::new(&checkov)
        .args(["--framework", "kubernetes", "--compact", "--quiet", "-o", "json", "--check", &ids.join(","), "-d"])
        .arg(dir.path()));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = support::json(&report);
    let summary =
        support::field(&doc, "summary").unwrap_or_else(|| panic!("checkov's JSON has no summary:\n{}", text(&out)));
    let failed = support::number(summary, "failed").unwrap_or(-1.0);
    let passed = support::number(summary, "passed").unwrap_or(0.0);
    assert_eq!(failed, 0.0, "checkov {}: failed checks:\n{report}", ids.join(","));
    // Every check ran on each of the 7 workloads (the namespace check on every object).
    assert!(passed >= (7 * (checks.len() - 1)) as f64, "checkov passed only {passed} checks:\n{report}");
}

/// What the cluster target refuses, with the key at fault and a hint.
#[test]
fn kube_export_refuses_what_a_cluster_cannot_run() {
    for (args, want) in [
        (&["--registry-free"][..], "--target podman --registry-free"),
        (&["--tag", "latest"][..], "--tag \"latest\""),
        (&["--target", "nomad"][..], "--target \"nomad\""),
        (&["--target", "podman", "--tag", "x"][..], "--tag is for a cluster"),
        (&["--namespace", "V7"][..], "--namespace \"V7\": not a DNS label"),
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["export", "kube"]).args(args));
        let err = text(&out);
        assert!(!out.status.success() && err.contains(want) && err.contains("hint:"), "{args:?}:\n{err}");
    }
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["export", "compose", "--storage-class", "x"]));
    let err = text(&out);
    assert!(!out.status.success() && err.contains("--storage-class is for `export kube`"), "{err}");
}

#[test]
fn unknown_format_lists_the_formats() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_xtask")).args(["export", "helm"]));
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("unknown export format \"helm\"") && err.contains("`compose`, `kube`"), "{err}");
}
