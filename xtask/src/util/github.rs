//! GitHub Actions: what the xtask adds to its output when `GITHUB_ACTIONS=true` (the runner sets
//! it), and nothing otherwise.
//!
//! - [`group`]: `::group::NAME` / `::endgroup::` around a phase (pull, build, deploy, verify,
//!   each test suite, push), so the log folds by phase. GitHub does not nest groups: a group
//!   opened inside another prints nothing.
//! - [`error_annotation`]: `::error file=PATH,line=N,col=M::MESSAGE`, which GitHub shows on the
//!   file's line in the pull request. `main` annotates every `PATH:LINE[:COL]: message` line of a
//!   failed command's error ([`located`]), which is how stack file errors (`stack/reader.rs`,
//!   `stack/validate.rs`) and Dockerfile errors (`images/dockerfile/base_images.rs`, as its
//!   callers locate them) are written.
//! - [`append_summary`]: Markdown appended to the file `$GITHUB_STEP_SUMMARY` names (the job's
//!   summary page), with [`markdown_table`] for tables. Everything appended goes through
//!   [`redact`] first: the values of secret-looking variables (`*TOKEN*`, `*PASSWORD*`,
//!   `*SECRET*`) and URL credentials never reach the page.
//!
//! Workflow commands go to stderr: the runner reads commands from both streams, and stdout is
//! for `--json` documents. Values are escaped as the Actions toolkit does (`command.ts`):
//! data `%` `\r` `\n` as `%25` `%0D` `%0A`; properties also `:` `,` as `%3A` `%2C`.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the xtask runs in a GitHub Actions job.
pub fn enabled() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// A command's message (its data), escaped.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A command's property value, escaped.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The `::error` line for a place in a file (1-based line and column; no column when `None`).
pub fn error_command(file: &str, line: usize, col: Option<usize>, message: &str) -> String {
    let mut props = format!("file={},line={line}", escape_property(file));
    if let Some(c) = col {
        props.push_str(&format!(",col={c}"));
    }
    format!("::error {props}::{}", escape_data(message))
}

/// Prints an error annotation for `file:line:col` when in GitHub Actions.
pub fn error_annotation(file: &str, line: usize, col: Option<usize>, message: &str) {
    if enabled() {
        eprintln!("{}", error_command(file, line, col, &redact(message)));
    }
}

static IN_GROUP: AtomicBool = AtomicBool::new(false);

/// Runs `f` inside a folded group of the job's log named `name` (in GitHub Actions; otherwise
/// just runs it). The group is closed however `f` ends, before its error is printed.
pub fn group<T>(name: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() || IN_GROUP.swap(true, Ordering::SeqCst) {
        return f();
    }
    eprintln!("::group::{}", escape_data(name));
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            eprintln!("::endgroup::");
            IN_GROUP.store(false, Ordering::SeqCst);
        }
    }
    let _close = Close;
    f()
}

/// Appends `markdown` (redacted) to `$GITHUB_STEP_SUMMARY`, in GitHub Actions. A summary that
/// cannot be written is a warning, never a failed command.
pub fn append_summary(markdown: &str) {
    if !enabled() {
        return;
    }
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else { return };
    let mut text = redact(markdown);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY {}: {e}", path.to_string_lossy());
    }
}

/// A Markdown table; `|` in cells is escaped and newlines become spaces.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace(['\r', '\n'], " ");
    let mut out = format!("| {} |\n", header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// Whether an environment variable's value is a secret by its name.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "SECRET", "PASSWD"].iter().any(|w| n.contains(w))
}

/// `text` with the environment's secrets replaced by `***`, and `user:password@` in URLs as
/// `user:***@`.
pub fn redact(text: &str) -> String {
    let secrets: Vec<String> =
        std::env::vars().filter(|(k, v)| secret_name(k) && v.len() >= 4).map(|(_, v)| v).collect();
    redact_with(text, &secrets)
}

/// [`redact`] with the secrets given.
pub fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    mask_url_passwords(&out)
}

fn mask_url_passwords(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A place in a file at the start of an error line: `PATH:LINE:COL: message` or
/// `PATH:LINE: message`, as (path, line, column, message). PATH has no spaces.
pub fn located(line: &str) -> Option<(&str, usize, Option<usize>, &str)> {
    let line = line.trim_start();
    let (head, message) = line.split_once(": ")?;
    if head.contains(char::is_whitespace) {
        return None;
    }
    let mut parts = head.rsplitn(3, ':');
    let last = parts.next()?;
    let middle = parts.next()?;
    match parts.next() {
        Some(path) if !path.is_empty() => {
            if let (Ok(l), Ok(c)) = (middle.parse(), last.parse()) {
                return Some((path, l, Some(c), message));
            }
            // `a:b:12`: a path with a colon, and a line.
            let path = &head[..head.len() - last.len() - 1];
            last.parse().ok().map(|l| (path, l, None, message))
        }
        _ if !middle.is_empty() => last.parse().ok().map(|l| (middle, l, None, message)),
        _ => None,
    }
}

/// A place in a file an error names, as (path, line, column, message).
pub type Place = (String, usize, Option<usize>, String);

/// The places a failed command's error names: every located line of `error` (its causes'
/// texts), at most once each; a path under `root` is made relative to it, as GitHub wants.
pub fn annotations(error: &str, root: &str) -> Vec<Place> {
    let mut out: Vec<Place> = Vec::new();
    for l in error.lines() {
        if let Some((path, line, col, message)) = located(l) {
            if !(path.contains('/') || path.contains('.')) || path.contains("://") || line == 0 {
                continue;
            }
            let rel = path.strip_prefix(root).map(|p| p.trim_start_matches('/')).unwrap_or(path);
            let place = (rel.to_string(), line, col, message.to_string());
            if !out.contains(&place) {
                out.push(place);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_as_the_toolkit_does() {
        assert_eq!(escape_data("50% done\r\nnext: a,b"), "50%25 done%0D%0Anext: a,b");
        assert_eq!(escape_property("C:\\a,b%\n"), "C%3A\\a%2Cb%25%0A");
    }

    #[test]
    fn error_commands_carry_file_line_and_column() {
        assert_eq!(
            error_command("docker/stack.toml", 12, Some(5), "unknown key `imag`\n  hint: 100% sure"),
            "::error file=docker/stack.toml,line=12,col=5::unknown key `imag`%0A  hint: 100%25 sure"
        );
        assert_eq!(error_command("a,b:c/Dockerfile", 3, None, "x"), "::error file=a%2Cb%3Ac/Dockerfile,line=3::x");
    }

    #[test]
    fn markdown_tables_escape_pipes() {
        let t = markdown_table(&["A", "B"], &[vec!["x|y".into(), "two\nlines".into()]]);
        assert_eq!(t, "| A | B |\n|---|---|\n| x\\|y | two lines |\n");
    }

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let s =
            redact_with("token ghp_abcdef via http://u:pw@proxy:3128/ and https://host/x", &["ghp_abcdef".to_string()]);
        assert_eq!(s, "token *** via http://u:***@proxy:3128/ and https://host/x");
    }

    #[test]
    fn located_lines_are_found_and_annotated_once() {
        assert_eq!(located("docker/stack.toml:4:8: bad"), Some(("docker/stack.toml", 4, Some(8), "bad")));
        assert_eq!(located("web/Dockerfile:3: FROM x"), Some(("web/Dockerfile", 3, None, "FROM x")));
        assert_eq!(located("error: nothing here"), None);
        assert_eq!(located("see http://x:80: refused"), None);
        let e = "docker/stack.toml:18:10: services.api.ports: clash\n/repo/web/Dockerfile:2: FROM: bad\n\
                 docker/stack.toml:18:10: services.api.ports: clash\n  hint: change one";
        let commands: Vec<String> =
            annotations(e, "/repo").iter().map(|(f, l, c, m)| error_command(f, *l, *c, m)).collect();
        assert_eq!(
            commands,
            vec![
                "::error file=docker/stack.toml,line=18,col=10::services.api.ports: clash".to_string(),
                "::error file=web/Dockerfile,line=2::FROM: bad".to_string(),
            ]
        );
    }
}
