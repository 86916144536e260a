//! The stack file, `docker/stack.toml`: the one description of the stack every command reads.
//!
//! - `model.rs`: the values (services, networks, volumes, mirrors, settings);
//! - `reader.rs`: TOML text to values, every error with file, line, column and key;
//! - `validate.rs`: what reading cannot check (references, ports, durations, cycles);
//! - `names.rs`: what the stack's containers, networks, volumes, images and labels are called;
//! - `mode.rs`: registry or registry-free mode, and how `auto` decides;
//! - `placement.rs`: which image each service runs in a mode, and which services are left out;
//! - `profile.rs`: what `--profile NAME` changes (`[profiles.NAME]` overlays).
//!
//! The format is documented in docs/stack.md.

pub mod mode;
pub mod model;
pub mod names;
pub mod placement;
pub mod profile;
pub mod reader;
mod validate;

use anyhow::{Context, Result};

pub use mode::Mode;
pub use model::*;

use crate::util::workspace::Workspace;

impl Stack {
    /// Reads and validates the workspace's stack file (`docker/stack.toml`, or `V7_STACK_FILE`).
    pub fn load(ws: &Workspace) -> Result<Stack> {
        Stack::load_profile(ws, None)
    }

    /// [`Stack::load`] with `[profiles.NAME]` applied when `profile` names one (`--profile`).
    pub fn load_profile(ws: &Workspace, profile: Option<&str>) -> Result<Stack> {
        let path = ws.root.join(&ws.stack_file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}: it describes the stack (see docs/stack.md)", path.display()))?;
        Stack::parse_profile(&ws.stack_file, &text, profile)
    }

    /// `file` names the text in errors.
    #[cfg(test)]
    pub fn parse(file: &str, text: &str) -> Result<Stack> {
        Stack::parse_profile(file, text, None)
    }

    /// Reads and validates the stack, then the stack under each of its profiles (chosen or
    /// not: a mistake in `prod` is found by every command and by `cargo test`, not by the one
    /// deploy that uses it), and applies `profile`. An unknown profile is refused with the
    /// known ones.
    pub fn parse_profile(file: &str, text: &str, profile: Option<&str>) -> Result<Stack> {
        let reader = reader::Reader { file, text };
        let mut stack = reader::read_stack(&reader)?;
        validate::validate(&stack, &reader)?;
        for name in stack.profiles.keys() {
            let mut overlaid = reader::read_stack(&reader)?;
            overlaid.apply_profile(name);
            validate::validate(&overlaid, &reader).map_err(|e| profile::in_profile(e, name))?;
        }
        if let Some(name) = profile {
            if !stack.profiles.contains_key(name) {
                let known: Vec<&str> = stack.profiles.keys().map(String::as_str).collect();
                anyhow::bail!(
                    "{file}: --profile {name:?}: the stack file has no [profiles.{name}]; profiles: {}; hint: leave \
                     --profile out for the stack file as it is, or add [profiles.{name}] (docs/stack.md)",
                    if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
                );
            }
            stack.apply_profile(name);
        }
        Ok(stack)
    }
}
