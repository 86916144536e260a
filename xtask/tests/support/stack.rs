//! Test support for registry-free mode (`xtask/tests/registry_free_e2e.rs`): a copy of
//! `docker/stack.toml` under the test's own project name, the real xtask run with it, podman
//! calls configured like the xtask's, and the Drop guard that removes every
//! container, network, volume and image the test made (all named `v7test-rf-...` /
//! `localhost/v7test-rf-registry-free/...`, and the untagged build intermediates labelled
//! `v7.project=v7test-rf`; never a prune). The caches under `.v7/registry-free/` stay: they are the
//! xtask's and make reruns fast.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The project name of the test's stack: prefix of its containers, networks, volumes, images.
pub const PROJECT: &str = "v7test-rf";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `localhost/v7test-rf-registry-free/<name>:latest`, as the xtask names registry-free images.
pub fn image(service: &str) -> String {
    format!("localhost/{PROJECT}-registry-free/{service}:latest")
}

pub fn container(service: &str) -> String {
    format!("{PROJECT}-{service}")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The test's stack: docker/stack.toml with `name = "v7test-rf"`, in a temp dir.
/// The test stack's host port for a manifest host port: moved into 20000-29999
/// (3000 -> 23000, 50051 -> 20051), away from a developer's stack on the same machine.
pub fn test_host_port(port: u16) -> u16 {
    20000 + port % 10000
}

/// `"127.0.0.1:3000:3000"` -> `"127.0.0.1:23000:3000"` in every `ports = [...]` line.
pub fn shift_host_ports(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("ports") {
            let mut shifted = String::new();
            for (i, part) in line.split('"').enumerate() {
                if i % 2 == 1 {
                    let fields: Vec<&str> = part.split(':').collect();
                    if let [ip, host, container] = fields.as_slice() {
                        let host: u16 = host.parse().expect("numeric host port");
                        shifted.push_str(&format!("\"{ip}:{}:{container}\"", test_host_port(host)));
                        continue;
                    }
                    shifted.push_str(&format!("\"{part}\""));
                } else {
                    shifted.push_str(part);
                }
            }
            out.push_str(&shifted);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

pub struct TestStack {
    pub dir: PathBuf,
    pub file: PathBuf,
    /// Parsed copy, for the services' recipes, ports, health checks and environment.
    pub toml: toml::Table,
}

impl TestStack {
    pub fn new() -> TestStack {
        let source = std::fs::read_to_string(root().join("docker/stack.toml")).expect("docker/stack.toml");
        let mut replaced = 0;
        let mut in_project = false;
        let mut out = String::new();
        for line in source.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                in_project = t.starts_with("[project]");
            }
            if in_project && replaced == 0 && t.starts_with("name") && t.contains('=') {
                out.push_str(&format!("name = \"{PROJECT}\"\n"));
                replaced += 1;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert_eq!(replaced, 1, "docker/stack.toml has no `name = ...` line in [project]");
        // Host ports moved into 20000-29999, so the deployed test stack never collides with a
        // developer's stack on the same machine.
        let out = shift_host_ports(&out);
        let dir = std::env::temp_dir().join(format!("{PROJECT}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stack.toml");
        std::fs::write(&file, &out).unwrap();
        let toml: toml::Table = out.parse().expect("the stack copy parses");
        TestStack { dir, file, toml }
    }

    pub fn project(&self, key: &str) -> String {
        self.toml["project"][key].as_str().unwrap().to_string()
    }

    pub fn service(&self, name: &str) -> &toml::Table {
        self.toml["services"][name].as_table().unwrap()
    }

    /// Services with a registry-free recipe (`registry_free.dockerfile`), in stack file order.
    pub fn registry_free_services(&self) -> Vec<String> {
        self.toml["services"]
            .as_table()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.get("registry_free").and_then(|o| o.get("dockerfile")).is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Container ports the manifest publishes for a service.
    pub fn container_ports(&self, name: &str) -> Vec<u16> {
        self.service(name)
            .get("ports")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().map(|p| p.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap()).collect())
            .unwrap_or_default()
    }

    pub fn healthcheck_test(&self, name: &str) -> Vec<String> {
        self.service(name)["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    pub fn environment(&self, name: &str) -> Vec<(String, String)> {
        self.service(name)
            .get("environment")
            .and_then(|e| e.as_table())
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
            .unwrap_or_default()
    }

    /// Runs the real xtask with `V7_STACK_FILE` pointing at the copy; its output is echoed line
    /// by line (visible with --nocapture) and returned. (success, combined output, seconds)
    pub fn xtask(&self, args: &[&str]) -> (bool, String, f64) {
        self.xtask_with(&self.file, args)
    }

    /// [`TestStack::xtask`] with another stack file (a changed copy).
    pub fn xtask_with(&self, file: &Path, args: &[&str]) -> (bool, String, f64) {
        eprintln!("$ V7_STACK_FILE={} xtask {}", file.display(), args.join(" "));
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .current_dir(root())
            .env("V7_STACK_FILE", file)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xtask");
        let stdout = child.stdout.take().unwrap();
        let echo = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut all = String::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all.push_str(&echo.join().unwrap());
        let status = child.wait().unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!("  => {status} after {secs:.1} s");
        (status.success(), all, secs)
    }
}

impl TestStack {
    /// Runs the real xtask with the copy; its stdout alone (a `--json` document), stderr echoed.
    pub fn xtask_stdout(&self, args: &[&str]) -> (bool, String) {
        eprintln!("$ V7_STACK_FILE={} xtask {}", self.file.display(), args.join(" "));
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .current_dir(root())
            .env("V7_STACK_FILE", &self.file)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run xtask");
        eprintln!("{}", text(&out.stderr));
        (out.status.success(), text(&out.stdout))
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// podman with the containers.conf the xtask writes for this host (`.v7/podman/`): the runtime
/// and ulimits podman needs here (see xtask/src/podman/host.rs). Copied once so later rewrites
/// of the shared file by other xtask runs cannot change it under the test.
pub struct Podman {
    conf: Option<PathBuf>,
}

impl Podman {
    /// With the checkout's state directory (`.v7/`), which some xtask run must have used.
    pub fn new(private_dir: &Path) -> Podman {
        Podman::of_state_dir(&root().join(".v7"), private_dir)
    }

    /// With the containers.conf an xtask run with `V7_STATE_DIR=state` wrote (call it after
    /// one): a test with a state directory of its own does not depend on what ran before it.
    pub fn of_state_dir(state: &Path, private_dir: &Path) -> Podman {
        // The xtask names its containers.conf by content (`containers-<hash>.conf`): the newest
        // is the one its last run wrote for this host.
        let newest = std::fs::read_dir(state.join("podman"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("containers-")))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
        let conf = newest.and_then(|shared| std::fs::read_to_string(shared).ok()).map(|text| {
            let p = private_dir.join("containers.conf");
            std::fs::write(&p, text).unwrap();
            p
        });
        Podman { conf }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        if let Some(conf) = &self.conf {
            c.env("CONTAINERS_CONF", conf);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("podman")
    }

    /// Runs podman and returns trimmed stdout; panics with stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} failed ({}): {}",
            args.join(" "),
            out.status,
            text(&out.stderr).trim()
        );
        text(&out.stdout).trim().to_string()
    }

    pub fn inspect(&self, image: &str, format: &str) -> String {
        self.ok(&["image", "inspect", "--format", format, image])
    }

    pub fn label(&self, image: &str, key: &str) -> String {
        self.inspect(image, &format!("{{{{index .Labels \"{key}\"}}}}"))
    }

    /// The host port that a container's `port/tcp` is published on.
    pub fn host_port(&self, container: &str, port: u16) -> u16 {
        let out = self.ok(&["port", container, &format!("{port}/tcp")]);
        out.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("podman port {container} {port}: {out:?}"))
    }

    pub fn logs_tail(&self, container: &str) -> String {
        let out = self.output(&["logs", "--tail", "30", container]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
            .lines()
            .filter(|l| !l.contains("systemd"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Removes, on drop (so also when a phase panics) and when called, everything of the test's
/// project: its health supervisor (by pid), its state under `.v7/stacks/v7test-rf/`, its
/// podman secrets (by label), containers `v7test-rf-*` (with their anonymous volumes), the network
/// `v7test-rf-probe`, volumes `v7test-rf-*`, the images `localhost/v7test-rf-registry-free/*`, the
/// untagged intermediate images their builds left that sit on the test's base image (found by
/// the base's root layer, which no other image has), and then every image labelled
/// `v7.project=v7test-rf` (builder stages and step intermediates included; see
/// `remove_project_images`). Nothing else is touched.
pub struct Cleanup<'a> {
    pub podman: &'a Podman,
    /// `project.debian_suite`: the base image's tag.
    pub suite: String,
}

/// What the xtask keeps about the test's stack: `.v7/stacks/v7test-rf/` (remembered mode,
/// generated secrets, the health supervisor's pid file and log, verify's marker count).
pub fn stack_state() -> PathBuf {
    root().join(".v7/stacks").join(PROJECT)
}

/// The pid of the test stack's health supervisor, if one runs (the pid file names it and the
/// process is an `xtask supervise`).
pub fn supervisor_pid() -> Option<u32> {
    let text = std::fs::read_to_string(stack_state().join("supervisor.pid")).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    (args.first().is_some_and(|a| a.ends_with(b"xtask")) && args.get(1) == Some(&&b"supervise"[..])).then_some(pid)
}

impl Cleanup<'_> {
    pub fn run(&self) {
        let p = self.podman;
        let prefix = format!("{PROJECT}-");
        // The supervisor first (it would restart what is removed next), by its pid only.
        if let Some(pid) = supervisor_pid() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let _ = std::fs::remove_dir_all(stack_state());
        let lines = |args: &[&str]| -> Vec<String> {
            text(&p.output(args).stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        };
        let containers: Vec<String> =
            lines(&["ps", "-a", "--format", "{{.Names}}"]).into_iter().filter(|n| n.starts_with(&prefix)).collect();
        for c in &containers {
            let _ = p.output(&["rm", "-f", "-v", "-t", "0", c]);
        }
        for n in lines(&["network", "ls", "--format", "{{.Name}}"]).into_iter().filter(|n| n.starts_with(&prefix)) {
            let _ = p.output(&["network", "rm", "-f", &n]);
        }
        for v in lines(&["volume", "ls", "--format", "{{.Name}}"]).into_iter().filter(|n| n.starts_with(&prefix)) {
            let _ = p.output(&["volume", "rm", "-f", &v]);
        }
        // podman 4.3 filters secrets by name and id only: by the project prefix then.
        for s in lines(&["secret", "ls", "--format", "{{.Name}}"]).into_iter().filter(|n| n.starts_with(&prefix)) {
            let _ = p.output(&["secret", "rm", &s]);
        }
        // Images: the base's first layer marks everything built on it.
        let ours = format!("localhost/{PROJECT}-registry-free/");
        let base = format!("{ours}base:{}", self.suite);
        let base_layer = text(&p.output(&["image", "inspect", "--format", "{{index .RootFS.Layers 0}}", &base]).stdout)
            .trim()
            .to_string();
        let mut doomed: Vec<String> = Vec::new();
        for row in lines(&["images", "-a", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"]) {
            let (id, name) = row.split_once(' ').unwrap_or((row.as_str(), ""));
            if name.starts_with(&ours) {
                doomed.push(name.to_string());
            } else if name.starts_with("<none>") && !base_layer.is_empty() {
                let layer = text(&p.output(&["image", "inspect", "--format", "{{index .RootFS.Layers 0}}", id]).stdout)
                    .trim()
                    .to_string();
                if layer == base_layer {
                    doomed.push(id.to_string());
                }
            }
        }
        doomed.dedup();
        // Children first: retry until no progress (a parent refuses while a child exists).
        let mut left = doomed;
        for _ in 0..5 {
            if left.is_empty() {
                break;
            }
            left.retain(|r| {
                let out = p.output(&["rmi", r]);
                !out.status.success() && p.output(&["image", "exists", r]).status.success()
            });
        }
        // Then what the root layer cannot find, e.g. intermediates of an earlier run whose base
        // is already gone: every image the project's builds labelled.
        let labelled_left = remove_project_images(p, PROJECT);
        left.retain(|r| p.output(&["image", "exists", r]).status.success());
        left.extend(labelled_left);
        if !containers.is_empty() || !left.is_empty() {
            eprintln!("cleanup: removed containers {containers:?}; images not removable: {left:?}");
        }
    }
}

/// Removes every image labelled `v7.project=<project>`, dangling ones included: the xtask's
/// builds put that label on every image they commit, the intermediates of builder stages and of
/// each step too (podman's `--label` lands on all of them), and so does the registry-free base.
/// Images without the label are never touched: `--no-prune` keeps `rmi` from also taking an
/// untagged parent, which may be another project's cached intermediate. Returns what is left
/// (e.g. an image still used by a container, or tagged in several repositories).
pub fn remove_project_images(p: &Podman, project: &str) -> Vec<String> {
    let filter = format!("label=v7.project={project}");
    let list = || -> Vec<String> {
        let mut ids: Vec<String> = text(&p.output(&["images", "-a", "-q", "--filter", &filter]).stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // Several rounds: a parent may refuse while a child is still there.
    let mut ids = list();
    for _ in 0..5 {
        if ids.is_empty() {
            break;
        }
        for id in &ids {
            let _ = p.output(&["rmi", "--no-prune", id]);
        }
        let now = list();
        if now == ids {
            break;
        }
        ids = now;
    }
    ids
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        eprintln!("== cleanup: containers, network, volumes and images of {PROJECT}");
        self.run();
    }
}

/// Polls `f` every 500 ms until it returns Ok or `within` passes; returns the last error.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= within => return Err(format!("{e} (after {within:?})")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
