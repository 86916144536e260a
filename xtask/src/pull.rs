//! placeholder: filled in by its issue.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

impl flags::Pull {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask pull` is not implemented yet")
    }
}
