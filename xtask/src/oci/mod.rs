//! What the xtask knows of the OCI and Docker registry formats, as pure functions: image
//! references as podman resolves them, and image manifests (the media types podman accepts,
//! the blobs a manifest names). "Manifest" in this crate means an OCI image manifest and
//! nothing else (docs/xtask.md, names).

pub mod manifest;
pub mod reference;

pub use reference::ImageRef;
