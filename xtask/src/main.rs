//! `cargo xtask`: V7's build automation. Each subcommand lives in its own module with a
//! `run(self, sh)`; every external command is planned as a [`command::Cmd`] value first and
//! executed in one place ([`command::Runner`]), so `--dry-run` prints exactly what would run.

mod flags;


mod bench;
mod build;
mod build_inputs;
mod bundle;
mod command;
mod deploy;
mod doctor;
mod dockerfile;
mod export;
mod http_client;
mod image_ref;
mod manifest;
mod manifest_reader;
mod mirror_rewrite;
mod podman_host;
mod prereq;
mod proxy;
mod pull;
mod pull_relay;
mod registry_free;
mod registry_mirrors;
mod test_suite;
mod text_format;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};

use anyhow::Result;
use xshell::Shell;

fn main() -> std::process::ExitCode {
    match try_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line of cause first, then the context chain that says what to do.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let flags = flags::Xtask::from_env_or_exit();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match flags.subcommand {
        flags::XtaskCmd::Pull(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Build(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Deploy(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Down(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Status(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Logs(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Verify(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Doctor(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Bundle(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Export(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Test(cmd) => cmd.run(&sh),
        flags::XtaskCmd::Bench(cmd) => cmd.run(&sh),
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where the xtask keeps what it generates (podman configs, rewritten Dockerfiles, build
/// logs, fetched dependencies). Ignored by git; safe to delete. `V7_STATE_DIR` moves it: the
/// end-to-end tests and benchmarks use that to start cold without touching a developer's.
pub(crate) fn state_dir() -> PathBuf {
    std::env::var_os("V7_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join(".v7"))
}
