//! What to pull and from where: each needed image with what is here already and its sources in
//! order (every registry mirror of its registry, then the registry itself), and which sources
//! go through the loopback relay.

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::discover::Needed;
use super::relay::Upstream;
use crate::oci::ImageRef;
use crate::podman::images::LocalImage;
use crate::podman::registries_conf::{is_loopback_registry, RegistryMirror};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Mirror(RegistryMirror),
    Origin(String),
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Mirror(m) => format!("mirror {}", m.url),
            Source::Origin(r) => r.clone(),
        }
    }

    /// `host[:port]` as image references and certs.d directories name it.
    pub fn host_port(&self) -> String {
        match self {
            Source::Mirror(m) => m.location.split('/').next().unwrap_or("").to_string(),
            Source::Origin(r) => r.clone(),
        }
    }
}

/// The mirrors of the image's registry, in order, then the registry itself.
pub fn sources_for(image: &ImageRef, mirrors: &[RegistryMirror]) -> Vec<Source> {
    let mut out: Vec<Source> =
        mirrors.iter().filter(|m| m.registry == image.registry).cloned().map(Source::Mirror).collect();
    out.push(Source::Origin(image.registry.clone()));
    out
}

/// Registry mirrors from the command line when given, otherwise from the stack file.
pub fn mirror_list(cli: &[String], stack_file: &[String]) -> Result<Vec<RegistryMirror>> {
    let specs = if cli.is_empty() { stack_file } else { cli };
    specs.iter().map(|s| RegistryMirror::parse(s).map_err(anyhow::Error::msg)).collect()
}

/// Where a relay for `source` would fetch from, with the registry name podman pulls it as: a
/// mirror that answers (`http://` plain, `https://` over TLS), or the registry itself (on this
/// host plain HTTP first; elsewhere TLS). A dead mirror gets none.
pub fn relay_upstream(source: &Source, dead: &HashMap<String, String>) -> Option<(String, Upstream)> {
    match source {
        Source::Mirror(m) if dead.contains_key(&m.url) => None,
        Source::Mirror(m) if m.insecure => Some((m.registry.clone(), Upstream::from_location(&m.location)?)),
        Source::Mirror(m) => Some((m.registry.clone(), Upstream::from_location_tls(&m.location)?)),
        // Plain HTTP first on this host (the relay switches to TLS when it speaks TLS).
        Source::Origin(r) if is_loopback_registry(r) => Some((r.clone(), Upstream::origin(r, false)?)),
        Source::Origin(r) => Some((r.clone(), Upstream::origin(r, true)?)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Missing,
    Always,
}

impl Policy {
    pub fn parse(s: Option<&str>) -> Result<Policy> {
        match s.unwrap_or("missing") {
            "missing" => Ok(Policy::Missing),
            "always" => Ok(Policy::Always),
            other => bail!("--policy {other:?}: expected `missing` or `always`"),
        }
    }
}

/// One image of the plan.
#[derive(Clone, Debug)]
pub struct Item {
    pub needed: Needed,
    pub present: Option<LocalImage>,
    pub sources: Vec<Source>,
}

impl Item {
    pub fn to_pull(&self, policy: Policy) -> bool {
        policy == Policy::Always || self.present.is_none()
    }
}

/// `present`: what the image store holds, one entry per needed image.
pub fn plan(needed: Vec<Needed>, present: Vec<Option<LocalImage>>, mirrors: &[RegistryMirror]) -> Vec<Item> {
    needed
        .into_iter()
        .zip(present)
        .map(|(n, present)| Item { present, sources: sources_for(&n.image, mirrors), needed: n })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_of_the_image_registry_come_first() {
        let mirrors = mirror_list(
            &[
                "http://127.0.0.1:5001".into(),
                "ghcr.io=https://ghcr-mirror.example".into(),
                "https://m2.example".into(),
            ],
            &["https://ignored.example".into()],
        )
        .unwrap();
        let labels = |image: &str| -> Vec<String> {
            sources_for(&ImageRef::parse(image).unwrap(), &mirrors).iter().map(Source::label).collect()
        };
        assert_eq!(labels("alpine:3.19"), ["mirror http://127.0.0.1:5001", "mirror https://m2.example", "docker.io"]);
        assert_eq!(labels("quay.io/x/y:1"), ["quay.io"]);
        // The stack file's list applies when the command line gives none.
        assert_eq!(mirror_list(&[], &["https://m.example".into()]).unwrap()[0].location, "m.example");
        assert!(mirror_list(&["ftp://x".into()], &[]).is_err());
    }

    #[test]
    fn every_source_goes_through_the_relay_unless_its_mirror_is_dead() {
        let m = RegistryMirror::parse("http://127.0.0.1:5001/ns").unwrap();
        let (registry, up) = relay_upstream(&Source::Mirror(m.clone()), &HashMap::new()).unwrap();
        assert_eq!((registry.as_str(), up.port, up.namespace.as_str()), ("docker.io", 5001, "ns/"));
        let dead: HashMap<String, String> = [(m.url.clone(), "refused".to_string())].into();
        assert!(relay_upstream(&Source::Mirror(m.clone()), &dead).is_none(), "not through a dead mirror");
        let https = Source::Mirror(RegistryMirror::parse("https://m.example:8443").unwrap());
        let (_, up) = relay_upstream(&https, &HashMap::new()).unwrap();
        assert!(up.tls && up.port == 8443, "{up:?}");
        assert_eq!(https.host_port(), "m.example:8443");
        assert_eq!(Source::Mirror(m.clone()).host_port(), "127.0.0.1:5001");
        let (_, up) = relay_upstream(&Source::Origin("127.0.0.1:5000".into()), &HashMap::new()).unwrap();
        assert!(up.origin && !up.tls, "a registry on this host: plain HTTP first, its /v2/ passed on");
        let (registry, up) = relay_upstream(&Source::Origin("docker.io".into()), &HashMap::new()).unwrap();
        assert_eq!(
            (registry.as_str(), up.host.as_str(), up.tls, up.origin),
            ("docker.io", "registry-1.docker.io", true, true)
        );
    }

    #[test]
    fn plan_skips_present_images_unless_always() {
        let needed = vec![
            Needed { image: ImageRef::parse("alpine:3.19").unwrap(), used_by: vec![] },
            Needed { image: ImageRef::parse("node:18-alpine").unwrap(), used_by: vec![] },
        ];
        let present = vec![Some(LocalImage { id: "a".into(), size: 10 }), None];
        let items = plan(needed, present, &[]);
        assert!(!items[0].to_pull(Policy::Missing) && items[1].to_pull(Policy::Missing));
        assert!(items[0].to_pull(Policy::Always));
        assert!(Policy::parse(Some("sometimes")).is_err());
    }
}
