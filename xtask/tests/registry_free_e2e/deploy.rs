//! Phase 5 of the registry-free end-to-end test: `cargo xtask deploy` converges, with real podman
//! and the registry-free images phase 1 built, under the test's project `v7test-rf`:
//!
//! - a first deploy starts services by dependency level (nats, clickhouse and prometheus
//!   together), each behind its health check; `verify` passes; the dashboard works in a real
//!   browser; `status` shows every service healthy with the time of its last check, and the
//!   health supervisor running;
//! - events accepted while analytics-engine is stopped survive NATS being re-created (JetStream
//!   on the nats-data volume) and are each counted once, a client id sent twice included;
//! - a second deploy changes nothing: same container IDs, not restarted;
//! - a changed environment of backend replaces backend alone;
//! - a process killed inside backend comes back by itself (restart policy), and a wedged backend
//!   (SIGSTOP: its health check times out) is restarted by the supervisor's checks;
//! - a new backend image that never gets healthy is rolled back: the previous container runs
//!   again and answers, nothing is left in state Created or under a `-previous` name;
//! - a host port held by another process, and a host port published twice in the manifest,
//!   stop deploy before it creates or stops anything, naming the port and the service;
//! - the generated passwords are in a 0600 file and in no `podman inspect`, log or output;
//! - an event survives `down` + `deploy` (and `verify` checks its marker across them);
//!   `down` stops the supervisor; `down --volumes` removes everything.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::stack::{self, container, image, supervisor_pid, text, wait_for, Podman, TestStack, PROJECT};
use crate::support::{find_in, http_get, http_request, json, string, JsonValue};

/// Every container of the test project: name -> (ID, StartedAt).
fn containers(podman: &Podman) -> BTreeMap<String, (String, String)> {
    let filter = format!("label=v7.project={PROJECT}");
    let names = podman.ok(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    names
        .lines()
        .filter(|n| !n.trim().is_empty())
        .map(|n| {
            let info = podman.ok(&["inspect", "--format", "{{.Id}} {{.State.StartedAt}}", n]);
            let (id, started) = info.split_once(' ').unwrap_or((&info, ""));
            (n.to_string(), (id.to_string(), started.to_string()))
        })
        .collect()
}

fn started_at(podman: &Podman, c: &str) -> String {
    podman.ok(&["inspect", "--format", "{{.State.StartedAt}}", c])
}

/// Waits until `c` was started again after `before` and answers `/healthz` on `port`, then
/// checks its health once with podman. Only `podman inspect` while it waits: every `podman
/// healthcheck run` counts towards `--health-on-failure`, so polling with it would restart the
/// container itself, in place of the supervisor under test.
fn comes_back(podman: &Podman, c: &str, before: &str, port: u16, within: Duration) {
    let r = wait_for(within, || {
        let now = started_at(podman, c);
        if now == before {
            return Err(format!("{c} not restarted yet (started {now})"));
        }
        match http_get(port, "/healthz") {
            Ok((200, _)) => Ok(now),
            Ok((code, body)) => Err(format!("{c} restarted at {now}; /healthz answers {code} {body}")),
            Err(e) => Err(format!("{c} restarted at {now}; /healthz: {e}")),
        }
    });
    if let Err(e) = r {
        panic!("{e}\n--- logs:\n{}", podman.logs_tail(c));
    }
    let out = podman.output(&["healthcheck", "run", c]);
    assert!(out.status.success(), "{c} answers but its health check fails: {}", text(&out.stdout));
}

/// Runs `podman exec C sh -c` with a signal for the process named `comm` inside.
fn signal_process(podman: &Podman, c: &str, comm: &str, signal: &str) {
    let script = format!(
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = {comm} ] && kill -{signal} ${{p#/proc/}} && echo ${{p#/proc/}}; done"
    );
    let pids = podman.ok(&["exec", c, "sh", "-c", &script]);
    assert!(!pids.is_empty(), "no process {comm} found in {c}");
    eprintln!("sent SIG{signal} to {comm} (pid {pids} in {c})");
}

/// The dashboard in a real browser (web/test/browser/dashboard_test.py: Selenium, Debian's
/// headless chromium): an event sent through the page's form shows in the table and the chart,
/// and every service's health badge says ok. Selenium is installed with pip when missing.
fn browser_test(web_port: u16) {
    let root = stack::root();
    let has_selenium = std::process::Command::new("python3").args(["-c", "import selenium"]).status();
    if !has_selenium.is_ok_and(|s| s.success()) {
        eprintln!("installing selenium with pip (web/test/browser/requirements.txt)");
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("web/test/browser/requirements.txt"))
            .status()
            .expect("python3");
        assert!(status.success(), "pip could not install selenium");
    }
    let out = std::process::Command::new("python3")
        .arg(root.join("web/test/browser/dashboard_test.py"))
        .env("V7_WEB_URL", format!("http://127.0.0.1:{web_port}"))
        .env("V7_EXPECT_ALL_OK", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3");
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("{report}");
    assert!(out.status.success(), "the browser test of the deployed dashboard failed:\n{report}");
    eprintln!("ok the deployed dashboard works in a real browser (form, table, chart, health badges)");
}

pub fn converges(stack: &TestStack, podman: &Podman, registry_free: &[String], timings: &mut Vec<(String, f64)>) {
    let t = Instant::now();
    eprintln!("\n== phase 5: deploy converges, keeps what runs, rolls back, supervises health");
    // Phase 3's containers carry the names deploy uses; remove them first, and wait until
    // podman has let go of the names.
    for svc in registry_free {
        let _ = podman.output(&["rm", "-f", "-t", "0", &container(svc)]);
    }
    wait_for(Duration::from_secs(30), || {
        let left: Vec<&String> = registry_free
            .iter()
            .filter(|s| podman.output(&["container", "exists", &container(s)]).status.success())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {left:?}"))
        }
    })
    .unwrap();
    // Everything the xtask printed in this phase: the passwords must be in none of it.
    let mut said: Vec<String> = Vec::new();
    let deploy = ["deploy", "--registry-free", "--no-build", "--timeout", "180"];

    // --- first deploy: by dependency level, health gated ---------------------------------------
    let (ok, out, secs) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok, "deploy failed:\n{out}");
    timings.push(("first deploy (nothing running)".into(), secs));
    assert!(out.contains("grafana: not started: Grafana has no Debian package"), "Grafana must be named:\n{out}");
    let at = |line: String| out.find(&line).unwrap_or_else(|| panic!("no line {line:?} in:\n{out}"));
    for svc in registry_free {
        at(format!("{svc}: healthy after"));
    }
    let first_healthy = out.find(": healthy after").unwrap();
    for svc in ["nats", "clickhouse", "prometheus"] {
        assert!(at(format!("{svc}: creating")) < first_healthy, "{svc} did not start with the first level:\n{out}");
    }
    let engine = at("analytics-engine: creating".into());
    assert!(
        at("nats: healthy after".into()) < engine && at("clickhouse: healthy after".into()) < engine,
        "analytics-engine started before NATS and ClickHouse were healthy:\n{out}"
    );
    assert!(at("analytics-engine: healthy after".into()) < at("backend: creating".into()), "{out}");
    assert!(at("backend: healthy after".into()) < at("web: creating".into()), "{out}");
    let supervisor = supervisor_pid().expect("deploy started the health supervisor");
    eprintln!("ok the health supervisor runs (pid {supervisor})");

    let (ok, out, secs) = stack.xtask(&["verify"]);
    said.push(out.clone());
    assert!(ok && out.contains("verify: the stack works end to end"), "verify failed:\n{out}");
    timings.push(("verify".into(), secs));
    for line in [
        "was accepted (accepted 1 event",
        "ClickHouse refuses its default user without the generated password",
        "named volumes are mounted where the manifest says and writable by their non-root user",
        "services can be read (`cargo xtask logs SERVICE`)",
    ] {
        assert!(out.contains(line), "verify does not say {line:?}:\n{out}");
    }
    browser_test(stack::test_host_port(5173));
    let (ok, out) = stack.xtask_stdout(&["status", "--json"]);
    said.push(out.clone());
    assert!(ok, "status failed:\n{out}");
    let JsonValue::Array(rows) = json(&out) else { panic!("status --json is not an array:\n{out}") };
    for svc in registry_free {
        let row = find_in(&rows, "service", svc);
        assert_eq!(
            (string(row, "state").as_deref(), string(row, "health").as_deref()),
            (Some("running"), Some("healthy")),
            "status does not show {svc} running and healthy:\n{out}"
        );
        assert!(string(row, "last_check").is_some_and(|t| t.starts_with("20")), "{svc}: no last_check:\n{out}");
    }
    let grafana = find_in(&rows, "service", "grafana");
    assert_eq!(string(grafana, "state").as_deref(), Some("absent"), "status must show Grafana absent:\n{out}");
    assert!(string(grafana, "note").is_some_and(|n| n.contains("no Debian package")), "{out}");
    let (ok, out, _) = stack.xtask(&["status"]);
    assert!(ok && out.contains(&format!("health supervisor: running (pid {supervisor}")), "{out}");

    // --- JetStream keeps what was accepted: engine stopped, NATS re-created, volume kept -------
    let web_port = stack::test_host_port(5173);
    let engine = container("analytics-engine");
    podman.ok(&["stop", "-t", "10", &engine]);
    let kind = format!("rf_js_{}", std::process::id());
    for i in 0..10 {
        let body = format!(r#"{{"kind":"{kind}","value":{i},"source":"registry-free-e2e"}}"#);
        let (code, answer) = http_request(web_port, "POST", "/api/events", Some(&body)).unwrap();
        assert_eq!(code, 202, "with analytics-engine stopped, POST answered {code}: {answer}");
    }
    // The same client id twice: stored once (JetStream's duplicate window, then the engine).
    let twice = format!(r#"{{"id":"{kind}-once","kind":"{kind}","value":99,"source":"registry-free-e2e"}}"#);
    for _ in 0..2 {
        let (code, answer) = http_request(web_port, "POST", "/api/events", Some(&twice)).unwrap();
        assert_eq!(code, 202, "POST with a client id answered {code}: {answer}");
    }
    podman.ok(&["rm", "-f", "-t", "10", &container("nats")]);
    let (ok, out, _) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok, "deploy after NATS was removed failed:\n{out}");
    assert!(out.contains("create   nats") && out.contains("start    analytics-engine"), "{out}");
    let path = format!("/api/stats?kind={kind}");
    let counted = wait_for(Duration::from_secs(90), || match http_get(web_port, &path) {
        Ok((200, b)) if b.contains("\"count\":11") => Ok(b),
        Ok((c, b)) => Err(format!("{c} {b}")),
        Err(e) => Err(e),
    })
    .unwrap_or_else(|e| {
        panic!("11 events (10 + one sent twice) accepted while the engine was stopped and NATS re-created: {e}")
    });
    eprintln!(
        "ok events accepted while the engine was down survived NATS being re-created, each counted once: {}",
        counted.trim()
    );

    // --- a second deploy changes nothing ------------------------------------------------------
    let before = containers(podman);
    assert_eq!(before.len(), registry_free.len(), "{before:?}");
    let (ok, out, secs) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok && out.contains("nothing to change"), "the second deploy was not a no-op:\n{out}");
    timings.push(("no-op deploy".into(), secs));
    assert_eq!(containers(podman), before, "a no-op deploy changed or restarted a container");
    eprintln!("ok a second deploy keeps all {} containers (same IDs, same start times)", before.len());

    // --- a changed environment replaces that service alone -------------------------------------
    let original = std::fs::read_to_string(&stack.file).unwrap();
    let marker = "V7_ANALYTICS_URL = \"http://analytics-engine:50051\", RUST_LOG = \"info\"";
    assert!(original.contains(marker), "backend's environment line changed; update the test");
    std::fs::write(&stack.file, original.replace(marker, &format!("{marker}, V7_E2E_MARK = \"changed\""))).unwrap();
    let (ok, out, secs) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok, "deploy after an environment change failed:\n{out}");
    timings.push(("deploy replacing backend".into(), secs));
    assert!(out.contains("replace  backend            environment changed"), "{out}");
    let after = containers(podman);
    for (name, was) in &before {
        if *name == container("backend") {
            assert_ne!(after[name].0, was.0, "backend was not replaced");
        } else {
            assert_eq!(&after[name], was, "{name} was touched by a change of backend's environment");
        }
    }
    let env = podman.ok(&["inspect", "--format", "{{json .Config.Env}}", &container("backend")]);
    assert!(env.contains("V7_E2E_MARK=changed"), "{env}");
    eprintln!("ok only backend was replaced");

    // --- a crashed process comes back; a wedged one is restarted by the supervisor -----------
    let backend = container("backend");
    let port = stack::test_host_port(3000);
    let was = started_at(podman, &backend);
    signal_process(podman, &backend, "backend", "KILL");
    comes_back(podman, &backend, &was, port, Duration::from_secs(60));
    eprintln!("ok backend came back healthy after its process was killed (restart policy)");
    let was = started_at(podman, &backend);
    signal_process(podman, &backend, "backend", "STOP");
    // 3 failed checks 10 s apart, then podman's stop timeout: about 45 s.
    comes_back(podman, &backend, &was, port, Duration::from_secs(120));
    let log = std::fs::read_to_string(stack::stack_state().join("supervisor.log")).unwrap_or_default();
    assert!(log.contains("backend: health check failed (3 in a row"), "supervisor log:\n{log}");
    eprintln!("ok a wedged backend was restarted after 3 failed checks (supervisor + --health-on-failure)");

    // --- a new image that never gets healthy is rolled back -----------------------------------
    let before = containers(podman);
    let img = image("backend");
    let good = podman.ok(&["image", "inspect", "--format", "{{.Id}}", &img]);
    let dir = stack.dir.join("broken-backend");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Containerfile"), format!("FROM {good}\nENTRYPOINT [\"sleep\", \"infinity\"]\n")).unwrap();
    let label = format!("v7.project={PROJECT}");
    podman.ok(&["build", "--runtime", "runc", "-q", "--label", &label, "-t", &img, dir.to_str().unwrap()]);
    let broken = podman.ok(&["image", "inspect", "--format", "{{.Id}}", &img]);
    let (ok, out, secs) = stack.xtask(&["deploy", "--registry-free", "--no-build", "--timeout", "10"]);
    said.push(out.clone());
    timings.push(("deploy rolled back".into(), secs));
    podman.ok(&["tag", &good, &img]);
    let _ = podman.output(&["rmi", &broken]);
    assert!(!ok, "a deploy whose new backend never got healthy succeeded:\n{out}");
    assert!(out.contains("rolled back backend to the previous container"), "{out}");
    let ids = |m: &BTreeMap<String, (String, String)>| -> Vec<(String, String)> {
        m.iter().map(|(n, (id, _))| (n.clone(), id.clone())).collect()
    };
    assert_eq!(ids(&containers(podman)), ids(&before), "the rollback did not bring back the same containers");
    let created = podman.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={label}"),
        "--filter",
        "status=created",
        "--format",
        "{{.Names}}",
    ]);
    assert!(created.is_empty(), "containers left in state Created: {created}");
    assert!(!containers(podman).keys().any(|n| n.ends_with("-previous")), "a -previous container was left");
    let (code, _) = http_get(port, "/healthz").expect("the previous backend answers");
    assert_eq!(code, 200);
    eprintln!("ok the previous backend container runs again and answers");

    // --- a port held by another process: nothing is created or stopped ------------------------
    let web = container("web");
    podman.ok(&["rm", "-f", "-t", "2", &web]);
    let before = containers(podman);
    let listener = std::net::TcpListener::bind(("127.0.0.1", web_port)).expect("bind web's port");
    let (ok, out, _) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(!ok, "deploy went ahead with web's port taken:\n{out}");
    let pid = std::process::id();
    assert!(out.contains(&format!("web: host port 127.0.0.1:{web_port} is taken: pid {pid} (")), "{out}");
    assert!(out.contains("nothing was created, stopped or removed"), "{out}");
    assert_eq!(containers(podman), before, "deploy changed containers although a port was taken");
    drop(listener);
    let (ok, out, _) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok && out.contains("web: healthy after"), "deploy after the port was freed:\n{out}");
    eprintln!("ok a taken port stopped deploy before it changed anything, and was named with its process");

    // --- a host port published twice: refused before podman is called -------------------------
    let before = containers(podman);
    let twice = stack.dir.join("stack-twice.toml");
    let backend_port = format!("127.0.0.1:{}:3000", stack::test_host_port(3000));
    let changed = std::fs::read_to_string(&stack.file)
        .unwrap()
        .replace(&format!("\"127.0.0.1:{web_port}:3000\""), &format!("\"{backend_port}\""));
    std::fs::write(&twice, changed).unwrap();
    let (ok, out, _) = stack.xtask_with(&twice, &deploy);
    said.push(out.clone());
    assert!(!ok, "a manifest publishing {backend_port} twice was deployed:\n{out}");
    assert!(out.contains("services.web.ports") && out.contains("services.backend"), "{out}");
    assert!(out.contains(&stack::test_host_port(3000).to_string()) && out.contains("hint:"), "{out}");
    assert!(!out.contains("podman run"), "{out}");
    assert_eq!(containers(podman), before);
    eprintln!("ok a duplicate host port was refused with the file and line");
    std::fs::write(&stack.file, &original).unwrap();

    // --- data survive down + deploy; down stops the supervisor --------------------------------
    let web = stack::test_host_port(5173);
    let (code, body) =
        http_request(web, "POST", "/api/events", Some(r#"{"kind":"rf_kept","value":7,"source":"registry-free-e2e"}"#))
            .unwrap();
    assert_eq!(code, 202, "POST through the deployed web answered {code}: {body}");
    let counted = |want: &str| {
        let want = want.to_string();
        move || match http_get(web, "/api/stats?kind=rf_kept") {
            Ok((200, b)) if b.contains(&want) => Ok(b),
            Ok((c, b)) => Err(format!("{c} {b}")),
            Err(e) => Err(e),
        }
    };
    wait_for(Duration::from_secs(60), counted("\"count\":1"))
        .unwrap_or_else(|e| panic!("the event was not counted: {e}"));
    let (ok, out, _) = stack.xtask(&["down"]);
    said.push(out.clone());
    assert!(ok, "down failed:\n{out}");
    for svc in registry_free {
        assert!(
            !podman.output(&["container", "exists", &container(svc)]).status.success(),
            "{svc} still exists after down"
        );
    }
    assert!(supervisor_pid().is_none(), "down left the health supervisor running");
    let kept = format!("{PROJECT}-clickhouse-data");
    assert!(podman.output(&["volume", "exists", &kept]).status.success(), "down removed the volume {kept}");
    let (ok, out, _) = stack.xtask(&deploy);
    said.push(out.clone());
    assert!(ok, "the deploy after down failed:\n{out}");
    let body = wait_for(Duration::from_secs(60), counted("\"count\":1"))
        .unwrap_or_else(|e| panic!("the event did not survive down + deploy: {e}"));
    eprintln!("ok the event survived down + deploy (ClickHouse volume): {}", body.trim());
    let (ok, out, _) = stack.xtask(&["verify"]);
    said.push(out.clone());
    assert!(
        ok && out.contains("marker event(s) stored by earlier runs are still counted"),
        "verify after down + deploy:\n{out}"
    );

    // --- secrets: a 0600 file, in no inspect, log or output -----------------------------------
    let file = stack::stack_state().join("secrets");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let passwords: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_string()))
        .collect();
    assert!(passwords.len() >= 2 && passwords.iter().all(|p| p.len() == 32), "{passwords:?}");
    for c in containers(podman).keys() {
        let inspect = podman.ok(&["inspect", c]);
        let logs = podman.logs_tail(c);
        for p in &passwords {
            assert!(!inspect.contains(p.as_str()), "a generated password is in `podman inspect {c}`");
            assert!(!logs.contains(p.as_str()), "a generated password is in the logs of {c}");
        }
    }
    for out in &said {
        for p in &passwords {
            assert!(!out.contains(p.as_str()), "a generated password was printed by the xtask");
        }
    }
    eprintln!("ok the {} generated passwords are in a 0600 file and nowhere else we looked", passwords.len());

    let (ok, out, _) = stack.xtask(&["down", "--volumes"]);
    assert!(ok, "down --volumes failed:\n{out}");
    assert!(!podman.output(&["volume", "exists", &kept]).status.success(), "down --volumes left {kept}");
    for net in ["frontend", "backend"] {
        let n = format!("{PROJECT}-{net}");
        assert!(!podman.output(&["network", "exists", &n]).status.success(), "down left the network {n}");
    }
    let secrets = podman.ok(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(!secrets.lines().any(|s| s.starts_with(&format!("{PROJECT}-"))), "down left podman secrets: {secrets}");
    timings.push(("phase 5 (deploy converges) in all".into(), t.elapsed().as_secs_f64()));
}
