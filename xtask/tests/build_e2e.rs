//! `cargo xtask build` with real podman on tiny local fixtures: a base image made with
//! `podman import` of a few host binaries (dash as /bin/sh, sleep, their libraries; no registry
//! is reachable here) and Dockerfiles of one or two RUN steps. Run with:
//!   cargo test -p xtask --features e2e --test build_e2e
//! Everything is named `v7test-build-PID-N...` and removed on drop, even when a test fails:
//! images by name and by the project label (`rmi --no-prune`, never a prune), working
//! containers on the test's base by ID, and only the processes the test saw its xtask start.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// One test at a time: each removes its images when it ends, and podman's store changing under
/// another test's build fails that build ("layer not known"), which is what the xtask retries,
/// not what these tests are about.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A base image, a project name and a stack file of services built on it.
struct Fixture {
    _serial: std::sync::MutexGuard<'static, ()>,
    dir: TempDir,
    project: String,
    base: String,
    stack: PathBuf,
    /// Processes to kill on drop if a test failed before they ended.
    pids: Vec<u32>,
}

impl Fixture {
    /// `services`: (name, the Dockerfile's lines after FROM).
    fn new(tag: &str, services: &[(&str, &str)]) -> Fixture {
        Fixture::with_programs(tag, services, &[])
    }

    /// [`Fixture::new`] with more host programs in the base (`/usr/bin/curl`), libraries included.
    fn with_programs(tag: &str, services: &[(&str, &str)], programs: &[&str]) -> Fixture {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let project = unique(&format!("build-{tag}"));
        let dir = TempDir::new(&format!("build-{tag}"));
        let base = format!("localhost/{project}-base:1");
        let root = dir.path().join("rootfs");
        for d in ["bin", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut libs = Vec::new();
        let mut copies =
            vec![("/bin/dash".to_string(), "bin/sh".to_string()), ("/bin/sleep".into(), "bin/sleep".into())];
        copies.extend(programs.iter().map(|p| (p.to_string(), format!("bin/{}", p.rsplit('/').next().unwrap()))));
        for (from, to) in &copies {
            std::fs::copy(from, root.join(to)).unwrap_or_else(|e| panic!("{from}: {e}"));
            let ldd = Command::new("ldd").arg(from).output().unwrap();
            assert!(ldd.status.success(), "ldd {from}");
            for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
                if word.starts_with('/') && !libs.contains(&word.to_string()) {
                    libs.push(word.to_string());
                }
            }
        }
        for lib in &libs {
            let target = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(lib, &target).unwrap();
        }
        let tar = dir.path().join("rootfs.tar");
        let ok = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(ok.success());
        let out = podman(&["import", tar.to_str().unwrap(), &base]);
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
        let mut stack = format!("[project]\nname = \"{project}\"\nmode = \"registry\"\n");
        for (name, body) in services {
            let ctx = dir.path().join(name);
            std::fs::create_dir_all(&ctx).unwrap();
            std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\n{body}\n")).unwrap();
            stack.push_str(&format!(
                "\n[services.{name}]\nimage = \"localhost/{project}/{name}:1\"\nbuild = {{ context = \"{}\", dockerfile = \"{}\" }}\n",
                ctx.display(),
                ctx.join("Dockerfile").display()
            ));
        }
        let file = dir.path().join("stack.toml");
        std::fs::write(&file, stack).unwrap();
        Fixture { _serial: serial, dir, project, base, stack: file, pids: Vec::new() }
    }

    fn image(&self, service: &str) -> String {
        format!("localhost/{}/{service}:1", self.project)
    }

    fn xtask(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .env("V7_STACK_FILE", &self.stack)
            .env("V7_STATE_DIR", self.dir.path().join("state"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for v in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            c.env_remove(v);
        }
        c
    }

    /// Runs the xtask to its end: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with(args, &[])
    }

    /// [`Fixture::run`] with more environment.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        eprintln!("$ xtask {}", args.join(" "));
        let mut cmd = self.xtask(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        eprintln!("{stderr}{stdout}  => {}", out.status);
        (out.status.success(), stdout, stderr)
    }

    /// buildah working containers on this fixture's base.
    fn working_containers(&self) -> Vec<String> {
        let out = podman(&["ps", "-a", "--external", "--format", "{{.ID}} {{.Image}}"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with(&format!(" {}", self.base)))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).output();
        }
        for id in self.working_containers() {
            let _ = podman(&["rm", "--force", &id]);
        }
        let listed = podman(&["images", "-a", "-q", "--filter", &format!("label=v7.project={}", self.project)]);
        let mut ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_string).collect();
        ids.dedup();
        for _ in 0..3 {
            for id in &ids {
                let _ = podman(&["rmi", "--force", "--no-prune", id]);
            }
        }
        let _ = podman(&["rmi", "--force", "--no-prune", &self.base]);
    }
}

/// `(pid, parent, command line)` of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, ppid, cmdline.trim().to_string()));
    }
    out
}

fn below(pid: u32, table: &[(u32, u32, String)]) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent, cmd) in table {
            if *parent == p && !out.iter().any(|(c, _)| c == child) {
                out.push((*child, cmd.clone()));
                frontier.push(*child);
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Reads a child's stderr in the background, echoing it.
fn collect(child: &mut Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

fn stop_the_xtask_alone_mid_build(signal: &str) {
    let mut f = Fixture::new("sig", &[("sleeper", "RUN echo step-one\nRUN sleep 300")]);
    let mut child = f.xtask(&["build"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let xtask = child.id();
    f.pids.push(xtask);
    let err = collect(&mut child);
    // Wait until the RUN step's `sleep 300` runs below the xtask's podman build.
    let start = Instant::now();
    let (podman_pid, tree) = loop {
        let table = processes();
        let tree = below(xtask, &table);
        let podman = tree.iter().find(|(_, c)| c.starts_with("podman") && c.contains(" build "));
        if let Some((p, _)) = podman {
            if tree.iter().any(|(_, c)| c == "sleep 300") {
                break (*p, tree.clone());
            }
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no `sleep 300` below the xtask's podman build: {tree:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    f.pids.extend(tree.iter().map(|(p, _)| *p));
    assert!(!f.working_containers().is_empty(), "the build has a working container while it runs");
    let sent = Instant::now();
    let kill = Command::new("kill").args([&format!("-{signal}"), &xtask.to_string()]).status().unwrap();
    assert!(kill.success());
    // Within a bounded wait: podman build and every process it started are gone.
    while tree.iter().any(|(p, _)| alive(*p)) {
        let left: Vec<&(u32, String)> = tree.iter().filter(|(p, _)| alive(*p)).collect();
        assert!(sent.elapsed() < Duration::from_secs(15), "still running 15 s after {signal}: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(podman_pid));
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    eprintln!("{signal}: build and its processes gone after {:.1} s; xtask {status}", sent.elapsed().as_secs_f64());
    assert!(!status.success(), "the xtask reports the interruption: {err}");
    let said = format!("interrupted by SIG{signal}: stopped the builds of sleeper; nothing was tagged");
    assert!(err.contains(&said), "{err}");
    assert!(!image_exists(&f.image("sleeper")), "nothing is tagged");
    assert_eq!(f.working_containers(), Vec::<String>::new(), "no working container is left: {err}");
}

#[test]
fn sigterm_to_the_xtask_alone_stops_its_podman_build_and_tags_nothing() {
    stop_the_xtask_alone_mid_build("TERM");
}

#[test]
fn sigint_to_the_xtask_alone_stops_its_podman_build_and_tags_nothing() {
    stop_the_xtask_alone_mid_build("INT");
}

#[test]
fn builds_are_tagged_after_success_then_skipped_and_reported_in_json() {
    let f = Fixture::new("ok", &[("one", "RUN echo one > /tmp/one"), ("two", "RUN echo two > /tmp/two")]);
    let (ok, out, err) = f.run(&["build", "--json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    assert_eq!(boolean(&doc, "ok"), Some(true), "{out}");
    for s in ["one", "two"] {
        let b = find_in(items(&doc, "builds"), "service", s);
        assert_eq!(string(b, "result").as_deref(), Some("built"), "{out}");
        assert!(number(b, "size_bytes").is_some_and(|n| n > 0.0), "{out}");
        assert!(image_exists(&f.image(s)));
    }
    let (ok, out, err) = f.run(&["build", "--json", "--sequential"]);
    assert!(ok, "{err}");
    assert!(items(&json(&out), "builds").iter().all(|b| string(b, "result").as_deref() == Some("skipped")), "{out}");
    let (ok, _, err) = f.run(&["build", "--force"]);
    assert!(ok, "{err}");
    let table: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("SERVICE")).collect();
    assert_eq!(table.len(), 3, "a header and a row per service: {err}");
    assert!(table[1].starts_with("one ") && table[1].ends_with(" built"), "{table:?}");
}

#[test]
fn a_failure_stops_the_rest_unless_keep_going_and_shows_the_failing_step() {
    let f = Fixture::new(
        "fail",
        &[("a-fails", "RUN echo compiling\nRUN echo broken-thing >&2; exit 3"), ("b-ok", "RUN echo b > /tmp/b")],
    );
    let (ok, out, err) = f.run(&["build", "--jobs", "1", "--json"]);
    assert!(!ok, "{err}");
    let doc = json(&out);
    let a = find_in(items(&doc, "builds"), "service", "a-fails");
    assert_eq!(string(a, "result").as_deref(), Some("failed"), "{out}");
    assert_eq!(number(a, "attempts"), Some(1.0), "alone: not retried");
    let b = find_in(items(&doc, "builds"), "service", "b-ok");
    assert_eq!(string(b, "result").as_deref(), Some("not started"), "{out}");
    assert!(!image_exists(&f.image("b-ok")));
    let log = string(a, "log").unwrap();
    assert!(err.contains("a-fails: FAILED after") && err.contains(&log), "the log's path: {err}");
    // podman counts the --label instructions it adds as steps too: 3/5.
    assert!(err.contains(": RUN echo broken-thing >&2; exit 3\n  broken-thing\n"), "the failing step's lines: {err}");
    assert!(!err.contains("  compiling"), "only the failing step: {err}");

    // Together: the failure beside b-ok is tried once more alone, and b-ok is built.
    let (ok, out, err) = f.run(&["build", "--keep-going", "--json"]);
    assert!(!ok, "{err}");
    let doc = json(&out);
    let a = find_in(items(&doc, "builds"), "service", "a-fails");
    assert_eq!(string(a, "result").as_deref(), Some("failed"), "{out}");
    let b = find_in(items(&doc, "builds"), "service", "b-ok");
    assert_eq!(string(b, "result").as_deref(), Some("built"), "{out}");
    assert_eq!(number(a, "attempts"), Some(2.0), "it ran beside b-ok, so it was tried once more alone: {out}");
    assert!(err.contains("a-fails: failed (it ran beside another build); trying once more alone"), "{err}");
    assert!(image_exists(&f.image("b-ok")) && !image_exists(&f.image("a-fails")));
    assert_eq!(f.working_containers(), Vec::<String>::new(), "failed builds leave no working container");
}

#[test]
fn proxy_credentials_reach_the_run_step_and_are_stored_and_printed_nowhere() {
    const SECRET: &str = "v7secretpw";
    // The RUN step checks the proxy arrived (moved from loopback to host.containers.internal)
    // without naming the password, which would put it in the image's history.
    let step = "RUN case \"$HTTP_PROXY|$https_proxy|$NO_PROXY\" in \
                *:*@host.containers.internal:9*'|'*@host.containers.internal:9*'|'*host.containers.internal*) \
                echo proxy-reached-the-step;; *) echo no-proxy; exit 1;; esac";
    let f = Fixture::new("proxy", &[("proxied", step)]);
    let proxy = format!("http://v7user:{SECRET}@127.0.0.1:9");
    let env = [("HTTP_PROXY", proxy.as_str()), ("HTTPS_PROXY", proxy.as_str())];
    let (ok, out, err) = f.run_with(&["build", "--dry-run"], &env);
    assert!(ok, "{err}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "--dry-run masks it: {out}{err}");
    assert!(out.contains("HTTP_PROXY='http://v7user:***@host.containers.internal:9'"), "{out}");
    let (ok, out, err) = f.run_with(&["build", "--json"], &env);
    assert!(ok, "{err}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "the xtask's output: {out}{err}");
    let image = f.image("proxied");
    let log = string(find_in(items(&json(&out), "builds"), "service", "proxied"), "log").unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("proxy-reached-the-step"), "the RUN step saw the proxy: {log}");
    assert!(!log.contains(SECRET), "the build log: {log}");
    for args in [vec!["history", "--no-trunc", &image], vec!["inspect", &image]] {
        let o = podman(&args);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(!text.contains(SECRET) && !text.contains("v7user"), "podman {}: {text}", args[0]);
    }
    // Malformed: refused before anything is built, naming the variable.
    let (ok, _, err) = f.run_with(&["build", "--force"], &[("HTTPS_PROXY", "http//v7user:pw@bad")]);
    assert!(!ok);
    assert!(err.contains("HTTPS_PROXY=\"http//v7user:***@bad\": the \":\" of \"://\" is missing; hint:"), "{err}");
    assert!(!err.contains("building"), "nothing was built: {err}");
}

/// tinyproxy (Debian's `tinyproxy-bin` package), found on PATH or where Debian puts it.
fn tinyproxy() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tinyproxy")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/tinyproxy"), PathBuf::from("/usr/sbin/tinyproxy")])
        .find(|p| p.is_file())
        .expect("tinyproxy is needed for this test: apt-get install -y tinyproxy-bin (cargo xtask test podman does)")
}

#[test]
fn a_build_goes_through_an_authenticated_proxy_and_its_password_stays_out_of_everything() {
    const SECRET: &str = "v7proxypw";
    // The base gets the host's curl (with its libraries), which reads http_proxy, credentials
    // included; the step fetches a file over plain HTTP, which needs the proxy to answer.
    let curl = "/usr/bin/curl";
    assert!(Path::new(curl).is_file(), "curl is needed for this test: apt-get install -y curl");
    let step = "RUN curl -fsS -o /dev/null http://deb.debian.org/debian/dists/bookworm/Release && echo fetched";
    let f = Fixture::with_programs("authproxy", &[("fetch", step)], &[curl]);
    let port = free_port();
    let log = f.dir.path().join("tinyproxy.log");
    let conf = f.dir.path().join("tinyproxy.conf");
    // On every address: builds reach the host at host.containers.internal, not at 127.0.0.1.
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 0.0.0.0\nTimeout 60\nMaxClients 20\nLogFile \"{}\"\nLogLevel Info\n\
             BasicAuth v7user {SECRET}\n",
            log.display()
        ),
    )
    .unwrap();
    let proxy = Command::new(tinyproxy())
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proxy = Proc(proxy);
    wait_for_port(port, Duration::from_secs(10));
    let image = f.image("fetch");
    let run = |password: &str| {
        let url = format!("http://v7user:{password}@127.0.0.1:{port}");
        let mut cmd = f.xtask(&["build", "--force", "--json"]);
        cmd.env("HTTP_PROXY", &url).env("http_proxy", &url);
        let out = cmd.output().unwrap();
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        eprintln!("{e}{o}  => {}", out.status);
        (out.status.success(), o, e)
    };
    // A wrong password: the proxy refuses (tinyproxy answers 401), so the build fails: it did
    // go through the proxy.
    let (ok, out, err) = run("wrong");
    assert!(!ok, "{err}");
    assert!(err.contains("401"), "the proxy refused the wrong password: {err}");
    assert!(!image_exists(&image));
    assert!(!out.contains(":wrong@") && !err.contains(":wrong@"), "{err}");
    let (ok, out, err) = run(SECRET);
    assert!(ok, "{err}");
    assert!(image_exists(&image));
    let proxy_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(proxy_log.contains("deb.debian.org"), "the request went through the proxy: {proxy_log}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "the xtask's output: {err}{out}");
    let build_log = string(find_in(items(&json(&out), "builds"), "service", "fetch"), "log").unwrap();
    let build_log = std::fs::read_to_string(build_log).unwrap();
    assert!(build_log.contains("fetched"), "the step fetched the file: {build_log}");
    assert!(!build_log.contains(SECRET), "the build log: {build_log}");
    for args in [vec!["history", "--no-trunc", &image], vec!["inspect", &image]] {
        let o = podman(&args);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(!text.contains(SECRET), "podman {}: {text}", args[0]);
    }
}

#[test]
fn mirror_dry_run_shows_each_rewrite_as_a_diff_and_builds_nothing() {
    let f = Fixture::new("diff", &[("debian", "RUN echo first\nRUN apt-get update && apt-get install -y curl")]);
    let mirror = "apt=http://host.containers.internal:3142/deb.debian.org/debian";
    let (ok, out, err) = f.run(&["build", "--mirror", mirror, "--dry-run"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("--- ") && l.ends_with("debian/Dockerfile")).expect(&out);
    assert!(lines[at + 1].starts_with("+++ ") && lines[at + 1].ends_with("build/debian/Dockerfile"), "{out}");
    assert_eq!(lines[at + 2], "@@ -1,3 +1,5 @@", "{out}");
    assert_eq!(lines[at + 5], "+# cargo xtask build --mirror: apt mirror", "{out}");
    assert!(lines[at + 6].starts_with("+RUN for f in /etc/apt/sources.list"), "{out}");
    // The archive and the security archive both move to the mirror (images/dockerfile/rewrite.rs).
    assert!(lines[at + 6].contains(r"#http://host.containers.internal:3142/deb.debian.org/debian\1#g"), "{out}");
    assert!(lines[at + 6].contains("#http://host.containers.internal:3142/deb.debian.org/debian-security#g"), "{out}");
    assert_eq!(lines[at + 7], " RUN apt-get update && apt-get install -y curl", "{out}");
    assert!(out.contains(" podman build ") && out.contains(" podman tag "), "then the commands: {out}");
    assert!(!image_exists(&f.image("debian")), "a dry run builds nothing");
    let (ok, _, err) = f.run(&["build", "--mirror", "apt=ftp://m/debian", "--dry-run"]);
    assert!(!ok && err.contains("--mirror apt=ftp://m/debian: scheme \"ftp\" is not http or https; hint:"), "{err}");
}
