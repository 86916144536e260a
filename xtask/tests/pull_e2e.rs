//! `cargo xtask pull` against a real registry (docker-registry 2.8 on loopback) behind a
//! fault-injecting proxy, with real podman. Run with:
//!   cargo test -p xtask --features e2e --test pull_e2e
//! Everything a test makes is named `v7test-pull-...` (or lives under a `127.0.0.1:PORT`
//! registry it started) and is removed on drop, even when the test fails.
//!
//! By default podman pulls through the xtask's loopback relay (xtask/src/images/pull/relay),
//! which retries single requests; `--no-relay` is the direct path (podman
//! talks to the registry, the xtask retries whole pulls). Most faults are tested on both paths,
//! and the fault tests run twice ([`over_both`]): against a plain-HTTP registry and proxy, and
//! against a TLS registry and a TLS proxy whose certificates come from a CA the test makes,
//! trusted by podman and the relay only through the xtask's certs.d directory (never the
//! system's store). No test asserts on wall-clock time: waits are checked in the proxy's own
//! request log, durations belong to `xtask/bench/pull.sh`.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::registry::*;
use support::tinyproxy::ConnectProxy;
use support::*;

/// `mod NAME { fn http(); fn https(); }`: the test `NAME(transport)` over plain HTTP and TLS.
macro_rules! over_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn http() {
                super::$name(super::Transport::Http)
            }
            #[test]
            fn https() {
                super::$name(super::Transport::Https)
            }
        }
    )*};
}

over_both!(
    transient_503_is_retried_then_succeeds_and_status_shows_it,
    persistent_503_fails_with_a_clear_message,
    unknown_tag_fails_fast_without_retries,
    rate_limit_429_waits_for_retry_after,
    resets_and_cuts_mid_blob_are_retried,
    mirror_is_used_before_the_origin,
    one_bad_answer_to_the_mirror_probe_does_not_skip_the_mirror,
    dead_mirrors_are_skipped_and_the_next_one_is_used,
    ctrl_c_stops_pulls_and_leaves_nothing_half_pulled,
);

fn transient_503_is_retried_then_succeeds_and_status_shows_it(transport: Transport) {
    let mut s = Setup::over(transport, &[("flaky", 1), ("flakydirect", 1)]);
    let image = s.via_proxy("flaky");
    let direct = s.via_proxy("flakydirect");
    let (ok, out, _, _) = s.xtask.run(&["pull", "--status", "--image", &image]);
    assert!(ok && out.contains("missing"), "{out}");
    let (ok, out, _, _) = s.xtask.run(&["pull", "--status", "--json", "--image", &image]);
    assert!(ok, "{out}");
    assert_eq!(image_string(&out, &image, "status").as_deref(), Some("missing"), "{out}");
    assert_eq!(boolean(&json(&out), "ok"), Some(false), "an image is missing: {out}");
    // Through the relay: the registry is asked again, podman's one attempt never sees the 503s.
    s.proxy.faults(r#"{"rules": [{"path": "/flaky/manifests/", "action": "status", "status": 503, "times": 2}]}"#);
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--image", &image]);
    assert!(ok, "{err}");
    assert_eq!(image_number(&out, &image, "attempts"), Some(1.0), "{out}");
    assert_eq!(image_number(&out, &image, "request_retries"), Some(2.0), "{out}");
    assert_eq!(image_string(&out, &image, "status").as_deref(), Some("pulled"));
    assert!(err.contains("[relay: 2 requests retried, last manifest 1: 503 Service Unavailable"), "{err}");
    assert!(image_exists(&image));
    assert_eq!(s.proxy.count("status=503"), 2);
    let (ok, out, _, _) = s.xtask.run(&["pull", "--status", "--image", &image]);
    assert!(ok && out.contains("present"), "{out}");
    let (ok, out, _, _) = s.xtask.run(&["pull", "--status", "--json", "--image", &image]);
    assert!(ok, "{out}");
    let report = image_report(&json(&out), &image);
    assert_eq!(string(&report, "status").as_deref(), Some("present"), "{out}");
    assert!(number(&report, "size_bytes").is_some_and(|n| n > 1_000_000.0), "{out}");

    // Directly: each 503 costs podman a whole attempt, and the xtask makes the next one.
    s.proxy
        .faults(r#"{"rules": [{"path": "/flakydirect/manifests/", "action": "status", "status": 503, "times": 2}]}"#);
    let (ok, out, err, _) = s.xtask.run(&["pull", "--no-relay", "--json", "--image", &direct]);
    assert!(ok, "{err}");
    assert_eq!(image_number(&out, &direct, "attempts"), Some(3.0), "{out}");
    assert_eq!(image_number(&out, &direct, "request_retries"), Some(0.0), "{out}");
    assert!(err.contains("retry 2/4"), "{err}");
    assert!(image_exists(&direct));
    assert_eq!(s.proxy.count("status=503"), 4);
}

fn persistent_503_fails_with_a_clear_message(transport: Transport) {
    let mut s = Setup::over(transport, &[("down", 1)]);
    let image = s.via_proxy("down");
    s.proxy.faults(r#"{"rules": [{"path": "/manifests/", "action": "status", "status": 503}]}"#);
    // Through the relay: 5 requests per podman attempt (relay/protocol.rs TRIES), 2 attempts.
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--attempts", "2", "--image", &image]);
    assert!(!ok);
    assert_eq!(image_number(&out, &image, "attempts"), Some(2.0), "{out}");
    assert_eq!(image_number(&out, &image, "request_retries"), Some(8.0), "{out}");
    let last = err.lines().last().unwrap_or("");
    assert!(err.contains(&format!("  {image}: ")), "{err}");
    assert!(last.contains("503 Service Unavailable"), "{last}");
    assert_eq!(s.proxy.count("method=GET&path=/manifests/"), 10, "{}", s.proxy.log());
    assert!(!image_exists(&image));

    // Directly: one request per attempt.
    s.proxy.clear_log();
    let (ok, out, err, _) = s.xtask.run(&["pull", "--no-relay", "--json", "--attempts", "2", "--image", &image]);
    assert!(!ok);
    assert_eq!(image_number(&out, &image, "attempts"), Some(2.0), "{out}");
    assert!(err.lines().last().unwrap_or("").contains("503 Service Unavailable"), "{err}");
    assert_eq!(s.proxy.count("method=GET&path=/manifests/"), 2, "{}", s.proxy.log());
    assert!(!image_exists(&image));
}

fn unknown_tag_fails_fast_without_retries(transport: Transport) {
    let mut s = Setup::over(transport, &[("known", 1)]);
    let image = format!("{}/v7test-pull/known:nope", s.proxy.addr());
    s.images.add(&image);
    for relay in [true, false] {
        s.proxy.clear_log();
        let mut args = vec!["pull", "--json", "--image", &image];
        if !relay {
            args.push("--no-relay");
        }
        let (ok, out, err, _) = s.xtask.run(&args);
        assert!(!ok);
        assert_eq!(image_number(&out, &image, "attempts"), Some(1.0), "relay {relay}: {out}");
        assert!(err.contains("manifest unknown"), "{err}");
        assert!(err.contains("hint: the tag or digest does not exist"), "{err}");
        assert_eq!(s.proxy.count("method=GET&path=/manifests/nope"), 1, "relay {relay}: {}", s.proxy.log());
    }
}

fn rate_limit_429_waits_for_retry_after(transport: Transport) {
    let mut s = Setup::over(transport, &[("limited", 1), ("limiteddirect", 1)]);
    let image = s.via_proxy("limited");
    let direct = s.via_proxy("limiteddirect");
    // Through the relay: it reads Retry-After itself and asks again after 2 s, within podman's
    // one attempt.
    s.proxy.faults(
        r#"{"rules": [{"path": "/limited/manifests/", "action": "status", "status": 429, "retry_after": "2", "times": 1}]}"#,
    );
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--image", &image]);
    assert!(ok, "{err}");
    assert!(err.contains("last manifest 1: 429 Too Many Requests, asked again in 2.0 s"), "{err}");
    let (n, first) = s.proxy.find("method=GET&path=/limited/manifests/&status=429");
    assert_eq!(n, 1, "{}", s.proxy.log());
    let first = first.unwrap();
    let (_, next) = s.proxy.find(&format!("method=GET&path=/limited/manifests/&status=200&after={first}"));
    assert!(next.unwrap() - first >= 1.9, "waited {:?}", next.map(|n| n - first));
    assert_eq!(image_number(&out, &image, "attempts"), Some(1.0), "{out}");
    assert!(image_exists(&image));

    // Directly: podman makes 5 manifest requests honouring Retry-After, then gives up; the 6th
    // answer (the xtask's own HEAD) tells the xtask how long to wait.
    s.proxy.faults(
        r#"{"rules": [{"path": "/limiteddirect/manifests/", "action": "status", "status": 429, "retry_after": "2", "times": 6}]}"#,
    );
    let (ok, out, err, _) = s.xtask.run(&["pull", "--no-relay", "--json", "--image", &direct]);
    assert!(ok, "{err}");
    assert!(err.contains("retry 2/4") && err.contains("in 2 s"), "{err}");
    let (n, head) = s.proxy.find("method=HEAD&status=429");
    assert_eq!(n, 1, "{}", s.proxy.log());
    let head = head.unwrap();
    let (_, next) = s.proxy.find(&format!("method=GET&path=/limiteddirect/manifests/&status=200&after={head}"));
    assert!(next.unwrap() - head >= 1.9, "waited {:?}", next.map(|n| n - head));
    assert_eq!(image_number(&out, &direct, "attempts"), Some(2.0), "{out}");
    assert!(image_exists(&direct));
}

fn resets_and_cuts_mid_blob_are_retried(transport: Transport) {
    let mut s = Setup::over(transport, &[("cut", 4), ("reset", 1), ("cutdirect", 4)]);
    let cut = s.via_proxy("cut");
    let reset = s.via_proxy("reset");
    let cut_direct = s.via_proxy("cutdirect");
    // Through the relay: each blob request is asked again on its own; podman sees whole blobs.
    s.proxy.faults(
        r#"{"rules": [
            {"path": "/v7test-pull/cut/blobs/", "method": "GET", "action": "cut", "times": 4},
            {"path": "/v7test-pull/reset/blobs/", "method": "GET", "action": "reset", "times": 4}
        ]}"#,
    );
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--image", &cut, "--image", &reset]);
    assert!(ok, "{err}");
    assert_eq!(s.proxy.count("fault=cut"), 4, "{}", s.proxy.log());
    assert_eq!(s.proxy.count("fault=reset"), 4);
    assert_eq!(image_number(&out, &cut, "attempts"), Some(1.0), "{out}");
    assert_eq!(image_number(&out, &cut, "request_retries"), Some(4.0), "{out}");
    assert_eq!(image_number(&out, &reset, "request_retries"), Some(4.0), "{out}");
    assert!(err.contains("answer cut at"), "{err}");
    assert!(image_exists(&cut) && image_exists(&reset));

    // Directly: podman retries network errors 3 times inside one attempt, so 4 cuts exhaust
    // an attempt and the xtask makes another.
    s.proxy.faults(
        r#"{"rules": [{"path": "/v7test-pull/cutdirect/blobs/", "method": "GET", "action": "cut", "times": 4}]}"#,
    );
    let (ok, out, err, _) = s.xtask.run(&["pull", "--no-relay", "--json", "--image", &cut_direct]);
    assert!(ok, "{err}");
    assert!(image_number(&out, &cut_direct, "attempts").unwrap() >= 2.0, "{out}");
    assert!(image_exists(&cut_direct));
}

#[test]
fn a_third_of_requests_failing_at_random_still_lands_every_image() {
    let names = [("r1", 1), ("r2", 1), ("r3", 1)];
    let mut s = Setup::new(&names);
    let images: Vec<String> = names.iter().map(|(n, _)| s.via_proxy(n)).collect();
    // Seeded: a mix of 503s, resets before the answer and blobs cut at half their length.
    s.proxy.faults(r#"{"fail_rate": 0.33, "seed": 7}"#);
    let mut args = vec!["pull", "--json", "--jobs", "3"];
    for i in &images {
        args.extend(["--image", i.as_str()]);
    }
    let (ok, out, err, _) = s.xtask.run(&args);
    assert!(ok, "{err}");
    let faults = s.proxy.count("fault=status") + s.proxy.count("fault=reset") + s.proxy.count("fault=cut");
    assert!(faults > 0, "no fault was injected: {}", s.proxy.log());
    let retried: f64 = images.iter().map(|i| image_number(&out, i, "request_retries").unwrap()).sum();
    assert!(retried >= 1.0, "{out}");
    for i in &images {
        assert!(image_exists(i), "{i}");
    }
}

#[test]
fn a_registry_that_wants_credentials_is_pulled_directly() {
    let mut s = Setup::new(&[("private", 1)]);
    let image = s.via_proxy("private");
    // A 401 through the relay: podman keeps credentials under the registry's name, not the
    // relay's, so the xtask asks again without the relay (same attempt).
    s.proxy.faults(r#"{"rules": [{"path": "/manifests/", "action": "status", "status": 401, "times": 1}]}"#);
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--image", &image]);
    assert!(ok, "{err}");
    assert!(err.contains("it asks for credentials: pulling directly"), "{err}");
    assert_eq!(s.proxy.count("method=GET&path=/manifests/&status=401"), 1, "{}", s.proxy.log());
    assert_eq!(image_number(&out, &image, "attempts"), Some(2.0), "{out}");
    assert!(image_exists(&image));
}

fn mirror_is_used_before_the_origin(transport: Transport) {
    let mut s = Setup::over(transport, &[("mirrored", 1)]);
    let mirror = s.mirror();
    let image = s.via_proxy("mirrored");
    let spec = format!("{}={}", s.proxy.addr(), s.url(&mirror.addr()));
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--registry-mirror", &spec, "--image", &image]);
    assert!(ok, "{err}");
    assert_eq!(
        image_string(&out, &image, "source").as_deref(),
        Some(format!("mirror {}", s.url(&mirror.addr())).as_str()),
        "{out}"
    );
    assert!(mirror.count("path=/manifests/") >= 1);
    assert_eq!(s.proxy.count("path=/v2/v7test-pull"), 0, "origin was asked: {}", s.proxy.log());
    // Stored under its canonical name, not the mirror's.
    assert!(image_exists(&image));
    // Later podman calls of the xtask get the mirror through its own registries.conf.
    let conf = std::fs::read_to_string(s.xtask.state.path().join("v7/podman/registries.conf")).unwrap();
    assert!(conf.contains(&format!("location = \"{}\"", mirror.addr())), "{conf}");
    // The relays' files and registries.conf files are gone.
    let relay_dir = s.xtask.state.path().join("v7/pull-relay");
    let left: Vec<_> =
        std::fs::read_dir(&relay_dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let sources = s.xtask.state.path().join("v7/podman/pull-sources");
    let relay_confs: Vec<_> = std::fs::read_dir(&sources)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("relay-"))
        .collect();
    assert!(relay_confs.is_empty(), "{relay_confs:?}");

    // The mirror lacks a tag: the origin serves it.
    let other = format!("{}/v7test-pull/mirrored:2", s.proxy.addr());
    s.images.add(&other);
    push_image(&s.registry, "mirrored", "2", 1);
    mirror.faults(r#"{"rules": [{"path": "/manifests/2", "action": "status", "status": 404}]}"#);
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--registry-mirror", &spec, "--image", &other]);
    assert!(ok, "{err}");
    assert_eq!(image_string(&out, &other, "source").as_deref(), Some(s.proxy.addr().as_str()), "{out}");
}

fn one_bad_answer_to_the_mirror_probe_does_not_skip_the_mirror(transport: Transport) {
    let mut s = Setup::over(transport, &[("probe503", 1), ("probereset", 1)]);
    for (name, fault) in
        [("probe503", r#"{"action": "status", "status": 503}"#), ("probereset", r#"{"action": "reset"}"#)]
    {
        let mirror = s.mirror();
        // Exactly the first `GET /v2/`: the probe the xtask sends before any pull.
        mirror.faults(&format!(r#"{{"rules": [{{"path": "^/v2/$", "times": 1, {}}}]}}"#, &fault[1..fault.len() - 1]));
        let image = s.via_proxy(name);
        let spec = format!("{}={}", s.proxy.addr(), s.url(&mirror.addr()));
        let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--registry-mirror", &spec, "--image", &image]);
        assert!(ok, "{name}: {err}");
        let fault_kind = if name == "probe503" { "status" } else { "reset" };
        assert_eq!(
            mirror.count(&format!("path=^/v2/$&fault={fault_kind}")),
            1,
            "{name}: the probe got no fault: {}",
            mirror.log()
        );
        assert_eq!(
            image_string(&out, &image, "source").as_deref(),
            Some(format!("mirror {}", s.url(&mirror.addr())).as_str()),
            "{name}: the mirror must still be used after one bad answer to its probe: {out}\n{err}"
        );
        assert_eq!(s.proxy.count("path=/v2/v7test-pull"), 0, "{name}: origin was asked: {}", s.proxy.log());
        let report = json(&out);
        assert_eq!(boolean(entry(&report, "mirrors", "url", &s.url(&mirror.addr())), "alive"), Some(true), "{out}");
    }
}

fn dead_mirrors_are_skipped_and_the_next_one_is_used(transport: Transport) {
    let mut s = Setup::over(transport, &[("deadmirror", 1)]);
    let good = s.mirror();
    let image = s.via_proxy("deadmirror");
    let refused = free_port(); // nothing listens
    let silent = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts, never answers
    let silent_port = silent.local_addr().unwrap().port();
    let o = s.proxy.addr();
    let (refused_url, silent_url) =
        (s.url(&format!("127.0.0.1:{refused}")), s.url(&format!("127.0.0.1:{silent_port}")));
    let specs = [format!("{o}={refused_url}"), format!("{o}={silent_url}"), format!("{o}={}", s.url(&good.addr()))];
    let mut args = vec!["pull", "--json", "--image", &image];
    for sp in &specs {
        args.extend(["--registry-mirror", sp]);
    }
    let (ok, out, err, _) = s.xtask.run(&args);
    assert!(ok, "{err}");
    assert_eq!(
        image_string(&out, &image, "source").as_deref(),
        Some(format!("mirror {}", s.url(&good.addr())).as_str()),
        "{out}"
    );
    assert!(err.contains(&format!("mirror {refused_url} is not answering")), "{err}");
    assert!(err.contains(&format!("mirror {silent_url} is not answering")), "{err}");
    // Found dead once, before any pull: no attempt went to them.
    let report = json(&out);
    for url in [&silent_url, &refused_url] {
        let mirror = entry(&report, "mirrors", "url", url);
        assert_eq!(boolean(mirror, "alive"), Some(false), "{out}");
        assert!(string(mirror, "error").is_some(), "{out}");
    }
    assert_eq!(boolean(entry(&report, "mirrors", "url", &s.url(&good.addr())), "alive"), Some(true));
    assert_eq!(image_number(&out, &image, "attempts"), Some(1.0), "{out}");
    drop(silent);
}

#[test]
fn concurrency_is_bounded_by_jobs() {
    let names = [("j1", 1), ("j2", 1), ("j3", 1), ("j4", 1)];
    let mut s = Setup::new(&names);
    let images: Vec<String> = names.iter().map(|(n, _)| s.via_proxy(n)).collect();
    s.proxy.faults(r#"{"delay_ms": 300}"#);
    let mut args = vec!["pull", "--jobs", "2"];
    for i in &images {
        args.extend(["--image", i.as_str()]);
    }
    let (ok, _, err, _) = s.xtask.run(&args);
    assert!(ok, "{err}");
    assert_eq!(s.proxy.max_overlap(), 2, "{}", s.proxy.log());
    for i in &images {
        assert!(image_exists(i));
    }
}

fn ctrl_c_stops_pulls_and_leaves_nothing_half_pulled(transport: Transport) {
    let mut s = Setup::over(transport, &[("slow", 8)]);
    let image = s.via_proxy("slow");
    // The layer blob hangs for 60 s: the pull is mid-way when Ctrl-C comes.
    s.proxy.faults(r#"{"rules": [{"path": "/blobs/", "method": "GET", "action": "delay", "ms": 60000}]}"#);
    let mut child = s.xtask.command(&["pull", "--image", &image]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while s.proxy.count("method=GET&path=/blobs/") == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "the pull never reached the blobs");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if stopped.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("xtask did not stop within 20 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!image_exists(&image), "a half-pulled image was tagged");
    let listed = podman(&["images", "--format", "{{.Repository}}"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&format!("{}/v7test-pull/slow", s.proxy.addr())));
    // No podman pull of ours is left running, and the relay's half-fetched blob is gone.
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&format!("pull {image}")));
    let relay_dir = s.xtask.state.path().join("v7/pull-relay");
    let left: Vec<_> =
        std::fs::read_dir(&relay_dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_deadline_stops_a_pull_that_hangs() {
    let mut s = Setup::new(&[("hung", 1)]);
    let image = s.via_proxy("hung");
    // Every blob hangs for 60 s; the whole pull may take 3 s.
    s.proxy.faults(r#"{"rules": [{"path": "/blobs/", "method": "GET", "action": "delay", "ms": 60000}]}"#);
    let (ok, out, err, _) = s.xtask.run(&["pull", "--json", "--deadline", "3", "--image", &image]);
    assert!(!ok, "{err}");
    assert_eq!(boolean(&json(&out), "ok"), Some(false), "{out}");
    assert_eq!(image_string(&out, &image, "status").as_deref(), Some("failed"), "{out}");
    assert!(err.contains(&format!("  {image}: deadline reached")), "{err}");
    assert!(!image_exists(&image));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&format!("pull {image}")), "a podman pull is still running");
}

#[test]
fn a_terminal_gets_a_live_display_and_a_log_gets_plain_lines() {
    let mut s = Setup::new(&[("live1", 1), ("live2", 1)]);
    let a = s.via_proxy("live1");
    let b = s.via_proxy("live2");
    s.proxy.faults(
        r#"{"delay_ms": 100, "rules": [{"path": "/live2/manifests/", "action": "status", "status": 503, "times": 1}]}"#,
    );
    // A pseudo-terminal from script(1): one line per image, redrawn in place.
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let inner = format!("{xtask} pull --image {a} --image {b}");
    let out = s
        .xtask
        .program("script", &["-qec", &inner, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CI")
        .env("COLUMNS", "200")
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\x1b[2A"), "no redraw of the two lines: {text:?}");
    assert!(text.contains("\x1b[2K"), "{text:?}");
    assert!(text.contains(&format!("{a}: done")) && text.contains(&format!("{b}: done")), "{text:?}");
    assert!(text.contains("[relay: 1 request retried"), "{text:?}");

    // Not a terminal (or NO_COLOR / CI set): plain lines, no escape sequences.
    s.images.remove_now();
    let (ok, out, err, _) = s.xtask.run(&["pull", "--image", &a]);
    assert!(ok, "{err}");
    assert!(!err.contains('\x1b') && !out.contains('\x1b'), "{err:?}");
    assert!(err.contains(&format!("{a}: pulling from")) && err.contains(&format!("{a}: done")), "{err}");
}

#[test]
fn a_loopback_registry_that_speaks_tls_is_pulled_directly() {
    // A real TLS server (openssl s_server, a throwaway self-signed certificate nothing trusts)
    // where a loopback registry is expected to speak plain HTTP: the relay finds out at its
    // first request and asks over TLS, cannot verify the certificate (it never skips that), and
    // the pull goes to podman directly, whose error then names the certificate.
    let dir = TempDir::new("tls");
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = free_port();
    let _server = Proc(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let image = format!("127.0.0.1:{port}/v7test-pull/tls:1");
    let xtask = Xtask::new(&[]);
    let (ok, out, err, _) = xtask.run(&["pull", "--json", "--attempts", "1", "--image", &image]);
    assert!(!ok, "{out}");
    assert!(err.contains("the relay cannot verify its certificate (curl: (60)"), "{err}");
    assert!(err.contains("): pulling directly"), "{err}");
    let last = err.lines().last().unwrap_or("").to_ascii_lowercase();
    assert!(last.contains("certificate") || last.contains("x509"), "{err}");
    assert_eq!(image_number(&out, &image, "attempts"), Some(2.0), "{out}");
    assert!(!image_exists(&image));
}

#[test]
fn an_https_mirror_is_reached_through_an_authenticated_connect_proxy() {
    const SECRET: &str = "v7test-proxy-secret";
    let mut s = Setup::over(Transport::Https, &[("viaproxy", 1), ("viaproxydirect", 1), ("noproxy", 1)]);
    let mirror = s.mirror();
    // Named 0.0.0.0, which Linux connects to 127.0.0.1: podman (Go) and curl never send a
    // loopback name (127.0.0.1, localhost) through a proxy, this one they do.
    let named = format!("0.0.0.0:{}", mirror.port);
    s.xtask.trust(s.ca.as_deref().unwrap(), std::slice::from_ref(&named));
    let tinyproxy = ConnectProxy::start("v7user", SECRET);
    let proxy_url = format!("http://v7user:{SECRET}@127.0.0.1:{}", tinyproxy.port);
    let spec = format!("{}=https://{named}", s.proxy.addr());
    let (image, direct, bypass) = (s.via_proxy("viaproxy"), s.via_proxy("viaproxydirect"), s.via_proxy("noproxy"));
    let pull = |image: &str, extra: &[&str], no_proxy: Option<&str>| {
        let mut args = vec!["pull", "--json", "--registry-mirror", &spec, "--image", image];
        args.extend(extra);
        let mut cmd = s.xtask.command(&args);
        cmd.env("HTTPS_PROXY", &proxy_url).env("https_proxy", &proxy_url).env_remove("NO_PROXY").env_remove("no_proxy");
        if let Some(n) = no_proxy {
            cmd.env("NO_PROXY", n).env("no_proxy", n);
        }
        let out = cmd.output().unwrap();
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        eprintln!("--- xtask {args:?} ({})\n{e}\n{o}", out.status);
        assert!(!o.contains(SECRET) && !e.contains(SECRET), "the proxy password was printed");
        (out.status.success(), o, e)
    };

    // Through the relay: its curl goes through the proxy (the probe, then each request), and a
    // 503 is asked again through it too.
    mirror.faults(r#"{"rules": [{"path": "/viaproxy/manifests/", "action": "status", "status": 503, "times": 1}]}"#);
    let (ok, out, err) = pull(&image, &[], None);
    assert!(ok, "{err}");
    assert_eq!(image_string(&out, &image, "source").as_deref(), Some(format!("mirror https://{named}").as_str()));
    assert_eq!(image_number(&out, &image, "request_retries"), Some(1.0), "{out}");
    assert_eq!(mirror.count("status=503"), 1, "{}", mirror.log());
    let through_relay = tinyproxy.connects_to(&named);
    assert!(through_relay >= 3, "probe, manifest twice, blobs: {through_relay} CONNECTs");
    assert_eq!(s.proxy.count("path=/v2/v7test-pull"), 0, "origin was asked: {}", s.proxy.log());
    assert!(image_exists(&image));

    // podman itself (no relay) goes through the proxy as well.
    let (ok, out, err) = pull(&direct, &["--no-relay"], None);
    assert!(ok, "{err}");
    assert_eq!(image_string(&out, &direct, "source").as_deref(), Some(format!("mirror https://{named}").as_str()));
    assert!(tinyproxy.connects_to(&named) > through_relay, "podman did not go through the proxy");

    // NO_PROXY names the mirror: nothing goes through the proxy.
    let before = tinyproxy.connects_to(&named);
    let (ok, out, err) = pull(&bypass, &[], Some("0.0.0.0"));
    assert!(ok, "{err}");
    assert_eq!(image_string(&out, &bypass, "source").as_deref(), Some(format!("mirror https://{named}").as_str()));
    assert_eq!(tinyproxy.connects_to(&named), before, "NO_PROXY was not honoured");
}

/// HTTPS_PROXY with a wrong password: the proxy answers the CONNECT with 401/407, which is no
/// reason to ask again. The mirror is skipped at once, naming the proxy's credentials as the
/// cause, and the password is printed nowhere.
#[test]
fn a_proxy_that_refuses_the_password_is_named_and_not_asked_again() {
    const WRONG: &str = "v7test-wrong-proxy-secret";
    let mut s = Setup::over(Transport::Https, &[("badproxy", 1)]);
    let mirror = s.mirror();
    let named = format!("0.0.0.0:{}", mirror.port);
    s.xtask.trust(s.ca.as_deref().unwrap(), std::slice::from_ref(&named));
    let tinyproxy = ConnectProxy::start("v7user", "v7test-right-proxy-secret");
    let proxy_url = format!("http://v7user:{WRONG}@127.0.0.1:{}", tinyproxy.port);
    let spec = format!("{}=https://{named}", s.proxy.addr());
    let image = s.via_proxy("badproxy");
    let args = ["pull", "--json", "--registry-mirror", &spec, "--image", &image];
    let mut cmd = s.xtask.command(&args);
    cmd.env("HTTPS_PROXY", &proxy_url).env("https_proxy", &proxy_url).env_remove("NO_PROXY").env_remove("no_proxy");
    let out = cmd.output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    eprintln!("--- xtask {args:?} ({})\n{e}\n{o}", out.status);
    assert!(!o.contains(WRONG) && !e.contains(WRONG), "the proxy password was printed");
    // The mirror is skipped at once, saying why; the image comes from the origin (on loopback,
    // which is never proxied).
    assert!(out.status.success(), "{e}");
    assert!(e.contains("the proxy refused the credentials in HTTPS_PROXY: fix its user or password"), "{e}");
    assert!(!e.contains("probes)"), "a refused proxy login is not probed again: {e}");
    assert_eq!(image_string(&o, &image, "source").as_deref(), Some(s.proxy.addr().as_str()), "{o}");
    assert_eq!(mirror.count("path=/v2/"), 0, "nothing reached the mirror: {}", mirror.log());
}

/// A registry that hands out tokens, as docker.io and ghcr.io do: docker-registry over TLS with
/// `auth.token`, its token service a stand-in (support/tokenserver.py). The relay passes the
/// registry's own `/v2/` challenge on, podman gets its token and pulls through the relay, and the
/// relay's per-request retries (with podman's token) carry the pull over a 503 on `/v2/`, a 503
/// on the manifest and a reset blob, in one attempt.
#[test]
fn a_registry_that_hands_out_tokens_is_pulled_through_the_relay() {
    let ca = std::sync::Arc::new(support::tls::TestCa::new("token"));
    let tokens = TokenServer::start(&ca);
    let registry = Registry::start_with_auth(Some(ca.clone()), &tokens.auth_config("v7test-registry"));
    push_image(&registry, "tok", "1", 1);
    let proxy = Proxy::start(&registry);
    let x = Xtask::new(&[]);
    x.trust(&ca, &[proxy.addr(), registry.addr()]);
    let image = format!("{}/v7test-pull/tok:1", proxy.addr());
    let mut images = Images::default();
    images.add(&image);

    proxy.faults(
        r#"{"rules": [
            {"path": "^/v2/$", "action": "status", "status": 503, "times": 1},
            {"path": "/tok/manifests/", "action": "status", "status": 503, "times": 1},
            {"path": "/tok/blobs/", "action": "reset", "times": 1}
        ]}"#,
    );
    let before = tokens.issued();
    let (ok, out, err, _) = x.run(&["pull", "--json", "--image", &image, "--attempts", "1"]);
    assert!(ok, "{err}");
    assert!(tokens.issued() > before, "podman asked for a token: the challenge reached it");
    assert_eq!(image_number(&out, &image, "attempts"), Some(1.0), "the relay's retries, not the pull's: {out}");
    assert!(
        image_number(&out, &image, "request_retries").unwrap_or(0.0) >= 2.0,
        "manifest and blob asked again: {out}"
    );
    assert_eq!(proxy.count("path=^/v2/$&status=503"), 1, "{}", proxy.log());
    assert_eq!(proxy.count("path=^/v2/$&status=401"), 1, "the challenge was asked once and kept: {}", proxy.log());
    assert!(proxy.count("path=/tok/manifests/&status=200") >= 1, "an authorized manifest request: {}", proxy.log());
    assert_eq!(proxy.count("path=/tok/blobs/&fault=reset"), 1, "{}", proxy.log());
    assert!(image_exists(&image));
}
