//! `cargo xtask verify`: proof that the running stack works (`deploy/verify.rs`), for the
//! services that have a container.

use anyhow::Result;

use crate::deploy::verify::verify;
use crate::flags;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

impl flags::Verify {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        let podman = Podman::prepare(ws)?;
        let runner = Runner::new(false);
        // Services left out in this mode (Grafana when registry-free) have no container.
        let deployed: Vec<String> = stack
            .services
            .keys()
            .filter(|n| {
                runner.succeeds(&podman.cmd().args(["container", "exists", &stack.container_name(n)])).unwrap_or(false)
            })
            .cloned()
            .collect();
        verify(ws, &runner, &podman, &stack, &deployed)
    }
}
