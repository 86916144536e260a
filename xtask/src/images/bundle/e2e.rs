//! Bundles with real podman: `cargo test -p xtask --features e2e bundle` (`cargo xtask test
//! podman` runs them). Every image is named `localhost/v7test-bundle-<test>-<x>:1` and removed
//! when the test ends, even when it fails.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Result;

use super::index::{Index, INDEX, INDEX_SUM};
use super::load::Loaded;
use super::{load, save};
use crate::podman::{images, Podman};
use crate::process::{last_line, Cmd, Runner};
use crate::stack::Mode;
use crate::util::workspace::Workspace;

struct Fixture {
    ws: Workspace,
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
        let ws = Workspace::from_env();
        Fixture {
            test: test.to_string(),
            podman: Podman::prepare(&ws).unwrap(),
            runner: Runner::new(false),
            dir,
            names: Vec::new(),
            ws,
        }
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
        let out = self
            .runner
            .capture(
                &Cmd::new("tar").arg("-cf").arg(tar.to_str().unwrap()).arg("-C").arg(root.to_str().unwrap()).arg("."),
            )
            .unwrap();
        assert!(out.status.success(), "{}", last_line(&out.stderr));
        let out = self.runner.capture(&self.podman.cmd().args(["import", tar.to_str().unwrap(), &name])).unwrap();
        assert!(out.status.success(), "podman import: {}", last_line(&out.stderr));
        let id = self.id(&name).expect("imported");
        (name, id)
    }

    fn id(&self, name: &str) -> Option<String> {
        images::id(&self.runner, &self.podman, name).unwrap()
    }

    fn rmi(&self, name: &str) {
        let out = self.runner.capture(&self.podman.cmd().args(["rmi", name])).unwrap();
        assert!(out.status.success(), "podman rmi {name}: {}", last_line(&out.stderr));
        assert_eq!(self.id(name), None);
    }

    fn save(&self, images: &[&str], file: &str) -> Result<Index> {
        let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
        save(&self.podman, &self.runner, &images, Mode::Registry, &self.dir.join(file))
    }

    fn load(&self, file: &str) -> Result<(Index, Vec<Loaded>)> {
        load(&self.ws, &self.podman, &self.runner, &self.dir.join(file))
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
        let size_field =
            String::from_utf8_lossy(&h[124..136]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
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
    // A well-formed tar that lacks an image archive: the index check notices.
    std::fs::write(&path, &bytes).unwrap();
    let out =
        f.runner.capture(&Cmd::new("tar").args(["--delete", "-f", path.to_str().unwrap(), &m.images[1].file])).unwrap();
    assert!(out.status.success(), "{}", last_line(&out.stderr));
    let err = format!("{:#}", f.load("stack.tar").unwrap_err());
    assert!(
        err.contains(
            "nothing was loaded: files listed in the index are missing (the bundle is truncated or incomplete): 02-"
        ),
        "{err}"
    );
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

/// An index whose checksums are right but whose image ID is wrong is only caught after
/// `podman load`: the images loaded so far are removed again.
#[test]
fn bundle_wrong_image_id_is_rolled_back() {
    let mut f = Fixture::new("rollback");
    let (a, a_id) = f.image("a");
    let (b, b_id) = f.image("b");
    f.save(&[&a, &b], "stack.tar").unwrap();
    f.rmi(&a);
    f.rmi(&b);
    // Rewrite the bundle with b's ID replaced, and a consistent index checksum.
    let x = f.dir.join("x");
    std::fs::create_dir(&x).unwrap();
    let xs = x.to_str().unwrap();
    let run = |cmd: Cmd| {
        let out = f.runner.capture(&cmd).unwrap();
        assert!(out.status.success(), "{cmd}: {}", last_line(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(Cmd::new("tar").args(["-xf", f.dir.join("stack.tar").to_str().unwrap(), "-C", xs]));
    let text = std::fs::read_to_string(x.join(INDEX)).unwrap().replace(&b_id, &"0".repeat(64));
    std::fs::write(x.join(INDEX), text).unwrap();
    let sum = run(Cmd::new("sha256sum").arg(x.join(INDEX).to_str().unwrap()));
    std::fs::write(x.join(INDEX_SUM), format!("{}  {INDEX}\n", &sum[..64])).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&x).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    run(Cmd::new("tar").args(["-cf", f.dir.join("forged.tar").to_str().unwrap(), "-C", xs]).args(names));
    std::fs::remove_dir_all(&x).unwrap();

    let err = format!("{:#}", f.load("forged.tar").unwrap_err());
    assert!(err.contains(&format!("{b} was loaded as image {}, the index says 000000000000", &b_id[..12])), "{err}");
    assert!(err.contains("the images this load added were removed again"), "{err}");
    assert_eq!(f.id(&a), None, "a was loaded first and must be gone again");
    assert_eq!(f.id(&b), None);
    // An image that was already here stays.
    f.load("stack.tar").unwrap();
    f.load("forged.tar").unwrap_err();
    assert_eq!(f.id(&a), Some(a_id));
    assert_eq!(f.id(&b), Some(b_id));
}
