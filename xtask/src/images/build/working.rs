//! Buildah's working containers that a stopped build leaves behind. podman 4.3.1 keeps a
//! `podman build`'s working container (`<base>-working-container`, state `storage`, seen with
//! `podman ps -a --external`) when the build is stopped by a signal; it carries no label of
//! the build, so the ones to remove are those that were not there when the builds started and
//! stand on an image of a stopped build: one of its base images, or an image of this project
//! (a builder stage's). Pure selection, tested on inline JSON.

use crate::util::json::{self, Read};

/// A container of podman's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub image: String,
    /// Made by buildah, not by `podman run` (state `storage`).
    pub external: bool,
}

/// `podman ps -a --external --format json`, read.
pub fn parse(text: &str) -> Vec<Container> {
    let Ok(v) = json::parse(text) else { return Vec::new() };
    v.items()
        .iter()
        .filter_map(|c| {
            Some(Container {
                id: c.field("Id")?.str()?.to_string(),
                image: c.field("Image").and_then(Read::str).unwrap_or("").to_string(),
                external: c.field("State").and_then(Read::str) == Some("storage"),
            })
        })
        .collect()
}

/// The working containers to remove: external, absent from `before` (IDs), on one of `images`
/// (references as podman shows them, or image IDs, which may be shown shortened).
pub fn leftovers(before: &[String], now: &[Container], images: &[String]) -> Vec<String> {
    let on_ours = |image: &str| {
        images.iter().any(|i| {
            let i = i.strip_prefix("sha256:").unwrap_or(i);
            i == image || (image.len() >= 12 && i.starts_with(image))
        })
    };
    now.iter().filter(|c| c.external && !before.contains(&c.id) && on_ours(&c.image)).map(|c| c.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_working_containers_on_our_images_are_removed() {
        let listing = r#"[
          {"Id": "aaa1", "Image": "localhost/v7test-base:1", "State": "storage", "Names": ["v7test-base-working-container"]},
          {"Id": "bbb2", "Image": "localhost/v7test-base:1", "State": "storage"},
          {"Id": "ccc3", "Image": "docker.io/library/alpine:3.19", "State": "storage"},
          {"Id": "ddd4", "Image": "localhost/v7test-base:1", "State": "running"},
          {"Id": "eee5", "Image": "0123456789ab", "State": "storage"}
        ]"#;
        let now = parse(listing);
        assert_eq!(now.len(), 5);
        assert!(now[0].external && !now[3].external, "state storage is buildah's");
        let images = ["localhost/v7test-base:1".to_string(), format!("sha256:0123456789ab{}", "f".repeat(52))];
        let gone = leftovers(&["bbb2".to_string()], &now, &images);
        assert_eq!(gone, ["aaa1", "eee5"], "bbb2 was there before, ccc3 is on another image, ddd4 is podman's");
        assert!(parse("not json").is_empty());
    }
}
