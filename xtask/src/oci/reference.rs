//! Image references, normalised the way podman resolves short names with Docker Hub as the
//! default registry: `node:18-alpine` is `docker.io/library/node:18-alpine`, a missing tag is
//! `latest`, digests are kept. Pure; tested below.

use std::fmt;
use std::sync::OnceLock;

use regex_lite::Regex;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, ...
    pub registry: String,
    /// `library/node`, `hellocplusplus0/v7/backend`, ...
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:...`
    pub digest: Option<String>,
}

fn component_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap())
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap())
}

fn digest_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$").unwrap())
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty image reference".to_string());
        }
        if text.contains(char::is_whitespace) || text.contains('$') {
            return Err(format!("{text:?} is not an image reference"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !digest_re().is_match(d) {
                    return Err(format!("{text:?}: digest {d:?} is not like sha256:<hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !tag_re().is_match(t) {
                return Err(format!("{text:?}: tag {t:?} may use letters, digits, '_', '.', '-' (at most 128)"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
        for c in repository.split('/') {
            if !component_re().is_match(c) {
                return Err(format!(
                    "{text:?}: repository part {c:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
                ));
            }
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    /// The name without tag or digest: `docker.io/library/node`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_are_docker_hub_library() {
        assert_eq!(norm("node:18-alpine"), "docker.io/library/node:18-alpine");
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("prom/prometheus:v2.51.0"), "docker.io/prom/prometheus:v2.51.0");
        assert_eq!(norm("docker.io/library/rust:1.87-alpine"), "docker.io/library/rust:1.87-alpine");
    }

    #[test]
    fn registries_with_dots_ports_or_localhost() {
        assert_eq!(norm("ghcr.io/hellocplusplus0/v7/backend"), "ghcr.io/hellocplusplus0/v7/backend:latest");
        assert_eq!(norm("localhost:5000/x/y:1"), "localhost:5000/x/y:1");
        assert_eq!(norm("localhost/v7-offline/base:bookworm"), "localhost/v7-offline/base:bookworm");
        let r = ImageRef::parse("127.0.0.1:5000/alpine:3.19").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "alpine"));
    }

    #[test]
    fn digests_are_kept_and_tags_optional_with_them() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(norm(&format!("alpine@{d}")), format!("docker.io/library/alpine@{d}"));
        assert_eq!(norm(&format!("alpine:3.19@{d}")), format!("docker.io/library/alpine:3.19@{d}"));
    }

    #[test]
    fn bad_references_say_why() {
        assert!(ImageRef::parse("Node:18").unwrap_err().contains("lowercase"));
        assert!(ImageRef::parse("node:18 alpine").is_err());
        assert!(ImageRef::parse("node:${TAG}").is_err());
        assert!(ImageRef::parse("alpine@sha256:xyz").unwrap_err().contains("digest"));
        assert!(ImageRef::parse("node:-bad").unwrap_err().contains("tag"));
        assert!(ImageRef::parse("").is_err());
    }
}
