//! `cargo xtask build`: the service images (`images::build`), production or registry-free.
//! Everything the flags and the environment say is checked before anything is built: the proxy
//! variables (`net/proxy.rs`), `--mirror` (`images/build/mirror_spec.rs`), `--jobs`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::flags;
use crate::images::build::schedule::{self, Controls};
use crate::images::build::{mirror_spec, mirrors};
use crate::images::{self, BuildOptions};
use crate::net::proxy;
use crate::process::Runner;
use crate::stack::{Mode, Stack};
use crate::util::workspace::Workspace;

impl flags::Build {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        proxy::checked(&env)?;
        let jobs = schedule::jobs(self.jobs, self.sequential)?;
        let mode = if self.registry_free { Mode::RegistryFree } else { Mode::Registry };
        if self.rebuild_base && mode == Mode::Registry {
            bail!("--rebuild-base only applies with --registry-free (the registry-free base image)");
        }
        let spec = self.mirror.as_deref().map(mirror_spec::parse).transpose()?;
        let stack = Stack::load(ws)?;
        let measure = || mirrors::auto(&stack, Duration::from_secs(3));
        let package_mirrors = spec.as_ref().map(|s| mirror_spec::resolve(&stack, s, measure)).transpose()?;
        let opts = BuildOptions {
            services: self.service,
            package_mirrors,
            force: self.force,
            rebuild_base: self.rebuild_base,
            controls: Controls { jobs, keep_going: self.keep_going, json: self.json },
        };
        images::build(ws, &Runner::new(self.dry_run), &stack, mode, &opts)
    }
}
