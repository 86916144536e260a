//! The bundle's index, `v7-bundle.txt` (format 1, described in `mod.rs`): rendering and strict
//! parsing, and the checks of what an archive holds against it.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};

use crate::stack::Mode;

/// The index's name inside the bundle.
pub const INDEX: &str = "v7-bundle.txt";
/// The index's checksum file inside the bundle.
pub const INDEX_SUM: &str = "v7-bundle.txt.sha256";
/// The index format this xtask writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One image in a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub id: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// `v7-bundle.txt`, the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub created: String,
    pub mode: Mode,
    pub images: Vec<Entry>,
}

impl Index {
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# V7 image bundle index: `cargo xtask bundle load FILE` verifies it, then loads every image.\n\
             # image\tNAME\tIMAGE-ID\tFILE\tSIZE\tSHA256\n",
        );
        out.push_str(&format!("v7-bundle\t{FORMAT_VERSION}\ncreated\t{}\nmode\t{}\n", self.created, self.mode));
        for e in &self.images {
            out.push_str(&format!("image\t{}\t{}\t{}\t{}\t{}\n", e.name, e.id, e.file, e.size, e.sha256));
        }
        out
    }

    /// Strict: a wrong version, a missing or repeated key, a malformed line is an error naming the line.
    pub fn parse(text: &str) -> Result<Index> {
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
                    bail!("line {n}: expected `v7-bundle<TAB>{FORMAT_VERSION}` first: this is not a V7 bundle index");
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
                    mode = Some(
                        Mode::parse(fields[1]).with_context(|| format!("line {n}: unknown mode {:?}", fields[1]))?,
                    )
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
                    if !safe_entry_name(&e.file) || e.file == INDEX || e.file == INDEX_SUM {
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
            bail!("empty index: this is not a V7 bundle");
        }
        let created = created.context("no `created` line")?;
        let mode = mode.context("no `mode` line")?;
        if images.is_empty() {
            bail!("no `image` lines: the bundle holds no image");
        }
        Ok(Index { created, mode, images })
    }
}

pub fn is_hex64(s: &str) -> bool {
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

/// The files the archive holds must be exactly the index, its checksum and the listed images.
pub fn check_contents(index: &Index, present: &[String]) -> Result<()> {
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = index.images.iter().map(|e| e.file.as_str()).collect();
    expected.insert(INDEX);
    expected.insert(INDEX_SUM);
    let missing: Vec<&str> = expected.difference(&present).copied().collect();
    let extra: Vec<&str> = present.difference(&expected).copied().collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "files listed in the index are missing (the bundle is truncated or incomplete): {}",
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        problems.push(format!("files not in the index: {}", extra.join(", ")));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// The first 12 hex digits of an image ID, as podman shows it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            created: "2023-11-14T22:13:20Z".to_string(),
            mode: Mode::RegistryFree,
            images: vec![
                Entry {
                    name: "localhost/v7-registry-free/nats:latest".to_string(),
                    id: "a".repeat(64),
                    file: "01-localhost_v7-registry-free_nats_latest.tar".to_string(),
                    size: 1234,
                    sha256: "b".repeat(64),
                },
                Entry {
                    name: "localhost/v7-registry-free/api:latest".to_string(),
                    id: "c".repeat(64),
                    file: "02-localhost_v7-registry-free_api_latest.tar".to_string(),
                    size: 5,
                    sha256: "d".repeat(64),
                },
            ],
        }
    }

    #[test]
    fn index_round_trips() {
        let m = sample();
        let text = m.render();
        assert!(text.contains("\nv7-bundle\t1\ncreated\t2023-11-14T22:13:20Z\nmode\tregistry-free\nimage\tlocalhost/v7-registry-free/nats:latest\t"));
        assert_eq!(Index::parse(&text).unwrap(), m);
    }

    #[test]
    fn index_errors_name_the_line() {
        let text = sample().render();
        let err = |t: &str| format!("{:#}", Index::parse(t).unwrap_err());
        assert!(
            err(&text.replace("v7-bundle\t1", "v7-bundle\t2")).contains("bundle format 2; this xtask reads format 1")
        );
        assert!(err("hello\n").contains("not a V7 bundle index"));
        assert!(err("").contains("empty index"));
        assert!(err(&text.replace(&"b".repeat(64), "xyz")).contains("line 6: bad sha256"));
        assert!(err(&text.replace("\t1234\t", "\tlots\t")).contains("line 6: bad size"));
        assert!(err(&text.replace("01-localhost", "../localhost")).contains("unsafe file name"));
        assert!(err(&text.replace("02-localhost_v7-registry-free_api", "01-localhost_v7-registry-free_nats"))
            .contains("listed twice"));
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
    fn contents_must_match_the_index_exactly() {
        let m = sample();
        let mut present: Vec<String> = m.images.iter().map(|e| e.file.clone()).collect();
        present.push(INDEX.to_string());
        present.push(INDEX_SUM.to_string());
        check_contents(&m, &present).unwrap();
        let e = format!("{:#}", check_contents(&m, &present[1..]).unwrap_err());
        assert!(
            e.contains(
                "missing (the bundle is truncated or incomplete): 01-localhost_v7-registry-free_nats_latest.tar"
            ),
            "{e}"
        );
        present.push("99-extra.tar".to_string());
        let e = format!("{:#}", check_contents(&m, &present).unwrap_err());
        assert!(e.contains("not in the index: 99-extra.tar"), "{e}");
    }

    #[test]
    fn entry_names_are_safe() {
        let n = entry_file_name(0, "localhost/v7-registry-free/nats:latest");
        assert_eq!(n, "01-localhost_v7-registry-free_nats_latest.tar");
        assert!(safe_entry_name(&n));
        assert!(safe_entry_name(&entry_file_name(11, "docker.io/x/y@sha256:abc")));
        assert!(!safe_entry_name("..") && !safe_entry_name("a/b") && !safe_entry_name("") && !safe_entry_name("-rf"));
    }
}
