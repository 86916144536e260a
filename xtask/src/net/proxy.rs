//! Proxy detection: a pure function of an environment map (never of the process env directly),
//! so tests can give any environment. Proxies reach builds through podman's `--http-proxy`
//! (on by default), which passes them as environment to build containers without storing them
//! in the image; they are never given as `--build-arg` (that would land in image history).

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

impl Proxies {
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none() && self.all.is_none()
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
}
