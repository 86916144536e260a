//! `bundle save FILE` / `bundle load FILE`: every image the stack needs, in one archive that an
//! air-gapped machine can verify before it loads anything.
//!
//! # Which images
//! [`stack_images`]: every image [`crate::deploy::placement`] gives for the chosen mode, in start
//! order, without duplicates. That is exactly the set `deploy` checks with `podman image exists`
//! before it starts anything, so `cargo xtask deploy --no-build` works from a loaded bundle.
//! Services without an image in that mode (Grafana when registry-free) are named and left out.
//! The mode is `--offline`, else `project.mode`, else the registry probe, as for `deploy`.
//! Build-only images (the registry-free Debian base, builder stages) are not included: deploy
//! does not run them.
//!
//! # Format (version 1)
//! One POSIX tar (GNU tar writes it; gzip-compressed when FILE ends in `.gz` or `.tgz`; `load`
//! accepts both, whatever the name) holding plain files only, no directories:
//! - `v7-bundle.txt`, the manifest, first. One record per line, fields separated by one TAB
//!   (shown as `→`), `#` lines are comments:
//!   ```text
//!   v7-bundle→1
//!   created→2026-11-22T02:22:00Z
//!   mode→registry                      (or registry-free)
//!   image→NAME→IMAGE-ID→FILE→SIZE→SHA256   (one line per image)
//!   ```
//!   IMAGE-ID is podman's 64-hex image ID (the digest of the image config), SIZE is FILE's size
//!   in bytes and SHA256 its checksum.
//! - `v7-bundle.txt.sha256`: the manifest's own checksum, in `sha256sum` format, so a damaged
//!   manifest is caught too (`sha256sum -c v7-bundle.txt.sha256` works by hand).
//! - one `podman save --format docker-archive` file per image, named `NN-<name>.tar`.
//!   docker-archive keeps the image config byte for byte, so the image ID is the same after
//!   save, `podman rmi`, load (checked with podman 4.3.1; oci-archive keeps it as well, but
//!   docker-archive also loads with `docker load`). Layers are stored uncompressed, so a `.tar.gz`
//!   bundle is much smaller, at the cost of gzip time.
//!
//! Checksums come from coreutils' `sha256sum`: fast in a debug build, and on every machine
//! podman runs on.
//!
//! # save
//! Every image must be here first; the missing ones are all named with the command that makes
//! them, and nothing is written. The archives are saved into a temporary directory next to FILE
//! (`.FILE.tmp-*`), checksummed, tarred to `FILE.partial`, synced and renamed to FILE; on any
//! failure the partial file and the directory are removed, so FILE is either complete or
//! untouched (an existing FILE is replaced only once the new one is complete). An image whose ID changes while it is saved is an error.
//!
//! # load
//! Nothing is loaded until the whole bundle checks out:
//! 1. `tar -tvf` reads the whole archive: a truncated or non-tar file is refused here
//!    ("bundle FILE is truncated or not a tar"). Every entry must be a regular file with a plain
//!    name (no `/`, no `..`, no leading `.`, no spaces, no links, no duplicates).
//! 2. It is extracted into `.v7/bundle/load-*` (removed afterwards); the manifest must match
//!    `v7-bundle.txt.sha256`, parse, be format 1, and name exactly the files present (no
//!    missing, no extra ones); every file's size and sha256 must match. All mismatches are
//!    reported together.
//! 3. Then `podman load -i` each archive and check that NAME now has IMAGE-ID. If a load or that
//!    check fails, what this load did is undone (new names removed, replaced names pointed back
//!    at their previous image), so a failed load leaves the images as they were.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::command::{last_line, Cmd, Runner};
use crate::deploy::{placement, Placement};
use crate::flags;
use crate::manifest::Stack;
use crate::podman_host::Podman;
use crate::registry_free;
use crate::text_format::human_size;

/// The manifest's name inside the bundle.
pub const MANIFEST: &str = "v7-bundle.txt";
/// The manifest's checksum file inside the bundle.
pub const MANIFEST_SUM: &str = "v7-bundle.txt.sha256";
/// The manifest format this xtask writes and reads.
pub const FORMAT_VERSION: u32 = 1;

impl flags::Bundle {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let runner = Runner::new(false);
        match self.subcommand {
            flags::BundleCmd::Save(cmd) => {
                let stack = Stack::load(&crate::project_root())?;
                let offline = registry_free::use_registry_free(&stack, cmd.offline)?;
                let list = stack_images(&stack, offline)?;
                for (service, why) in &list.skipped {
                    eprintln!("{service}: not bundled: {why}");
                }
                let podman = Podman::prepare()?;
                let mode = if offline { Mode::Offline } else { Mode::Registry };
                let manifest = save(&podman, &runner, &list.images, mode, &cmd.file)?;
                let size = std::fs::metadata(&cmd.file).map(|m| m.len()).unwrap_or(0);
                println!(
                    "wrote {} ({}, {} images, {} mode); load it with `cargo xtask bundle load {}`",
                    cmd.file.display(),
                    human_size(size),
                    manifest.images.len(),
                    manifest.mode,
                    cmd.file.display()
                );
                for e in &manifest.images {
                    println!("  {:<50} {}  {:>9}", e.name, short_id(&e.id), human_size(e.size));
                }
                Ok(())
            }
            flags::BundleCmd::Load(cmd) => {
                let podman = Podman::prepare()?;
                let (manifest, loaded) = load(&podman, &runner, &cmd.file)?;
                println!(
                    "loaded {} images from {} (made {}, {} mode):",
                    loaded.len(),
                    cmd.file.display(),
                    manifest.created,
                    manifest.mode
                );
                for l in &loaded {
                    println!("  {:<50} {}  {}", l.name, short_id(&l.id), l.outcome);
                }
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------------------------ image list

/// The images a bundle holds for a stack in one mode, and the services left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackImages {
    pub images: Vec<String>,
    /// (service, why) for each service with no image in this mode.
    pub skipped: Vec<(String, String)>,
}

/// Every image `deploy` needs in this mode: what [`placement`] gives, in start order, once each.
pub fn stack_images(stack: &Stack, offline: bool) -> Result<StackImages> {
    let order = stack.start_order().map_err(anyhow::Error::msg)?;
    let mut out = StackImages { images: Vec::new(), skipped: Vec::new() };
    for service in order {
        match placement(stack, service, offline) {
            Placement::Image(image) => {
                if !out.images.contains(&image) {
                    out.images.push(image);
                }
            }
            Placement::Skipped(why) => out.skipped.push((service.to_string(), why)),
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------ manifest

/// Which images a bundle holds: the registry images or the registry-free ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Registry,
    Offline,
}

impl Mode {
    fn parse(text: &str) -> Option<Mode> {
        match text {
            "registry" => Some(Mode::Registry),
            "registry-free" => Some(Mode::Offline),
            _ => None,
        }
    }

    /// The command that makes this mode's images.
    fn makes_images(self) -> &'static str {
        match self {
            Mode::Registry => "cargo xtask pull && cargo xtask build",
            Mode::Offline => "cargo xtask build --offline",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Registry => "registry",
            Mode::Offline => "registry-free",
        })
    }
}

/// One image in a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub id: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// `v7-bundle.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub created: String,
    pub mode: Mode,
    pub images: Vec<Entry>,
}

impl Manifest {
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# V7 image bundle: `cargo xtask bundle load FILE` verifies it, then loads every image.\n\
             # image\tNAME\tIMAGE-ID\tFILE\tSIZE\tSHA256\n",
        );
        out.push_str(&format!("v7-bundle\t{FORMAT_VERSION}\ncreated\t{}\nmode\t{}\n", self.created, self.mode));
        for e in &self.images {
            out.push_str(&format!("image\t{}\t{}\t{}\t{}\t{}\n", e.name, e.id, e.file, e.size, e.sha256));
        }
        out
    }

    /// Strict: a wrong version, a missing or repeated key, a malformed line is an error naming the line.
    pub fn parse(text: &str) -> Result<Manifest> {
        let mut version_seen = false;
        let mut created = None;
        let mut mode = None;
        let mut images: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if !version_seen {
                if fields[0] != "v7-bundle" || fields.len() != 2 {
                    bail!("line {n}: expected `v7-bundle<TAB>{FORMAT_VERSION}` first: this is not a V7 bundle manifest");
                }
                match fields[1].parse::<u32>() {
                    Ok(FORMAT_VERSION) => {}
                    Ok(v) => bail!("line {n}: bundle format {v}; this xtask reads format {FORMAT_VERSION} (make the bundle with the same V7 version)"),
                    Err(_) => bail!("line {n}: bad format version {:?}", fields[1]),
                }
                version_seen = true;
                continue;
            }
            match (fields[0], fields.len()) {
                ("created", 2) if created.is_none() => created = Some(fields[1].to_string()),
                ("mode", 2) if mode.is_none() => {
                    mode = Some(Mode::parse(fields[1]).with_context(|| format!("line {n}: unknown mode {:?}", fields[1]))?)
                }
                ("image", 6) => {
                    let e = Entry {
                        name: fields[1].to_string(),
                        id: fields[2].to_string(),
                        file: fields[3].to_string(),
                        size: fields[4].parse().with_context(|| format!("line {n}: bad size {:?}", fields[4]))?,
                        sha256: fields[5].to_string(),
                    };
                    if e.name.is_empty() || e.name.chars().any(char::is_whitespace) {
                        bail!("line {n}: bad image name {:?}", e.name);
                    }
                    if !is_hex64(&e.id) {
                        bail!("line {n}: bad image ID {:?} (64 hex digits expected)", e.id);
                    }
                    if !is_hex64(&e.sha256) {
                        bail!("line {n}: bad sha256 {:?} (64 hex digits expected)", e.sha256);
                    }
                    if !safe_entry_name(&e.file) || e.file == MANIFEST || e.file == MANIFEST_SUM {
                        bail!("line {n}: unsafe file name {:?}", e.file);
                    }
                    if images.iter().any(|x| x.file == e.file) {
                        bail!("line {n}: file {} is listed twice", e.file);
                    }
                    if images.iter().any(|x| x.name == e.name) {
                        bail!("line {n}: image {} is listed twice", e.name);
                    }
                    images.push(e);
                }
                (key, _) => bail!("line {n}: unexpected line starting with {key:?}"),
            }
        }
        if !version_seen {
            bail!("empty manifest: this is not a V7 bundle");
        }
        let created = created.context("no `created` line")?;
        let mode = mode.context("no `mode` line")?;
        if images.is_empty() {
            bail!("no `image` lines: the bundle holds no image");
        }
        Ok(Manifest { created, mode, images })
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A bundle entry name: one plain path component that no shell or tar treats specially.
pub fn safe_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The archive name of the `index`-th image (from 0): `01-localhost_v7-offline_nats_latest.tar`.
pub fn entry_file_name(index: usize, image: &str) -> String {
    let mut stem: String =
        image.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    stem.truncate(150);
    format!("{:02}-{stem}.tar", index + 1)
}

/// `tar -tvf` output (LC_ALL=C) -> the entry names. Refuses anything but regular files with
/// [`safe_entry_name`]s, and duplicates.
pub fn parse_listing(listing: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // mode owner/group size date time name
        let name = fields.last().copied().unwrap_or("");
        if !line.starts_with('-') {
            bail!("it holds {line:?}, which is not a regular file (links and directories are refused)");
        }
        if fields.len() != 6 || !safe_entry_name(name) {
            bail!("it holds an entry with an unsafe name ({line:?}): only plain file names are allowed");
        }
        if names.iter().any(|n| n == name) {
            bail!("it holds {name} twice");
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// The files the archive holds must be exactly the manifest, its checksum and the listed images.
pub fn check_contents(manifest: &Manifest, present: &[String]) -> Result<()> {
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = manifest.images.iter().map(|e| e.file.as_str()).collect();
    expected.insert(MANIFEST);
    expected.insert(MANIFEST_SUM);
    let missing: Vec<&str> = expected.difference(&present).copied().collect();
    let extra: Vec<&str> = present.difference(&expected).copied().collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "files listed in the manifest are missing (the bundle is truncated or incomplete): {}",
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        problems.push(format!("files not in the manifest: {}", extra.join(", ")));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

// ------------------------------------------------------------------------------ save

/// Saves `images` (all of which must be here) into `file`; see the module docs.
pub fn save(podman: &Podman, runner: &Runner, images: &[String], mode: Mode, file: &Path) -> Result<Manifest> {
    if images.is_empty() {
        bail!("nothing to bundle: no service has an image in {mode} mode");
    }
    let mut ids = Vec::new();
    let mut missing = Vec::new();
    for image in images {
        match image_id(podman, runner, image)? {
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
    let mut partial = RemoveOnDrop(Some(parent.join(format!("{file_name}.partial"))));

    let mut entries = Vec::new();
    for (i, (image, id)) in images.iter().zip(&ids).enumerate() {
        let name = entry_file_name(i, image);
        let path = work.0.join(&name);
        eprintln!("saving {image} ({}/{})", i + 1, images.len());
        let out = runner.run_captured(&podman.cmd().args(["save", "--format", "docker-archive", "-o"]).arg(path_str(&path)?).arg(image))?;
        if !out.status.success() {
            bail!("`podman save {image}` failed: {}; no bundle was written", last_line(&out.stderr));
        }
        if image_id(podman, runner, image)?.as_ref() != Some(id) {
            bail!("{image} changed while it was being saved (it was {}); no bundle was written, run it again", short_id(id));
        }
        let size = std::fs::metadata(&path).with_context(|| format!("podman save wrote no {}", path.display()))?.len();
        entries.push(Entry { name: image.clone(), id: id.clone(), file: name, size, sha256: String::new() });
    }
    let paths: Vec<PathBuf> = entries.iter().map(|e| work.0.join(&e.file)).collect();
    for (e, sum) in entries.iter_mut().zip(sha256_files(runner, &paths)?) {
        e.sha256 = sum;
    }
    let manifest = Manifest { created: utc_timestamp(now_secs()), mode, images: entries };
    let manifest_path = work.0.join(MANIFEST);
    write(&manifest_path, &manifest.render())?;
    let manifest_sum = sha256_files(runner, std::slice::from_ref(&manifest_path))?.remove(0);
    write(&work.0.join(MANIFEST_SUM), &format!("{manifest_sum}  {MANIFEST}\n"))?;

    let partial_path = partial.0.clone().unwrap();
    let tar = Cmd::new("tar")
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(path_str(&partial_path)?)
        .args(["--format=gnu", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(path_str(&work.0)?)
        .args([MANIFEST, MANIFEST_SUM])
        .args(manifest.images.iter().map(|e| e.file.clone()));
    let out = runner.run_captured(&tar)?;
    if !out.status.success() {
        bail!("`{tar}` failed: {}; no bundle was written", last_line(&out.stderr));
    }
    std::fs::File::open(&partial_path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", partial_path.display()))?;
    std::fs::rename(&partial_path, file)
        .with_context(|| format!("cannot rename {} to {}", partial_path.display(), file.display()))?;
    partial.0 = None;
    Ok(manifest)
}

// ------------------------------------------------------------------------------ load

/// What loading did to one image name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    pub id: String,
    pub outcome: String,
}

/// Verifies `file` completely, then loads its images; see the module docs.
pub fn load(podman: &Podman, runner: &Runner, file: &Path) -> Result<(Manifest, Vec<Loaded>)> {
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
    for needed in [MANIFEST, MANIFEST_SUM] {
        if !names.iter().any(|n| n == needed) {
            return Err(refused(format!("it has no {needed}, so it is not a V7 bundle")));
        }
    }

    let scratch = crate::state_dir().join("bundle");
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let work = TempDir::create(&scratch, "load")?;
    let extract = Cmd::new("tar")
        .arg("-xf")
        .arg(path_str(file)?)
        .args(["--no-same-owner", "--no-same-permissions", "-C"])
        .arg(path_str(&work.0)?)
        .env("LC_ALL", "C");
    let out = runner.capture(&extract)?;
    if !out.status.success() {
        bail!("bundle {shown} is truncated or not a tar: {}; nothing was loaded", tar_reason(&out.stderr));
    }
    // What is on disk must be what was listed: regular files, nothing else.
    let mut on_disk = Vec::new();
    for dirent in std::fs::read_dir(&work.0).with_context(|| format!("cannot read {}", work.0.display()))? {
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

    let manifest_path = work.0.join(MANIFEST);
    let recorded = std::fs::read_to_string(work.0.join(MANIFEST_SUM)).context("cannot read the manifest checksum")?;
    let recorded = recorded.split_whitespace().next().unwrap_or("").to_string();
    let actual = sha256_files(runner, std::slice::from_ref(&manifest_path))?.remove(0);
    if recorded != actual {
        return Err(refused(format!("{MANIFEST} is corrupted: its sha256 is {actual}, {MANIFEST_SUM} says {recorded:?}")));
    }
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| refused(format!("cannot read {MANIFEST}: {e}")))?;
    let manifest = Manifest::parse(&text).map_err(|e| refused(format!("{MANIFEST}: {e:#}")))?;
    check_contents(&manifest, &names).map_err(|e| refused(format!("{e:#}")))?;

    let mut problems = Vec::new();
    for e in &manifest.images {
        let size = std::fs::metadata(work.0.join(&e.file))?.len();
        if size != e.size {
            problems.push(format!("{} ({}): {size} bytes, the manifest says {}", e.file, e.name, e.size));
        }
    }
    let paths: Vec<PathBuf> = manifest.images.iter().map(|e| work.0.join(&e.file)).collect();
    for (e, sum) in manifest.images.iter().zip(sha256_files(runner, &paths)?) {
        if sum != e.sha256 {
            problems.push(format!("{} ({}): sha256 is {sum}, the manifest says {}", e.file, e.name, e.sha256));
        }
    }
    if !problems.is_empty() {
        bail!("bundle {shown} is corrupted, nothing was loaded:\n  {}", problems.join("\n  "));
    }
    eprintln!("bundle {shown} verified: {} images, checksums match", manifest.images.len());

    // Load, undoing everything on the first failure.
    let mut done: Vec<(String, Option<String>)> = Vec::new();
    let mut loaded = Vec::new();
    for (i, e) in manifest.images.iter().enumerate() {
        let before = image_id(podman, runner, &e.name)?;
        done.push((e.name.clone(), before.clone()));
        eprintln!("loading {} ({}/{})", e.name, i + 1, manifest.images.len());
        let path = work.0.join(&e.file);
        let out = runner.run_captured(&podman.cmd().args(["load", "-i"]).arg(path_str(&path)?))?;
        let after = if out.status.success() { image_id(podman, runner, &e.name) } else { Ok(None) };
        let failure = match (&after, out.status.success()) {
            (_, false) => Some(format!("`podman load` of {} failed: {}", e.file, last_line(&out.stderr))),
            (Err(err), _) => Some(format!("{err:#}")),
            (Ok(None), _) => Some(format!("after loading {}, there is no image named {}", e.file, e.name)),
            (Ok(Some(id)), _) if *id != e.id => {
                Some(format!("{} was loaded as image {}, the manifest says {}", e.name, short_id(id), short_id(&e.id)))
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
    Ok((manifest, loaded))
}

/// Puts each name back as it was before the load: removed if it was new, re-tagged if it moved.
fn rollback(podman: &Podman, runner: &Runner, done: &[(String, Option<String>)]) {
    for (name, before) in done.iter().rev() {
        let now = image_id(podman, runner, name).ok().flatten();
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

// ------------------------------------------------------------------------------ helpers

/// The full image ID of `image`, or `None` when there is no such image.
fn image_id(podman: &Podman, runner: &Runner, image: &str) -> Result<Option<String>> {
    if !runner.capture(&podman.cmd().args(["image", "exists", image]))?.status.success() {
        return Ok(None);
    }
    let id = runner.query(&podman.cmd().args(["image", "inspect", "--format", "{{.Id}}", image]))?;
    let id = id.trim().trim_start_matches("sha256:").to_string();
    if !is_hex64(&id) {
        bail!("podman reported an unexpected image ID for {image}: {id:?}");
    }
    Ok(Some(id))
}

/// sha256 of each file, in order, with coreutils' `sha256sum`.
fn sha256_files(runner: &Runner, paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut cmd = Cmd::new("sha256sum").arg("--");
    for p in paths {
        cmd = cmd.arg(path_str(p)?);
    }
    let out = runner.query(&cmd)?;
    let sums: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches('\\').split_whitespace().next().unwrap_or("").to_string())
        .collect();
    if sums.len() != paths.len() || !sums.iter().all(|s| is_hex64(s)) {
        bail!("unexpected output from `{cmd}`: {out:?}");
    }
    Ok(sums)
}

/// tar's stderr without its follow-up noise ("Error is not recoverable", "Exiting with failure",
/// "rmtlseek not stopped at a record boundary").
fn tar_reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("Error is not recoverable") && !l.contains("Exiting with failure status") && !l.contains("rmtlseek"))
        .collect();
    if lines.is_empty() {
        last_line(stderr)
    } else {
        lines.join("; ")
    }
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).with_context(|| format!("path is not UTF-8: {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}


fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `2023-11-14T22:13:20Z` for a Unix time (days-to-civil from Howard Hinnant's date algorithms).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A directory that is removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(parent: &Path, prefix: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
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
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file removed when dropped, unless its path was taken out first.
struct RemoveOnDrop(Option<PathBuf>);

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

    const STACK: &str = r#"
[project]
name = "v7"

[services.nats]
image = "docker.io/library/nats:2.10-alpine"
offline = { dockerfile = "docker/nats/Containerfile", context = "docker/nats" }

[services.grafana]
image = "docker.io/grafana/grafana:11.1.0"
offline = { unavailable = "no Debian package" }
depends_on = ["nats"]

[services.api]
image = "ghcr.io/x/api:latest"
depends_on = ["nats"]

[services.worker]
image = "ghcr.io/x/api:latest"
depends_on = ["api"]
"#;

    fn sample() -> Manifest {
        Manifest {
            created: "2023-11-14T22:13:20Z".to_string(),
            mode: Mode::Offline,
            images: vec![
                Entry {
                    name: "localhost/v7-offline/nats:latest".to_string(),
                    id: "a".repeat(64),
                    file: "01-localhost_v7-offline_nats_latest.tar".to_string(),
                    size: 1234,
                    sha256: "b".repeat(64),
                },
                Entry {
                    name: "localhost/v7-offline/api:latest".to_string(),
                    id: "c".repeat(64),
                    file: "02-localhost_v7-offline_api_latest.tar".to_string(),
                    size: 5,
                    sha256: "d".repeat(64),
                },
            ],
        }
    }

    #[test]
    fn registry_mode_bundles_every_image_once_in_start_order() {
        let stack = Stack::parse("docker/stack.toml", STACK).unwrap();
        let list = stack_images(&stack, false).unwrap();
        assert_eq!(
            list.images,
            vec!["docker.io/library/nats:2.10-alpine", "ghcr.io/x/api:latest", "docker.io/grafana/grafana:11.1.0"]
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn registry_free_mode_bundles_what_deploy_runs() {
        let stack = Stack::parse("docker/stack.toml", STACK).unwrap();
        let list = stack_images(&stack, true).unwrap();
        // nats has a registry-free image; api/worker have no offline recipe, so deploy runs
        // their registry image; grafana is unavailable.
        assert_eq!(list.images, vec!["localhost/v7-offline/nats:latest", "ghcr.io/x/api:latest"]);
        assert_eq!(list.skipped, vec![("grafana".to_string(), "no Debian package".to_string())]);
        assert!(!list.images.iter().any(|i| i.contains("/base:")));
    }

    #[test]
    fn repository_stack_images_match_placement() {
        let stack = Stack::load(&crate::project_root()).unwrap();
        for offline in [false, true] {
            let list = stack_images(&stack, offline).unwrap();
            for name in stack.services.keys() {
                match placement(&stack, name, offline) {
                    Placement::Image(i) => assert!(list.images.contains(&i), "{i}"),
                    Placement::Skipped(_) => assert!(list.skipped.iter().any(|(s, _)| s == name)),
                }
            }
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = sample();
        let text = m.render();
        assert!(text.contains("\nv7-bundle\t1\ncreated\t2023-11-14T22:13:20Z\nmode\tregistry-free\nimage\tlocalhost/v7-offline/nats:latest\t"));
        assert_eq!(Manifest::parse(&text).unwrap(), m);
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let text = sample().render();
        let err = |t: &str| format!("{:#}", Manifest::parse(t).unwrap_err());
        assert!(err(&text.replace("v7-bundle\t1", "v7-bundle\t2")).contains("bundle format 2; this xtask reads format 1"));
        assert!(err("hello\n").contains("not a V7 bundle manifest"));
        assert!(err("").contains("empty manifest"));
        assert!(err(&text.replace(&"b".repeat(64), "xyz")).contains("line 6: bad sha256"));
        assert!(err(&text.replace("\t1234\t", "\tlots\t")).contains("line 6: bad size"));
        assert!(err(&text.replace("01-localhost", "../localhost")).contains("unsafe file name"));
        assert!(err(&text.replace("02-localhost_v7-offline_api", "01-localhost_v7-offline_nats")).contains("listed twice"));
        assert!(err(&text.replace("mode\tregistry-free", "mode\tfast")).contains("unknown mode"));
        assert!(err(&text.replace("mode\tregistry-free\n", "")).contains("no `mode` line"));
        assert!(err(&text.replace("created", "made")).contains("line 4: unexpected line"));
    }

    #[test]
    fn listing_refuses_links_directories_and_unsafe_names() {
        let ok = "-rw-r--r-- 0/0             2 2026-11-22 02:22 v7-bundle.txt\n\
                  -rw-r--r-- 0/0       1061888 2026-11-22 02:22 01-x.tar\n";
        assert_eq!(parse_listing(ok).unwrap(), vec!["v7-bundle.txt", "01-x.tar"]);
        let err = |t: &str| format!("{:#}", parse_listing(t).unwrap_err());
        assert!(err("lrwxrwxrwx 0/0 0 2026-11-22 02:22 x -> /etc/passwd\n").contains("not a regular file"));
        assert!(err("hrw-r--r-- 0/0 0 2026-11-22 02:22 x link to y\n").contains("not a regular file"));
        assert!(err("drwxr-xr-x 0/0 0 2026-11-22 02:22 dir/\n").contains("not a regular file"));
        assert!(err("-rw-r--r-- 0/0 2 2026-11-22 02:22 ../evil\n").contains("unsafe name"));
        assert!(err("-rw-r--r-- 0/0 2 2026-11-22 02:22 /etc/evil\n").contains("unsafe name"));
        assert!(err("-rw-r--r-- 0/0 2 2026-11-22 02:22 sub/file\n").contains("unsafe name"));
        assert!(err("-rw-r--r-- 0/0 2 2026-11-22 02:22 two words\n").contains("unsafe name"));
        assert!(err("-rw-r--r-- 0/0 2 2026-11-22 02:22 .hidden\n").contains("unsafe name"));
        assert!(err(&format!("{ok}{}", ok.lines().nth(1).unwrap())).contains("01-x.tar twice"));
    }

    #[test]
    fn contents_must_match_the_manifest_exactly() {
        let m = sample();
        let mut present: Vec<String> = m.images.iter().map(|e| e.file.clone()).collect();
        present.push(MANIFEST.to_string());
        present.push(MANIFEST_SUM.to_string());
        check_contents(&m, &present).unwrap();
        let e = format!("{:#}", check_contents(&m, &present[1..]).unwrap_err());
        assert!(e.contains("missing (the bundle is truncated or incomplete): 01-localhost_v7-offline_nats_latest.tar"), "{e}");
        present.push("99-extra.tar".to_string());
        let e = format!("{:#}", check_contents(&m, &present).unwrap_err());
        assert!(e.contains("not in the manifest: 99-extra.tar"), "{e}");
    }

    #[test]
    fn entry_names_are_safe() {
        let n = entry_file_name(0, "localhost/v7-offline/nats:latest");
        assert_eq!(n, "01-localhost_v7-offline_nats_latest.tar");
        assert!(safe_entry_name(&n));
        assert!(safe_entry_name(&entry_file_name(11, "docker.io/x/y@sha256:abc")));
        assert!(!safe_entry_name("..") && !safe_entry_name("a/b") && !safe_entry_name("") && !safe_entry_name("-rf"));
    }

    #[test]
    fn timestamps_and_sizes() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_061_888), "1.1 MB");
        assert_eq!(human_size(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn tar_reason_drops_boilerplate() {
        let stderr = b"tar: Unexpected EOF in archive\ntar: rmtlseek not stopped at a record boundary\n\
                       tar: Error is not recoverable: exiting now\n";
        assert_eq!(tar_reason(stderr), "tar: Unexpected EOF in archive");
    }
}

/// Real podman: `cargo test -p xtask --features e2e bundle` (`cargo xtask test podman` runs them). Every image is named
/// `localhost/v7test-bundle-<test>-<x>:1` and removed when the test ends, even when it fails.
#[cfg(all(test, feature = "e2e"))]
mod e2e {
    use std::io::Read;

    use super::*;

    struct Fixture {
        test: String,
        podman: Podman,
        runner: Runner,
        dir: PathBuf,
        names: Vec<String>,
    }

    impl Fixture {
        fn new(test: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("v7test-bundle-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture { test: test.to_string(), podman: Podman::prepare().unwrap(), runner: Runner::new(false), dir, names: Vec::new() }
        }

        /// A tiny image from `podman import`: two small files and 1 MB of random data.
        fn image(&mut self, x: &str) -> (String, String) {
            let name = format!("localhost/v7test-bundle-{}-{x}:1", self.test);
            self.names.push(name.clone());
            let root = self.dir.join(format!("rootfs-{x}"));
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/hello"), format!("hello from {name}\n")).unwrap();
            std::fs::write(root.join("etc/os-release"), "ID=v7test\n").unwrap();
            let mut blob = vec![0u8; 1 << 20];
            std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut blob).unwrap();
            std::fs::write(root.join("blob"), blob).unwrap();
            let tar = self.dir.join(format!("rootfs-{x}.tar"));
            let out = self.runner.capture(&Cmd::new("tar").arg("-cf").arg(tar.to_str().unwrap()).arg("-C").arg(root.to_str().unwrap()).arg(".")).unwrap();
            assert!(out.status.success(), "{}", last_line(&out.stderr));
            let out = self.runner.capture(&self.podman.cmd().args(["import", tar.to_str().unwrap(), &name])).unwrap();
            assert!(out.status.success(), "podman import: {}", last_line(&out.stderr));
            let id = self.id(&name).expect("imported");
            (name, id)
        }

        fn id(&self, name: &str) -> Option<String> {
            image_id(&self.podman, &self.runner, name).unwrap()
        }

        fn rmi(&self, name: &str) {
            let out = self.runner.capture(&self.podman.cmd().args(["rmi", name])).unwrap();
            assert!(out.status.success(), "podman rmi {name}: {}", last_line(&out.stderr));
            assert_eq!(self.id(name), None);
        }

        fn save(&self, images: &[&str], file: &str) -> Result<Manifest> {
            let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
            save(&self.podman, &self.runner, &images, Mode::Registry, &self.dir.join(file))
        }

        fn load(&self, file: &str) -> Result<(Manifest, Vec<Loaded>)> {
            load(&self.podman, &self.runner, &self.dir.join(file))
        }

        /// The files in the test directory other than the rootfs ones.
        fn files(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("rootfs-"))
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for name in &self.names {
                let _ = self.runner.capture(&self.podman.cmd().args(["rmi", "--ignore", name]));
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Offset and size of a member's data in an uncompressed tar.
    fn member(bytes: &[u8], wanted: &str) -> (usize, usize) {
        let mut pos = 0;
        while pos + 512 <= bytes.len() && bytes[pos] != 0 {
            let h = &bytes[pos..pos + 512];
            let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
            let size_field = String::from_utf8_lossy(&h[124..136]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
            let size = usize::from_str_radix(&size_field, 8).unwrap();
            if name.starts_with(wanted) {
                return (pos + 512, size);
            }
            pos += 512 + size.div_ceil(512) * 512;
        }
        panic!("no member {wanted}");
    }

    #[test]
    fn bundle_round_trip_keeps_ids_and_names() {
        let mut f = Fixture::new("roundtrip");
        let (a, a_id) = f.image("a");
        let (b, b_id) = f.image("b");
        let m = f.save(&[&a, &b], "stack.tar").unwrap();
        assert_eq!(m.images.iter().map(|e| (&e.name, &e.id)).collect::<Vec<_>>(), vec![(&a, &a_id), (&b, &b_id)]);
        assert_eq!(f.files(), vec!["stack.tar"], "no partial file or temp dir left");

        f.rmi(&a);
        f.rmi(&b);
        let (_, loaded) = f.load("stack.tar").unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(f.id(&a), Some(a_id.clone()));
        assert_eq!(f.id(&b), Some(b_id.clone()));
        assert!(loaded.iter().all(|l| l.outcome == "loaded"), "{loaded:?}");

        // Loading again changes nothing.
        let (_, again) = f.load("stack.tar").unwrap();
        assert!(again.iter().all(|l| l.outcome.starts_with("already here")), "{again:?}");

        // gzip by file name; load detects it.
        f.save(&[&a], "stack.tar.gz").unwrap();
        let out = f.runner.capture(&Cmd::new("gzip").args(["-t", f.dir.join("stack.tar.gz").to_str().unwrap()])).unwrap();
        assert!(out.status.success());
        f.rmi(&a);
        f.load("stack.tar.gz").unwrap();
        assert_eq!(f.id(&a), Some(a_id));
    }

    #[test]
    fn bundle_corrupted_image_is_refused_and_nothing_loaded() {
        let mut f = Fixture::new("corrupt");
        let (a, _) = f.image("a");
        let (b, _) = f.image("b");
        let m = f.save(&[&a, &b], "stack.tar").unwrap();
        f.rmi(&a);
        f.rmi(&b);
        let path = f.dir.join("stack.tar");
        let mut bytes = std::fs::read(&path).unwrap();
        let (start, size) = member(&bytes, "02-");
        for i in 0..8 {
            bytes[start + size / 2 + i] ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = format!("{:#}", f.load("stack.tar").unwrap_err());
        assert!(err.contains("is corrupted, nothing was loaded"), "{err}");
        assert!(err.contains(&format!("{} ({b}): sha256 is", m.images[1].file)), "{err}");
        assert!(!err.contains(&m.images[0].file), "only the damaged file is named: {err}");
        assert_eq!(f.id(&a), None);
        assert_eq!(f.id(&b), None);
    }

    #[test]
    fn bundle_truncated_is_refused_and_nothing_loaded() {
        let mut f = Fixture::new("truncated");
        let (a, _) = f.image("a");
        let (b, _) = f.image("b");
        let m = f.save(&[&a, &b], "stack.tar").unwrap();
        f.rmi(&a);
        f.rmi(&b);
        let path = f.dir.join("stack.tar");
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the first image archive: tar itself notices.
        let (start, size) = member(&bytes, "01-");
        std::fs::write(&path, &bytes[..start + size / 2]).unwrap();
        let err = format!("{:#}", f.load("stack.tar").unwrap_err());
        assert!(err.contains("is truncated or not a tar: tar: Unexpected EOF in archive; nothing was loaded"), "{err}");
        // A well-formed tar that lacks an image archive: the manifest check notices.
        std::fs::write(&path, &bytes).unwrap();
        let out = f.runner.capture(&Cmd::new("tar").args(["--delete", "-f", path.to_str().unwrap(), &m.images[1].file])).unwrap();
        assert!(out.status.success(), "{}", last_line(&out.stderr));
        let err = format!("{:#}", f.load("stack.tar").unwrap_err());
        assert!(err.contains("nothing was loaded: files listed in the manifest are missing (the bundle is truncated or incomplete): 02-"), "{err}");
        // Cut in half, wherever that falls.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", f.load("stack.tar").unwrap_err());
        assert!(err.contains("nothing was loaded") && err.contains("truncated"), "{err}");
        assert_eq!(f.id(&a), None);
        assert_eq!(f.id(&b), None);
        // Not a tar at all.
        std::fs::write(&path, b"hello, not a bundle\n").unwrap();
        let err = format!("{:#}", f.load("stack.tar").unwrap_err());
        assert!(err.contains("is truncated or not a tar"), "{err}");
    }

    #[test]
    fn bundle_save_with_a_missing_image_writes_nothing() {
        let mut f = Fixture::new("missing");
        let (a, _) = f.image("a");
        let absent = "localhost/v7test-bundle-missing-absent:1";
        let err = format!("{:#}", f.save(&[&a, absent], "stack.tar").unwrap_err());
        assert!(err.contains(&format!("images missing, no bundle was written: {absent}")), "{err}");
        assert!(err.contains("cargo xtask pull"), "{err}");
        assert!(f.files().is_empty(), "{:?}", f.files());
    }

    /// A manifest whose checksums are right but whose image ID is wrong is only caught after
    /// `podman load`: the images loaded so far are removed again.
    #[test]
    fn bundle_wrong_image_id_is_rolled_back() {
        let mut f = Fixture::new("rollback");
        let (a, a_id) = f.image("a");
        let (b, b_id) = f.image("b");
        f.save(&[&a, &b], "stack.tar").unwrap();
        f.rmi(&a);
        f.rmi(&b);
        // Rewrite the bundle with b's ID replaced, and consistent manifest checksum.
        let x = f.dir.join("x");
        std::fs::create_dir(&x).unwrap();
        let xs = x.to_str().unwrap();
        let run = |cmd: Cmd| {
            let out = f.runner.capture(&cmd).unwrap();
            assert!(out.status.success(), "{cmd}: {}", last_line(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        run(Cmd::new("tar").args(["-xf", f.dir.join("stack.tar").to_str().unwrap(), "-C", xs]));
        let text = std::fs::read_to_string(x.join(MANIFEST)).unwrap().replace(&b_id, &"0".repeat(64));
        std::fs::write(x.join(MANIFEST), text).unwrap();
        let sum = run(Cmd::new("sha256sum").arg(x.join(MANIFEST).to_str().unwrap()));
        std::fs::write(x.join(MANIFEST_SUM), format!("{}  {MANIFEST}\n", &sum[..64])).unwrap();
        let names: Vec<String> = std::fs::read_dir(&x).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        run(Cmd::new("tar").args(["-cf", f.dir.join("forged.tar").to_str().unwrap(), "-C", xs]).args(names));
        std::fs::remove_dir_all(&x).unwrap();

        let err = format!("{:#}", f.load("forged.tar").unwrap_err());
        assert!(err.contains(&format!("{b} was loaded as image {}, the manifest says 000000000000", &b_id[..12])), "{err}");
        assert!(err.contains("the images this load added were removed again"), "{err}");
        assert_eq!(f.id(&a), None, "a was loaded first and must be gone again");
        assert_eq!(f.id(&b), None);
        // An image that was already here stays.
        f.load("stack.tar").unwrap();
        f.load("forged.tar").unwrap_err();
        assert_eq!(f.id(&a), Some(a_id));
        assert_eq!(f.id(&b), Some(b_id));
    }
}
