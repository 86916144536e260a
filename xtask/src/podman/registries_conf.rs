//! Registry mirrors (a registry's mirrors, which podman pulls images through) and the
//! registries.conf text that tells podman about them, for the xtask's own podman calls (never
//! the system's file). Pure; tested below. Not to be confused with package mirrors (apk, apt,
//! npm, pip, cargo), which `build --mirror` uses: docs/xtask.md, names.
//!
//! Two kinds of file are written:
//! - [`registries_conf`]: every mirror in order, as `[[registry.mirror]]` entries, written to
//!   `<state>/podman/registries.conf` ([`shared_path`]), which every later podman call of the xtask uses (see
//!   `Podman::prepare`), so `FROM` in builds resolves through the same mirrors.
//! - [`single_source_conf`]: the image's registry remapped to exactly one mirror (`location`
//!   rewriting), used by `cargo xtask pull` for one attempt against one mirror. The pull then
//!   controls the order, the timeouts and the retries itself, knows which source served the
//!   image, and the image is still stored under its canonical name.
//!
//! A mirror is given as `URL` (a mirror of docker.io, as in `pull.registry_mirrors`) or as
//! `REGISTRY=URL` (a mirror of another registry, e.g. `127.0.0.1:5000=http://127.0.0.1:5001`).
//! `http://` mirrors are `insecure = true`.

use std::path::PathBuf;

use crate::util::workspace::Workspace;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryMirror {
    /// The registry it mirrors: `docker.io`, `127.0.0.1:5000`, ...
    pub registry: String,
    /// As given: `http://127.0.0.1:5001`.
    pub url: String,
    /// registries.conf `location`: host[:port][/path], no scheme, no trailing slash.
    pub location: String,
    /// Plain HTTP.
    pub insecure: bool,
}

impl RegistryMirror {
    pub fn parse(spec: &str) -> Result<RegistryMirror, String> {
        let spec = spec.trim();
        let (registry, url) = match spec.split_once('=') {
            Some((r, u)) if !r.contains("://") => (r.trim().to_string(), u.trim()),
            _ => ("docker.io".to_string(), spec),
        };
        let (insecure, rest) = if let Some(r) = url.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (false, r)
        } else {
            return Err(format!("registry mirror {spec:?}: the URL must start with http:// or https://"));
        };
        let location = rest.trim_end_matches('/').to_string();
        if location.is_empty() || location.contains(char::is_whitespace) || location.contains('"') {
            return Err(format!("registry mirror {spec:?}: no host after the scheme"));
        }
        if registry.is_empty() || registry.contains(['/', '"', ' ']) {
            return Err(format!("registry mirror {spec:?}: {registry:?} is not a registry host"));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        Ok(RegistryMirror { registry, url: url.trim_end_matches('/').to_string(), location, insecure })
    }

    /// `host:port` to probe (`/v2/`), with the scheme's default port.
    pub fn host_port(&self) -> (String, u16) {
        let authority = self.location.split('/').next().unwrap_or("");
        let default = if self.insecure { 80 } else { 443 };
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
                Ok(port) => (h.trim_matches(['[', ']']).to_string(), port),
                Err(_) => (authority.to_string(), default),
            },
            _ => (authority.trim_matches(['[', ']']).to_string(), default),
        }
    }
}

/// Where `pull` writes the registries.conf every later podman call of the xtask uses.
pub fn shared_path(ws: &Workspace) -> PathBuf {
    ws.state.join("podman").join("registries.conf")
}

/// `127.0.0.1:5000`, `localhost`, `[::1]:5000`: registries that are normally plain HTTP.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host =
        registry.rsplit_once(':').map(|(h, p)| if p.parse::<u16>().is_ok() { h } else { registry }).unwrap_or(registry);
    let host = host.trim_matches(['[', ']']);
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

const HEADER: &str = "# Written by `cargo xtask pull` for the xtask's own podman calls (not the system's);\n\
                      # regenerated from pull.registry_mirrors in docker/stack.toml and --registry-mirror.\n";

/// The registries.conf for later podman calls: each mirrored registry with its mirrors in
/// order; podman tries them before the registry itself. Short names resolve on docker.io.
pub fn registries_conf(mirrors: &[RegistryMirror]) -> String {
    let mut out = String::from(HEADER);
    out.push_str("unqualified-search-registries = [\"docker.io\"]\n");
    let mut registries: Vec<&str> = Vec::new();
    for m in mirrors {
        if !registries.contains(&m.registry.as_str()) {
            registries.push(&m.registry);
        }
    }
    for r in registries {
        out.push_str(&format!("\n[[registry]]\nprefix = {}\nlocation = {}\n", q(r), q(r)));
        if is_loopback_registry(r) {
            out.push_str("insecure = true\n");
        }
        for m in mirrors.iter().filter(|m| m.registry == r) {
            out.push_str(&format!("\n[[registry.mirror]]\nlocation = {}\n", q(&m.location)));
            if m.insecure {
                out.push_str("insecure = true\n");
            }
        }
    }
    out
}

/// One attempt against one mirror: the mirror's registry is served by that mirror only.
pub fn single_source_conf(mirror: &RegistryMirror) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# One source only: this file is used for a single pull attempt.\n");
    out.push_str("unqualified-search-registries = [\"docker.io\"]\n");
    out.push_str(&format!("\n[[registry]]\nprefix = {}\nlocation = {}\n", q(&mirror.registry), q(&mirror.location)));
    if mirror.insecure {
        out.push_str("insecure = true\n");
    }
    out
}

/// Whether a file is one this module wrote (so it may be replaced or removed).
pub fn is_ours(text: &str) -> bool {
    text.starts_with(HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_and_registry_mirrors() {
        let m = RegistryMirror::parse("https://docker.m.daocloud.io/").unwrap();
        assert_eq!(m.registry, "docker.io");
        assert_eq!(m.location, "docker.m.daocloud.io");
        assert!(!m.insecure);
        assert_eq!(m.host_port(), ("docker.m.daocloud.io".to_string(), 443));
        let m = RegistryMirror::parse("127.0.0.1:5000=http://127.0.0.1:5001/cache").unwrap();
        assert_eq!(
            (m.registry.as_str(), m.location.as_str(), m.insecure),
            ("127.0.0.1:5000", "127.0.0.1:5001/cache", true)
        );
        assert_eq!(m.host_port(), ("127.0.0.1".to_string(), 5001));
        assert!(RegistryMirror::parse("127.0.0.1:5001").unwrap_err().contains("http://"));
        assert!(RegistryMirror::parse("http://").is_err());
        assert_eq!(RegistryMirror::parse("http://mirror").unwrap().host_port(), ("mirror".to_string(), 80));
    }

    #[test]
    fn conf_lists_mirrors_in_order_http_insecure() {
        let mirrors = vec![
            RegistryMirror::parse("http://127.0.0.1:5000").unwrap(),
            RegistryMirror::parse("https://mirror.example/hub").unwrap(),
        ];
        assert_eq!(
            registries_conf(&mirrors),
            format!(
                "{HEADER}unqualified-search-registries = [\"docker.io\"]\n\n\
                 [[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n\
                 [[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\n\
                 [[registry.mirror]]\nlocation = \"mirror.example/hub\"\n"
            )
        );
        // The text is valid TOML.
        let parsed: toml::Table = toml::from_str(&registries_conf(&mirrors)).unwrap();
        assert_eq!(parsed["registry"].as_array().unwrap()[0]["mirror"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn loopback_origin_is_insecure_and_grouped() {
        let mirrors = vec![
            RegistryMirror::parse("127.0.0.1:5000=http://127.0.0.1:5001").unwrap(),
            RegistryMirror::parse("https://hub-mirror.example").unwrap(),
            RegistryMirror::parse("127.0.0.1:5000=http://127.0.0.1:5002").unwrap(),
        ];
        let text = registries_conf(&mirrors);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let regs = parsed["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0]["prefix"].as_str(), Some("127.0.0.1:5000"));
        assert_eq!(regs[0]["insecure"].as_bool(), Some(true));
        let locs: Vec<&str> =
            regs[0]["mirror"].as_array().unwrap().iter().map(|m| m["location"].as_str().unwrap()).collect();
        assert_eq!(locs, ["127.0.0.1:5001", "127.0.0.1:5002"]);
        assert!(regs[1].get("insecure").is_none());
        assert!(is_ours(&text));
        assert!(!is_ours("[[registry]]\n"));
    }

    #[test]
    fn single_source_remaps_the_registry() {
        let m = RegistryMirror::parse("http://127.0.0.1:5001").unwrap();
        let parsed: toml::Table = toml::from_str(&single_source_conf(&m)).unwrap();
        let r = &parsed["registry"].as_array().unwrap()[0];
        assert_eq!(r["prefix"].as_str(), Some("docker.io"));
        assert_eq!(r["location"].as_str(), Some("127.0.0.1:5001"));
        assert_eq!(r["insecure"].as_bool(), Some(true));
        assert!(r.get("mirror").is_none());
    }

    #[test]
    fn loopback() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("docker.io"));
        assert!(!is_loopback_registry("ghcr.io"));
    }
}
