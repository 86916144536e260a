//! Support for the `pull` tests: a real registry (Debian's docker-registry) on loopback, plain
//! HTTP or TLS with a test CA (`tls.rs`), the fault-injecting proxy (`faultproxy.py`) in front
//! of it speaking the same, small images built and pushed here, the xtask run with a private
//! state directory (and the test CA in its certs.d), and the pull's `--json` report read as
//! JSON; [`Setup`] puts them together for one test, over plain HTTP or TLS ([`Transport`]).
//! Everything is named `v7test-pull-...` and removed on drop.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::tls::TestCa;
use super::*;

/// docker-registry 2.8 on 127.0.0.1, storage in a temp dir.
pub struct Registry {
    pub port: u16,
    /// Serves TLS with a certificate of this CA's.
    pub tls: Option<std::sync::Arc<TestCa>>,
    _proc: Proc,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// Plain HTTP, or TLS with a server certificate of `tls` (SAN IP:127.0.0.1).
    pub fn start_with(tls: Option<std::sync::Arc<TestCa>>) -> Registry {
        Registry::start_with_login(tls, None)
    }

    /// Like [`Registry::start_with`], and when `login` is given only that user (password,
    /// bcrypt in an htpasswd file made with apache2-utils' htpasswd) may pull or push.
    pub fn start_with_login(tls: Option<std::sync::Arc<TestCa>>, login: Option<(&str, &str)>) -> Registry {
        Registry::start_configured(tls, |dir| match login {
            Some((user, password)) => {
                let out =
                    Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
                let file = dir.join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!("auth:\n  htpasswd:\n    realm: v7test\n    path: {}\n", file.display())
            }
            None => String::new(),
        })
    }

    /// Like [`Registry::start_with`], with `auth` (YAML, e.g. [`TokenServer::auth_config`])
    /// appended to its configuration.
    pub fn start_with_auth(tls: Option<std::sync::Arc<TestCa>>, auth: &str) -> Registry {
        Registry::start_configured(tls, |_| auth.to_string())
    }

    fn start_configured(tls: Option<std::sync::Arc<TestCa>>, auth: impl FnOnce(&Path) -> String) -> Registry {
        let dir = TempDir::new("pull-registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(ca) = &tls {
            text.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.cert().display(),
                ca.key().display()
            ));
        }
        text.push_str(&auth(dir.path()));
        std::fs::write(&cfg, text).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let proc = Proc(child);
        wait_for_port(port, Duration::from_secs(10));
        Registry { port, tls, _proc: proc, _dir: dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A STAND-IN token service (`tokenserver.py`: what auth.docker.io is to Docker Hub, which
/// cannot be reached here) for a docker-registry with `auth.token`: anonymous tokens for any
/// scope, signed with the test CA's server key, checked by the registry against the CA.
pub struct TokenServer {
    pub port: u16,
    ca: Arc<TestCa>,
    _proc: Proc,
}

impl TokenServer {
    pub fn start(ca: &Arc<TestCa>) -> TokenServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tokenserver.py");
        let mut cmd = Command::new("python3");
        let cmd = cmd
            .arg(script)
            .arg("--key")
            .arg(ca.key())
            .arg("--cert")
            .arg(ca.cert())
            .args(["--issuer", "v7test-token-issuer"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let (proc, port) = Proc::start_printing_port(cmd, "the token service (tokenserver.py)");
        TokenServer { port, ca: Arc::clone(ca), _proc: proc }
    }

    /// The registry's `auth` section for this token service, as `service`.
    pub fn auth_config(&self, service: &str) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {service}\n    issuer: v7test-token-issuer\n    rootcertbundle: {}\n",
            self.port,
            self.ca.ca().display()
        )
    }

    /// Tokens handed out so far.
    pub fn issued(&self) -> usize {
        let (_, body) = http(self.port, "GET", "/__log", "");
        number(&json(&body), "tokens").unwrap() as usize
    }
}

/// The fault proxy in front of `upstream`.
pub struct Proxy {
    pub port: u16,
    _proc: Proc,
}

impl Proxy {
    /// In front of `registry`, speaking what it speaks (TLS with a certificate of the same CA).
    pub fn start(registry: &Registry) -> Proxy {
        Proxy::start_with(&registry.addr(), registry.tls.as_deref(), &[])
    }

    /// `tls`: serve TLS and reach the upstream over TLS, both with this CA's certificates.
    pub fn start_with(upstream: &str, tls: Option<&TestCa>, extra: &[&str]) -> Proxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/faultproxy.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).args(["--upstream", upstream]);
        if let Some(ca) = tls {
            cmd.arg("--tls-cert").arg(ca.cert()).arg("--tls-key").arg(ca.key()).arg("--upstream-ca").arg(ca.ca());
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::null());
        let (proc, port) = Proc::start_printing_port(&mut cmd, "the fault proxy (faultproxy.py)");
        Proxy { port, _proc: proc }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the fault configuration (see faultproxy.py).
    pub fn faults(&self, json: &str) {
        let (status, body) = http(self.port, "POST", "/__faults", json);
        assert_eq!(status, 200, "{body}");
    }

    pub fn clear_log(&self) {
        http(self.port, "POST", "/__clear", "");
    }

    /// (count, first time) of logged requests matching the query (`method=GET&path=...`).
    pub fn find(&self, query: &str) -> (usize, Option<f64>) {
        let (_, body) = http(self.port, "GET", &format!("/__find?{query}"), "");
        let doc = json(&body);
        (number(&doc, "count").unwrap() as usize, number(&doc, "first"))
    }

    pub fn count(&self, query: &str) -> usize {
        self.find(query).0
    }

    pub fn max_overlap(&self) -> usize {
        let (_, body) = http(self.port, "GET", "/__overlap", "");
        number(&json(&body), "max").unwrap() as usize
    }

    pub fn log(&self) -> String {
        http(self.port, "GET", "/__log", "").1
    }
}

/// Builds a small image (a few files plus `random_mb` MB of random data), pushes it to
/// `registry` as `v7test-pull/<name>:<tag>`, and removes the local copy. Returns the
/// reference in the registry.
pub fn push_image(registry: &Registry, name: &str, tag: &str, random_mb: usize) -> String {
    let dir = TempDir::new("pull-img");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello"), format!("{name}:{tag}\n")).unwrap();
    let mut data = vec![0u8; random_mb * 1_000_000 + 1000];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(&mut data).unwrap();
    std::fs::write(root.join("blob.bin"), data).unwrap();
    let tar = dir.path().join("img.tar");
    let st = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(st.success());
    let local = format!("localhost/{}", unique("pull-src"));
    let out = podman(&["import", "-q", tar.to_str().unwrap(), &local]);
    assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
    let remote = format!("{}/v7test-pull/{name}:{tag}", registry.addr());
    let out = match &registry.tls {
        // Verified like any pull: the test CA through a certs.d directory of its own.
        Some(ca) => {
            let certs = dir.path().join("certs.d");
            ca.certs_d(&certs, &[registry.addr()]);
            let cert_dir = certs.join(registry.addr());
            podman(&["push", "-q", "--cert-dir", cert_dir.to_str().unwrap(), &local, &remote])
        }
        None => podman(&["push", "-q", "--tls-verify=false", &local, &remote]),
    };
    let _ = podman(&["rmi", "-f", "-i", &local]);
    assert!(out.status.success(), "podman push: {}", String::from_utf8_lossy(&out.stderr));
    remote
}

/// Runs the xtask with a private state dir and a registries.conf marking `insecure` loopback
/// registries as plain HTTP.
pub struct Xtask {
    pub state: TempDir,
    pub registries_conf: PathBuf,
}

impl Xtask {
    /// The certs.d directory of the xtask's podman configuration (`<state>/podman/certs.d`):
    /// where a test puts the CA it made, for podman and the relay alike.
    pub fn certs_d(&self) -> PathBuf {
        self.state.path().join("v7/podman/certs.d")
    }

    /// Trusts `ca` for these TLS hosts (`127.0.0.1:PORT`) through the xtask's certs.d.
    pub fn trust(&self, ca: &TestCa, hosts: &[String]) {
        ca.certs_d(&self.certs_d(), hosts);
    }

    pub fn new(insecure: &[String]) -> Xtask {
        let state = TempDir::new("pull-state");
        let registries_conf = state.path().join("test-registries.conf");
        let mut text = String::from("unqualified-search-registries = [\"docker.io\"]\n");
        for r in insecure {
            text.push_str(&format!("\n[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"));
        }
        std::fs::write(&registries_conf, text).unwrap();
        Xtask { state, registries_conf }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.program(env!("CARGO_BIN_EXE_xtask"), args)
    }

    /// Another program (e.g. script(1) wrapping the xtask) with the xtask's environment.
    pub fn program(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("V7_STATE_DIR", self.state.path().join("v7"))
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion: (exit ok, stdout, stderr, seconds).
    pub fn run(&self, args: &[&str]) -> (bool, String, String, f64) {
        let start = Instant::now();
        let out = self.command(args).output().unwrap();
        let secs = start.elapsed().as_secs_f64();
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        eprintln!("--- xtask {args:?} ({secs:.1} s, {})\n{e}\n{o}", out.status);
        (out.status.success(), o, e, secs)
    }
}

/// The entry of `image` in a pull's `--json` report.
pub fn image_report(doc: &JsonValue, image: &str) -> JsonValue {
    entry(doc, "images", "image", image).clone()
}

/// A number of `image`'s entry in the report on `stdout`.
pub fn image_number(stdout: &str, image: &str, key: &str) -> Option<f64> {
    number(&image_report(&json(stdout), image), key)
}

/// A string of `image`'s entry in the report on `stdout` (`None` for null).
pub fn image_string(stdout: &str, image: &str, key: &str) -> Option<String> {
    string(&image_report(&json(stdout), image), key)
}

/// What the registry and its fault proxies speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Http,
    Https,
}

/// One registry with one proxy in front, and images pushed to it.
pub struct Setup {
    pub images: Images,
    pub proxy: Proxy,
    pub registry: Registry,
    pub xtask: Xtask,
    pub ca: Option<Arc<TestCa>>,
}

impl Setup {
    pub fn new(names: &[(&str, usize)]) -> Setup {
        Setup::over(Transport::Http, names)
    }

    pub fn over(transport: Transport, names: &[(&str, usize)]) -> Setup {
        let ca = (transport == Transport::Https).then(|| Arc::new(TestCa::new("pull")));
        let registry = Registry::start_with(ca.clone());
        for (name, mb) in names {
            push_image(&registry, name, "1", *mb);
        }
        let proxy = Proxy::start(&registry);
        let xtask = match &ca {
            Some(ca) => {
                let x = Xtask::new(&[]);
                x.trust(ca, &[proxy.addr(), registry.addr()]);
                x
            }
            None => Xtask::new(&[proxy.addr(), registry.addr()]),
        };
        Setup { images: Images::default(), proxy, registry, xtask, ca }
    }

    /// Another fault proxy in front of the registry (a mirror), trusted like the first.
    pub fn mirror(&self) -> Proxy {
        let m = Proxy::start(&self.registry);
        if let Some(ca) = &self.ca {
            self.xtask.trust(ca, &[m.addr()]);
        }
        m
    }

    /// A mirror's URL: `http://` or `https://` as the registry speaks.
    pub fn url(&self, addr: &str) -> String {
        format!("{}://{addr}", if self.ca.is_some() { "https" } else { "http" })
    }

    /// The reference through the proxy; registered for removal.
    pub fn via_proxy(&mut self, name: &str) -> String {
        let r = format!("{}/v7test-pull/{name}:1", self.proxy.addr());
        self.images.add(&r);
        r
    }
}
