//! `bundle save`: every image into one archive, written to `FILE.partial` beside FILE and
//! renamed into place only when complete (see `mod.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::archive::{path_str, sha256_files, write};
use super::index::{entry_file_name, short_id, Entry, Index, INDEX, INDEX_SUM};
use crate::podman::{images, Podman};
use crate::process::{last_line, Cmd, Runner};
use crate::stack::Mode;
use crate::util::fs::{RemoveOnDrop, TempDir};
use crate::util::time::{now_unix, utc_timestamp};

/// Saves `images` (all of which must be here) into `file`; see the module docs.
pub fn save(podman: &Podman, runner: &Runner, images: &[String], mode: Mode, file: &Path) -> Result<Index> {
    if images.is_empty() {
        bail!("nothing to bundle: no service has an image in {mode} mode");
    }
    let mut ids = Vec::new();
    let mut missing = Vec::new();
    for image in images {
        match images::id(runner, podman, image)? {
            Some(id) => ids.push(id),
            None => missing.push(image.as_str()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "images missing, no bundle was written: {}\n  hint: run `{}` first",
            missing.join(", "),
            mode.makes_images()
        );
    }

    let file_name = file
        .file_name()
        .with_context(|| format!("{} does not name a file", file.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("cannot write {}: directory {} does not exist", file.display(), parent.display());
    }
    if file.is_dir() {
        bail!("cannot write {}: it is a directory", file.display());
    }
    let gzip = file_name.ends_with(".gz") || file_name.ends_with(".tgz");
    let work = TempDir::create(&parent, &format!(".{file_name}.tmp"))?;
    let partial = RemoveOnDrop::new(parent.join(format!("{file_name}.partial")));

    let mut entries = Vec::new();
    for (i, (image, id)) in images.iter().zip(&ids).enumerate() {
        let name = entry_file_name(i, image);
        let path = work.path().join(&name);
        eprintln!("saving {image} ({}/{})", i + 1, images.len());
        let out = runner.run_captured(
            &podman.cmd().args(["save", "--format", "docker-archive", "-o"]).arg(path_str(&path)?).arg(image),
        )?;
        if !out.status.success() {
            bail!("`podman save {image}` failed: {}; no bundle was written", last_line(&out.stderr));
        }
        if images::id(runner, podman, image)?.as_ref() != Some(id) {
            bail!(
                "{image} changed while it was being saved (it was {}); no bundle was written, run it again",
                short_id(id)
            );
        }
        let size = std::fs::metadata(&path).with_context(|| format!("podman save wrote no {}", path.display()))?.len();
        entries.push(Entry { name: image.clone(), id: id.clone(), file: name, size, sha256: String::new() });
    }
    let paths: Vec<PathBuf> = entries.iter().map(|e| work.path().join(&e.file)).collect();
    for (e, sum) in entries.iter_mut().zip(sha256_files(runner, &paths)?) {
        e.sha256 = sum;
    }
    let index = Index { created: utc_timestamp(now_unix()), mode, images: entries };
    let index_path = work.path().join(INDEX);
    write(&index_path, &index.render())?;
    let index_sum = sha256_files(runner, std::slice::from_ref(&index_path))?.remove(0);
    write(&work.path().join(INDEX_SUM), &format!("{index_sum}  {INDEX}\n"))?;

    let partial_path = partial.path().to_path_buf();
    let tar = Cmd::new("tar")
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(path_str(&partial_path)?)
        .args(["--format=gnu", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(path_str(work.path())?)
        .args([INDEX, INDEX_SUM])
        .args(index.images.iter().map(|e| e.file.clone()));
    let out = runner.run_captured(&tar)?;
    if !out.status.success() {
        bail!("`{tar}` failed: {}; no bundle was written", last_line(&out.stderr));
    }
    std::fs::File::open(&partial_path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", partial_path.display()))?;
    std::fs::rename(&partial_path, file)
        .with_context(|| format!("cannot rename {} to {}", partial_path.display(), file.display()))?;
    partial.keep();
    Ok(index)
}
