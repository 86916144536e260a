//! placeholder: filled in by its issue.

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags;

impl flags::Deploy {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask deploy` is not implemented yet")
    }
}

impl flags::Down {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask down` is not implemented yet")
    }
}

impl flags::Status {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask status` is not implemented yet")
    }
}

impl flags::Logs {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask logs` is not implemented yet")
    }
}

impl flags::Verify {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        bail!("`cargo xtask verify` is not implemented yet")
    }
}
