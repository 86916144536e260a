//! The stack's secrets (`[secrets.NAME]`): passwords generated on the first deploy (32 random
//! letters and digits from /dev/urandom) and files made from templates with them, kept in
//! `.v7/stacks/<project>/secrets` (mode 0600; `.v7/` is not tracked by git), written one file
//! per secret to `.v7/stacks/<project>/secret-files/` (a 0700 directory: what podman and an
//! exported compose file read), and handed to
//! containers as podman secrets, which podman mounts as files. Never as `-e`: podman 4.3 shows
//! a secret of `type=env` in `podman inspect`. Values are never printed or logged; the plan
//! shows only a digest (`spec.rs`), so that a changed secret replaces the containers that
//! read it.
//!
//! Deleting the file makes new passwords on the next deploy. ClickHouse takes a new password
//! from its configuration (data are kept); Grafana keeps the admin password of its first start
//! in its database.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::hash::Sha256;
use crate::util::workspace::Workspace;

/// The values of every secret of the stack, and their digests.
pub struct Secrets {
    values: BTreeMap<String, String>,
    pub digests: BTreeMap<String, String>,
}

/// Where the generated passwords are kept.
pub fn file(ws: &Workspace, stack: &Stack) -> PathBuf {
    ws.stack_state(&stack.project.name).join("secrets")
}

/// `.v7/stacks/<project>/secret-files/`: each secret's value as a file of its own (0600).
pub fn files_dir(ws: &Workspace, stack: &Stack) -> PathBuf {
    ws.stack_state(&stack.project.name).join("secret-files")
}

/// Reads the kept passwords, generates those that are missing (and saves them, 0600), and
/// fills the templates. `generate`: false under `--dry-run` (nothing is written; missing
/// passwords are shown as to be generated).
pub fn load(ws: &Workspace, stack: &Stack, generate: bool) -> Result<Secrets> {
    let path = file(ws, stack);
    let mut kept = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut added = false;
    for (name, secret) in &stack.secrets {
        if secret.template.is_none() && !kept.contains_key(name) {
            kept.insert(name.clone(), if generate { password()? } else { String::new() });
            added = true;
        }
    }
    if added && generate {
        save(&path, &kept)?;
        eprintln!("secrets: generated passwords kept in {} (mode 0600)", path.display());
    }
    let mut values = BTreeMap::new();
    for (name, secret) in &stack.secrets {
        let value = match &secret.template {
            None => kept[name].clone(),
            Some(t) => {
                let template = ws.path(t.get_ref());
                let text = std::fs::read_to_string(&template)
                    .with_context(|| format!("secrets.{name}.template: cannot read {}", template.display()))?;
                fill(&text, &kept).with_context(|| format!("secrets.{name}.template ({})", t.get_ref()))?
            }
        };
        values.insert(name.clone(), value);
    }
    if generate {
        // One file per secret, for podman (`secret create` reads a file, never a command line)
        // and for the exported compose file (`secrets: file:`).
        // The directory is 0700 (nobody else on the host gets in); the files are 0644 because
        // compose bind-mounts them as they are, and a service's non-root user must read them.
        let dir = files_dir(ws, stack);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for (name, value) in &values {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(value.as_str()) {
                write_private(&path, value, 0o644)?;
            }
        }
    }
    let digests = values.iter().map(|(k, v)| (k.clone(), digest(v))).collect();
    Ok(Secrets { values, digests })
}

/// A generated password, for `verify` (never printed).
pub fn value(ws: &Workspace, stack: &Stack, name: &str) -> Result<String> {
    let path = file(ws, stack);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (made by the first `cargo xtask deploy`)", path.display()))?;
    parse(&text).remove(name).with_context(|| format!("{} has no {name}", path.display()))
}

/// `name=value` lines; anything else is ignored.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

fn save(path: &Path, values: &BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
    let mut text = String::from("# Generated by `cargo xtask deploy`; delete to make new ones. Never commit.\n");
    for (k, v) in values {
        text.push_str(&format!("{k}={v}\n"));
    }
    write_private(path, &text, 0o600)
}

/// Written with `mode` from the start (created 0600, then widened if asked), never readable by
/// others in between.
fn write_private(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Every `{{NAME}}` replaced by the kept password NAME.
pub fn fill(template: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { bail!("`{{{{` without `}}}}`") };
        let name = rest[start + 2..start + len].trim();
        let Some(value) = values.get(name) else {
            bail!("{{{{{name}}}}} is not a generated secret; declare [secrets.{name}] without a template")
        };
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// 32 letters and digits (190 bits), unbiased (bytes of 248 and above are skipped).
fn password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut out = String::new();
    while out.len() < 32 {
        let mut buf = [0u8; 64];
        urandom.read_exact(&mut buf)?;
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < 32 {
                out.push(ALPHABET[(*b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// 12 hex digits of SHA-256 over a fixed prefix and the value: tells versions apart, reveals
/// nothing usable about a 190-bit password.
fn digest(value: &str) -> String {
    let mut h = Sha256::new();
    h.field("v7 secret digest").field(value);
    h.hex()[..12].to_string()
}

impl Secrets {
    /// Makes the podman secrets `services` read that podman does not have yet, or has in an
    /// older version (the digest of what was handed over is kept next to the values).
    pub fn ensure_in_podman(
        &self,
        ws: &Workspace,
        runner: &Runner,
        podman: &Podman,
        stack: &Stack,
        names: &[String],
    ) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let dir = ws.stack_state(&stack.project.name);
        let handed = dir.join("secrets.handed");
        let mut given = parse(&std::fs::read_to_string(&handed).unwrap_or_default());
        let listed = runner.query(&podman.cmd().args(["secret", "ls", "--format", "{{.Name}}"]))?;
        let present: Vec<&str> = listed.lines().map(str::trim).collect();
        let mut changed = false;
        for name in names {
            let podman_name = stack.secret_name(name);
            let digest = &self.digests[name];
            if present.contains(&podman_name.as_str()) && given.get(name) == Some(digest) {
                continue;
            }
            if present.contains(&podman_name.as_str()) {
                runner.run_checked(&podman.cmd().args(["secret", "rm", &podman_name]))?;
            }
            // podman reads the value from a file: never from a command line, where `ps` shows it.
            let tmp = dir.join(format!(".{name}.value"));
            if !runner.dry_run {
                std::fs::create_dir_all(&dir)?;
                write_private(&tmp, &self.values[name], 0o600)?;
            }
            let created = runner.run_checked(
                &podman
                    .cmd()
                    .args(["secret", "create", "--label", &stack.project_label(), &podman_name])
                    .path_arg(&tmp),
            );
            let _ = std::fs::remove_file(&tmp);
            created.with_context(|| format!("cannot hand secret {name} to podman"))?;
            given.insert(name.clone(), digest.clone());
            changed = true;
        }
        if changed && !runner.dry_run {
            save(&handed, &given)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_unknown_names_refused() {
        let values = BTreeMap::from([("pw".to_string(), "s3cret".to_string())]);
        assert_eq!(fill("<password>{{pw}}</password>{{ pw }}", &values).unwrap(), "<password>s3cret</password>s3cret");
        let e = fill("x {{other}}", &values).unwrap_err().to_string();
        assert!(e.contains("{{other}} is not a generated secret") && e.contains("[secrets.other]"), "{e}");
        assert!(fill("x {{pw", &values).is_err());
    }

    #[test]
    fn passwords_are_random_and_kept_private() {
        let (a, b) = (password().unwrap(), password().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        assert_ne!(digest(&a), digest(&b));
        assert!(!digest(&a).contains(&a[..6]));
        let dir = std::env::temp_dir().join(format!("v7-secrets-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets");
        save(&path, &BTreeMap::from([("pw".to_string(), a.clone())])).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        assert_eq!(parse(&std::fs::read_to_string(&path).unwrap())["pw"], a);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
