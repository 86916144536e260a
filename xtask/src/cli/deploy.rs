//! `cargo xtask deploy`: the images made sure of (`images::ensure`), then the stack started
//! behind its health checks (`deploy`).

use std::time::Duration;

use anyhow::Result;

use crate::deploy;
use crate::flags;
use crate::images;
use crate::podman::{prereq, Podman};
use crate::process::Runner;
use crate::stack::{mode, Stack};
use crate::util::workspace::Workspace;

impl flags::Deploy {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        if !self.dry_run {
            prereq::ensure("deploy", prereq::PODMAN)?;
        }
        let mode = mode::decide(&stack, self.registry_free);
        let runner = Runner::new(self.dry_run);
        if !self.no_build {
            images::ensure(ws, &runner, &stack, mode)?;
        }
        let podman = Podman::prepare(ws)?;
        let timeout = Duration::from_secs(self.timeout.unwrap_or(120));
        deploy::deploy(ws, &runner, &podman, &stack, mode, timeout)
    }
}
