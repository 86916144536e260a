//! External commands as data. Every podman call is planned as a [`Cmd`] value, then run in
//! one place, [`Runner`]: `--dry-run` prints the same values, and tests compare them without
//! running podman. Printing masks secrets (proxy credentials, passwords, tokens).

use std::fmt;
use std::process::Output;

use anyhow::{bail, Context, Result};

/// One command line: program, arguments, extra environment, and why it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd { program: program.into(), args: Vec::new(), env: Vec::new() }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn to_expression(&self) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        expr
    }
}

impl fmt::Display for Cmd {
    /// Shell-like, copy-pasteable, with secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            let shown = if is_secret_key(k) { "***".to_string() } else { mask_url_credentials(v) };
            write!(f, "{k}={} ", shell_quote(&shown))?;
        }
        write!(f, "{}", shell_quote(&self.program))?;
        let mut hide_next = false;
        for arg in &self.args {
            let shown = if hide_next {
                hide_next = false;
                "***".to_string()
            } else {
                mask_arg(arg)
            };
            if arg == "--password" || arg == "--creds" {
                hide_next = true;
            }
            write!(f, " {}", shell_quote(&shown))?;
        }
        Ok(())
    }
}

/// Variables whose values are never printed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "token", "secret", "credential", "auth"].iter().any(|s| k.contains(s))
}

/// `--build-arg KEY=VALUE` / `--env KEY=VALUE` and URLs with `user:pass@` are masked.
fn mask_arg(arg: &str) -> String {
    if let Some((key, _)) = arg.split_once('=') {
        if is_secret_key(key) {
            return format!("{key}=***");
        }
    }
    mask_url_credentials(arg)
}

/// `http://user:secret@proxy:3128` -> `http://***@proxy:3128`.
pub fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace() || c == ',').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs planned commands, or prints them under `--dry-run`. Read-only queries
/// ([`Runner::query`]) run even in dry-run mode, because the plan depends on their answers.
#[derive(Clone, Debug, Default)]
pub struct Runner {
    pub dry_run: bool,
}

impl Runner {
    pub fn new(dry_run: bool) -> Runner {
        Runner { dry_run }
    }

    /// Runs a command that changes something, with output going to the terminal.
    pub fn run(&self, cmd: &Cmd) -> Result<()> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(());
        }
        eprintln!("$ {cmd}");
        let status = cmd
            .to_expression()
            .unchecked()
            .run()
            .with_context(|| format!("cannot start `{}`", cmd.program))?
            .status;
        if !status.success() {
            bail!("`{cmd}` failed ({status})");
        }
        Ok(())
    }

    /// Runs a command that changes something, capturing its output (for error messages).
    pub fn run_captured(&self, cmd: &Cmd) -> Result<Output> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(Output { status: ok_status(), stdout: Vec::new(), stderr: Vec::new() });
        }
        self.capture(cmd)
    }

    /// Runs a read-only command and returns its stdout, even under `--dry-run`.
    pub fn query(&self, cmd: &Cmd) -> Result<String> {
        let out = self.capture(cmd)?;
        if !out.status.success() {
            bail!("`{cmd}` failed: {}", last_line(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command and returns everything, whatever its exit status.
    pub fn capture(&self, cmd: &Cmd) -> Result<Output> {
        cmd.to_expression()
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot start `{}`: is it installed? (`cargo xtask doctor`)", cmd.program))
    }
}

fn ok_status() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(0)
}

/// The last non-empty line of a command's stderr: usually the cause.
pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_masks() {
        let cmd = Cmd::new("podman")
            .args(["build", "--build-arg", "HTTP_PROXY=http://bob:hunter2@proxy:3128", "-t", "a b"])
            .env("CONTAINERS_CONF", "/x/containers.conf")
            .env("REGISTRY_PASSWORD", "hunter2");
        let shown = cmd.to_string();
        assert_eq!(
            shown,
            "CONTAINERS_CONF=/x/containers.conf REGISTRY_PASSWORD='***' podman build --build-arg \
             'HTTP_PROXY=http://***@proxy:3128' -t 'a b'"
        );
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn password_flag_value_is_masked() {
        let cmd = Cmd::new("podman").args(["login", "--password", "s3cret", "r.example"]);
        assert_eq!(cmd.to_string(), "podman login --password '***' r.example");
    }

    #[test]
    fn url_without_credentials_is_kept() {
        assert_eq!(mask_url_credentials("http://proxy:3128/x"), "http://proxy:3128/x");
        assert_eq!(mask_url_credentials("a=http://u:p@h:1,b=https://h2"), "a=http://***@h:1,b=https://h2");
    }
}
