//! `cargo xtask supervise`: the health supervisor's loop (`deploy/supervisor.rs`), started by
//! `deploy` in the background and stopped by `down`.

use anyhow::Result;

use crate::deploy::supervisor;
use crate::flags;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

impl flags::Supervise {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        supervisor::run(ws, &Stack::load(ws)?)
    }
}
