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
    let command = flags::command_path(&std::env::args().skip(1).collect::<Vec<_>>()).join(" ");
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line of cause first, then the context chain that says what to do.
            eprintln!("error: {err:#}");
            github_failure(&command, &err);
            ExitCode::FAILURE
        }
    }
}

/// In GitHub Actions: an `::error` annotation for each place in a file the error names (stack
/// file and Dockerfile errors), and the error in the job's summary (util/github.rs).
fn github_failure(command: &str, err: &anyhow::Error) {
    if !util::github::enabled() {
        return;
    }
    let root = Workspace::from_env().root.to_string_lossy().into_owned();
    let causes: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    for (file, line, col, message) in util::github::annotations(&causes.join("\n"), &root) {
        util::github::error_annotation(&file, line, col, &message);
    }
    util::github::append_summary(&format!("### `cargo xtask {command}` failed\n\n```text\nerror: {err:#}\n```\n"));
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
    // The long commands are one folded group each in GitHub Actions; deploy and test make
    // their own per phase.
    use util::github::group;
    match flags.subcommand {
        flags::XtaskCmd::Pull(cmd) => group("pull", || cmd.run(&ws)),
        flags::XtaskCmd::Build(cmd) => group("build", || cmd.run(&ws)),
        flags::XtaskCmd::Mirrors(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Deploy(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Down(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Status(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Supervise(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Logs(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Verify(cmd) => group("verify", || cmd.run(&ws)),
        flags::XtaskCmd::Doctor(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Bundle(cmd) => group("bundle", || cmd.run(&ws)),
        flags::XtaskCmd::Export(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Push(cmd) => group("push", || cmd.run(&ws)),
        flags::XtaskCmd::Test(cmd) => cmd.run(&ws),
        flags::XtaskCmd::Bench(cmd) => cmd.run(&ws),
    }
}
