//! What `push` publishes, as data: for each service image, the references it is pushed to
//! (`latest`, the git short revision, the version on a tag build, any `--tag`), and the
//! registry credentials from the environment. Pure: the environment and git's answers come in
//! as values, so every rule is tested here without podman or a registry.

use std::collections::BTreeMap;
use std::fmt;

use crate::oci::ImageRef;

/// One service image and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePush {
    pub service: String,
    /// The local image `build` made (the manifest's `image`).
    pub source: String,
    /// `<repository>:<tag>` for every tag, in order: latest, revision, version, extra.
    pub targets: Vec<String>,
}

/// Where the build came from, for its tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revision {
    /// `git rev-parse --short HEAD`.
    pub short: String,
    /// Tracked files differ from HEAD: the image may not be what the revision says.
    pub dirty: bool,
    /// The release version when HEAD is a version tag (`v1.2.3` gives `1.2.3`).
    pub version: Option<String>,
}

/// The version of a tag build: `GITHUB_REF_TYPE=tag` with `GITHUB_REF_NAME`, else the tag git
/// says HEAD is exactly at (`git describe --tags --exact-match`). Only `v<digit>...` tags are
/// releases (the workflow triggers on `v*`); the leading `v` is dropped, as image tags go.
pub fn version(env: &BTreeMap<String, String>, exact_git_tag: Option<&str>) -> Result<Option<String>, String> {
    let from_env = (env.get("GITHUB_REF_TYPE").map(String::as_str) == Some("tag"))
        .then(|| env.get("GITHUB_REF_NAME").cloned())
        .flatten();
    let Some(tag) = from_env.or_else(|| exact_git_tag.map(str::to_string)) else { return Ok(None) };
    let tag = tag.trim();
    let Some(v) = tag.strip_prefix('v').filter(|v| v.starts_with(|c: char| c.is_ascii_digit())) else {
        return Ok(None);
    };
    if v.len() > 128 || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(format!(
            "git tag {tag:?} is not usable as an image tag (letters, digits, '.', '-', '_'); \
             name release tags like v1.2.3"
        ));
    }
    Ok(Some(v.to_string()))
}

/// The tags of every image: `latest`, the revision (`-dirty` when tracked files changed), the
/// version on a release, then `extra` (`--tag`), each once.
pub fn tags(rev: &Revision, extra: &[String]) -> Result<Vec<String>, String> {
    let mut out = vec!["latest".to_string()];
    if !rev.short.is_empty() {
        out.push(if rev.dirty { format!("{}-dirty", rev.short) } else { rev.short.clone() });
    }
    out.extend(rev.version.iter().cloned());
    for t in extra {
        if t.is_empty()
            || t.len() > 128
            || t.starts_with(['.', '-'])
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "--tag {t:?}: an image tag is 1-128 letters, digits, '.', '-', '_', not starting with '.' or '-'"
            ));
        }
        out.push(t.clone());
    }
    let mut seen = Vec::new();
    out.retain(|t| {
        let new = !seen.contains(t);
        seen.push(t.clone());
        new
    });
    Ok(out)
}

/// The repository a service's image is pushed to: `--registry PREFIX` gives `PREFIX/<service>`;
/// otherwise the manifest's image name without its tag, which must name a registry one can push
/// to (not `localhost/...`).
pub fn repository(service: &str, image: &str, registry: Option<&str>) -> Result<String, String> {
    if let Some(prefix) = registry {
        let prefix = prefix.trim_end_matches('/');
        let candidate = format!("{prefix}/{service}");
        let parsed = ImageRef::parse(&candidate).map_err(|e| format!("--registry {prefix:?}: {e}"))?;
        if parsed.registry == "docker.io" && !prefix.starts_with("docker.io") {
            return Err(format!(
                "--registry {prefix:?} names no registry host: give one like ghcr.io/OWNER or 127.0.0.1:5000/v7"
            ));
        }
        return Ok(parsed.name());
    }
    let parsed = ImageRef::parse(image).map_err(|e| format!("services.{service}.image: {e}"))?;
    if parsed.registry == "localhost" {
        return Err(format!(
            "services.{service}.image = {image:?} is a local name: give it a registry name in docker/stack.toml \
             or push with --registry HOST/PREFIX"
        ));
    }
    Ok(parsed.name())
}

/// The plan for `services` (name, manifest image), every image with the same tags.
pub fn plan(
    services: &[(String, String)],
    registry: Option<&str>,
    rev: &Revision,
    extra_tags: &[String],
) -> Result<Vec<ImagePush>, String> {
    let tags = tags(rev, extra_tags)?;
    services
        .iter()
        .map(|(service, image)| {
            let repo = repository(service, image, registry)?;
            Ok(ImagePush {
                service: service.clone(),
                source: image.clone(),
                targets: tags.iter().map(|t| format!("{repo}:{t}")).collect(),
            })
        })
        .collect()
}

/// Registry credentials. The secret is never shown: `Debug` and `Display` print the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
    /// Which variables they came from, for messages.
    pub source: &'static str,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, secret: ***, source: {} }}", self.user, self.source)
    }
}

/// `REGISTRY_USER` + `REGISTRY_TOKEN`, else `GITHUB_ACTOR` + `GITHUB_TOKEN` (what a GitHub
/// Actions job has for GHCR), else none (a registry that needs no login). Half a pair is an
/// error: pushing anonymously would only fail later with a less clear message.
pub fn credentials(env: &BTreeMap<String, String>) -> Result<Option<Credentials>, String> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (get("REGISTRY_USER"), get("REGISTRY_TOKEN")) {
        (Some(u), Some(t)) => {
            return Ok(Some(Credentials {
                user: u.to_string(),
                secret: t.to_string(),
                source: "REGISTRY_USER/REGISTRY_TOKEN",
            }))
        }
        (Some(_), None) => return Err("REGISTRY_USER is set but REGISTRY_TOKEN is not: set both, or neither".into()),
        (None, Some(_)) => return Err("REGISTRY_TOKEN is set but REGISTRY_USER is not: set both, or neither".into()),
        (None, None) => {}
    }
    match (get("GITHUB_ACTOR"), get("GITHUB_TOKEN")) {
        (Some(u), Some(t)) => {
            Ok(Some(Credentials { user: u.to_string(), secret: t.to_string(), source: "GITHUB_ACTOR/GITHUB_TOKEN" }))
        }
        (None, Some(_)) => {
            Err("GITHUB_TOKEN is set but GITHUB_ACTOR is not: set both (Actions sets GITHUB_ACTOR)".into())
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn rev(short: &str, dirty: bool, version: Option<&str>) -> Revision {
        Revision { short: short.into(), dirty, version: version.map(str::to_string) }
    }

    #[test]
    fn tags_are_latest_revision_version_then_extra_each_once() {
        assert_eq!(tags(&rev("abc1234", false, None), &[]).unwrap(), ["latest", "abc1234"]);
        assert_eq!(tags(&rev("abc1234", true, None), &[]).unwrap(), ["latest", "abc1234-dirty"]);
        assert_eq!(
            tags(&rev("abc1234", false, Some("1.2.3")), &["edge".into(), "latest".into()]).unwrap(),
            ["latest", "abc1234", "1.2.3", "edge"]
        );
        let e = tags(&rev("a", false, None), &["bad tag".into()]).unwrap_err();
        assert!(e.starts_with("--tag \"bad tag\": an image tag is"), "{e}");
        assert!(tags(&rev("a", false, None), &["-x".into()]).is_err());
    }

    #[test]
    fn the_version_comes_from_a_release_tag_only() {
        let actions = env(&[("GITHUB_REF_TYPE", "tag"), ("GITHUB_REF_NAME", "v1.4.0")]);
        assert_eq!(version(&actions, None).unwrap().as_deref(), Some("1.4.0"));
        let branch = env(&[("GITHUB_REF_TYPE", "branch"), ("GITHUB_REF_NAME", "main")]);
        assert_eq!(version(&branch, None).unwrap(), None);
        assert_eq!(version(&branch, Some("v2.0.0-rc.1")).unwrap().as_deref(), Some("2.0.0-rc.1"), "git describe");
        assert_eq!(version(&env(&[]), Some("nightly")).unwrap(), None, "not a version tag");
        assert_eq!(version(&env(&[]), Some("vendor")).unwrap(), None, "v, but no digit");
        let e = version(&env(&[]), Some("v1.0+build")).unwrap_err();
        assert!(e.contains("\"v1.0+build\" is not usable as an image tag"), "{e}");
    }

    #[test]
    fn repositories_from_the_manifest_or_registry_prefix() {
        assert_eq!(
            repository("backend", "ghcr.io/hellocplusplus0/v7/backend:latest", None).unwrap(),
            "ghcr.io/hellocplusplus0/v7/backend"
        );
        let e = repository("analytics-engine", "localhost/v7-analytics-engine:latest", None).unwrap_err();
        assert!(
            e.starts_with("services.analytics-engine.image = \"localhost/v7-analytics-engine:latest\" is a local name"),
            "{e}"
        );
        assert_eq!(
            repository("web", "ghcr.io/x/web:latest", Some("127.0.0.1:5000/v7test/")).unwrap(),
            "127.0.0.1:5000/v7test/web"
        );
        let e = repository("web", "ghcr.io/x/web", Some("myorg")).unwrap_err();
        assert!(e.contains("names no registry host"), "{e}");
        assert!(repository("web", "ghcr.io/x/web", Some("ghcr.io/Upper")).unwrap_err().contains("lowercase"));
    }

    #[test]
    fn the_plan_names_every_image_and_tag() {
        let services = [
            ("backend".to_string(), "ghcr.io/o/v7/backend:latest".to_string()),
            ("web".to_string(), "ghcr.io/o/v7/web:latest".to_string()),
        ];
        let p = plan(&services, None, &rev("0123abc", false, Some("1.0.0")), &[]).unwrap();
        assert_eq!(p[0].source, "ghcr.io/o/v7/backend:latest");
        assert_eq!(
            p[0].targets,
            ["ghcr.io/o/v7/backend:latest", "ghcr.io/o/v7/backend:0123abc", "ghcr.io/o/v7/backend:1.0.0"]
        );
        assert_eq!(p[1].targets[1], "ghcr.io/o/v7/web:0123abc");
    }

    #[test]
    fn credentials_from_either_pair_and_never_shown() {
        let c = credentials(&env(&[("REGISTRY_USER", "u"), ("REGISTRY_TOKEN", "s3cret"), ("GITHUB_TOKEN", "g")]))
            .unwrap()
            .unwrap();
        assert_eq!((c.user.as_str(), c.source), ("u", "REGISTRY_USER/REGISTRY_TOKEN"));
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        let c = credentials(&env(&[("GITHUB_ACTOR", "bot"), ("GITHUB_TOKEN", "ghs_x")])).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.secret.as_str()), ("bot", "ghs_x"));
        assert_eq!(credentials(&env(&[])).unwrap(), None);
        let e = credentials(&env(&[("REGISTRY_USER", "u")])).unwrap_err();
        assert!(e.starts_with("REGISTRY_USER is set but REGISTRY_TOKEN is not"), "{e}");
        assert!(credentials(&env(&[("GITHUB_TOKEN", "t")])).unwrap_err().contains("GITHUB_ACTOR"));
    }
}
