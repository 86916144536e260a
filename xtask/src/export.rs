//! placeholder: filled in by its issue.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

impl flags::Export {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask export` is not implemented yet")
    }
}
