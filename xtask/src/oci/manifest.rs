//! OCI and Docker image manifests: the media types podman 4.3 accepts (asked for when the pull
//! relay fetches a manifest ahead, and by `pull`'s Retry-After probe), and the blobs an image
//! manifest names (what the relay fetches ahead). Parsed as JSON, not searched as text.

use crate::util::json::{self, Read};

/// The manifest types podman 4.3 accepts, in its order of preference.
pub const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The blobs an image manifest names: its config, then its layers, once each. An index
/// (manifest list) names manifests, not blobs: nothing. A `subject` (an artifact's referent) is
/// not a blob of this image. Anything that is not a manifest: nothing (the relay then simply
/// fetches nothing ahead).
pub fn blobs(body: &[u8]) -> (Option<String>, Vec<String>) {
    let Ok(doc) = json::parse(&String::from_utf8_lossy(body)) else { return (None, Vec::new()) };
    if doc.field("manifests").is_some() {
        return (None, Vec::new());
    }
    let digest =
        |v: &json::JsonValue| v.field("digest").and_then(Read::str).filter(|d| is_sha256(d)).map(str::to_string);
    let config = doc.field("config").and_then(digest);
    let mut layers: Vec<String> = Vec::new();
    for layer in doc.field("layers").map(Read::items).unwrap_or_default() {
        if let Some(d) = digest(layer) {
            if Some(&d) != config.as_ref() && !layers.contains(&d) {
                layers.push(d);
            }
        }
    }
    (config, layers)
}

/// `sha256:` and 64 lower-case hex digits.
pub fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_manifest_names_its_config_and_layers_an_index_names_none() {
        let (c, l1, l2, subj) = ("1".repeat(64), "2".repeat(64), "3".repeat(64), "4".repeat(64));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":7,"digest":"sha256:{c}"}},
               "layers":[{{"mediaType":"x","size":1,"digest":"sha256:{l1}","urls":["http://x"]}},
                         {{"mediaType":"x","size":1, "digest" : "sha256:{l2}"}},
                         {{"mediaType":"x","size":1, "digest" : "sha256:{l1}"}}],
               "subject":{{"mediaType":"m","size":3,"digest":"sha256:{subj}"}}}}"#
        );
        let (config, layers) = blobs(manifest.as_bytes());
        assert_eq!(config, Some(format!("sha256:{c}")));
        assert_eq!(layers, vec![format!("sha256:{l1}"), format!("sha256:{l2}")], "the subject is not a layer");
        let index = format!(r#"{{"manifests":[{{"digest":"sha256:{l1}","platform":{{"os":"linux"}}}}]}}"#);
        assert_eq!(blobs(index.as_bytes()), (None, vec![]));
        assert_eq!(blobs(b"<html>not json"), (None, vec![]));
        assert_eq!(blobs(br#"{"config":{"digest":"sha256:short"}}"#), (None, vec![]));
    }
}
