//! `cargo xtask logs SERVICE`: the service's container logs.

use anyhow::{bail, Result};

use crate::deploy;
use crate::flags;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

impl flags::Logs {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        if !stack.services.contains_key(&self.service) {
            let names: Vec<&str> = stack.services.keys().map(String::as_str).collect();
            bail!("no service named {:?}; services: {}", self.service, names.join(", "));
        }
        let podman = Podman::prepare(ws)?;
        let cmd = deploy::logs_command(&podman, &stack.container_name(&self.service), self.tail, self.follow);
        Runner::new(false).run(&cmd)
    }
}
