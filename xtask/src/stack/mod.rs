//! The stack file, `docker/stack.toml`: the one description of the stack every command reads.
//!
//! - `model.rs`: the values (services, networks, volumes, mirrors, settings);
//! - `reader.rs`: TOML text to values, every error with file, line, column and key;
//! - `validate.rs`: what reading cannot check (references, ports, durations, cycles);
//! - `names.rs`: what the stack's containers, networks, volumes, images and labels are called;
//! - `mode.rs`: registry or registry-free mode, and how `auto` decides;
//! - `placement.rs`: which image each service runs in a mode, and which services are left out.
//!
//! The format is documented in docs/stack.md.

pub mod mode;
pub mod model;
pub mod names;
pub mod placement;
pub mod reader;
mod validate;

use anyhow::{Context, Result};

pub use mode::Mode;
pub use model::*;

use crate::util::workspace::Workspace;

impl Stack {
    /// Reads and validates the workspace's stack file (`docker/stack.toml`, or `V7_STACK_FILE`).
    pub fn load(ws: &Workspace) -> Result<Stack> {
        let path = ws.root.join(&ws.stack_file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}: it describes the stack (see docs/stack.md)", path.display()))?;
        Stack::parse(&ws.stack_file, &text)
    }

    /// `file` names the text in errors.
    pub fn parse(file: &str, text: &str) -> Result<Stack> {
        let reader = reader::Reader { file, text };
        let stack = reader::read_stack(&reader)?;
        validate::validate(&stack, &reader)?;
        Ok(stack)
    }
}
