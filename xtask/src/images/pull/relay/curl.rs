//! The relay's client for TLS upstreams: Debian's curl, one process per request, run through
//! `process/runner.rs` like every other program. Chosen by measurement over a Rust TLS stack
//! (docs/xtask.md, Dependencies): rustls with ring added 12-22 s to a cold `cargo build -p
//! xtask`, curl adds nothing to it, and it brings what a TLS stack alone would not: CONNECT
//! through `HTTPS_PROXY` (credentials in the URL included) with `NO_PROXY`, and PEM bundles.
//!
//! - Trust is what podman's is for the registry ([`Trust::prepare`]): the system bundle as Go
//!   finds it plus the registry's certs.d `*.crt` (`podman/certs.rs`), and its client pair;
//!   never `--insecure`. A certificate curl cannot verify is reported as such ([`judge`]), and
//!   `pull` then leaves the source to podman, whose own error names the certificate.
//! - Proxies: curl reads `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy` itself; a
//!   loopback upstream is never proxied ([`config`]), as Go (podman) never proxies loopback.
//! - Everything, podman's `Authorization` included, goes in a config file (`--config`, mode
//!   0600, removed after the request), never on a command line where `ps` would show it.
//! - `https` only, no redirects followed (a `Location` goes back to podman as from any
//!   registry), HTTP/1.1, 5 s to connect, and a transfer below 1 byte/s for 30 s fails.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::podman::{certs, Podman};
use crate::process::{Cmd, Runner};

/// The CAs and client certificate curl is given for one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trust {
    /// PEM: the system's CAs, then the registry's certs.d `*.crt`.
    pub bundle: PathBuf,
    /// `NAME.cert` and `NAME.key` from the certs.d directory.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Trust {
    /// Writes `dir/ca-bundle.pem` from the system bundle and `cert_dir` (podman's certs.d
    /// directory for the registry, if it has one).
    pub fn prepare(dir: &Path, cert_dir: Option<&Path>) -> Result<Trust> {
        let ssl_cert_file = std::env::var("SSL_CERT_FILE").ok();
        let system =
            certs::system_bundle(ssl_cert_file.as_deref(), Path::exists).and_then(|p| std::fs::read_to_string(p).ok());
        let names: Vec<String> = match cert_dir {
            Some(d) => std::fs::read_dir(d)
                .with_context(|| format!("cannot read {}: the registry's certs.d directory", d.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            None => Vec::new(),
        };
        let found = certs::read_names(&names);
        let d = cert_dir.unwrap_or(dir);
        let mut cas = Vec::new();
        for ca in &found.cas {
            let p = d.join(ca);
            cas.push(std::fs::read_to_string(&p).with_context(|| format!("cannot read the CA {}", p.display()))?);
        }
        let bundle = dir.join("ca-bundle.pem");
        std::fs::write(&bundle, certs::bundle(system.as_deref(), &cas))
            .with_context(|| format!("cannot write {}", bundle.display()))?;
        Ok(Trust { bundle, client: found.client.map(|(c, k)| (d.join(c), d.join(k))) })
    }
}

/// The CAs podman trusts for `host_port` ([`Trust::prepare`]), written under `work` (one
/// directory per host).
pub fn trust_for(work: &Path, podman: &Podman, host_port: &str) -> Result<Trust> {
    let dir = work.join(host_port.replace([':', '[', ']', '/'], "_"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Trust::prepare(&dir, podman.cert_dir(host_port).as_deref())
}

/// One request: where its answer's head and body go.
pub struct Request<'a> {
    /// `GET` or `HEAD`.
    pub method: &'a str,
    pub url: String,
    pub headers: &'a [(String, String)],
    /// Never through a proxy (a loopback upstream).
    pub no_proxy: bool,
    /// Seconds to connect (TCP and TLS handshake), and for the whole request (`None`: no
    /// bound; a stalled transfer still fails after 30 s).
    pub connect_secs: u64,
    pub max_secs: Option<u64>,
    pub head_out: &'a Path,
    pub body_out: &'a Path,
}

/// A string in curl's config syntax.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace(['\r', '\n'], ""))
}

/// The config file curl reads for `req` (`curl --config FILE`).
pub fn config(req: &Request, trust: &Trust) -> String {
    let mut c = String::new();
    let mut line = |s: String| {
        c.push_str(&s);
        c.push('\n');
    };
    line(format!("url = {}", q(&req.url)));
    for flag in ["silent", "show-error", "globoff", "http1.1", "suppress-connect-headers"] {
        line(flag.to_string());
    }
    if req.method == "HEAD" {
        line("head".into());
    }
    line("proto = \"=https\"".into());
    line(format!("connect-timeout = {}", req.connect_secs));
    if let Some(m) = req.max_secs {
        line(format!("max-time = {m}"));
    }
    line("speed-limit = 1".into());
    line("speed-time = 30".into());
    line("user-agent = \"v7-xtask-pull-relay\"".into());
    if req.no_proxy {
        line("noproxy = \"*\"".into());
    }
    line(format!("cacert = {}", q(&trust.bundle.display().to_string())));
    if let Some((cert, key)) = &trust.client {
        line(format!("cert = {}", q(&cert.display().to_string())));
        line(format!("key = {}", q(&key.display().to_string())));
    }
    for (k, v) in req.headers {
        line(format!("header = {}", q(&format!("{k}: {v}"))));
    }
    line(format!("dump-header = {}", q(&req.head_out.display().to_string())));
    line(format!("output = {}", q(&req.body_out.display().to_string())));
    c
}

pub fn command(config: &Path) -> Cmd {
    Cmd::new("curl").arg("--config").path_arg(config)
}

/// How a curl run failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The upstream's certificate (or ours) does not verify: asking again will not help.
    Untrusted(String),
    /// The answer ended before its Content-Length (curl's exit 18).
    Cut(String),
    /// Anything else (refused, reset, timed out, the proxy failed): worth asking again.
    Again(String),
    /// curl could not be started (not installed).
    Missing(String),
}

/// What curl's exit status and last stderr line mean.
pub fn judge(code: Option<i32>, stderr: &str) -> Result<(), Failure> {
    // curl's own line (`curl: (60) ...`), not the advice it prints after it.
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("curl: ("))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    let why = |what: &str| match code {
        Some(c) if line.is_empty() => format!("{what} (curl exit {c})"),
        _ if line.is_empty() => what.to_string(),
        _ => line.to_string(),
    };
    match code {
        Some(0) => Ok(()),
        // 60: the peer's certificate did not verify; 58/77: our certificate or CA file; 83:
        // issuer check; 90/91: pinned key, certificate status.
        Some(60 | 58 | 77 | 83 | 90 | 91) => Err(Failure::Untrusted(why("certificate not trusted"))),
        Some(18) => Err(Failure::Cut(why("answer cut"))),
        Some(_) => Err(Failure::Again(why("curl failed"))),
        None => Err(Failure::Again(why("curl was stopped"))),
    }
}

/// A small request (a probe, a `HEAD`): its status and headers, the body dropped. Failures as
/// one line, with curl's connect failures and timeouts said the way `pull` reads them
/// ("refused", "timed out").
pub fn small(
    runner: &Runner,
    work: &Path,
    method: &str,
    url: String,
    trust: &Trust,
    no_proxy: bool,
    (connect_secs, max_secs): (u64, u64),
) -> Result<(u16, Vec<(String, String)>), String> {
    let n = CONFIGS.fetch_add(1, Ordering::SeqCst);
    let head_out = work.join(format!("small-{}-{n}.head", std::process::id()));
    let body_out = work.join(format!("small-{}-{n}.body", std::process::id()));
    let req = Request {
        method,
        url,
        headers: &[],
        no_proxy,
        connect_secs,
        max_secs: Some(max_secs),
        head_out: &head_out,
        body_out: &body_out,
    };
    let ran = run(runner, work, &req, trust, &AtomicBool::new(false));
    let raw = std::fs::read(&head_out).unwrap_or_default();
    let _ = std::fs::remove_file(&head_out);
    let _ = std::fs::remove_file(&body_out);
    match ran {
        Ok(()) => {}
        Err(Failure::Untrusted(e) | Failure::Cut(e)) => return Err(e),
        Err(Failure::Missing(e)) => return Err(format!("{e} (apt-get install curl)")),
        Err(Failure::Again(e)) => return Err(plain_words(&e)),
    }
    let head = crate::net::http::parse_response_head(&raw).map_err(|e| format!("no HTTP answer: {e:?}"))?;
    Ok((head.status, head.headers))
}

/// curl's "Failed to connect ... Couldn't connect to server" and "(28) ... timed out" in the
/// words `pull`'s probe judges by.
fn plain_words(e: &str) -> String {
    if e.contains("(7)") {
        format!("connection refused ({e})")
    } else if e.contains("(28)") && !e.contains("timed out") {
        format!("timed out ({e})")
    } else if e.contains("(6)") {
        format!("cannot resolve ({e})")
    } else {
        e.to_string()
    }
}

static CONFIGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `req`: its config written to `work` (0600), curl polled until it ends, stopped when
/// `stop` is set.
pub fn run(runner: &Runner, work: &Path, req: &Request, trust: &Trust, stop: &AtomicBool) -> Result<(), Failure> {
    let n = CONFIGS.fetch_add(1, Ordering::SeqCst);
    let file = work.join(format!("curl-{}-{n}.conf", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(config(req, trust).as_bytes()));
    if let Err(e) = written {
        return Err(Failure::Again(format!("cannot write {}: {e}", file.display())));
    }
    let result = wait(runner, &command(&file), stop);
    let _ = std::fs::remove_file(&file);
    result
}

fn wait(runner: &Runner, cmd: &Cmd, stop: &AtomicBool) -> Result<(), Failure> {
    let running = runner.start(cmd).map_err(|e| Failure::Missing(format!("{e:#}")))?;
    loop {
        match running.try_wait() {
            Ok(Some(out)) => return judge(out.status.code(), &String::from_utf8_lossy(&out.stderr)),
            Ok(None) => {}
            Err(e) => return Err(Failure::Again(format!("{e:#}"))),
        }
        if stop.load(Ordering::SeqCst) {
            running.terminate(Duration::from_millis(500));
            return Err(Failure::Again("interrupted".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust() -> Trust {
        Trust { bundle: "/s/relay/ca-bundle.pem".into(), client: None }
    }

    #[test]
    fn everything_goes_in_the_config_file() {
        let headers = vec![
            ("Accept".to_string(), "application/vnd.oci.image.manifest.v1+json".to_string()),
            ("Authorization".to_string(), "Bearer se\"cret".to_string()),
        ];
        let req = Request {
            method: "GET",
            url: "https://[::1]:5000/v2/a/manifests/1".into(),
            headers: &headers,
            no_proxy: true,
            connect_secs: 5,
            max_secs: None,
            head_out: Path::new("/s/relay/1.head"),
            body_out: Path::new("/s/relay/1.body"),
        };
        let c = config(&req, &trust());
        assert!(c.starts_with("url = \"https://[::1]:5000/v2/a/manifests/1\"\n"), "{c}");
        for l in [
            "globoff",
            "suppress-connect-headers",
            "proto = \"=https\"",
            "noproxy = \"*\"",
            "cacert = \"/s/relay/ca-bundle.pem\"",
            "header = \"Authorization: Bearer se\\\"cret\"",
            "dump-header = \"/s/relay/1.head\"",
            "output = \"/s/relay/1.body\"",
        ] {
            assert!(c.lines().any(|x| x == l), "{l} missing from:\n{c}");
        }
        assert!(!c.contains("insecure") && !c.contains("location") && !c.contains("\nhead\n"), "{c}");
        let cmd = command(Path::new("/s/relay/curl-1.conf"));
        assert_eq!(cmd.to_string(), "curl --config /s/relay/curl-1.conf", "no secret on the command line");

        assert!(c.contains("connect-timeout = 5\n") && !c.contains("max-time"), "{c}");
        let head = Request { method: "HEAD", no_proxy: false, max_secs: Some(5), ..req };
        let mut t = trust();
        t.client = Some(("/c/client.cert".into(), "/c/client.key".into()));
        let c = config(&head, &t);
        assert!(c.contains("\nhead\n") && !c.contains("noproxy") && c.contains("max-time = 5\n"), "{c}");
        assert!(c.contains("cert = \"/c/client.cert\"\nkey = \"/c/client.key\"\n"), "{c}");
    }

    #[test]
    fn curl_failures_are_told_apart() {
        assert_eq!(judge(Some(0), ""), Ok(()));
        let e = "curl: (60) SSL certificate problem: self-signed certificate\nMore details here: https://curl.se/docs/sslcerts.html\n\nhow to fix it, please visit the web page mentioned above.\n";
        assert_eq!(
            judge(Some(60), e),
            Err(Failure::Untrusted("curl: (60) SSL certificate problem: self-signed certificate".into()))
        );
        assert!(matches!(judge(Some(18), "curl: (18) transfer closed with 10 bytes remaining"), Err(Failure::Cut(_))));
        assert!(matches!(judge(Some(7), "curl: (7) Failed to connect"), Err(Failure::Again(_))));
        assert_eq!(judge(Some(56), ""), Err(Failure::Again("curl failed (curl exit 56)".into())));
        assert!(matches!(judge(None, ""), Err(Failure::Again(_))));
        let refused = "curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server";
        assert!(plain_words(refused).starts_with("connection refused"));
        assert!(plain_words("curl: (28) SSL connection timeout").starts_with("timed out"));
        assert_eq!(plain_words("curl: (56) Recv failure"), "curl: (56) Recv failure");
    }
}
