//! `cargo xtask pull`: every base and infrastructure image the stack needs (`images/pull`).

use anyhow::Result;

use crate::flags;
use crate::images::pull::{self, plan::Policy};
use crate::process::Runner;
use crate::util::workspace::Workspace;

impl flags::Pull {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let opts = pull::Options {
            status: self.status,
            policy: Policy::parse(self.policy.as_deref())?,
            jobs: self.jobs,
            timeout_secs: self.timeout,
            deadline_secs: self.deadline,
            attempts: self.attempts,
            registry_mirrors: self.registry_mirror,
            images: self.image,
            no_relay: self.no_relay,
            json: self.json,
        };
        pull::pull(ws, &Runner::new(self.dry_run), &opts)
    }
}
