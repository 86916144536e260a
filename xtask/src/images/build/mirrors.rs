//! `cargo xtask mirrors` and `build --mirror auto`: every package mirror of the stack file's
//! presets, and each package manager's own registry ("origin"), measured per package manager,
//! all at once; a dead or silent one costs at most the timeout. Choosing is a pure function of
//! the measurements ([`choose`]), tested on inline values; the probes are real requests.
//!
//! What is measured, from the host: over plain HTTP, `HEAD` of a small file its package manager
//! asks for anyway (npm's `/-/ping`, apt's `dists/SUITE/Release`, apk's `APKINDEX.tar.gz`, pip's
//! `/pip/` page, a sparse index's `config.json`), which must answer below 400; the latency is
//! that request's. Over HTTPS only the TCP connection (the xtask has no TLS client:
//! docs/xtask.md, dependencies), its time counted twice for the request's round trip it stands
//! for (the TLS handshake is not counted, so HTTPS ones are favoured a little), and the status
//! says so.
//! `host.containers.internal`, as builds reach the host, is probed at 127.0.0.1.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::mirror_spec::{entries, MANAGERS};
use crate::net::http;
use crate::stack::{PackageMirrors, Stack};
use crate::util::json;
use crate::util::text::table;

/// Each package manager's own registry, as its tools use it without a mirror.
pub const ORIGINS: &[(&str, &str)] = &[
    ("apk", "https://dl-cdn.alpinelinux.org/alpine"),
    ("apt", "http://deb.debian.org/debian"),
    ("npm", "https://registry.npmjs.org"),
    ("pip", "https://pypi.org/simple"),
    ("cargo", "sparse+https://index.crates.io/"),
];

/// One mirror to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub manager: &'static str,
    pub url: String,
    /// The presets that name it, or `origin`.
    pub sources: Vec<String>,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub candidate: Candidate,
    /// Seconds to the answer (HTTP) or the connection (HTTPS); `None` when it failed.
    pub seconds: Option<f64>,
    /// `HTTP 200`, `TCP connected (TLS not checked)`, or why it failed.
    pub status: String,
    pub ok: bool,
}

/// Every mirror of every preset, once per (manager, URL), with the origins first.
pub fn candidates(stack: &Stack) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut add = |manager: &'static str, url: &str, source: &str| match out
        .iter_mut()
        .find(|c| c.manager == manager && c.url == url)
    {
        Some(c) => c.sources.push(source.to_string()),
        None => out.push(Candidate { manager, url: url.to_string(), sources: vec![source.to_string()] }),
    };
    for (m, url) in ORIGINS {
        add(m, url, "origin");
    }
    for (name, preset) in &stack.package_mirrors.presets {
        for (m, url) in entries(preset) {
            add(m, url, name);
        }
    }
    out.sort_by_key(|c| MANAGERS.iter().position(|m| *m == c.manager));
    out
}

/// The URL a probe asks, from the host: the mirror's base with the manager's small file.
pub fn probe_url(manager: &str, url: &str, suite: &str) -> String {
    let base = url.strip_prefix("sparse+").unwrap_or(url).trim_end_matches('/');
    let base = base.replacen("://host.containers.internal", "://127.0.0.1", 1);
    match manager {
        "apk" => format!("{base}/latest-stable/main/x86_64/APKINDEX.tar.gz"),
        "apt" => format!("{base}/dists/{suite}/Release"),
        "npm" => format!("{base}/-/ping"),
        "pip" => format!("{base}/pip/"),
        "cargo" if url.starts_with("sparse+") => format!("{base}/config.json"),
        _ => format!("{base}/"),
    }
}

fn probe(c: &Candidate, suite: &str, timeout: Duration) -> Probe {
    let url = probe_url(c.manager, &c.url, suite);
    let failed = |status: String| Probe { candidate: c.clone(), seconds: None, status, ok: false };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url.as_str()));
    let authority = rest.split('/').next().unwrap_or("");
    let port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match http::split_authority(authority, port) {
        Ok(hp) => hp,
        Err(e) => return failed(e),
    };
    let start = Instant::now();
    if scheme != "http" {
        // No TLS client: a connection, counted twice for the request's round trip it stands for.
        return match http::connect(&host, port, timeout) {
            Ok(_) => Probe {
                candidate: c.clone(),
                seconds: Some(2.0 * start.elapsed().as_secs_f64()),
                status: "TCP connected (TLS not checked)".into(),
                ok: true,
            },
            Err(e) => failed(format!("{e:#}")),
        };
    }
    match http::request("HEAD", &url, None, timeout) {
        Ok(r) if r.status < 400 => Probe {
            candidate: c.clone(),
            seconds: Some(start.elapsed().as_secs_f64()),
            status: format!("HTTP {}", r.status),
            ok: true,
        },
        Ok(r) => failed(format!("HTTP {} for {url}", r.status)),
        Err(e) => failed(format!("{e:#}")),
    }
}

/// Measures every candidate at once; none takes longer than `timeout` (the ones still going
/// then are reported as timed out).
pub fn measure(candidates: &[Candidate], suite: &str, timeout: Duration) -> Vec<Probe> {
    let (tx, rx) = mpsc::channel();
    for (i, c) in candidates.iter().enumerate() {
        let (tx, c, suite) = (tx.clone(), c.clone(), suite.to_string());
        // Detached: a probe stuck past the deadline ends by its own socket timeouts.
        std::thread::spawn(move || {
            let _ = tx.send((i, probe(&c, &suite, timeout)));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout + Duration::from_millis(500);
    let mut found: Vec<Option<Probe>> = vec![None; candidates.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, p)) => found[i] = Some(p),
            Err(_) => break,
        }
    }
    found
        .into_iter()
        .zip(candidates)
        .map(|(p, c)| {
            p.unwrap_or_else(|| Probe {
                candidate: c.clone(),
                seconds: None,
                status: format!("no answer within {} s", timeout.as_secs_f64()),
                ok: false,
            })
        })
        .collect()
}

/// `--mirror auto`: per manager, the fastest reachable candidate; an origin that wins means no
/// mirror for that manager. Also one line per manager saying what was chosen and why.
pub fn choose(probes: &[Probe]) -> (PackageMirrors, Vec<String>) {
    let mut out = PackageMirrors::default();
    let mut said = Vec::new();
    for manager in MANAGERS {
        let mut reachable: Vec<&Probe> = probes.iter().filter(|p| p.candidate.manager == *manager && p.ok).collect();
        reachable.sort_by(|a, b| a.seconds.partial_cmp(&b.seconds).unwrap_or(std::cmp::Ordering::Equal));
        let Some(best) = reachable.first() else {
            let tried = probes.iter().filter(|p| p.candidate.manager == *manager).count();
            said.push(format!("{manager}: none of {tried} reachable; left as the Dockerfiles have it"));
            continue;
        };
        let secs = best.seconds.unwrap_or(0.0) * 1000.0;
        if best.candidate.sources.iter().any(|s| s == "origin") {
            said.push(format!("{manager}: the origin {} is fastest ({secs:.0} ms); no mirror", best.candidate.url));
            continue;
        }
        said.push(format!(
            "{manager}: {} ({}, {secs:.0} ms, fastest of {} reachable)",
            best.candidate.url,
            best.candidate.sources.join(", "),
            reachable.len()
        ));
        let url = Some(best.candidate.url.clone());
        match *manager {
            "apk" => out.apk = url,
            "apt" => out.apt = url,
            "npm" => out.npm = url,
            "pip" => out.pip = url,
            _ => out.cargo = url,
        }
    }
    (out, said)
}

/// `--mirror auto`: measures the stack file's mirrors and says, per manager, what it chose.
pub fn auto(stack: &Stack, timeout: Duration) -> anyhow::Result<PackageMirrors> {
    let probes = measure(&candidates(stack), &stack.project.debian_suite, timeout);
    let (chosen, said) = choose(&probes);
    for line in said {
        eprintln!("--mirror auto: {line}");
    }
    Ok(chosen)
}

/// The table `cargo xtask mirrors` prints.
pub fn render(probes: &[Probe]) -> String {
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            vec![
                p.candidate.manager.to_string(),
                p.candidate.url.clone(),
                p.candidate.sources.join(","),
                p.seconds.map(|s| format!("{:.0} ms", s * 1000.0)).unwrap_or_else(|| "-".into()),
                p.status.clone(),
            ]
        })
        .collect();
    table(&["MANAGER", "URL", "FROM", "LATENCY", "STATUS"], &rows)
}

/// The `--json` document, with a newline.
pub fn to_json(probes: &[Probe], chosen: &PackageMirrors) -> String {
    let mut out = String::new();
    {
        let mut o = json::object(&mut out);
        {
            let mut list = o.array("mirrors");
            for p in probes {
                let mut e = list.object();
                e.string("manager", p.candidate.manager).string("url", &p.candidate.url).bool("ok", p.ok);
                {
                    let mut s = e.array("from");
                    for x in &p.candidate.sources {
                        s.string(x);
                    }
                }
                json::WriteOptional::number_or_null(&mut e, "seconds", p.seconds.map(json::seconds));
                e.string("status", &p.status);
            }
        }
        let mut c = o.object("auto");
        for m in MANAGERS {
            let url = entries(chosen).into_iter().find(|(n, _)| n == m).map(|(_, u)| u);
            json::WriteOptional::string_or_null(&mut c, m, url);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn probe(manager: &'static str, url: &str, from: &str, ms: Option<u64>) -> Probe {
        Probe {
            candidate: Candidate { manager, url: url.into(), sources: vec![from.into()] },
            seconds: ms.map(|m| m as f64 / 1000.0),
            status: if ms.is_some() { "HTTP 200".into() } else { "refused".into() },
            ok: ms.is_some(),
        }
    }

    #[test]
    fn the_fastest_reachable_mirror_wins_per_manager() {
        let probes = [
            probe("npm", "https://registry.npmjs.org", "origin", Some(300)),
            probe("npm", "http://slow:4873", "local", Some(900)),
            probe("npm", "http://fast:4873", "tuna", Some(20)),
            probe("npm", "http://dead:4873", "aliyun", None),
            probe("apt", "http://deb.debian.org/debian", "origin", Some(50)),
            probe("apt", "http://m/debian", "aliyun", Some(400)),
            probe("pip", "http://dead/simple", "aliyun", None),
        ];
        let (chosen, said) = choose(&probes);
        assert_eq!(chosen.npm.as_deref(), Some("http://fast:4873"), "line 3: the fastest");
        assert_eq!(chosen.apt, None, "the origin was fastest: no mirror");
        assert_eq!(chosen.pip, None, "none reachable");
        assert_eq!(said[1], "apt: the origin http://deb.debian.org/debian is fastest (50 ms); no mirror");
        assert_eq!(said[2], "npm: http://fast:4873 (tuna, 20 ms, fastest of 3 reachable)");
        assert_eq!(said[3], "pip: none of 1 reachable; left as the Dockerfiles have it");
        let v = json::parse(&to_json(&probes, &chosen)).unwrap();
        use crate::util::json::Read as _;
        assert_eq!(v.field("auto").and_then(|a| a.field("npm")).and_then(|u| u.str()), Some("http://fast:4873"));
        assert_eq!(v.field("mirrors").unwrap().items().len(), 7);
        let t = render(&probes);
        assert!(t.lines().nth(4).is_some_and(|l| l.starts_with("npm ") && l.ends_with("refused")), "{t}");
    }

    #[test]
    fn probe_urls_ask_for_a_small_file_from_the_host() {
        assert_eq!(
            probe_url("npm", "http://host.containers.internal:4873/", "bookworm"),
            "http://127.0.0.1:4873/-/ping"
        );
        assert_eq!(probe_url("apt", "http://m/debian", "bookworm"), "http://m/debian/dists/bookworm/Release");
        assert_eq!(probe_url("cargo", "sparse+https://m/index/", "x"), "https://m/index/config.json");
        assert_eq!(probe_url("pip", "https://m/simple", "x"), "https://m/simple/pip/");
        assert_eq!(
            probe_url("apk", "https://m/alpine", "x"),
            "https://m/alpine/latest-stable/main/x86_64/APKINDEX.tar.gz"
        );
    }

    #[test]
    fn a_dead_or_silent_mirror_costs_at_most_the_timeout() {
        // Silent: accepts and never answers. Dead: nothing listens. Slow: answers 200 after
        // 400 ms. Live: answers 200 at once.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let live_port = live.local_addr().unwrap().port();
        let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let slow = TcpListener::bind("127.0.0.1:0").unwrap();
        let slow_port = slow.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in slow.incoming().flatten().take(1) {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(400));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        std::thread::spawn(move || {
            let _held: Vec<_> = silent.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(10));
        });
        std::thread::spawn(move || {
            for mut s in live.incoming().flatten().take(1) {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let c = |port: u16, from: &str| Candidate {
            manager: "npm",
            url: format!("http://127.0.0.1:{port}"),
            sources: vec![from.to_string()],
        };
        let start = Instant::now();
        let all = [c(silent_port, "silent"), c(dead_port, "dead"), c(slow_port, "slow"), c(live_port, "local")];
        let probes = measure(&all, "x", Duration::from_secs(1));
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert!(!probes[0].ok && !probes[1].ok, "{probes:?}");
        assert!(probes[2].ok && probes[2].seconds.unwrap() >= 0.4, "slow but reachable: {probes:?}");
        assert!(probes[3].ok && probes[3].status == "HTTP 200", "{probes:?}");
        assert_eq!(choose(&probes).0.npm, Some(format!("http://127.0.0.1:{live_port}")), "the fast one, not the slow");
    }
}
