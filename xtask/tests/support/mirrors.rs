//! Live package mirrors for `xtask/tests/mirror_e2e.rs`, on the host, each on a free port of its
//! own, with its cache and log under a temporary directory, ended by PID on drop:
//! - apt: Debian's apt-cacher-ng in the foreground with its own CacheDir/LogDir/Port/SocketPath
//!   and its Debian backend set to deb.debian.org (the package's default remaps to a host that
//!   does not resolve here); its `apt-cacher.log` has a line per file served.
//! - npm: Verdaccio 6.8.0 with an uplink to registry.npmjs.org, its `http` log on stdout.
//! - pip: proxpi (PyPI caching mirror, Flask), its request log on stderr.
//! - cargo: `cargo_mirror.py`, a sparse-index and download cache of crates.io over plain HTTP.
//!
//! Verdaccio and proxpi are installed once from their registries into
//! `$CARGO_TARGET_TMPDIR/v7-mirror-tools/` (a marker file says the install finished; a half
//! install is made anew), with a clear panic when the registry cannot be reached. Every mirror
//! listens on all addresses: builds reach it at `host.containers.internal`, the host at 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{wait_for_port, Proc, TempDir};

pub const VERDACCIO: &str = "6.8.0";
pub const PROXPI: &str = "1.3.1";

/// One running mirror.
pub struct Mirror {
    pub name: &'static str,
    pub port: u16,
    /// The file its requests are logged in.
    pub log: PathBuf,
    pub dir: TempDir,
    _proc: Proc,
}

impl Mirror {
    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of its log that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }

    /// `http://host.containers.internal:PORT` + `path`: how builds reach it.
    pub fn for_builds(&self, path: &str) -> String {
        format!("http://host.containers.internal:{}{path}", self.port)
    }
}

/// A free TCP port below 32768: apt-cacher-ng 3.7 keeps its port in a signed 16-bit number
/// (`Port: 39142` becomes the service "-2639" and it fails with "Error resolving address for
/// binding"), and the kernel's ephemeral ports start at 32768.
pub fn low_free_port() -> u16 {
    let seed = std::process::id() as u32 ^ std::time::SystemTime::now().elapsed().map_or(0, |d| d.subsec_nanos());
    for i in 0..2000u32 {
        let port = 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 12000) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Proc(child)
}

/// apt-cacher-ng (Debian's `apt-cacher-ng`) as a Debian mirror: builds use
/// `http://host.containers.internal:PORT/deb.debian.org/debian`.
pub fn apt_cacher_ng() -> Mirror {
    let bin = Path::new("/usr/sbin/apt-cacher-ng");
    assert!(bin.is_file(), "apt-cacher-ng is needed for this test: apt-get install -y apt-cacher-ng");
    let dir = TempDir::new("b-mirror-apt");
    let (conf, cache, logs) = (dir.path().join("conf"), dir.path().join("cache"), dir.path().join("log"));
    for d in [&conf, &cache, &logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let port = low_free_port();
    std::fs::write(
        conf.join("acng.conf"),
        format!(
            "CacheDir: {}\nLogDir: {}\nSupportDir: /usr/lib/apt-cacher-ng\nSocketPath: {}\nPort: {port}\n\
             ForeGround: 1\nVerboseLog: 1\nExThreshold: 4\n\
             Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n",
            cache.display(),
            logs.display(),
            dir.path().join("socket").display()
        ),
    )
    .unwrap();
    std::fs::write(conf.join("backends_debian"), "http://deb.debian.org/debian/\n").unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&conf);
    let proc = spawn_logged(cmd, &dir.path().join("stdout.log"));
    wait_for_port(port, Duration::from_secs(15));
    Mirror { name: "apt-cacher-ng", port, log: logs.join("apt-cacher.log"), dir, _proc: proc }
}

/// Where the installed tools are kept between runs.
pub fn tools_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("v7-mirror-tools");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs an install step; panics with its output and `what` when it fails.
fn install(what: &str, cmd: &mut Command) {
    eprintln!("installing {what}: {cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "cannot install {what} (is its registry reachable from this host?): {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Verdaccio's entry point, installed once from the npm registry with the node-fetch 2.7.0
/// override (the `cjs` dist-tag it asks for otherwise is not served here).
pub fn verdaccio_bin() -> PathBuf {
    let dir = tools_dir().join(format!("verdaccio-{VERDACCIO}"));
    let bin = dir.join("node_modules/verdaccio/bin/verdaccio");
    if !dir.join("installed").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            format!(
                "{{\"name\": \"v7-test-verdaccio\", \"private\": true, \"dependencies\": {{\"verdaccio\": \"{VERDACCIO}\"}}, \
                 \"overrides\": {{\"node-fetch\": \"2.7.0\"}}}}\n"
            ),
        )
        .unwrap();
        install(
            &format!("verdaccio {VERDACCIO} from npm"),
            Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&dir),
        );
        assert!(bin.is_file(), "{} missing after npm install", bin.display());
        std::fs::write(dir.join("installed"), "").unwrap();
    }
    bin
}

/// The host's CA bundle, which has this network's extra CA (Node and requests bring their own).
fn host_ca() -> &'static str {
    "/etc/ssl/certs/ca-certificates.crt"
}

/// Verdaccio on a free port, proxying registry.npmjs.org; builds use `for_builds("/")`.
pub fn verdaccio() -> Mirror {
    let bin = verdaccio_bin();
    let dir = TempDir::new("b-mirror-npm");
    let port = low_free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "storage: {}\nuplinks:\n  npmjs:\n    url: https://registry.npmjs.org/\npackages:\n  '**':\n    access: $all\n    \
             proxy: npmjs\nlisten: 0.0.0.0:{port}\nlog: {{ type: stdout, format: pretty, level: http }}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("verdaccio.log");
    let mut cmd = Command::new("node");
    cmd.arg(&bin).arg("--config").arg(&config).env("NODE_EXTRA_CA_CERTS", host_ca());
    let proc = spawn_logged(cmd, &log);
    wait_for_port(port, Duration::from_secs(30));
    Mirror { name: "verdaccio", port, log, dir, _proc: proc }
}

/// proxpi's virtual environment, installed once from PyPI.
pub fn proxpi_python() -> PathBuf {
    let dir = tools_dir().join(format!("proxpi-{PROXPI}"));
    let python = dir.join("bin/python");
    if !dir.join("installed").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        install("a virtual environment for proxpi", Command::new("python3").arg("-m").arg("venv").arg(&dir));
        install(
            &format!("proxpi {PROXPI} from PyPI"),
            Command::new(&python).args(["-m", "pip", "install", "-q", &format!("proxpi=={PROXPI}")]),
        );
        std::fs::write(dir.join("installed"), "").unwrap();
    }
    python
}

/// proxpi on a free port, caching pypi.org; builds use `for_builds("/index/")`. Files are
/// served by proxpi itself (a download that takes longer than PROXPI_DOWNLOAD_TIMEOUT would be a
/// redirect to files.pythonhosted.org over HTTPS, which builds cannot verify: 120 s).
pub fn proxpi() -> Mirror {
    let python = proxpi_python();
    let dir = TempDir::new("b-mirror-pip");
    let port = low_free_port();
    let log = dir.path().join("proxpi.log");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "flask", "--app", "proxpi.server", "run", "--host", "0.0.0.0", "--port", &port.to_string()])
        .env("PROXPI_CACHE_DIR", dir.path().join("cache"))
        .env("PROXPI_DOWNLOAD_TIMEOUT", "120")
        .env("REQUESTS_CA_BUNDLE", host_ca());
    let proc = spawn_logged(cmd, &log);
    wait_for_port(port, Duration::from_secs(30));
    Mirror { name: "proxpi", port, log, dir, _proc: proc }
}

/// `cargo_mirror.py` on a free port; builds use `sparse+` + `for_builds("/index/")`.
pub fn cargo_mirror() -> Mirror {
    let dir = TempDir::new("b-mirror-cargo");
    let log = dir.path().join("requests.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cargo_mirror.py");
    let mut cmd = Command::new("python3");
    let cmd = cmd
        .arg(script)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .arg("--log")
        .arg(&log)
        .env("SSL_CERT_FILE", host_ca())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let (proc, port) = Proc::start_printing_port(cmd, "the cargo mirror (cargo_mirror.py)");
    Mirror { name: "cargo mirror", port, log, dir, _proc: proc }
}
