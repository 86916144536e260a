//! `cargo xtask push`: the service images, published with their tags (`images/push`).

use anyhow::Result;

use crate::flags;
use crate::images::push;
use crate::process::Runner;
use crate::util::workspace::Workspace;

impl flags::Push {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let opts = push::Options {
            services: self.services,
            registry: self.registry,
            tags: self.tag,
            cert_dir: self.cert_dir,
            attempts: self.attempts,
            timeout_secs: self.timeout,
        };
        push::push(ws, &Runner::new(self.dry_run), &opts)
    }
}
