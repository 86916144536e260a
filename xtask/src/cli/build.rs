//! `cargo xtask build`: the service images (`images::build`), production or registry-free.

use anyhow::{bail, Result};

use crate::flags;
use crate::images::build::plan::choose_preset;
use crate::images::{self, BuildOptions};
use crate::process::Runner;
use crate::stack::{Mode, Stack};
use crate::util::workspace::Workspace;

impl flags::Build {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        let mode = if self.registry_free { Mode::RegistryFree } else { Mode::Registry };
        if self.rebuild_base && mode == Mode::Registry {
            bail!("--rebuild-base only applies with --registry-free (the registry-free base image)");
        }
        if self.preset.is_some() && !self.mirror {
            bail!("--preset only applies with --mirror: add --mirror");
        }
        if self.mirror && mode == Mode::RegistryFree {
            bail!("--mirror rewrites the production Dockerfiles; registry-free builds fetch their dependencies on the host");
        }
        let package_mirrors = if self.mirror { Some(choose_preset(&stack, self.preset.as_deref())?) } else { None };
        let opts = BuildOptions {
            services: self.service,
            package_mirrors,
            force: self.force,
            rebuild_base: self.rebuild_base,
        };
        images::build(ws, &Runner::new(self.dry_run), &stack, mode, &opts)
    }
}
