//! podman as this host needs it. Every podman [`Cmd`] of the xtask comes from [`Podman::cmd`],
//! which carries the configuration written for this host (`host.rs`): the runtime and ulimits
//! podman needs here, and the registry mirrors `pull` set up (`registries_conf.rs`). Also here:
//! what podman's errors mean (`errors.rs`), what the image store holds (`images.rs`), the
//! host packages the commands need (`prereq.rs`), and which certificates podman trusts for a
//! registry (`certs.rs`, with the xtask's own certs.d directory).

pub mod certs;
pub mod errors;
pub mod host;
pub mod images;
pub mod prereq;
pub mod registries_conf;
pub mod registry_errors;

use std::path::{Path, PathBuf};

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
    /// The xtask's certs.d (`<state>/podman/certs.d`, or `V7_CERTS_D`): per registry
    /// `<host[:port]>/ca.crt`, given to pulls as `--cert-dir` (`certs.rs`).
    pub certs_d: Option<PathBuf>,
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
        let certs_d = std::env::var_os("V7_CERTS_D").map(PathBuf::from).unwrap_or_else(|| dir.join("certs.d"));
        Ok(Podman { env, adaptation, certs_d: Some(certs_d) })
    }

    /// For tests and dry runs: a podman with a fixed environment.
    #[cfg(test)]
    pub fn fixed(env: &[(&str, &str)]) -> Podman {
        Podman {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            adaptation: Adaptation::default(),
            certs_d: None,
        }
    }

    /// The certs.d directory podman uses for `host_port` (as image references write it): ours,
    /// else podman's own places (`certs::roots`); `None` when it has none.
    pub fn cert_dir(&self, host_port: &str) -> Option<PathBuf> {
        let ours = self.certs_d.as_deref()?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        certs::cert_dir_for(&certs::roots(ours, home.as_deref()), host_port, Path::is_dir)
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
