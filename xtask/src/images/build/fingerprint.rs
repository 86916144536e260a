//! The fingerprint of a build: SHA-256 over everything the build reads, stored as the image
//! label `v7.inputs`; when the image already here carries the same value, the build is skipped.
//!
//! What goes in, each as a length-prefixed field so no two inputs run into each other: a format
//! tag (bumped when this list changes), the Dockerfile's text, the ignore file's text, every
//! build argument, the IDs of the images the Dockerfile builds on (so a re-pulled or rebuilt
//! base rebuilds what stands on it, though its name did not change), then every file of the
//! context the ignore file lets through, in sorted order: its path, whether it is executable,
//! its bytes. SHA-256 rather than `std`'s `DefaultHasher`, whose output may change between Rust
//! releases: a toolchain update must not rebuild every image.

use std::path::Path;

use anyhow::{Context, Result};

use super::context::{self, IgnoreRules};
use crate::util::hash::Sha256;

/// Bump when what goes into a fingerprint changes.
const FORMAT: &str = "v7-inputs-1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// `sha256:<64 hex>`, the label's value.
    pub label: String,
    /// How many context files went in (for messages).
    pub files: usize,
}

/// `inputs`: the texts that are not context files (Dockerfile, ignore file, `KEY=VALUE` build
/// arguments, `base REF ID` lines), in a fixed order.
pub fn fingerprint(context_dir: &Path, rules: &IgnoreRules, inputs: &[&str]) -> Result<Fingerprint> {
    let files = context::files(context_dir, rules)?;
    let mut h = Sha256::new();
    h.field(FORMAT);
    h.field(inputs.len().to_string());
    for i in inputs {
        h.field(i);
    }
    for rel in &files {
        let path = context_dir.join(rel);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        h.field(rel).field(if is_executable(&path) { "x" } else { "-" }).field(&bytes);
    }
    Ok(Fingerprint { label: format!("sha256:{}", h.hex()), files: files.len() })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fs::TempDir;

    #[test]
    fn fingerprint_changes_with_content_and_ignores_ignored_files() {
        let dir = TempDir::create(&std::env::temp_dir(), "v7-xtask-fp").unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(d.join("target/out"), "1").unwrap();
        let rules = IgnoreRules::parse("target\n");
        let a = fingerprint(d, &rules, &["FROM x"]).unwrap();
        assert!(a.label.starts_with("sha256:") && a.label.len() == 71, "{a:?}");
        assert_eq!(a.files, 1);
        std::fs::write(d.join("target/out"), "2").unwrap();
        assert_eq!(a, fingerprint(d, &rules, &["FROM x"]).unwrap(), "ignored files do not count");
        assert_ne!(a, fingerprint(d, &rules, &["FROM y"]).unwrap(), "the Dockerfile counts");
        assert_ne!(a, fingerprint(d, &rules, &["FROM x", "base alpine:3 sha256:1"]).unwrap(), "base image IDs count");
        assert_ne!(
            fingerprint(d, &rules, &["FROM x", "A=1"]).unwrap(),
            fingerprint(d, &rules, &["FROM xA=1"]).unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("src/main.rs"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let x = fingerprint(d, &rules, &["FROM x"]).unwrap();
        assert_ne!(a, x, "the executable bit counts");
        std::fs::write(d.join("src/main.rs"), "fn main() { }").unwrap();
        assert_ne!(x, fingerprint(d, &rules, &["FROM x"]).unwrap(), "sources count");
    }

    #[test]
    fn the_value_is_stable_across_toolchains() {
        // A fixed context and fixed inputs give this value whatever compiled the xtask (it was
        // computed independently, with Python's hashlib, from the field layout described above).
        // A change here rebuilds every image of every user once: bump FORMAT on purpose only.
        let dir = TempDir::create(&std::env::temp_dir(), "v7-xtask-fp-stable").unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
        let fp = fingerprint(dir.path(), &IgnoreRules::parse(""), &["FROM scratch\n", ""]).unwrap();
        assert_eq!(fp.label, "sha256:1c7082481afc45a5f906b84412b9392c29c36bf7b7866cdc0cc1e99dd69069ec");
    }
}
