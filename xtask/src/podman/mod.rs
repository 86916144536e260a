//! podman as this host needs it. Every podman [`Cmd`] of the xtask comes from [`Podman::cmd`],
//! which carries the configuration written for this host (`host.rs`): the runtime and ulimits
//! podman needs here, and the registry mirrors `pull` set up (`registries_conf.rs`). Also here:
//! what podman's errors mean (`errors.rs`), what the image store holds (`images.rs`), and the
//! host packages the commands need (`prereq.rs`).

pub mod errors;
pub mod host;
pub mod images;
pub mod prereq;
pub mod registries_conf;

use std::path::Path;

use anyhow::{Context, Result};

use crate::process::{on_path, Cmd};
use crate::util::fs::write_if_changed;
use crate::util::hash::sha256_hex;
use crate::util::workspace::Workspace;

pub use host::Adaptation;

/// podman, configured for this host.
#[derive(Clone, Debug)]
pub struct Podman {
    pub env: Vec<(String, String)>,
    pub adaptation: Adaptation,
}

impl Podman {
    /// Works out the adaptation and writes `<state>/podman/containers-<hash>.conf`; picks up the
    /// registries.conf `pull` wrote for registry mirrors, if any.
    pub fn prepare(ws: &Workspace) -> Result<Podman> {
        if !on_path("podman") {
            anyhow::bail!(
                "`podman` is required but not on PATH: apt-get install -y podman runc aardvark-dns catatonit \
                 (or run `cargo xtask test`, which installs it)"
            );
        }
        let adaptation = host::adapt(&host::gather_facts());
        let dir = ws.state.join("podman");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Named by its content: another xtask process writing a different adaptation (an older
        // binary, another checkout) never changes the file under a running podman.
        let text = host::containers_conf(&adaptation);
        let conf = dir.join(format!("containers-{}.conf", &sha256_hex(&text)[..16]));
        write_if_changed(&conf, &text)?;
        let mut env = vec![("CONTAINERS_CONF".to_string(), conf.display().to_string())];
        let registries = registries_conf::shared_path(ws);
        if registries.exists() {
            env.push(("CONTAINERS_REGISTRIES_CONF".to_string(), registries.display().to_string()));
        }
        Ok(Podman { env, adaptation })
    }

    /// For tests and dry runs: a podman with a fixed environment.
    #[cfg(test)]
    pub fn fixed(env: &[(&str, &str)]) -> Podman {
        Podman {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            adaptation: Adaptation::default(),
        }
    }

    pub fn cmd(&self) -> Cmd {
        let mut cmd = Cmd::new("podman");
        for (k, v) in &self.env {
            cmd = cmd.env(k.clone(), v.clone());
        }
        cmd
    }

    /// Points later podman calls at another registries.conf (one pull source).
    pub fn with_registries_conf(mut self, path: &Path) -> Podman {
        self.env.retain(|(k, _)| k != "CONTAINERS_REGISTRIES_CONF");
        self.env.push(("CONTAINERS_REGISTRIES_CONF".to_string(), path.display().to_string()));
        self
    }
}
