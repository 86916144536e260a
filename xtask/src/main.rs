//! `cargo xtask`: V7's build automation. `main` parses the flags (`flags.rs`) and dispatches to
//! one module per command (`cli/`), each a `run(self, ws)`. Dependencies point down, never up
//! or around (checked by `tidy`):
//!
//! ```text
//! main, flags  ->  cli  ->  deploy, export  ->  images  ->  stack  ->  podman  ->  process, net, oci  ->  util
//! ```
//!
//! docs/xtask.md has the map: where Dockerfiles are rewritten, pulls retried, services health
//! gated, images named.

mod cli;
mod deploy;
mod export;
mod flags;
mod images;
mod net;
mod oci;
mod podman;
mod process;
mod stack;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use anyhow::Result;

use util::workspace::Workspace;

fn main() -> ExitCode {
    let flags = match parse_args() {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line of cause first, then the context chain that says what to do.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The flags, or the exit code after help or an error was printed. `COMMAND --help` prints that
/// command's help alone; flags that were renamed say their new name.
fn parse_args() -> Result<flags::Xtask, ExitCode> {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let path = flags::command_path(&args);
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", flags::help_for(&path));
        return Err(ExitCode::SUCCESS);
    }
    if let Some((old, new)) = flags::renamed(&args) {
        eprintln!("error: `{old}` is now called `{new}` (one name per concept: docs/xtask.md)");
        return Err(ExitCode::from(2));
    }
    match flags::Xtask::from_vec(args.iter().map(Into::into).collect()) {
        Ok(flags) => Ok(flags),
        Err(e) => {
            let command = if path.is_empty() { String::new() } else { format!("{} ", path.join(" ")) };
            eprintln!("error: {e}\n  hint: `cargo xtask {command}--help` lists what it takes");
            Err(ExitCode::from(2))
        }
    }
}

fn run(flags: flags::Xtask) -> Result<()> {
    let ws = Workspace::from_env();
    // Relative paths (stack file entries, build contexts) mean the checkout, wherever cargo
    // was started from.
    std::env::set_current_dir(&ws.root)?;
    match flags.subcommand {
        flags::XtaskCmd::Pull(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Build(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Mirrors(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Deploy(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Down(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Status(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Supervise(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Logs(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Verify(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Doctor(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Bundle(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Export(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Push(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Test(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Bench(cmd) => cmd.run(&ws),
    }
}
