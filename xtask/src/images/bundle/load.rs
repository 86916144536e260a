//! `bundle load`: nothing is loaded until the whole bundle checks out, and a load that fails
//! halfway is undone (see `mod.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::archive::{path_str, sha256_files, tar_reason};
use super::index::{check_contents, parse_listing, short_id, Index, INDEX, INDEX_SUM};
use crate::podman::{images, Podman};
use crate::process::{last_line, Cmd, Runner};
use crate::util::fs::TempDir;
use crate::util::workspace::Workspace;

/// What loading did to one image name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    pub id: String,
    pub outcome: String,
}

/// Verifies `file` completely, then loads its images; see the module docs.
pub fn load(ws: &Workspace, podman: &Podman, runner: &Runner, file: &Path) -> Result<(Index, Vec<Loaded>)> {
    let shown = file.display();
    if !file.is_file() {
        bail!("cannot read bundle {shown}: no such file");
    }
    let refused = |why: String| anyhow::anyhow!("bundle {shown} is refused, nothing was loaded: {why}");
    let listing = runner.capture(&Cmd::new("tar").arg("-tvf").arg(path_str(file)?).env("LC_ALL", "C"))?;
    if !listing.status.success() {
        bail!("bundle {shown} is truncated or not a tar: {}; nothing was loaded", tar_reason(&listing.stderr));
    }
    let names = parse_listing(&String::from_utf8_lossy(&listing.stdout)).map_err(|e| refused(format!("{e:#}")))?;
    for needed in [INDEX, INDEX_SUM] {
        if !names.iter().any(|n| n == needed) {
            return Err(refused(format!("it has no {needed}, so it is not a V7 bundle")));
        }
    }

    let work = TempDir::create(&ws.state.join("bundle"), "load")?;
    let extract = Cmd::new("tar")
        .arg("-xf")
        .arg(path_str(file)?)
        .args(["--no-same-owner", "--no-same-permissions", "-C"])
        .arg(path_str(work.path())?)
        .env("LC_ALL", "C");
    let out = runner.capture(&extract)?;
    if !out.status.success() {
        bail!("bundle {shown} is truncated or not a tar: {}; nothing was loaded", tar_reason(&out.stderr));
    }
    // What is on disk must be what was listed: regular files, nothing else.
    let mut on_disk = Vec::new();
    for dirent in std::fs::read_dir(work.path()).with_context(|| format!("cannot read {}", work.path().display()))? {
        let dirent = dirent?;
        let name = dirent.file_name().to_string_lossy().into_owned();
        if !dirent.path().symlink_metadata()?.is_file() {
            return Err(refused(format!("{name} is not a regular file")));
        }
        on_disk.push(name);
    }
    on_disk.sort();
    let mut listed = names.clone();
    listed.sort();
    if on_disk != listed {
        return Err(refused(format!("extracting it gave {on_disk:?}, its listing says {listed:?}")));
    }

    let index_path = work.path().join(INDEX);
    let recorded = std::fs::read_to_string(work.path().join(INDEX_SUM)).context("cannot read the index checksum")?;
    let recorded = recorded.split_whitespace().next().unwrap_or("").to_string();
    let actual = sha256_files(runner, std::slice::from_ref(&index_path))?.remove(0);
    if recorded != actual {
        return Err(refused(format!("{INDEX} is corrupted: its sha256 is {actual}, {INDEX_SUM} says {recorded:?}")));
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| refused(format!("cannot read {INDEX}: {e}")))?;
    let index = Index::parse(&text).map_err(|e| refused(format!("{INDEX}: {e:#}")))?;
    check_contents(&index, &names).map_err(|e| refused(format!("{e:#}")))?;

    let mut problems = Vec::new();
    for e in &index.images {
        let size = std::fs::metadata(work.path().join(&e.file))?.len();
        if size != e.size {
            problems.push(format!("{} ({}): {size} bytes, the index says {}", e.file, e.name, e.size));
        }
    }
    let paths: Vec<PathBuf> = index.images.iter().map(|e| work.path().join(&e.file)).collect();
    for (e, sum) in index.images.iter().zip(sha256_files(runner, &paths)?) {
        if sum != e.sha256 {
            problems.push(format!("{} ({}): sha256 is {sum}, the index says {}", e.file, e.name, e.sha256));
        }
    }
    if !problems.is_empty() {
        bail!("bundle {shown} is corrupted, nothing was loaded:\n  {}", problems.join("\n  "));
    }
    eprintln!("bundle {shown} verified: {} images, checksums match", index.images.len());

    // Load, undoing everything on the first failure.
    let mut done: Vec<(String, Option<String>)> = Vec::new();
    let mut loaded = Vec::new();
    for (i, e) in index.images.iter().enumerate() {
        let before = images::id(runner, podman, &e.name)?;
        done.push((e.name.clone(), before.clone()));
        eprintln!("loading {} ({}/{})", e.name, i + 1, index.images.len());
        let path = work.path().join(&e.file);
        let out = runner.run_captured(&podman.cmd().args(["load", "-i"]).arg(path_str(&path)?))?;
        let after = if out.status.success() { images::id(runner, podman, &e.name) } else { Ok(None) };
        let failure = match (&after, out.status.success()) {
            (_, false) => Some(format!("`podman load` of {} failed: {}", e.file, last_line(&out.stderr))),
            (Err(err), _) => Some(format!("{err:#}")),
            (Ok(None), _) => Some(format!("after loading {}, there is no image named {}", e.file, e.name)),
            (Ok(Some(id)), _) if *id != e.id => {
                Some(format!("{} was loaded as image {}, the index says {}", e.name, short_id(id), short_id(&e.id)))
            }
            _ => None,
        };
        if let Some(why) = failure {
            rollback(podman, runner, &done);
            bail!("bundle {shown}: {why}; the images this load added were removed again");
        }
        let outcome = match before {
            None => "loaded".to_string(),
            Some(old) if old == e.id => "already here (same ID)".to_string(),
            Some(old) => format!("loaded (the name pointed at {} before)", short_id(&old)),
        };
        loaded.push(Loaded { name: e.name.clone(), id: e.id.clone(), outcome });
    }
    Ok((index, loaded))
}

/// Puts each name back as it was before the load: removed if it was new, re-tagged if it moved.
fn rollback(podman: &Podman, runner: &Runner, done: &[(String, Option<String>)]) {
    for (name, before) in done.iter().rev() {
        let now = images::id(runner, podman, name).ok().flatten();
        if now == *before {
            continue;
        }
        let cmd = match before {
            None => podman.cmd().args(["rmi", "--ignore", name]),
            Some(old) => podman.cmd().args(["tag", old, name]),
        };
        if let Ok(out) = runner.capture(&cmd) {
            if !out.status.success() {
                eprintln!("warning: `{cmd}`: {}", last_line(&out.stderr));
            }
        }
    }
}
