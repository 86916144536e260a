//! Registry-free mode, end to end, with real podman and the real xtask binary:
//!
//! 1. `build --registry-free` from nothing makes the debootstrapped base (labels: suite, mirror,
//!    archive date, package count, recipe) and every registry-free image, each what
//!    docker/stack.toml says it is (health check, non-root user, exposed ports, OCI labels);
//! 2. each infrastructure image answers on its ports from ANOTHER container on a test network
//!    (NATS /healthz and a real PUB/SUB round trip, ClickHouse `SELECT 1`, Prometheus ready);
//! 3. each service image starts, passes `podman healthcheck run` and answers /healthz on a
//!    published loopback port; with the infrastructure beside them they become ready, and an
//!    event posted through web travels backend -> NATS -> analytics-engine -> ClickHouse and
//!    comes back in the statistics (computed by the Python component);
//! 4. a second `build --registry-free` finds every image unchanged and builds nothing;
//! 5. deploy (`deploy.rs`): `deploy --registry-free --no-build` starts the stack by dependency
//!    level behind its health checks (without Grafana, and says so), `verify` passes, `status`
//!    shows every service healthy; a second deploy changes nothing; a changed environment
//!    replaces only that service; a killed process and a wedged service come back by themselves;
//!    a new image that never gets healthy is rolled back; a taken port and a duplicate port stop
//!    deploy before it changes anything; the generated passwords appear nowhere; an event
//!    survives `down` + `deploy` (named volumes); `down --volumes` removes all;
//! 6. compose (`compose.rs`): the compose export under Debian's podman-compose 1.0.3 with the
//!    registry-free images, `verify --compose` passes, deploy's `down` leaves it alone, and
//!    `podman-compose down -v` (plus the networks 1.0.3 leaves) removes all of it.
//! 7. kube (`kube.rs`): `export kube --target podman` played with `podman kube play` on the
//!    same images: every service answers, an event is counted, ClickHouse wants the generated
//!    password, every health check passes, then `podman kube down` leaves nothing.
//!
//! One build of everything is slow (minutes), so this is ONE test that runs the phases in order
//! and prints their names and timings. It runs its own copy of docker/stack.toml with project
//! name `v7test-rf` (`V7_STACK_FILE`), so its images are `localhost/v7test-rf-registry-free/...` and its
//! containers, network and volumes `v7test-rf-...`; all of them are removed at the end, also
//! when a phase fails (Drop guard). The xtask's caches under `.v7/registry-free/` are kept.
//!
//! Run: `cargo test -p xtask --features e2e --test registry_free_e2e -- --test-threads=1 --nocapture`

#[path = "../support/mod.rs"]
mod support;

/// Phase 5: deploy converges, keeps what runs, rolls back, supervises health (issue 9).
mod deploy;

/// Phase 6: the compose export under podman-compose, verified, torn down (issue 13).
mod compose;

/// Phase 7: the kube export's podman target under `podman kube play`, torn down (issue 13).
mod kube;

use std::time::{Duration, Instant};

use support::stack::{self, container, image, text, wait_for, Cleanup, Podman, TestStack, PROJECT};
use support::{http_get, http_request};

const INFRA: &[&str] = &["nats", "clickhouse", "prometheus"];
/// Service -> the container port of its HTTP /healthz.
const SERVICES: &[(&str, u16)] = &[("analytics-engine", 9100), ("backend", 3000), ("web", 3000)];

fn phase(name: &str) -> Instant {
    eprintln!("\n== {name}");
    Instant::now()
}

#[test]
fn registry_free_mode_builds_and_runs_every_image_from_nothing() {
    let stack = TestStack::new();
    let podman = Podman::new(&stack.dir);
    let suite = stack.project("debian_suite");
    let base = format!("localhost/{PROJECT}-registry-free/base:{suite}");
    let cleanup = Cleanup { podman: &podman, suite: suite.clone() };
    // Leftovers of an interrupted earlier run would make "from nothing" a lie.
    cleanup.run();
    assert!(!podman.output(&["image", "exists", &base]).status.success(), "{base} is still here after cleanup");
    let mut timings: Vec<(String, f64)> = Vec::new();

    // ------------------------------------------------------------------------------------------
    let t = phase("phase 1: `build --registry-free` from nothing (base + every image)");
    let (ok, out, secs) = stack.xtask(&["build", "--registry-free"]);
    assert!(ok, "build --registry-free failed (logs in .v7/build/):\n{out}");
    timings.push(("first build --registry-free".into(), secs));
    // The xtask has written the containers.conf this host needs; the test's podman uses it.
    let podman = Podman::new(&stack.dir);
    let cleanup = Cleanup { podman: &podman, suite: suite.clone() };
    check_base(&podman, &stack, &base);
    let registry_free = stack.registry_free_services();
    assert!(registry_free.len() >= 6, "expected the infrastructure and the three services: {registry_free:?}");
    for svc in &registry_free {
        assert!(podman.output(&["image", "exists", &image(svc)]).status.success(), "{} was not built", image(svc));
        assert_eq!(podman.label(&image(svc), "v7.mode"), "registry-free", "{svc}");
        assert!(!podman.label(&image(svc), "v7.inputs").is_empty(), "{svc}: no v7.inputs label");
    }
    for (svc, _) in SERVICES {
        check_service_image(&podman, &stack, svc);
    }
    eprintln!("phase 1 ok in {:.0} s", t.elapsed().as_secs_f64());

    // ------------------------------------------------------------------------------------------
    let t = phase("phase 2: infrastructure answers from another container on network v7test-rf-probe");
    let network = format!("{PROJECT}-probe");
    podman.ok(&["network", "create", &network]);
    for svc in INFRA {
        run_like_the_stack(&podman, &stack, svc, &network);
    }
    let script = r#"
set -u
get() { # host port path: the whole HTTP/1.0 response
  exec 3<>"/dev/tcp/$1/$2" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
  cat <&3
  exec 3<&-
}
retry() { # what host port path pattern-of-the-last-body-line
  local i out last
  for i in $(seq 1 120); do
    out=$(get "$2" "$3" "$4" 2>/dev/null) || out=
    last=$(printf '%s' "$out" | tail -n1 | tr -d '\r')
    case "$out" in
      "HTTP/1."?" 200 "*) case "$last" in $5) echo "ok $1: $(printf '%s' "$out" | head -n1 | tr -d '\r') | $last"; return 0 ;; esac ;;
    esac
    sleep 1
  done
  echo "FAIL $1: $2:$3$4 never answered 200 with a body matching '$5'; last: $(printf '%s' "$out" | head -n1) | $last"; return 1
}
nats_pubsub() { # a real round trip: SUB, PUB, the MSG comes back, then PONG
  local line got=""
  exec 4<>/dev/tcp/nats/4222 || return 1
  read -r -t 5 line <&4 && echo "nats banner: ${line:0:60}..."
  case "$line" in INFO*) ;; *) echo "FAIL nats: no INFO banner"; return 1 ;; esac
  printf 'CONNECT {"verbose":false,"pedantic":false,"name":"v7test-rf"}\r\nSUB v7test.rf 1\r\nPUB v7test.rf 11\r\nhello-probe\r\nPING\r\n' >&4
  while read -r -t 5 line <&4; do
    line=${line%$'\r'}
    got="$got|$line"
    [ "$line" = PONG ] && break
  done
  exec 4<&-
  case "$got" in
    *"|MSG v7test.rf 1 11|hello-probe|"*PONG) echo "ok nats pub/sub: $got" ;;
    *) echo "FAIL nats pub/sub: $got"; return 1 ;;
  esac
}
rc=0
retry nats-monitor nats 8222 /healthz '*"ok"*' || rc=1
( nats_pubsub ) || rc=1
retry clickhouse-select-1 clickhouse 8123 '/?query=SELECT%201' 1 || rc=1
retry prometheus-ready prometheus 9090 /-/ready '*Ready*' || rc=1
exit $rc
"#;
    let out = podman.output(&[
        "run",
        "--rm",
        "--name",
        &container("client"),
        "--network",
        &network,
        &base,
        "timeout",
        "300",
        "bash",
        "-c",
        script,
    ]);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("{report}");
    if !out.status.success() {
        for svc in INFRA {
            eprintln!("--- logs of {}:\n{}", container(svc), podman.logs_tail(&container(svc)));
        }
        panic!("an infrastructure image did not answer from the probe container:\n{report}");
    }
    for svc in INFRA {
        healthy(&podman, &container(svc));
    }
    timings.push(("infrastructure answering".into(), t.elapsed().as_secs_f64()));

    // ------------------------------------------------------------------------------------------
    let t = phase("phase 3: service images start, are healthy, and work together");
    for (svc, _) in SERVICES {
        run_like_the_stack(&podman, &stack, svc, &network);
    }
    let mut ports = Vec::new();
    for (svc, health_port) in SERVICES {
        let c = container(svc);
        healthy(&podman, &c);
        let port = podman.host_port(&c, *health_port);
        let (code, body) = http_get(port, "/healthz").unwrap_or_else(|e| panic!("{svc} /healthz: {e}"));
        assert_eq!(code, 200, "{svc}: GET /healthz from the host answered {code}: {body}");
        eprintln!("ok {svc}: healthcheck run exit 0; GET 127.0.0.1:{port}/healthz -> {code} {}", body.trim());
        let uid = podman.ok(&["exec", &c, "id", "-u"]);
        assert_ne!(uid, "0", "{svc} runs as root");
        ports.push((*svc, port));
    }
    let port_of = |s: &str| ports.iter().find(|(n, _)| *n == s).unwrap().1;
    for svc in ["analytics-engine", "backend"] {
        let r = wait_for(Duration::from_secs(120), || match http_get(port_of(svc), "/readyz") {
            Ok((200, b)) => Ok(b),
            Ok((c, b)) => Err(format!("{c} {b}")),
            Err(e) => Err(e),
        });
        match r {
            Ok(b) => eprintln!("ok {svc}: /readyz -> 200 {}", b.trim()),
            Err(e) => panic!("{svc} never became ready: {e}\n--- logs:\n{}", podman.logs_tail(&container(svc))),
        }
    }
    let web = port_of("web");
    let (code, body) = http_get(web, "/").unwrap();
    assert!(code == 200 && body.contains("<html"), "web / answered {code}: {body:.200}");
    let (code, body) = http_get(web, "/api/backend/healthz").unwrap();
    assert_eq!(code, 200, "web -> backend (nginx resolver from resolv.conf) answered {code}: {body}");
    let (code, body) =
        http_request(web, "POST", "/api/events", Some(r#"{"kind":"rf_e2e","value":42,"source":"registry-free-e2e"}"#))
            .unwrap();
    assert_eq!(code, 202, "POST /api/events through web answered {code}: {body}");
    let stats = wait_for(Duration::from_secs(60), || match http_get(web, "/api/stats?kind=rf_e2e") {
        Ok((200, b)) if b.contains("\"kind\":\"rf_e2e\"") => Ok(b),
        Ok((c, b)) => Err(format!("{c} {b}")),
        Err(e) => Err(e),
    })
    .unwrap_or_else(|e| {
        panic!(
            "the event never came back in /api/stats: {e}\n--- analytics-engine:\n{}",
            podman.logs_tail(&container("analytics-engine"))
        )
    });
    eprintln!(
        "ok event round trip web -> backend -> NATS -> analytics-engine -> ClickHouse -> stats: {}",
        stats.trim()
    );
    timings.push(("services healthy and ready".into(), t.elapsed().as_secs_f64()));

    // ------------------------------------------------------------------------------------------
    phase("phase 4: a second `build --registry-free` rebuilds nothing");
    let (ok, out, secs) = stack.xtask(&["build", "--registry-free"]);
    assert!(ok, "second build --registry-free failed:\n{out}");
    timings.push(("no-op build --registry-free".into(), secs));
    assert!(out.contains(&format!("base: {base} is here")), "the base was made again:\n{out}");
    for svc in &registry_free {
        assert!(
            out.contains(&format!("{svc}: unchanged since {}", image(svc))),
            "{svc} is not reported unchanged:\n{out}"
        );
        assert!(!out.contains(&format!("{svc}: building")), "{svc} was rebuilt:\n{out}");
    }
    assert!(!out.contains("fetching on the host"), "dependencies were fetched again:\n{out}");

    // ------------------------------------------------------------------------------------------
    deploy::converges(&stack, &podman, &registry_free, &mut timings);

    // ------------------------------------------------------------------------------------------
    compose::compose_phase(&stack, &podman, &registry_free, &mut timings);

    // ------------------------------------------------------------------------------------------
    kube::kube_phase(&mut timings);

    eprintln!("\n== timings");
    for (what, secs) in &timings {
        eprintln!("{what:>28}: {secs:6.1} s");
    }
    eprintln!(
        "\n== image sizes\n{}",
        podman.ok(&["images", "--filter", &format!("reference=localhost/{PROJECT}-registry-free/*")])
    );
    drop(cleanup);
}

/// The base's labels record what it was made from.
fn check_base(podman: &Podman, stack: &TestStack, base: &str) {
    let label = |k: &str| podman.label(base, &format!("org.v7.base.{k}"));
    assert_eq!(label("suite"), stack.project("debian_suite"));
    assert_eq!(label("mirror"), stack.project("debian_mirror"));
    let date = label("archive-date");
    assert!(date.len() >= 10 && date.contains(" 20"), "archive-date label {date:?} is not an archive date");
    let packages: u32 = label("packages").parse().unwrap_or_else(|_| panic!("packages label {:?}", label("packages")));
    assert!((40..2000).contains(&packages), "a minbase has {packages} packages?");
    assert!(label("recipe").starts_with("v7-base-"), "recipe label {:?}", label("recipe"));
    eprintln!(
        "ok base {base}: suite {}, mirror {}, archive date {date}, {packages} packages, recipe {}",
        label("suite"),
        label("mirror"),
        label("recipe")
    );
}

/// A service image is what docker/stack.toml and its production recipe say it is.
fn check_service_image(podman: &Podman, stack: &TestStack, svc: &str) {
    let img = image(svc);
    let test: Vec<String> = stack.healthcheck_test(svc).iter().map(|a| format!("\"{a}\"")).collect();
    let expected = format!("[\"CMD\",{}]", test.join(","));
    assert_eq!(
        podman.inspect(&img, "{{json .Config.Healthcheck.Test}}"),
        expected,
        "{svc}: HEALTHCHECK differs from docker/stack.toml"
    );
    let user = podman.inspect(&img, "{{.Config.User}}");
    assert!(!user.is_empty() && user != "root" && user != "0", "{svc}: runs as {user:?}");
    let exposed = podman.inspect(&img, "{{json .Config.ExposedPorts}}");
    for p in stack.container_ports(svc) {
        assert!(exposed.contains(&format!("\"{p}/tcp\"")), "{svc}: port {p} is not exposed: {exposed}");
    }
    // The OCI labels of the production recipe (those without build-time variables).
    let production = stack.service(svc)["build"]["dockerfile"].as_str().unwrap();
    let recipe = std::fs::read_to_string(stack::root().join(production)).unwrap();
    for (i, _) in recipe.match_indices("org.opencontainers.image.") {
        let rest = &recipe[i..];
        let Some((key, after)) = rest.split_once("=\"") else { continue };
        let Some((value, _)) = after.split_once('"') else { continue };
        if !value.contains('$') && !key.contains(char::is_whitespace) {
            assert_eq!(podman.label(&img, key), value, "{svc}: label {key} differs from {production}");
        }
    }
    eprintln!("ok {img}: HEALTHCHECK {expected}, USER {user}, EXPOSE {exposed}, OCI labels as {production}");
}

/// Runs a service's image as docker/stack.toml describes it (command, environment, config
/// files, named volumes under the test's prefix), on `network` under the service's name, with
/// its container ports published on random loopback ports.
fn run_like_the_stack(podman: &Podman, stack: &TestStack, svc: &str, network: &str) {
    let name = container(svc);
    let mut args: Vec<String> = ["run", "-d", "--name", &name, "--network", network, "--network-alias", svc]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // No systemd here: the test runs the health checks itself (`podman healthcheck run`).
    args.extend(["--health-interval".to_string(), "disable".to_string()]);
    // The stack's secrets are deploy's to make (phase 5 checks them): here ClickHouse runs
    // without its password drop-in, so nothing points at a secret file either.
    for (k, v) in stack.environment(svc).into_iter().filter(|(_, v)| !v.starts_with("/run/secrets/")) {
        args.extend(["-e".to_string(), format!("{k}={v}")]);
    }
    for p in stack.container_ports(svc) {
        args.extend(["-p".to_string(), format!("127.0.0.1::{p}")]);
    }
    if let Some(vols) = stack.service(svc).get("volumes").and_then(|v| v.as_array()) {
        for v in vols {
            let v = v.as_str().unwrap();
            let mount = match v.strip_prefix("./") {
                Some(rel) => format!("{}/{rel}", stack::root().display()),
                None => format!("{PROJECT}-{v}"),
            };
            args.extend(["-v".to_string(), mount]);
        }
    }
    args.push(image(svc));
    if let Some(cmd) = stack.service(svc).get("command").and_then(|c| c.as_array()) {
        args.extend(cmd.iter().map(|a| a.as_str().unwrap().to_string()));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    podman.ok(&refs);
    eprintln!("started {name} ({})", image(svc));
}

/// `podman healthcheck run` returns 0 within a minute (the image's own HEALTHCHECK).
fn healthy(podman: &Podman, c: &str) {
    let r = wait_for(Duration::from_secs(60), || {
        let out = podman.output(&["healthcheck", "run", c]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("exit {}: {}{}", out.status, text(&out.stdout).trim(), text(&out.stderr).trim()))
        }
    });
    if let Err(e) = r {
        panic!("{c} never became healthy: {e}\n--- logs:\n{}", podman.logs_tail(c));
    }
    eprintln!("ok {c}: podman healthcheck run -> healthy");
}
