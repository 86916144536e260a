//! `cargo xtask export kube --target podman`, played for real with `podman kube play` (podman
//! 4.3 here): the registry-free stack under a project of its own (`v7test-kube`, host ports moved
//! into 20000-29999 as `registry_free_e2e` does, so a developer's stack on the usual ports is
//! never touched), on a network of its own; every service answers on its published port, an
//! event posted through web is counted, ClickHouse refuses its `default` user without the
//! generated password, and every container's podman health check (the probes' exec commands)
//! passes. Then `cargo xtask verify --kube-play` against the played stack: it finds the
//! containers under kube play's names (`<pod>-<container>`, `backend-backend`) and the claims
//! (`v7test-kube-kube-nats-data`), refuses containers without the project's `v7.kube.project`
//! label, waits for every health check, and runs every check deploy's stack gets (none is
//! skipped for kube play but Grafana, which registry-free mode leaves out; the logs are read
//! with `podman logs`, as `cargo xtask logs` reads deploy's). Then `podman kube down`, and the
//! test's volumes, network and image tags are removed (only those names; never a prune).
//!
//! A phase of `registry_free_e2e`, after the compose phase: it runs on the registry-free images
//! phase 1 built (`localhost/v7test-rf-registry-free/*`), tagged under this phase's project name
//! for the run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::stack::{image, root, shift_host_ports, test_host_port, Podman};
use crate::support::{http_get, http_request, json, number, TempDir};

const PROJECT: &str = "v7test-kube";
const SERVICES: &[&str] = &["nats", "clickhouse", "prometheus", "analytics-engine", "backend", "web"];
const VOLUMES: &[&str] = &["nats-data", "clickhouse-data", "clickhouse-logs", "prometheus-data"];

/// Everything the test made, removed on drop whatever happened.
struct Played {
    podman: Podman,
    file: PathBuf,
    network: String,
    tags: Vec<String>,
    _dir: TempDir,
}

impl Drop for Played {
    fn drop(&mut self) {
        let file = self.file.display().to_string();
        if self.file.exists() {
            let _ = self.podman.output(&["kube", "down", &file]);
        }
        for v in VOLUMES {
            let _ = self.podman.output(&["volume", "rm", "-f", &format!("{PROJECT}-kube-{v}")]);
        }
        let _ = self.podman.output(&["network", "rm", "-f", &self.network]);
        for tag in &self.tags {
            // Untags only: the image keeps the name phase 1 gave it.
            let _ = self.podman.output(&["rmi", tag]);
        }
    }
}

/// docker/stack.toml under the test's project name, in registry-free mode, ports moved.
fn test_stack(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("docker/stack.toml")).unwrap();
    let mut out = String::new();
    let (mut named, mut moded) = (false, false);
    for line in shift_host_ports(&text).lines() {
        if !named && line.trim() == "name = \"v7\"" {
            out.push_str(&format!("name = \"{PROJECT}\"\n"));
            named = true;
        } else if !moded && line.trim().starts_with("mode = ") {
            out.push_str("mode = \"registry-free\"\n");
            moded = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(named && moded, "docker/stack.toml has no `name = \"v7\"` / `mode =` line in [project]");
    let path = dir.join("stack.toml");
    std::fs::write(&path, out).unwrap();
    path
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if start.elapsed() > within => panic!("{what}: not within {} s: {e}", within.as_secs()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Phase 7: plays the podman target of the kube export and checks it works; see the module docs.
pub fn kube_phase(timings: &mut Vec<(String, f64)>) {
    let started = Instant::now();
    eprintln!("\n== phase 7: the kube export's podman target under `podman kube play`, then `podman kube down`");
    let dir = TempDir::new("kube-play");
    let base = dir.path().to_path_buf();
    let network = format!("{PROJECT}-kube");
    let file = base.join("podman.yaml");
    let mut played = Played {
        podman: Podman::new(&base),
        file: file.clone(),
        network: network.clone(),
        tags: Vec::new(),
        _dir: dir,
    };
    for svc in SERVICES {
        let have = image(svc);
        assert!(
            played.podman.output(&["image", "exists", &have]).status.success(),
            "{have} is missing: phase 1 builds it"
        );
        let tag = format!("localhost/{PROJECT}-registry-free/{svc}:latest");
        played.podman.ok(&["tag", &have, &tag]);
        played.tags.push(tag);
    }
    let ports = [4222, 8222, 8123, 9090, 50051, 9100, 3000, 50053, 5173].map(test_host_port);
    for p in ports {
        if let Err(e) = TcpListener::bind(("127.0.0.1", p)) {
            panic!("127.0.0.1:{p} is taken ({e}): the test publishes the stack's ports moved to 2xxxx; hint: `ss -ltnp` names who holds it");
        }
    }
    let stack = test_stack(&base);
    let state = base.join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["export", "kube", "--target", "podman"])
        .env("V7_STACK_FILE", &stack)
        .env("V7_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "export kube --target podman:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("hostPort: {}\n", test_host_port(5173))), "{text}");
    assert!(text.contains(&format!("claimName: {PROJECT}-kube-nats-data\n")), "{text}");
    std::fs::write(&file, &text).unwrap();
    played.podman.ok(&["network", "create", &network]);
    let play = played.podman.output(&["kube", "play", "--network", &network, &file.display().to_string()]);
    assert!(play.status.success(), "podman kube play:\n{}", String::from_utf8_lossy(&play.stderr));

    for (port, path) in [
        (8222, "/healthz"),
        (8123, "/ping"),
        (9090, "/-/ready"),
        (9100, "/readyz"),
        (3000, "/readyz"),
        (5173, "/healthz"),
    ] {
        let port = test_host_port(port);
        wait_for(&format!("GET 127.0.0.1:{port}{path}"), Duration::from_secs(180), || match http_get(port, path) {
            Ok((200, _)) => Ok(()),
            Ok((code, body)) => Err(format!("{code} {body}")),
            Err(e) => Err(e),
        });
    }
    let web = test_host_port(5173);
    let (code, body) =
        http_request(web, "POST", "/api/events", Some(r#"{"kind":"kube-play","value":2.5,"source":"kube_play_e2e"}"#))
            .unwrap();
    assert!((200..300).contains(&code), "POST /api/events through web: {code} {body}");
    wait_for("the event counted by /api/stats", Duration::from_secs(60), || {
        let (_, body) = http_get(web, "/api/stats?kind=kube-play")?;
        let stats = json(&body);
        let total = number(&stats, "total_events").unwrap_or(0.0);
        if total >= 1.0 {
            Ok(())
        } else {
            Err(body)
        }
    });
    let ch = test_host_port(8123);
    let (code, _) = http_get(ch, "/?query=SELECT%201").unwrap();
    assert_ne!(code, 200, "ClickHouse answers its default user without a password");
    let password =
        std::fs::read_to_string(state.join(format!("stacks/{PROJECT}/secret-files/clickhouse-password"))).unwrap();
    let (code, body) = http_get(ch, &format!("/?user=default&password={}&query=SELECT%201", password.trim())).unwrap();
    assert_eq!((code, body.trim()), (200, "1"), "ClickHouse with the generated password");
    // deploy and down find their objects by v7.project: none of the played ones carries it.
    let filter = format!("label=v7.project={PROJECT}");
    for args in [
        vec!["ps", "-a", "-q", "--filter", &filter],
        vec!["pod", "ls", "-q", "--filter", &filter],
        vec!["volume", "ls", "-q", "--filter", &filter],
    ] {
        let listed = played.podman.ok(&args);
        assert!(listed.is_empty(), "podman {}: deploy's label on kube play's objects: {listed}", args.join(" "));
    }
    for svc in SERVICES {
        let container = format!("{svc}-{svc}");
        wait_for(&format!("podman healthcheck run {container}"), Duration::from_secs(60), || {
            let out = played.podman.output(&["healthcheck", "run", &container]);
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
            }
        });
    }
    // verify --kube-play: the same checks as deploy's stack gets, under kube play's names.
    let verify_started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["verify", "--kube-play"])
        .current_dir(root())
        .env("V7_STACK_FILE", &stack)
        .env("V7_STATE_DIR", &state)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ xtask verify --kube-play\n{said}");
    assert!(
        out.status.success()
            && said.contains("verify: the stack works end to end (the containers of `podman kube play`)"),
        "verify --kube-play failed:\n{said}"
    );
    for svc in SERVICES {
        assert!(
            said.contains(&format!("ok    {svc} is healthy (")),
            "verify --kube-play did not wait for {svc}:\n{said}"
        );
    }
    for check in [
        "an event sent to backend's gRPC port",
        "events accepted while analytics-engine was stopped were all counted",
        "4 named volumes are mounted where the manifest says",
        "the logs of 6 services can be read (`podman logs CONTAINER`",
        "Prometheus scrapes analytics-engine",
        "skip  Grafana is not deployed",
    ] {
        assert!(said.contains(check), "verify --kube-play did not say {check:?}:\n{said}");
    }
    timings.push(("verify --kube-play".into(), verify_started.elapsed().as_secs_f64()));
    drop(played);
    let left = crate::support::podman(&["volume", "ls", "-q"]);
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.lines().any(|v| v.starts_with(&format!("{PROJECT}-kube-"))), "volumes left:\n{left}");
    timings.push(("phase 7: kube play".into(), started.elapsed().as_secs_f64()));
}
