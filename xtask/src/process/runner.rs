//! [`Runner`]: where every planned [`Cmd`] runs, in the foreground or in the background.
//!
//! Commands that change something (`run*`, `start`) are printed instead of run under
//! `--dry-run`; read-only queries (`query`, `capture`, `succeeds`) run even then, because the
//! plan depends on their answers. Standard input is always closed: nothing the xtask starts may
//! wait for a terminal (CI has none). Built on duct, which waits on, times out and kills
//! children from several threads at once.

use std::path::Path;
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Cmd;

#[derive(Clone, Copy, Debug, Default)]
pub struct Runner {
    pub dry_run: bool,
}

impl Runner {
    pub fn new(dry_run: bool) -> Runner {
        Runner { dry_run }
    }

    fn expression(cmd: &Cmd) -> duct::Expression {
        Self::expression_with_stdin(cmd, None)
    }

    /// duct applies the innermost redirection, so standard input is decided here, once.
    fn expression_with_stdin(cmd: &Cmd, input: Option<&[u8]>) -> duct::Expression {
        let base = duct::cmd(&cmd.program, &cmd.args);
        let mut expr = match input {
            Some(bytes) => base.stdin_bytes(bytes.to_vec()),
            None => base.stdin_null(),
        }
        .unchecked();
        for (k, v) in &cmd.env {
            expr = expr.env(k, v);
        }
        if let Some(dir) = &cmd.dir {
            expr = expr.dir(dir);
        }
        expr
    }

    fn start_error(cmd: &Cmd) -> String {
        format!("cannot start `{}`: is it installed? (`cargo xtask doctor`)", cmd.program)
    }

    /// Runs a command that changes something, its output going to the terminal; fails unless it
    /// succeeds.
    pub fn run(&self, cmd: &Cmd) -> Result<()> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(());
        }
        eprintln!("$ {cmd}");
        let status = Self::expression(cmd).run().with_context(|| Self::start_error(cmd))?.status;
        if !status.success() {
            bail!("`{cmd}` failed ({status})");
        }
        Ok(())
    }

    /// Runs a command that changes something, capturing its output, whatever its exit status
    /// (the caller words the error). Under `--dry-run`: printed, and an empty success.
    pub fn run_captured(&self, cmd: &Cmd) -> Result<Output> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(Output { status: success(), stdout: Vec::new(), stderr: Vec::new() });
        }
        self.capture(cmd)
    }

    /// Like [`Runner::run_captured`], but fails with the last line of stderr unless it succeeds.
    pub fn run_checked(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run_captured(cmd)?;
        if !out.status.success() {
            bail!("`{cmd}` failed: {}", last_line(&out.stderr));
        }
        Ok(out)
    }

    /// Runs a read-only command and returns its stdout; fails with the last line of stderr.
    pub fn query(&self, cmd: &Cmd) -> Result<String> {
        let out = self.capture(cmd)?;
        if !out.status.success() {
            bail!("`{cmd}` failed: {}", last_line(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a read-only command and returns everything, whatever its exit status.
    pub fn capture(&self, cmd: &Cmd) -> Result<Output> {
        Self::expression(cmd).stdout_capture().stderr_capture().run().with_context(|| Self::start_error(cmd))
    }

    /// Runs a read-only command: did it succeed (`podman image exists`, `sudo -n true`)?
    pub fn succeeds(&self, cmd: &Cmd) -> Result<bool> {
        Ok(self.capture(cmd)?.status.success())
    }

    /// Starts a command in the background, stdout discarded and stderr kept: the caller polls
    /// it, times it out and stops it (concurrent pulls). Never under `--dry-run`.
    pub fn start(&self, cmd: &Cmd) -> Result<Running> {
        debug_assert!(!self.dry_run, "start() is for commands that run");
        let handle =
            Self::expression(cmd).stdout_null().stderr_capture().start().with_context(|| Self::start_error(cmd))?;
        Ok(Running { handle })
    }

    /// Starts a command in the background with stdout and stderr written to `log` (builds, so
    /// they can be stopped while they run). Never under `--dry-run`.
    pub fn start_logged(&self, cmd: &Cmd, log: &Path) -> Result<Running> {
        debug_assert!(!self.dry_run, "start_logged() is for commands that run");
        let handle = Self::expression(cmd)
            .stderr_to_stdout()
            .stdout_path(log)
            .start()
            .with_context(|| Self::start_error(cmd))?;
        Ok(Running { handle })
    }
}

impl Runner {
    /// Starts a command that outlives the xtask (the health supervisor): in a process group
    /// of its own (a Ctrl-C of the terminal does not reach it), stdin closed, stdout and stderr
    /// appended to `log`, so it holds none of the caller's pipes. Returns its pid.
    pub fn spawn_detached(&self, cmd: &Cmd, log: &Path) -> Result<u32> {
        if self.dry_run {
            println!("{cmd} >> {} &", log.display());
            return Ok(0);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        // duct applies the inner redirection first: stderr joins stdout, then both go to the file.
        let handle = Self::expression(cmd)
            .stderr_to_stdout()
            .stdout_file(file)
            .before_spawn(|c| {
                use std::os::unix::process::CommandExt;
                c.process_group(0);
                Ok(())
            })
            .start()
            .with_context(|| Self::start_error(cmd))?;
        let pid = handle.pids().first().copied().unwrap_or(0);
        // Dropping the handle neither waits for nor kills the child.
        drop(handle);
        Ok(pid)
    }
}

impl Runner {
    /// Runs a command that changes something with `input` on its standard input (a password
    /// for `--password-stdin`: never on a command line, where `ps` and logs would show it),
    /// capturing its output whatever its exit status. Under `--dry-run`: printed, without the
    /// input, and an empty success.
    pub fn run_with_input(&self, cmd: &Cmd, input: &[u8]) -> Result<Output> {
        if self.dry_run {
            println!("{cmd} < (from the environment)");
            return Ok(Output { status: success(), stdout: Vec::new(), stderr: Vec::new() });
        }
        Self::expression_with_stdin(cmd, Some(input))
            .stdout_capture()
            .stderr_capture()
            .run()
            .with_context(|| Self::start_error(cmd))
    }
}

/// A command started by [`Runner::start`].
pub struct Running {
    handle: duct::Handle,
}

impl Running {
    /// Its output once it has ended.
    pub fn try_wait(&self) -> Result<Option<&Output>> {
        Ok(self.handle.try_wait()?)
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`: podman cleans up on SIGTERM
    /// (a pull it stops stores nothing half-made).
    pub fn terminate(&self, grace: Duration) {
        for pid in self.handle.pids() {
            let kill = Cmd::new("kill").args(["-TERM", &pid.to_string()]);
            let _ = Runner::new(false).capture(&kill);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.handle.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.handle.kill();
    }
}

impl Running {
    /// Stops it and everything it started: SIGINT (what a terminal's Ctrl-C sends; podman build
    /// 4.3.1 then kills its RUN step's processes, where on SIGTERM it leaves them running,
    /// reparented to init), then SIGKILL to it and to every process it had started if it has
    /// not ended after `grace`. Its descendants are found before the first signal.
    pub fn interrupt(&self, grace: Duration) {
        let pids = self.handle.pids();
        let mut tree: Vec<u32> = pids.clone();
        for pid in &pids {
            tree.extend(descendants(*pid));
        }
        for pid in &pids {
            let _ = Runner::new(false).capture(&Cmd::new("kill").args(["-INT", &pid.to_string()]));
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.handle.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let alive: Vec<String> =
            tree.iter().filter(|p| Path::new(&format!("/proc/{p}")).exists()).map(u32::to_string).collect();
        if !alive.is_empty() {
            let _ = Runner::new(false).capture(&Cmd::new("kill").arg("-KILL").args(alive));
        }
        let _ = self.handle.kill();
    }
}

/// Every process below `pid` (children, their children...), from `/proc/*/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(ppid) = std::fs::read_to_string(e.path().join("stat")).ok().as_deref().and_then(parent_of) {
                parents.push((p, ppid));
            }
        }
    }
    below(pid, &parents)
}

/// The processes below `pid` in a `(pid, parent)` table.
fn below(pid: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// The parent pid in a `/proc/PID/stat` line: the 2nd field after the command, which is in
/// parentheses and may itself hold spaces and parentheses.
fn parent_of(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn success() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(0)
}

/// The last non-empty line of a command's output: usually the cause.
pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_where_it_is_told_and_reports_failures() {
        let runner = Runner::new(false);
        let dir = std::env::temp_dir();
        let pwd = runner.query(&Cmd::new("pwd").dir(&dir)).unwrap();
        assert_eq!(Path::new(pwd.trim()).canonicalize().unwrap(), dir.canonicalize().unwrap());
        assert_eq!(runner.query(&Cmd::new("sh").args(["-c", "echo $V7_X"]).env("V7_X", "y")).unwrap(), "y\n");
        let e = runner.query(&Cmd::new("sh").args(["-c", "echo first >&2; echo cause >&2; exit 3"])).unwrap_err();
        assert!(format!("{e:#}").ends_with("failed: cause"), "{e:#}");
        assert!(!runner.succeeds(&Cmd::new("false")).unwrap());
        let e = runner.run(&Cmd::new("v7-no-such-program")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot start `v7-no-such-program`"), "{e:#}");
    }

    #[test]
    fn dry_run_runs_queries_only() {
        let runner = Runner::new(true);
        let marker = std::env::temp_dir().join(format!("v7-xtask-dry-{}", std::process::id()));
        let touch = Cmd::new("touch").path_arg(&marker);
        runner.run(&touch).unwrap();
        assert!(runner.run_captured(&touch).unwrap().status.success());
        assert!(!marker.exists(), "a dry run changes nothing");
        assert_eq!(runner.query(&Cmd::new("echo").arg("asked")).unwrap(), "asked\n");
    }

    #[test]
    fn a_background_command_can_be_stopped() {
        let running = Runner::new(false).start(&Cmd::new("sleep").arg("30")).unwrap();
        assert!(running.try_wait().unwrap().is_none());
        running.terminate(Duration::from_secs(5));
        let out = running.try_wait().unwrap().expect("ended");
        assert!(!out.status.success());
        assert_eq!(last_line(b"a\n\n  b  \n\n"), "b");
    }

    #[test]
    fn an_interrupted_command_takes_its_children_along() {
        let log = std::env::temp_dir().join(format!("v7-xtask-int-{}.log", std::process::id()));
        // The shell ignores SIGINT (as podman's RUN step would outlive it): SIGKILL follows.
        let sh = Cmd::new("sh").args(["-c", "trap '' INT; sleep 30 & sleep 30; wait"]);
        let running = Runner::new(false).start_logged(&sh, &log).unwrap();
        let pid = running.handle.pids()[0];
        // Until the shell has started both (bounded generously: a loaded machine is slow to fork).
        let mut kids = descendants(pid);
        for _ in 0..200 {
            if kids.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            kids = descendants(pid);
        }
        assert_eq!(kids.len(), 2, "two sleeps below the shell: {kids:?}");
        running.interrupt(Duration::from_millis(300));
        assert!(running.try_wait().unwrap().is_some(), "the shell ended");
        std::thread::sleep(Duration::from_millis(100));
        for k in kids {
            let state = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap_or_default();
            assert!(state.is_empty() || state.contains(") Z "), "sleep {k} outlived the shell: {state}");
        }
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn the_process_table_is_read_below_a_pid() {
        assert_eq!(parent_of("42 (a (b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("garbage"), None);
        let table = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 2)];
        let mut b = below(2, &table);
        b.sort();
        assert_eq!(b, [3, 4, 6]);
        assert!(below(4, &table).is_empty());
    }
}
