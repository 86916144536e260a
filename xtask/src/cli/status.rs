//! `cargo xtask status`: each service's state and its health as last checked, as a table or
//! `--json`. Never waits for the network: the mode is the remembered one.

use anyhow::Result;

use crate::deploy::status;
use crate::flags;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::{mode, Stack};
use crate::util::workspace::Workspace;

impl flags::Status {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load_profile(ws, self.profile.as_deref())?;
        let podman = Podman::prepare(ws)?;
        let rows = status::rows(&Runner::new(false), &podman, &stack, mode::without_waiting(ws, &stack))?;
        if self.json {
            println!("{}", status::to_json(&rows));
        } else {
            print!("{}{}", status::to_table(&rows), status::supervisor_line(ws, &stack));
        }
        Ok(())
    }
}
