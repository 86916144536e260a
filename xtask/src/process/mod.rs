//! External programs. Every one the xtask runs (podman, cargo, npm, pip, apt-get, tar,
//! debootstrap) is first planned as a [`Cmd`] value, then run by [`Runner`], the one place
//! processes start: `--dry-run` prints the same values, and tests compare them without running
//! anything. Printing masks secrets (proxy credentials, passwords, tokens).

mod runner;

use std::fmt;
use std::path::{Path, PathBuf};

pub use runner::{last_line, Runner, Running};

/// One command line: program, arguments, extra environment and working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where it runs; the xtask's own working directory (the repository root) when `None`.
    pub dir: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd { program: program.into(), args: Vec::new(), env: Vec::new(), dir: None }
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

    /// A path argument. Paths the xtask makes are UTF-8 (it names them itself, under the
    /// checkout or the temporary directory); anything else is shown lossily.
    pub fn path_arg(self, path: &Path) -> Cmd {
        self.arg(path.to_string_lossy().into_owned())
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn dir(mut self, dir: &Path) -> Cmd {
        self.dir = Some(dir.to_path_buf());
        self
    }
}

impl fmt::Display for Cmd {
    /// Shell-like and copy-pasteable, with secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.dir {
            write!(f, "cd {} && ", shell_quote(&dir.to_string_lossy()))?;
        }
        for (k, v) in &self.env {
            let shown = if is_secret_key(k) { "***".to_string() } else { mask_url_credentials(v) };
            write!(f, "{k}={} ", shell_quote(&shown))?;
        }
        write!(f, "{}", shell_quote(&self.program))?;
        let mut hide_next = false;
        for arg in &self.args {
            let shown = if hide_next { "***".to_string() } else { mask_arg(arg) };
            hide_next = arg == "--password" || arg == "--creds";
            write!(f, " {}", shell_quote(&shown))?;
        }
        Ok(())
    }
}

/// Variables and `KEY=VALUE` arguments whose values are never printed.
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

/// `http://user:secret@proxy:3128` -> `http://user:***@proxy:3128`, wherever it appears in
/// `text`; user info without a `:` may be a token (`https://TOKEN@host`) and becomes `***@`.
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
                match authority[..at].split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str("***"),
                }
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
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `python3`, or `python` where only that exists.
pub fn python() -> &'static str {
    if on_path("python3") {
        "python3"
    } else {
        "python"
    }
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
             'HTTP_PROXY=http://bob:***@proxy:3128' -t 'a b'"
        );
        assert!(!shown.contains("hunter2"));
        let cmd = Cmd::new("npm").arg("ci").dir(Path::new("/tmp/a dir"));
        assert_eq!(cmd.to_string(), "cd '/tmp/a dir' && npm ci");
    }

    #[test]
    fn password_flag_value_is_masked() {
        let cmd = Cmd::new("podman").args(["login", "--password", "s3cret", "r.example"]);
        assert_eq!(cmd.to_string(), "podman login --password '***' r.example");
    }

    #[test]
    fn url_without_credentials_is_kept() {
        assert_eq!(mask_url_credentials("http://proxy:3128/x"), "http://proxy:3128/x");
        assert_eq!(mask_url_credentials("a=http://u:p@h:1,b=https://h2"), "a=http://u:***@h:1,b=https://h2");
        assert_eq!(mask_url_credentials("https://tok3n@github.com/x"), "https://***@github.com/x");
    }
}
