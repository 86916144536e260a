//! `cargo xtask mirrors`: every package mirror of the stack file measured per package manager
//! (`images/build/mirrors.rs`), and what `build --mirror auto` would choose.

use std::time::Duration;

use anyhow::Result;

use crate::flags;
use crate::images::build::mirrors;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

impl flags::Mirrors {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let stack = Stack::load(ws)?;
        let timeout = Duration::from_secs(self.timeout.unwrap_or(3).max(1));
        let probes = mirrors::measure(&mirrors::candidates(&stack), &stack.project.debian_suite, timeout);
        let (chosen, said) = mirrors::choose(&probes);
        if self.json {
            print!("{}", mirrors::to_json(&probes, &chosen));
            return Ok(());
        }
        print!("{}", mirrors::render(&probes));
        println!("\nbuild --mirror auto would use:");
        for line in said {
            println!("  {line}");
        }
        Ok(())
    }
}
