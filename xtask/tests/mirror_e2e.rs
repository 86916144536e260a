//! `cargo xtask build --mirror` proven against live package mirrors (`support/mirrors.rs`):
//! apt-cacher-ng (apt), Verdaccio (npm), proxpi (pip) and a sparse-registry cache of crates.io
//! (`support/cargo_mirror.py`, cargo), on the host, reached from builds at
//! `host.containers.internal`. Each assertion reads the mirror's own log: the build's packages
//! are in it after `build --mirror ...`, and not after the same build without `--mirror`.
//! Builds: a registry-free recipe (`docker/nats/Dockerfile.registry-free`, on the registry-free
//! base the xtask debootstraps) and a Debian fixture on that base that uses apt, pip, npm and
//! cargo. Also `cargo xtask mirrors` with a live, a slow (faultproxy.py delay) and a dead
//! (closed port) mirror. Run with:
//!   cargo test -p xtask --features e2e --test mirror_e2e -- --test-threads=1 --nocapture
//! Everything is named `v7test-b-mirror...`; images are removed by that project's label.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use support::mirrors::{self, Mirror};
use support::registry::Proxy;
use support::stack::{remove_project_images, root, Podman};
use support::*;

const PROJECT: &str = "v7test-b-mirror";

/// The state directory of the test's xtask runs: kept between runs (debootstrap's packages).
fn state_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("v7-mirror-e2e-state")
}

/// The real xtask with `stack` as its stack file; (success, stdout + stderr).
fn xtask(stack: &Path, args: &[&str]) -> (bool, String) {
    eprintln!("$ V7_STACK_FILE={} xtask {}", stack.display(), args.join(" "));
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .current_dir(root())
        .env("V7_STACK_FILE", stack)
        .env("V7_STATE_DIR", state_dir())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for v in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    eprintln!("{all}  => {} after {:.1} s", out.status, start.elapsed().as_secs_f64());
    (out.status.success(), all)
}

/// docker/stack.toml under the test's project name.
fn registry_free_stack(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("docker/stack.toml")).unwrap();
    let text = text.replacen("name = \"v7\"", &format!("name = \"{PROJECT}\""), 1);
    assert!(text.contains(&format!("name = \"{PROJECT}\"")), "docker/stack.toml's [project] name is not \"v7\"");
    let file = dir.join("stack-registry-free.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The host's cargo (the toolchain's binary, not rustup's proxy): it needs only glibc, so the
/// fixture gets a cargo with sparse registries (1.68+) without apt. Debian bookworm's `cargo`
/// is 0.66 (no sparse protocol) and `cargo-web` is 174 MB of packages.
fn host_cargo() -> PathBuf {
    let out = Command::new("rustup").args(["which", "cargo"]).output();
    let p = match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string())),
    };
    assert!(p.is_file(), "no cargo binary at {}", p.display());
    p
}

/// npm's own tarball (self-contained), fetched once on the host: Debian's `npm` is 387 packages.
fn npm_tarball() -> PathBuf {
    let dir = mirrors::tools_dir();
    let tgz = dir.join("npm-10.9.2.tgz");
    if !tgz.is_file() {
        let out = Command::new("npm").args(["pack", "npm@10.9.2", "--pack-destination"]).arg(&dir).output().unwrap();
        assert!(out.status.success() && tgz.is_file(), "npm pack npm@10.9.2: {}", String::from_utf8_lossy(&out.stderr));
    }
    tgz
}

/// The Debian fixture: apt installs python3-pip and nodejs, then pip, npm and cargo each fetch
/// one small package. Without a mirror pip, npm and cargo cannot verify HTTPS from a build on
/// these machines (the host's extra CA), so each of those steps notes its failure instead of
/// failing the build: the build without `--mirror` still runs every step, and the image says
/// which worked.
fn fixture_stack(dir: &Path, base: &str) -> PathBuf {
    let ctx = dir.join("fixture");
    std::fs::create_dir_all(ctx.join("fx/src")).unwrap();
    std::fs::copy(host_cargo(), ctx.join("cargo")).unwrap();
    std::fs::copy(npm_tarball(), ctx.join("npm.tgz")).unwrap();
    std::fs::write(
        ctx.join("fx/Cargo.toml"),
        "[package]\nname = \"fx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.11\"\n",
    )
    .unwrap();
    std::fs::write(ctx.join("fx/src/lib.rs"), "").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             COPY cargo /usr/local/bin/cargo\n\
             COPY npm.tgz /opt/npm.tgz\n\
             COPY fx /fx\n\
             RUN apt-get update && apt-get install -y --no-install-recommends python3-pip nodejs && rm -rf /var/lib/apt/lists/*\n\
             RUN mkdir /opt/npm && tar -xzf /opt/npm.tgz -C /opt/npm --strip-components=1 && ln -s /opt/npm/bin/npm-cli.js /usr/local/bin/npm\n\
             RUN pip install --break-system-packages --no-cache-dir --retries 0 --timeout 30 six==1.17.0 && touch /pip.ok || echo pip-failed\n\
             RUN cd /fx && npm install --fetch-retries=0 --no-audit --no-fund is-number@7.0.0 && touch /npm.ok || echo npm-failed\n\
             RUN cd /fx && CARGO_NET_RETRY=0 cargo vendor --respect-source-config vendor && touch /cargo.ok || echo cargo-failed\n"
        ),
    )
    .unwrap();
    let file = dir.join("stack-fixture.toml");
    std::fs::write(
        &file,
        format!(
            "[project]\nname = \"{PROJECT}\"\nmode = \"registry\"\n\n[services.fixture]\n\
             image = \"localhost/{PROJECT}/fixture:1\"\nbuild = {{ context = \"{}\", dockerfile = \"{}\" }}\n",
            ctx.display(),
            ctx.join("Dockerfile").display()
        ),
    )
    .unwrap();
    file
}

/// Removes every image of the test's project (by its label, `rmi --no-prune`) on drop.
struct Cleanup(Podman);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let left = remove_project_images(&self.0, PROJECT);
        eprintln!("== cleanup: images of {PROJECT} removed; left: {left:?}");
    }
}

/// What each mirror's log shows of the builds' packages.
struct Seen {
    nats_deb: usize,
    security_index: usize,
    pip_deb: usize,
    six_wheel: usize,
    is_number_tgz: usize,
    itoa_index: usize,
    itoa_crate: usize,
}

fn seen(apt: &Mirror, npm: &Mirror, pip: &Mirror, cargo: &Mirror) -> Seen {
    let s = Seen {
        nats_deb: apt.logged("/nats-server_").len(),
        security_index: apt.logged("debian-security/dists/bookworm-security/").len(),
        pip_deb: apt.logged("/python3-pip_").len(),
        six_wheel: pip.logged("GET /index/six/six-1.17.0-py2.py3-none-any.whl").len(),
        is_number_tgz: npm.logged("GET /is-number/-/is-number-7.0.0.tgz").len(),
        itoa_index: cargo.logged("GET /index/it/oa/itoa 200").len(),
        itoa_crate: cargo.logged("GET /dl/itoa/1.0.11/download 200").len(),
    };
    eprintln!(
        "mirror logs: nats-server .deb {}, bookworm-security index {}, python3-pip .deb {}, six wheel {}, \
         is-number tarball {}, itoa index {}, itoa crate {}",
        s.nats_deb, s.security_index, s.pip_deb, s.six_wheel, s.is_number_tgz, s.itoa_index, s.itoa_crate
    );
    s
}

/// Which of the fixture's package steps worked, as the image says.
fn fixture_results(p: &Podman, image: &str) -> String {
    let name = unique("b-mirror-check");
    let out = p.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        image,
        "sh",
        "-c",
        "for f in pip npm cargo; do [ -e /$f.ok ] && echo $f=ok || echo $f=failed; done; \
         python3 -c 'import six; print(\"six\", six.__version__)' 2>/dev/null; \
         cat /fx/node_modules/is-number/package.json 2>/dev/null | grep '\"version\"'; ls /fx/vendor 2>/dev/null",
    ]);
    eprintln!("fixture image says:\n{out}");
    out
}

#[test]
fn builds_go_through_the_mirrors_only_with_mirror() {
    let t0 = Instant::now();
    let dir = TempDir::new("b-mirror");
    // Removing images needs no containers.conf; running the fixture does (below).
    let _cleanup = Cleanup(Podman::new(dir.path()));
    let (apt, npm, pip, cargo) =
        (mirrors::apt_cacher_ng(), mirrors::verdaccio(), mirrors::proxpi(), mirrors::cargo_mirror());
    eprintln!(
        "mirrors up after {:.1} s: apt-cacher-ng :{}, verdaccio :{}, proxpi :{}, cargo :{}",
        t0.elapsed().as_secs_f64(),
        apt.port,
        npm.port,
        pip.port,
        cargo.port
    );
    let rf_stack = registry_free_stack(dir.path());
    let base = format!("localhost/{PROJECT}-registry-free/base:bookworm");
    let fx_stack = fixture_stack(dir.path(), &base);
    let spec = format!(
        "apt={},npm={},pip={},cargo=sparse+{}",
        apt.for_builds("/deb.debian.org/debian"),
        npm.for_builds("/"),
        pip.for_builds("/index/"),
        cargo.for_builds("/index/")
    );

    // Without --mirror: the registry-free base (debootstrap, direct from deb.debian.org), nats,
    // and the fixture; no mirror sees any of their packages.
    let (ok, out) = xtask(&rf_stack, &["build", "--registry-free", "--force", "nats"]);
    assert!(ok, "registry-free nats without --mirror:\n{out}");
    let (ok, out) = xtask(&fx_stack, &["build", "--force", "fixture"]);
    assert!(ok, "fixture without --mirror:\n{out}");
    // podman as the xtask runs it here (runtime, ulimits), from the conf it just wrote.
    let podman = Podman::of_state_dir(&state_dir(), dir.path());
    let image = format!("localhost/{PROJECT}/fixture:1");
    let direct = fixture_results(&podman, &image);
    // On these machines pip, npm and cargo cannot verify HTTPS from a build, so those steps
    // fail here; where containers can (a CI runner), they succeed directly. Either way no
    // mirror may have served them, which is what the logs below show.
    eprintln!("without --mirror the package steps say: {}", direct.replace('\n', " "));
    let before = seen(&apt, &npm, &pip, &cargo);
    assert_eq!(
        (before.nats_deb, before.security_index, before.pip_deb),
        (0, 0, 0),
        "apt-cacher-ng served a build without --mirror:\n{}",
        apt.log_text()
    );
    assert_eq!(
        before.six_wheel + before.is_number_tgz + before.itoa_index + before.itoa_crate,
        0,
        "a mirror served a build without --mirror"
    );
    assert!(npm.logged("is-number").is_empty(), "verdaccio:\n{}", npm.log_text());
    assert!(pip.logged("/index/six").is_empty(), "proxpi:\n{}", pip.log_text());
    assert!(cargo.log_text().is_empty(), "cargo mirror:\n{}", cargo.log_text());

    // With --mirror: the registry-free recipe's apt (main and security archives) goes through
    // apt-cacher-ng; the fixture's apt, pip, npm and cargo through their mirrors.
    let apt_only = format!("apt={}", apt.for_builds("/deb.debian.org/debian"));
    let (ok, out) = xtask(&rf_stack, &["build", "--registry-free", "--mirror", &apt_only, "nats"]);
    assert!(ok, "registry-free nats with --mirror:\n{out}");
    assert!(out.contains("rewritten for package mirrors --mirror apt=") && out.contains("(apt)"), "{out}");
    let (ok, out) = xtask(&fx_stack, &["build", "--mirror", &spec, "fixture"]);
    assert!(ok, "fixture with --mirror:\n{out}");
    assert!(out.contains("(apt, pip, npm, cargo)"), "each manager redirected: {out}");
    let through = fixture_results(&podman, &image);
    for want in ["pip=ok", "npm=ok", "cargo=ok", "six 1.17.0", "\"version\": \"7.0.0\"", "itoa"] {
        assert!(through.contains(want), "{want} missing from the image built through the mirrors: {through}");
    }
    let after = seen(&apt, &npm, &pip, &cargo);
    assert!(after.nats_deb >= 1, "nats-server's .deb not in apt-cacher-ng's log:\n{}", apt.log_text());
    assert!(after.security_index >= 1, "bookworm-security not fetched through the mirror:\n{}", apt.log_text());
    assert!(after.pip_deb >= 1, "python3-pip's .deb not in apt-cacher-ng's log:\n{}", apt.log_text());
    assert!(after.six_wheel >= 1, "six's wheel not in proxpi's log:\n{}", pip.log_text());
    assert!(after.is_number_tgz >= 1, "is-number's tarball not in verdaccio's log:\n{}", npm.log_text());
    assert!(
        after.itoa_index >= 1 && after.itoa_crate >= 1,
        "itoa not in the cargo mirror's log:\n{}",
        cargo.log_text()
    );
    let clients: Vec<String> =
        apt.logged("/nats-server_").iter().filter_map(|l| l.split('|').nth(3).map(str::to_string)).collect();
    assert!(clients.iter().all(|c| c != "127.0.0.1"), "the build, not the host, fetched nats-server: {clients:?}");
    eprintln!("live mirror test: {:.1} s", t0.elapsed().as_secs_f64());
}

/// `cargo xtask mirrors` and `build --mirror auto` with a live mirror, the same mirror behind a
/// 1.5 s delay, and a closed port: the live one is chosen, the dead one costs at most the timeout.
#[test]
fn auto_picks_the_live_mirror_over_a_slow_and_a_dead_one() {
    let dir = TempDir::new("b-mirror-auto");
    let live = mirrors::cargo_mirror();
    let slow = Proxy::start_with(&format!("127.0.0.1:{}", live.port), None, &["--delay-ms", "1500"]);
    let dead = free_port();
    let stack = dir.path().join("stack.toml");
    std::fs::write(
        &stack,
        format!(
            "[project]\nname = \"{PROJECT}-auto\"\nmode = \"registry\"\n\n[package_mirrors]\ndefault_preset = \"live\"\n\n\
             [package_mirrors.presets.live]\ncargo = \"sparse+http://127.0.0.1:{}/index/\"\n\n\
             [package_mirrors.presets.slow]\ncargo = \"sparse+http://127.0.0.1:{}/index/\"\n\n\
             [package_mirrors.presets.dead]\ncargo = \"sparse+http://127.0.0.1:{dead}/index/\"\n",
            live.port, slow.port
        ),
    )
    .unwrap();
    let start = Instant::now();
    let (ok, out) = {
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["mirrors", "--timeout", "3", "--json"])
            .current_dir(root())
            .env("V7_STACK_FILE", &stack)
            .env("V7_STATE_DIR", dir.path().join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(ok, "cargo xtask mirrors:\n{out}");
    assert!(secs < 8.0, "a dead mirror cost more than the 3 s timeout (+ the origins): {secs:.1} s");
    let doc = json(&out);
    let row = |port: u16| {
        items(&doc, "mirrors")
            .iter()
            .find(|m| string(m, "url").is_some_and(|u| u.contains(&format!(":{port}/"))))
            .unwrap_or_else(|| panic!("no row for port {port}: {out}"))
            .clone()
    };
    let (l, s, d) = (row(live.port), row(slow.port), row(dead));
    assert_eq!(boolean(&l, "ok"), Some(true), "{out}");
    assert_eq!(boolean(&s, "ok"), Some(true), "slow but reachable: {out}");
    assert!(number(&s, "seconds").unwrap() >= 1.4, "the delay shows: {out}");
    assert_eq!(boolean(&d, "ok"), Some(false), "{out}");
    let chosen = field(&doc, "auto").and_then(|a| string(a, "cargo"));
    let live_url = format!("sparse+http://127.0.0.1:{}/index/", live.port);
    // crates.io itself is a candidate too ("origin"): over HTTPS only its TCP connection is
    // timed (counted twice), a few ms here, which may beat the live mirror's first answer. Then
    // no mirror is taken, rightly; the slow and the dead one never are.
    let origin = items(&doc, "mirrors")
        .iter()
        .find(|m| string(m, "url").as_deref() == Some("sparse+https://index.crates.io/"))
        .cloned()
        .unwrap_or_else(|| panic!("no origin row: {out}"));
    let origin_won =
        chosen.is_none() && number(&origin, "seconds").is_some_and(|o| o <= number(&l, "seconds").unwrap_or(f64::MAX));
    assert!(chosen.as_deref() == Some(live_url.as_str()) || origin_won, "live {live_url} or the faster origin: {out}");
    assert!(
        live.logged("HEAD /index/config.json").len() >= 2,
        "both probes reached the live mirror:\n{}",
        live.log_text()
    );

    // `build --mirror auto --dry-run` says what it chose and rewrites with it.
    let ctx = dir.path().join("svc");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM localhost/v7test-b-mirror-none:1\nRUN cargo fetch\n").unwrap();
    let mut text = std::fs::read_to_string(&stack).unwrap();
    text = text.replacen(
        "\n[package_mirrors]",
        &format!(
            "\n[services.svc]\nimage = \"localhost/{PROJECT}-auto/svc:1\"\nbuild = {{ context = \"{}\", dockerfile = \"{}\" }}\n\n[package_mirrors]",
            ctx.display(),
            ctx.join("Dockerfile").display()
        ),
        1,
    );
    std::fs::write(&stack, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "--mirror", "auto", "--dry-run", "svc"])
        .current_dir(root())
        .env("V7_STACK_FILE", &stack)
        .env("V7_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    eprintln!("{all}");
    assert!(o.status.success(), "build --mirror auto --dry-run: {all}");
    let wanted = format!("'registry = \"{live_url}\"'");
    if all.contains("--mirror auto: cargo: the origin") {
        assert!(!all.contains("'registry = "), "the origin was fastest this time: no cargo rewrite: {all}");
    } else {
        assert!(all.contains(&format!("--mirror auto: cargo: {live_url} (live,")), "auto says what it chose: {all}");
        assert!(all.contains(&wanted), "the rewrite uses the live mirror ({wanted}): {all}");
    }
    assert!(!all.contains("(slow,") && !all.contains("(dead,"), "never the slow or the dead one: {all}");
}
