//! What podman's image store holds: whether images are here, their IDs, sizes and labels. One
//! `podman image inspect` answers for many images at once (0.04 s), where `podman images`
//! sizes every image in the store (0.35 s on a store of 40 images).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use regex_lite::Regex;

use super::Podman;
use crate::oci::ImageRef;
use crate::process::Runner;

/// An image that is here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalImage {
    /// 64 hex digits, without `sha256:`.
    pub id: String,
    pub size: u64,
}

/// The reference podman is given: by digest when there is one (podman 4.3 refuses a reference
/// with both a tag and a digest).
pub fn podman_reference(image: &ImageRef) -> String {
    match &image.digest {
        Some(d) => format!("{}@{d}", image.name()),
        None => image.to_string(),
    }
}

/// Which of `images` are here: one `podman image inspect` for all of them, or, when its answer
/// cannot be read, the `podman images` listing.
pub fn presence(runner: &Runner, podman: &Podman, images: &[ImageRef]) -> Result<Vec<Option<LocalImage>>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<String> = images.iter().map(podman_reference).collect();
    let cmd = podman.cmd().args(["image", "inspect", "--format", "{{.Id}}|{{.Size}}"]).args(refs.iter().cloned());
    let out = runner.capture(&cmd)?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if let Some(found) = parse_inspect(&refs, &stdout, &stderr) {
        return Ok(found);
    }
    let local = list_local(runner, podman)?;
    Ok(images.iter().map(|i| find_listed(&local, i).map(|l| LocalImage { id: l.id.clone(), size: l.size })).collect())
}

/// What `podman image inspect --format '{{.Id}}|{{.Size}}' REF...` says of `refs`: the images
/// found print a line each, in order; the missing ones are named on stderr, one line each
/// ("Error: inspecting object: REF: image not known", the earlier ones as "error inspecting
/// object: ..."). `None` when the answer is anything else.
pub fn parse_inspect(refs: &[String], stdout: &str, stderr: &str) -> Option<Vec<Option<LocalImage>>> {
    let not_known = Regex::new(r"^(?:Error: |error )?inspecting object: (.+): image not known$").expect("valid regex");
    let mut missing: Vec<&str> = Vec::new();
    for line in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        missing.push(not_known.captures(line)?.get(1)?.as_str());
    }
    let mut found = stdout.lines().filter(|l| !l.trim().is_empty());
    let mut out = Vec::new();
    for r in refs {
        if missing.contains(&r.as_str()) {
            out.push(None);
        } else {
            let (id, size) = found.next()?.trim().split_once('|')?;
            let id = id.trim().trim_start_matches("sha256:").to_string();
            out.push(Some(LocalImage { id, size: size.trim().parse().ok()? }));
        }
    }
    found.next().is_none().then_some(out)
}

/// One row of `podman images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    pub name: String,
    pub tag: Option<String>,
    pub digest: String,
    pub id: String,
    pub size: u64,
}

pub const IMAGES_FORMAT: &str = "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.ID}}|{{.VirtualSize}}";

pub fn parse_listing(text: &str) -> Vec<ListedImage> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split('|');
            let (name, tag, digest, id, size) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if name == "<none>" {
                return None;
            }
            Some(ListedImage {
                name: name.to_string(),
                tag: (tag != "<none>" && !tag.is_empty()).then(|| tag.to_string()),
                digest: digest.to_string(),
                id: id.to_string(),
                size: size.trim().parse().unwrap_or(0),
            })
        })
        .collect()
}

/// One `podman images` call. podman 4.3 fails the listing when another process removes an image
/// at the same moment ("image not known"), so it is tried again.
fn list_local(runner: &Runner, podman: &Podman) -> Result<Vec<ListedImage>> {
    let cmd = podman.cmd().args(["images", "--no-trunc", "--format", IMAGES_FORMAT]);
    let mut tries = 0;
    loop {
        tries += 1;
        match runner.query(&cmd) {
            Ok(text) => return Ok(parse_listing(&text)),
            Err(e) if tries < 5 && format!("{e:#}").contains("image not known") => {
                std::thread::sleep(Duration::from_millis(200 * tries));
            }
            Err(e) => return Err(e).context("cannot list the local images"),
        }
    }
}

pub fn find_listed<'a>(local: &'a [ListedImage], image: &ImageRef) -> Option<&'a ListedImage> {
    let name = image.name();
    local.iter().find(|l| {
        l.name == name
            && match &image.digest {
                Some(d) => l.digest == *d,
                None => l.tag == image.tag,
            }
    })
}

/// The full image ID of `image` (64 hex digits), or `None` when there is no such image.
pub fn id(runner: &Runner, podman: &Podman, image: &str) -> Result<Option<String>> {
    if !runner.succeeds(&podman.cmd().args(["image", "exists", image]))? {
        return Ok(None);
    }
    let id = runner.query(&podman.cmd().args(["image", "inspect", "--format", "{{.Id}}", image]))?;
    let id = id.trim().trim_start_matches("sha256:").to_string();
    if !crate::oci::manifest::is_sha256(&format!("sha256:{id}")) {
        bail!("podman reported an unexpected image ID for {image}: {id:?}");
    }
    Ok(Some(id))
}

/// The value of label `key` on `image`; `None` when the image is not here. An image without the
/// label gives `Some("")`.
pub fn label(runner: &Runner, podman: &Podman, image: &str, key: &str) -> Option<String> {
    let format = format!("{{{{index .Labels \"{key}\"}}}}");
    runner
        .query(&podman.cmd().args(["image", "inspect", "--format", &format, image]))
        .ok()
        .map(|v| v.trim().to_string())
}

/// [`label`] for several images with one `podman image inspect` when all are here (a no-op
/// build asks for every image's fingerprint label: one call instead of seven); one call per
/// image otherwise, so the missing ones come back as `None`.
pub fn labels(runner: &Runner, podman: &Podman, images: &[String], key: &str) -> Vec<Option<String>> {
    if images.is_empty() {
        return Vec::new();
    }
    let format = format!("{{{{index .Labels \"{key}\"}}}}");
    let cmd = podman.cmd().args(["image", "inspect", "--format", &format]).args(images.iter().cloned());
    if let Ok(out) = runner.query(&cmd) {
        let values: Vec<Option<String>> = out.lines().map(|l| Some(l.trim().to_string())).collect();
        if values.len() == images.len() {
            return values;
        }
    }
    images.iter().map(|i| label(runner, podman, i, key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn one_inspect_tells_present_from_missing() {
        let refs: Vec<String> = ["a:1", "b:2", "c@sha256:00", "d:4"].iter().map(|s| s.to_string()).collect();
        // podman 4.3.1, two of four missing: the earlier error in lower case, the last as `Error:`.
        let stderr =
            "error inspecting object: b:2: image not known\nError: inspecting object: c@sha256:00: image not known\n";
        let got = parse_inspect(&refs, "sha256:4d07b66541e4|95287497\ne20370aa9d9e|82261442\n", stderr).unwrap();
        let sizes: Vec<Option<u64>> = got.iter().map(|g| g.as_ref().map(|l| l.size)).collect();
        assert_eq!(sizes, vec![Some(95_287_497), None, None, Some(82_261_442)]);
        assert_eq!(got[0].as_ref().unwrap().id, "4d07b66541e4", "without the sha256: prefix");
        assert_eq!(parse_inspect(&refs[..1], "x|5\n", "").unwrap(), vec![Some(LocalImage { id: "x".into(), size: 5 })]);
        // Anything podman did not say about a missing image, or a count that does not add up:
        // not trusted (the caller falls back to `podman images`).
        assert_eq!(parse_inspect(&refs[..1], "", "Error: database is locked\n"), None);
        assert_eq!(parse_inspect(&refs[..2], "x|5\n", ""), None);
        assert_eq!(parse_inspect(&refs[..1], "x|5\ny|6\n", ""), None);
        assert_eq!(parse_inspect(&refs[..1], "x|lots\n", ""), None);
    }

    #[test]
    fn listed_images_match_by_tag_or_digest() {
        let text = format!(
            "docker.io/library/alpine|3.19|sha256:aaa|{}|7800000\n<none>|<none>|sha256:bbb|x|100\n\
             docker.io/library/busybox|<none>|{D}|{}|4000\n",
            "1".repeat(64),
            "2".repeat(64)
        );
        let local = parse_listing(&text);
        assert_eq!(local.len(), 2);
        let a = ImageRef::parse("alpine:3.19").unwrap();
        assert_eq!(find_listed(&local, &a).unwrap().size, 7_800_000);
        assert!(find_listed(&local, &ImageRef::parse("alpine:3.20").unwrap()).is_none());
        let b = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(find_listed(&local, &b).unwrap().id, "2".repeat(64));
        assert!(find_listed(&local, &ImageRef::parse("busybox").unwrap()).is_none());
    }

    #[test]
    fn podman_is_given_the_digest_alone() {
        assert_eq!(
            podman_reference(&ImageRef::parse(&format!("alpine:3@{D}")).unwrap()),
            format!("docker.io/library/alpine@{D}")
        );
        assert_eq!(podman_reference(&ImageRef::parse("alpine").unwrap()), "docker.io/library/alpine:latest");
    }
}
