//! `cargo xtask deploy`: the mode decided (once, then remembered), room for builds checked, the
//! images made sure of (`images::ensure`), then the stack converged (`deploy`).

use std::time::Duration;

use anyhow::Result;

use crate::deploy::{self, preflight};
use crate::flags;
use crate::images;
use crate::podman::{prereq, Podman};
use crate::process::Runner;
use crate::stack::{mode, Stack};
use crate::util::github;
use crate::util::workspace::Workspace;

impl flags::Deploy {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load_profile(ws, self.profile.as_deref())?;
        if let Some(p) = &stack.profile {
            eprintln!("profile {p}: {} with [profiles.{p}] applied", ws.stack_file);
        }
        if !self.dry_run {
            prereq::ensure("deploy", prereq::PODMAN)?;
        }
        let mode = mode::decide(ws, &stack, self.registry_free);
        let runner = Runner::new(self.dry_run);
        if self.registry_free && !self.dry_run {
            mode::remember(ws, &stack, mode, "chosen with `deploy --registry-free`");
        }
        let podman = Podman::prepare(ws)?;
        if !self.no_build {
            github::group("deploy: images", || -> Result<()> {
                let missing = images::missing(&runner, &podman, &stack, mode)?;
                if missing > 0 {
                    preflight::disk(&runner, &podman, missing)?;
                }
                images::ensure(ws, &runner, &stack, mode)
            })?;
        }
        let opts = deploy::Options {
            timeout: Duration::from_secs(self.timeout.unwrap_or(120)),
            force_recreate: self.force_recreate,
        };
        github::group("deploy", || deploy::deploy(ws, &runner, &podman, &stack, mode, &opts))
    }
}
