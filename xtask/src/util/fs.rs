//! Files: writing only what changed, and temporary files and directories that go away on drop,
//! so a failed command leaves nothing half-made behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

/// Writes `contents` unless the file already holds exactly that (its mtime then stays, and a
/// running podman never sees a file being rewritten). Creates the parent directories.
pub fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// A directory that is removed, with everything in it, when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory `<parent>/<prefix>-<pid>-<n>`.
    pub fn create(parent: &Path, prefix: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{prefix}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file that is removed when dropped, unless [`RemoveOnDrop::keep`] was called: the
/// `FILE.partial` a command writes before it renames the finished file into place.
#[derive(Debug)]
pub struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub fn new(path: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop(Some(path))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("not kept yet")
    }

    /// The file is finished (renamed into place): leave it.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_and_partial_files_go_away() {
        let parent = std::env::temp_dir().join(format!("v7-xtask-fs-{}", std::process::id()));
        let dir = TempDir::create(&parent, "t").unwrap();
        let other = TempDir::create(&parent, "t").unwrap();
        assert_ne!(dir.path(), other.path());
        let file = dir.path().join("a");
        write_if_changed(&file, "x").unwrap();
        let before = std::fs::metadata(&file).unwrap().modified().unwrap();
        write_if_changed(&file, "x").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), before, "unchanged text is not rewritten");
        write_if_changed(&dir.path().join("sub/b"), "y").unwrap();
        let partial = RemoveOnDrop::new(dir.path().join("c.partial"));
        std::fs::write(partial.path(), "z").unwrap();
        let kept = RemoveOnDrop::new(dir.path().join("d"));
        std::fs::write(kept.path(), "z").unwrap();
        kept.keep();
        drop(partial);
        assert!(!dir.path().join("c.partial").exists());
        assert!(dir.path().join("d").exists());
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
        drop(other);
        std::fs::remove_dir(&parent).unwrap();
    }
}
