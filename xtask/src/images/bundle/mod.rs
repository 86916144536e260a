//! Bundles (`bundle save FILE` / `bundle load FILE`): every image the stack needs, in one archive
//! that an air-gapped machine can verify before it loads anything.
//!
//! # Which images
//! [`stack_images`]: every image the stack runs in the chosen mode (`stack/placement.rs`), in
//! start order, without duplicates. That is exactly the set `deploy` checks before it starts
//! anything, so `cargo xtask deploy --no-build` works from a loaded bundle. Services without an
//! image in that mode (Grafana when registry-free, and what depends on it) are named and left
//! out. The mode is `--registry-free`, else `project.mode`, else the registry probe, as for `deploy`.
//! Build-only images (the registry-free Debian base, builder stages) are not included: deploy
//! does not run them.
//!
//! # Format (version 1)
//! (The list of images is called the index, not the manifest: in this crate "manifest" means an
//! OCI image manifest; docs/xtask.md, names. The file keeps its name, so format 1 is unchanged.)
//! One POSIX tar (GNU tar writes it; gzip-compressed when FILE ends in `.gz` or `.tgz`; `load`
//! accepts both, whatever the name) holding plain files only, no directories:
//! - `v7-bundle.txt`, the index, first. One record per line, fields separated by one TAB
//!   (shown as `→`), `#` lines are comments:
//!   ```text
//!   v7-bundle→1
//!   created→2026-11-22T02:22:00Z
//!   mode→registry                      (or registry-free)
//!   image→NAME→IMAGE-ID→FILE→SIZE→SHA256   (one line per image)
//!   ```
//!   IMAGE-ID is podman's 64-hex image ID (the digest of the image config), SIZE is FILE's size
//!   in bytes and SHA256 its checksum.
//! - `v7-bundle.txt.sha256`: the index's own checksum, in `sha256sum` format, so a damaged
//!   index is caught too (`sha256sum -c v7-bundle.txt.sha256` works by hand).
//! - one `podman save --format docker-archive` file per image, named `NN-<name>.tar`.
//!   docker-archive keeps the image config byte for byte, so the image ID is the same after
//!   save, `podman rmi`, load (checked with podman 4.3.1; oci-archive keeps it as well, but
//!   docker-archive also loads with `docker load`). Layers are stored uncompressed, so a `.tar.gz`
//!   bundle is much smaller, at the cost of gzip time.
//!
//! Checksums come from coreutils' `sha256sum`: fast in a debug build, and on every machine
//! podman runs on.
//!
//! # save
//! Every image must be here first; the missing ones are all named with the command that makes
//! them, and nothing is written. The archives are saved into a temporary directory next to FILE
//! (`.FILE.tmp-*`), checksummed, tarred to `FILE.partial`, synced and renamed to FILE; on any
//! failure the partial file and the directory are removed, so FILE is either complete or
//! untouched (an existing FILE is replaced only once the new one is complete). An image whose ID changes while it is saved is an error.
//!
//! # load
//! Nothing is loaded until the whole bundle checks out:
//! 1. `tar -tvf` reads the whole archive: a truncated or non-tar file is refused here
//!    ("bundle FILE is truncated or not a tar"). Every entry must be a regular file with a plain
//!    name (no `/`, no `..`, no leading `.`, no spaces, no links, no duplicates).
//! 2. It is extracted into `.v7/bundle/load-*` (removed afterwards); the index must match
//!    `v7-bundle.txt.sha256`, parse, be format 1, and name exactly the files present (no
//!    missing, no extra ones); every file's size and sha256 must match. All mismatches are
//!    reported together.
//! 3. Then `podman load -i` each archive and check that NAME now has IMAGE-ID. If a load or that
//!    check fails, what this load did is undone (new names removed, replaced names pointed back
//!    at their previous image), so a failed load leaves the images as they were.
//!
//! Files: `index.rs` (the format), `save.rs`, `load.rs`, `archive.rs` (checksums and tar).

mod archive;
pub mod index;
mod load;
mod save;

use anyhow::Result;

pub use load::load;
pub use save::save;

use crate::stack::placement::plan;
use crate::stack::{Mode, Stack};

/// The images a bundle holds for a stack in one mode, and the services left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImages {
    pub images: Vec<String>,
    /// (service, why) for each service with no image in this mode.
    pub skipped: Vec<(String, String)>,
}

/// Every image `deploy` runs in this mode, in start order, once each.
pub fn stack_images(stack: &Stack, mode: Mode) -> Result<StackImages> {
    let plan = plan(stack, mode);
    let skipped = plan.skipped.iter().map(|(s, why)| (s.to_string(), why.clone())).collect();
    Ok(StackImages { images: plan.images(), skipped })
}

#[cfg(all(test, feature = "e2e"))]
mod e2e;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    #[test]
    fn the_repository_bundles_what_deploy_runs() {
        let stack = Stack::load(&Workspace::for_tests("bundle-images")).unwrap();
        let registry = stack_images(&stack, Mode::Registry).unwrap();
        assert_eq!(registry.images.len(), 7);
        assert!(registry.skipped.is_empty());
        assert!(registry.images.contains(&"docker.io/grafana/grafana:11.1.0".to_string()));
        let free = stack_images(&stack, Mode::RegistryFree).unwrap();
        assert_eq!(
            free.images,
            [
                "localhost/v7-registry-free/clickhouse:latest",
                "localhost/v7-registry-free/nats:latest",
                "localhost/v7-registry-free/analytics-engine:latest",
                "localhost/v7-registry-free/backend:latest",
                "localhost/v7-registry-free/prometheus:latest",
                "localhost/v7-registry-free/web:latest",
            ]
        );
        assert_eq!(free.skipped.len(), 1);
        assert_eq!(free.skipped[0].0, "grafana");
        assert!(!free.images.iter().any(|i| i.contains("/base:")), "build-only images are not bundled");
    }
}
