//! Proxies: read from an environment map (never from the process env directly, so tests can
//! give any environment), validated before anything is built ([`checked`]), and rewritten for
//! containers. All pure functions, tested on inline values.
//!
//! How they reach builds, verified on podman 4.3.1 (buildah 1.28.2): podman's `--http-proxy`
//! (on by default) copies `http_proxy`, `https_proxy`, `ftp_proxy` and `no_proxy`, in both
//! spellings, from podman's own environment into every `RUN` step, and records them nowhere:
//! a build with `HTTP_PROXY=http://u:secretpw@127.0.0.1:9/` saw the variable in its `RUN` step
//! and `secretpw` was in neither `podman history --no-trunc` nor `podman inspect` of the image.
//! So the xtask gives proxies to podman as environment, never as `--build-arg` (which would be
//! in the history). `all_proxy`/`ALL_PROXY` is NOT among the variables podman copies (checked:
//! empty inside the `RUN` step), and podman's own pulls read only HTTP(S)_PROXY/NO_PROXY, so a
//! build would silently go without it: it is validated like the others and a warning says to
//! set HTTP_PROXY/HTTPS_PROXY instead ([`Proxies::warnings`]).
//!
//! A malformed value (`http//bad`, a port that is not 1-65535, a scheme no tool knows) is
//! refused with the variable's name, the value with any password masked (`user:***@`) and a
//! hint, never passed on: tools inside builds disagree on how to read a broken value (curl
//! guesses `http://`, npm and pip fail, apk's wget ignores it), so one build would go direct
//! and another fail.

use std::collections::BTreeMap;

/// The proxies in effect, as a build container must see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxies {
    pub http: Option<String>,
    pub https: Option<String>,
    pub all: Option<String>,
    pub no_proxy: Vec<String>,
}

/// Hosts a container must reach directly, whatever the user's NO_PROXY says.
const ALWAYS_DIRECT: &[&str] = &["localhost", "127.0.0.1", "::1", "host.containers.internal"];

/// Reads `http_proxy`/`HTTP_PROXY` (lower case wins, as in curl), `https_proxy`, `all_proxy`
/// and `no_proxy`. A proxy on the host's loopback is rewritten to `host.containers.internal`,
/// because 127.0.0.1 inside a container is the container itself.
pub fn detect(env: &BTreeMap<String, String>) -> Proxies {
    let get = |name: &str| {
        env.get(name)
            .or_else(|| env.get(&name.to_ascii_uppercase()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| for_container(&v))
    };
    let mut no_proxy: Vec<String> = get("no_proxy")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let any = get("http_proxy").is_some() || get("https_proxy").is_some() || get("all_proxy").is_some();
    if any {
        for h in ALWAYS_DIRECT {
            if !no_proxy.iter().any(|x| x == h) {
                no_proxy.push(h.to_string());
            }
        }
    }
    Proxies { http: get("http_proxy"), https: get("https_proxy"), all: get("all_proxy"), no_proxy }
}

/// `http://user:pw@127.0.0.1:3128` -> `http://user:pw@host.containers.internal:3128`.
pub fn for_container(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    for loopback in ["127.0.0.1", "localhost", "[::1]"] {
        if let Some(tail) = hostport.strip_prefix(loopback) {
            if tail.is_empty() || tail.starts_with(':') || tail.starts_with('/') {
                return format!("{scheme}{userinfo}host.containers.internal{tail}");
            }
        }
    }
    url.to_string()
}

/// The proxy variables, in both spellings, in the order they are checked and reported.
pub const VARIABLES: &[&str] =
    &["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"];

/// Schemes a proxy URL may have (what curl, pip, npm and podman know between them).
const SCHEMES: &[&str] = &["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

/// A proxy variable that cannot be used: which, its value with the password masked, why, and
/// what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyError {
    pub variable: String,
    /// The value as given, with `user:***@` for `user:password@`.
    pub shown: String,
    pub cause: String,
    pub hint: String,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?}: {}; hint: {}", self.variable, self.shown, self.cause, self.hint)
    }
}

/// `scheme://user:password@host:port` -> `scheme://user:***@host:port`; user info without a
/// `:` may be a token and becomes `***@`. Works on malformed values too (it only looks for the
/// last `@` and the `/` before it), so an error message never shows a password.
pub fn mask(value: &str) -> String {
    let Some(at) = value.rfind('@') else { return value.to_string() };
    let start = value[..at].rfind('/').map_or(0, |p| p + 1);
    let shown = match value[start..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{shown}{}", &value[..start], &value[at..])
}

/// Checks one proxy URL (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`): `Err((cause, hint))`.
pub fn check_url(value: &str) -> Result<(), (String, String)> {
    let form = "write it as http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT)".to_string();
    let Some((scheme, rest)) = value.split_once("://") else {
        let cause = match value.split_once(':') {
            Some((s, _)) if SCHEMES.contains(&s.to_ascii_lowercase().as_str()) => {
                format!("\"{s}:\" is not followed by \"//\"")
            }
            _ if SCHEMES.iter().any(|s| value.to_ascii_lowercase().starts_with(&format!("{s}//"))) => {
                "the \":\" of \"://\" is missing".to_string()
            }
            _ => "no scheme (http://, https://, socks5://)".to_string(),
        };
        return Err((cause, format!("{form}; tools inside builds do not all guess a missing scheme")));
    };
    let lower = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&lower.as_str()) {
        return Err((
            format!("unknown scheme {scheme:?}"),
            format!("use one of {}:// ({form})", SCHEMES.join("://, ")),
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, tail)) if !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') => {
                match tail {
                    "" => (h, None),
                    t => match t.strip_prefix(':') {
                        Some(p) => (h, Some(p)),
                        None => return Err((format!("{t:?} after the IPv6 address"), form)),
                    },
                }
            }
            _ => return Err(("the IPv6 address in [ ] is malformed".to_string(), form)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(("no host".to_string(), form));
    }
    if !hostport.starts_with('[') {
        if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._".contains(*c))) {
            return Err((format!("{c:?} in the host name {host:?}"), form));
        }
    }
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return Err((format!("port {p:?} is not a number from 1 to 65535"), form)),
        }
    }
    Ok(())
}

/// Checks one `NO_PROXY` entry: a host or domain (`example.com`, `.corp`, `*.corp`), an
/// address or network (`10.0.0.0/8`), optionally with `:PORT`, or `*`.
pub fn check_no_proxy_entry(entry: &str) -> Result<(), (String, String)> {
    let hint = "NO_PROXY is a comma-separated list of hosts, domains (.example.com) and networks (10.0.0.0/8)";
    if entry.contains("://") {
        return Err((format!("{entry:?} is a URL"), format!("{hint}: write the host alone")));
    }
    if entry == "*" {
        return Ok(());
    }
    let (addr, bits) = match entry.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (entry, None),
    };
    if let Some(b) = bits {
        let max = if addr.contains(':') { 128 } else { 32 };
        if !b.parse::<u32>().is_ok_and(|n| n <= max) || !b.chars().all(|c| c.is_ascii_digit()) {
            return Err((format!("{entry:?}: /{b} is not a prefix length from 0 to {max}"), hint.to_string()));
        }
    }
    let addr = addr.strip_prefix("*.").or_else(|| addr.strip_prefix('.')).unwrap_or(addr);
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    match addr.chars().find(|c| !ok(*c)) {
        _ if addr.is_empty() => Err((format!("{entry:?} names no host"), hint.to_string())),
        Some(c) => Err((format!("{c:?} in {entry:?}"), hint.to_string())),
        None => Ok(()),
    }
}

/// Every proxy variable of `env` that cannot be used, in [`VARIABLES`] order; empty when all
/// are fine. Unset and empty variables are fine.
pub fn validate(env: &BTreeMap<String, String>) -> Vec<ProxyError> {
    let mut out = Vec::new();
    for name in VARIABLES {
        let Some(value) = env.get(*name).map(|v| v.trim()).filter(|v| !v.is_empty()) else { continue };
        let error = |(cause, hint): (String, String)| ProxyError {
            variable: name.to_string(),
            shown: mask(value),
            cause,
            hint,
        };
        if name.eq_ignore_ascii_case("no_proxy") {
            for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if let Err(e) = check_no_proxy_entry(entry) {
                    out.push(error(e));
                }
            }
        } else if let Err(e) = check_url(value) {
            out.push(error(e));
        }
    }
    out
}

/// The proxies of `env` for builds, once every proxy variable in it is valid; otherwise an
/// error naming each bad variable (nothing is built with a proxy the tools would misread).
pub fn checked(env: &BTreeMap<String, String>) -> anyhow::Result<Proxies> {
    let errors = validate(env);
    if errors.is_empty() {
        return Ok(detect(env));
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    anyhow::bail!(
        "{} malformed proxy variable{}; nothing was built (fix or unset each):\n{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        lines.join("\n")
    )
}

impl Proxies {
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none() && self.all.is_none()
    }

    /// What the user should know about these proxies before a build: ALL_PROXY does not reach
    /// builds (podman does not pass it on).
    pub fn warnings(&self) -> Vec<String> {
        match (&self.all, &self.http, &self.https) {
            (Some(all), None, None) | (Some(all), None, Some(_)) | (Some(all), Some(_), None) => vec![format!(
                "ALL_PROXY={} does not reach builds: podman passes only HTTP_PROXY, HTTPS_PROXY and NO_PROXY \
                 into RUN steps; set HTTP_PROXY and HTTPS_PROXY to it",
                mask(all)
            )],
            _ => Vec::new(),
        }
    }

    /// One line for the build's output, credentials masked (`user:***@`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [("HTTP_PROXY", &self.http), ("HTTPS_PROXY", &self.https), ("ALL_PROXY", &self.all)] {
            if let Some(v) = v {
                parts.push(format!("{name}={}", mask(v)));
            }
        }
        if !self.is_empty() {
            parts.push(format!("NO_PROXY={}", self.no_proxy.join(",")));
        }
        parts.join(" ")
    }

    /// Environment for podman (both spellings, as tools disagree on which they read).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in [("http_proxy", &self.http), ("https_proxy", &self.https), ("all_proxy", &self.all)] {
            if let Some(v) = value {
                out.push((name.to_string(), v.clone()));
                out.push((name.to_ascii_uppercase(), v.clone()));
            }
        }
        if !self.is_empty() {
            let v = self.no_proxy.join(",");
            out.push(("no_proxy".to_string(), v.clone()));
            out.push(("NO_PROXY".to_string(), v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn nothing_set_means_no_proxy() {
        let p = detect(&env(&[("PATH", "/bin")]));
        assert!(p.is_empty());
        assert!(p.env().is_empty());
    }

    #[test]
    fn lower_case_wins_and_loopback_is_rewritten() {
        let p = detect(&env(&[
            ("HTTP_PROXY", "http://upper:3128"),
            ("http_proxy", "http://127.0.0.1:3128"),
            ("HTTPS_PROXY", "http://u:secret@localhost:8080/"),
            ("NO_PROXY", "internal.example, .corp"),
        ]));
        assert_eq!(p.http.as_deref(), Some("http://host.containers.internal:3128"));
        assert_eq!(p.https.as_deref(), Some("http://u:secret@host.containers.internal:8080/"));
        assert_eq!(
            p.no_proxy,
            ["internal.example", ".corp", "localhost", "127.0.0.1", "::1", "host.containers.internal"]
        );
    }

    #[test]
    fn other_hosts_are_kept() {
        assert_eq!(for_container("http://proxy.corp:3128"), "http://proxy.corp:3128");
        assert_eq!(for_container("http://localhostname:1"), "http://localhostname:1");
        assert_eq!(for_container("socks5://[::1]:1080"), "socks5://host.containers.internal:1080");
    }

    #[test]
    fn env_has_both_spellings() {
        let p = detect(&env(&[("https_proxy", "http://p:1")]));
        let e = p.env();
        assert!(e.contains(&("HTTPS_PROXY".into(), "http://p:1".into())));
        assert!(e.contains(&("https_proxy".into(), "http://p:1".into())));
        assert!(e.iter().any(|(k, v)| k == "NO_PROXY" && v.contains("host.containers.internal")));
    }

    fn refused(pairs: &[(&str, &str)]) -> Vec<String> {
        validate(&env(pairs)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn malformed_proxy_urls_are_refused_with_the_variable_and_a_hint() {
        let e = refused(&[("HTTP_PROXY", "http//bad")]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("HTTP_PROXY=\"http//bad\": the \":\" of \"://\" is missing; hint: write it as http://"),
            "{e:?}"
        );
        let e = refused(&[("https_proxy", "http://proxy:99999")]);
        assert!(
            e[0].starts_with("https_proxy=\"http://proxy:99999\": port \"99999\" is not a number from 1 to 65535"),
            "{e:?}"
        );
        for bad_port in ["http://p:0", "http://p:", "http://p:31x8", "http://p:+80"] {
            assert!(refused(&[("HTTP_PROXY", bad_port)])[0].contains("is not a number from 1 to 65535"), "{bad_port}");
        }
        let e = refused(&[("ALL_PROXY", "ftp://p:21")]);
        assert!(
            e[0].starts_with("ALL_PROXY=\"ftp://p:21\": unknown scheme \"ftp\"; hint: use one of http://, https://"),
            "{e:?}"
        );
        let e = refused(&[("http_proxy", "proxy.corp:3128")]);
        assert!(e[0].contains("no scheme"), "no scheme: {e:?}");
        let e = refused(&[("http_proxy", "http:proxy")]);
        assert!(e[0].contains("\"http:\" is not followed by \"//\""), "{e:?}");
        assert!(refused(&[("HTTP_PROXY", "http://")])[0].contains("no host"));
        assert!(refused(&[("HTTP_PROXY", "http://a b:1")])[0].contains("' ' in the host name"));
        assert!(refused(&[("HTTP_PROXY", "http://[zz]:1")])[0].contains("IPv6"));
    }

    #[test]
    fn good_values_pass() {
        let good = [
            "http://proxy.corp:3128",
            "http://u:p%40ss@127.0.0.1:3128/",
            "HTTPS://Proxy:443",
            "socks5h://[::1]:1080",
            "http://[fe80::1]",
            "http://proxy",
        ];
        for v in good {
            assert_eq!(refused(&[("HTTP_PROXY", v)]), Vec::<String>::new(), "{v}");
        }
        let no = "localhost,.corp,*.example.com,10.0.0.0/8,::1,[::1]:8080,host:8080,*, ,";
        assert_eq!(refused(&[("NO_PROXY", no), ("HTTP_PROXY", "")]), Vec::<String>::new());
    }

    #[test]
    fn bad_no_proxy_entries_are_named() {
        let e = refused(&[("no_proxy", "localhost,http://internal.corp,10.0.0.0/33,a b")]);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("no_proxy=") && e[0].contains("\"http://internal.corp\" is a URL"), "{e:?}");
        assert!(e[1].contains("/33 is not a prefix length from 0 to 32"), "{e:?}");
        assert!(e[2].contains("' ' in \"a b\""), "{e:?}");
    }

    #[test]
    fn passwords_are_masked_in_errors_and_descriptions() {
        assert_eq!(mask("http://bob:hunter2@proxy:3128/x"), "http://bob:***@proxy:3128/x");
        assert_eq!(mask("http://tok3n@proxy:3128"), "http://***@proxy:3128", "a user alone may be a token");
        assert_eq!(mask("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask("bob:hunter2@proxy:99999"), "bob:***@proxy:99999", "malformed values too");
        assert_eq!(mask("http//bob:hunter2@bad"), "http//bob:***@bad", "no :// either");
        assert_eq!(mask("http://a:b@c@proxy"), "http://a:***@proxy", "the last @ ends the user info");
        let e = checked(&env(&[("HTTPS_PROXY", "http://bob:hunter2@proxy:99999"), ("HTTP_PROXY", "http//x")]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.starts_with("2 malformed proxy variables; nothing was built"), "{e}");
        assert!(e.contains("HTTPS_PROXY=\"http://bob:***@proxy:99999\": port"), "{e}");
        let p = checked(&env(&[("HTTP_PROXY", "http://bob:hunter2@127.0.0.1:3128")])).unwrap();
        let d = p.describe();
        assert!(d.starts_with("HTTP_PROXY=http://bob:***@host.containers.internal:3128 NO_PROXY=localhost,"), "{d}");
    }

    #[test]
    fn all_proxy_alone_is_a_warning() {
        let p = detect(&env(&[("ALL_PROXY", "socks5://u:pw@p:1080")]));
        let w = p.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("ALL_PROXY=socks5://u:***@p:1080 does not reach builds"), "{w:?}");
        let p = detect(&env(&[
            ("ALL_PROXY", "socks5://p:1080"),
            ("HTTP_PROXY", "http://p:1"),
            ("HTTPS_PROXY", "http://p:1"),
        ]));
        assert!(p.warnings().is_empty());
    }
}
