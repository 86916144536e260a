//! `cargo xtask down`: the stack's containers and networks removed (volumes with `--volumes`).

use anyhow::Result;

use crate::deploy::down::down;
use crate::flags;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

impl flags::Down {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        let podman = Podman::prepare(ws)?;
        down(ws, &Runner::new(self.dry_run), &podman, &stack, self.volumes)?;
        if !self.dry_run {
            let kept = if self.volumes { " with its volumes" } else { " (volumes kept; --volumes removes them)" };
            eprintln!("stack {} removed{kept}", stack.project.name);
        }
        Ok(())
    }
}
