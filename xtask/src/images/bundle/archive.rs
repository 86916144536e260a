//! What bundles are made of on disk: checksums from coreutils' `sha256sum` (fast even when the
//! xtask is a debug build, on every machine podman runs on) and tar's errors without its noise.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::index::is_hex64;
use crate::process::{last_line, Cmd, Runner};

/// sha256 of each file, in order, with coreutils' `sha256sum`.
pub fn sha256_files(runner: &Runner, paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut cmd = Cmd::new("sha256sum").arg("--");
    for p in paths {
        cmd = cmd.arg(path_str(p)?);
    }
    let out = runner.query(&cmd)?;
    let sums: Vec<String> =
        out.lines().map(|l| l.trim_start_matches('\\').split_whitespace().next().unwrap_or("").to_string()).collect();
    if sums.len() != paths.len() || !sums.iter().all(|s| is_hex64(s)) {
        bail!("unexpected output from `{cmd}`: {out:?}");
    }
    Ok(sums)
}

/// tar's stderr without its follow-up noise ("Error is not recoverable", "Exiting with failure",
/// "rmtlseek not stopped at a record boundary").
pub fn tar_reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.contains("Error is not recoverable")
                && !l.contains("Exiting with failure status")
                && !l.contains("rmtlseek")
        })
        .collect();
    if lines.is_empty() {
        last_line(stderr)
    } else {
        lines.join("; ")
    }
}

pub fn path_str(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).with_context(|| format!("path is not UTF-8: {}", path.display()))
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_reason_drops_boilerplate() {
        let stderr = b"tar: Unexpected EOF in archive\ntar: rmtlseek not stopped at a record boundary\n\
                       tar: Error is not recoverable: exiting now\n";
        assert_eq!(tar_reason(stderr), "tar: Unexpected EOF in archive");
    }
}
