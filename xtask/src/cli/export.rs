//! `cargo xtask export compose|kube`: the stack as a compose file or Kubernetes manifests, on
//! stdout (`export`). `export compose --write` writes the checked-in compose.yaml and
//! compose.offline.yaml (`export/compose.rs`) and makes the compose project's secret files with
//! deploy's generator (`deploy/secrets.rs`, for the stack under the compose project's name); a
//! test here fails when the checked-in files are stale, rust-analyzer's check-mode pattern.

use std::io::Write;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};

use crate::deploy::secrets;
use crate::export::compose::{self, COMPOSE_FILE, OFFLINE_FILE};
use crate::export::kube::kube;
use crate::export::kube::options::{Options, Target};
use crate::flags;
use crate::images::push::plan::{tags as push_tags, Revision};
use crate::process::{Cmd, Runner};
use crate::stack::{mode, Mode, Stack};
use crate::util::workspace::Workspace;

const FORMATS: &str = "`compose`, `kube`";

/// What `export compose --write` writes into a directory whose way back to the checkout root is
/// `to_root`: (file name, text).
pub fn compose_files(stack: &Stack, to_root: &str) -> [(&'static str, String); 2] {
    [(COMPOSE_FILE, compose::compose(stack, to_root)), (OFFLINE_FILE, compose::offline(stack))]
}

/// `dir` (relative to the checkout root, or absolute inside it) as the way back to the root:
/// `.` for the root, `../..` two levels down. None when it leaves the checkout.
fn way_back(root: &Path, dir: &Path) -> Option<String> {
    let rel = if dir.is_absolute() { dir.strip_prefix(root).ok()? } else { dir };
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1)?,
            _ => return None,
        }
    }
    Some(if depth == 0 { ".".to_string() } else { vec![".."; depth].join("/") })
}

/// The first line where `have` and `want` differ: (line number from 1, have's line, want's line).
pub fn first_difference(have: &str, want: &str) -> Option<(usize, String, String)> {
    if have == want {
        return None;
    }
    let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
    let i = (0..h.len().max(w.len())).find(|&i| h.get(i) != w.get(i)).unwrap_or(h.len().min(w.len()));
    let at = |v: &[&str]| v.get(i).map_or("(end of file)".to_string(), |l| l.to_string());
    Some((i + 1, at(&h), at(&w)))
}

impl flags::Export {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        if self.write && self.profile.is_some() {
            bail!("--write writes the checked-in compose.yaml, which is the stack file without a profile; hint: `cargo xtask export compose --profile NAME > compose.NAME.yaml`");
        }
        let stack = Stack::load_profile(ws, self.profile.as_deref())?;
        if self.format == "compose" {
            if let Some(flag) = self.kube_flags().into_iter().find_map(|(f, set)| set.then_some(f)) {
                bail!("{flag} is for `export kube`; hint: leave it out of `export compose`");
            }
        }
        let text = match self.format.as_str() {
            "compose" if self.write => return write_compose(ws, &stack, self.dir.as_deref()),
            "compose" => match mode::without_probing(&stack, self.registry_free) {
                Mode::Registry => compose::compose(&stack, "."),
                Mode::RegistryFree => compose::offline(&stack),
            },
            "kube" | "kubernetes" if self.write || self.dir.is_some() => {
                bail!("--write and --dir are for `export compose`; hint: `cargo xtask export kube > v7.yaml`")
            }
            "kube" | "kubernetes" => kube(&stack, &ws.root, &kube_options(ws, &stack, &self)?)?,
            other => {
                bail!("unknown export format {other:?}; formats: {FORMATS} (e.g. `cargo xtask export compose --write`)")
            }
        };
        if self.dir.is_some() {
            bail!("--dir is where --write writes; hint: `cargo xtask export compose --write --dir DIR`");
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
            _ => Ok(()),
        }
    }
}

impl flags::Export {
    /// `export kube`'s own flags, whether given: `--target`, then those only a cluster takes.
    fn kube_flags(&self) -> [(&'static str, bool); 6] {
        [
            ("--target", self.target.is_some()),
            ("--tag", self.tag.is_some()),
            ("--registry", self.registry.is_some()),
            ("--storage-class", self.storage_class.is_some()),
            ("--namespace", self.namespace.is_some()),
            ("--existing-secrets", self.existing_secrets),
        ]
    }
}

/// `export kube`'s flags as options: the target (`--target cluster|podman`), and for a cluster
/// the image tag (`--tag`, else the git short revision `cargo xtask push` tags with), registry
/// prefix, storage class, namespace (the project name by default), cluster domain.
fn kube_options(ws: &Workspace, stack: &Stack, flags: &flags::Export) -> Result<Options> {
    let mode = mode::without_probing(stack, flags.registry_free);
    let target = flags.target.as_deref().unwrap_or("cluster");
    let Some(target) = Target::parse(target) else {
        bail!("--target {target:?}: unknown target; hint: `cluster` (a Kubernetes cluster, the default) or `podman` (`podman kube play` here)");
    };
    if target == Target::Podman {
        if let Some((flag, _)) = flags.kube_flags().into_iter().skip(1).find(|(_, set)| *set) {
            bail!("{flag} is for a cluster; hint: leave it out with --target podman, which runs the images on this machine");
        }
        // The secret files the Pods mount, made now if missing with deploy's generator (the
        // same values deploy uses).
        secrets::load(ws, stack, true)?;
        let mut opts = Options::podman(mode);
        opts.secret_files = Some(secrets::files_dir(ws, stack).display().to_string());
        return Ok(opts);
    }
    let tag = match &flags.tag {
        Some(tag) => tag.clone(),
        None => {
            // The revision tag `cargo xtask push` gives (`<short>-dirty` when tracked files changed).
            let git = |args: &[&str]| Cmd::new("git").args(args.iter().copied()).dir(&ws.root);
            let reader = Runner::new(false);
            let short = reader.query(&git(&["rev-parse", "--short", "HEAD"])).context(
                "kube: cannot read the git short revision for the image tag; hint: pass --tag TAG (the tag `cargo xtask push` published)",
            )?;
            let dirty = !reader.query(&git(&["status", "--porcelain", "--untracked-files=no"]))?.trim().is_empty();
            let rev = Revision { short: short.trim().to_string(), dirty, version: None };
            let tags = push_tags(&rev, &[]).map_err(anyhow::Error::msg)?;
            tags.into_iter()
                .find(|t| t != "latest")
                .context("kube: push gives no revision tag; hint: pass --tag TAG")?
        }
    };
    let mut opts = Options::cluster(&tag, flags.namespace.as_deref().unwrap_or(&stack.project.name));
    opts.mode = mode;
    opts.registry = flags.registry.clone();
    opts.storage_class = flags.storage_class.clone();
    opts.existing_secrets = flags.existing_secrets;
    Ok(opts)
}

/// Writes both files into `dir` (the checkout root by default) where they changed, and makes the
/// compose project's missing secrets (`.v7/stacks/<project>_compose/`).
fn write_compose(ws: &Workspace, stack: &Stack, dir: Option<&Path>) -> Result<()> {
    let dir = dir.unwrap_or(Path::new("."));
    let Some(to_root) = way_back(&ws.root, dir) else {
        bail!(
            "--dir {}: not a directory of the checkout {}; hint: compose.yaml's paths are relative to the checkout",
            dir.display(),
            ws.root.display()
        );
    };
    let target = if to_root == "." {
        ws.root.clone()
    } else if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        ws.root.join(dir)
    };
    std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
    for (name, text) in compose_files(stack, &to_root) {
        let path = target.join(name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        match first_difference(&have, &text) {
            None => println!("{} is up to date", path.display()),
            Some((line, _, _)) => {
                std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {} (changed from line {line})", path.display());
            }
        }
    }
    // The same generator as deploy, for the stack under the compose project's name.
    let mut renamed = Stack::load(ws)?;
    renamed.project.name = compose::project_name(stack);
    secrets::load(ws, &renamed, true)?;
    let files = secrets::files_dir(ws, &renamed);
    println!("secret files of compose project {}: {}", renamed.project.name, files.display());
    if ws.state != ws.root.join(".v7") {
        eprintln!(
            "warning: V7_STATE_DIR is {}: {COMPOSE_FILE} reads its secrets from .v7/ of the checkout; hint: copy {} there",
            ws.state.display(),
            files.display()
        );
    }
    for (name, _, build) in stack.built_services() {
        let default = format!("{}/.dockerignore", build.context.trim_end_matches('/'));
        let Some(ignore) = build.ignorefile.as_ref().filter(|i| **i != default) else { continue };
        let beside = format!("{}.dockerignore", build.dockerfile);
        if !ws.path(&beside).exists() {
            eprintln!(
                "warning: {name}: compose builds read {beside}, which is missing, so they send all of {} (target/ \
                 included); hint: ln -s {} {beside}",
                build.context,
                Path::new(ignore).file_name().map_or(ignore.clone(), |f| f.to_string_lossy().into_owned())
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::down;
    use crate::export::yaml::yaml_str;
    use crate::podman::Podman;

    /// rust-analyzer's check mode for generated files: the checked-in compose.yaml and its
    /// override are what docker/stack.toml gives now.
    #[test]
    fn checked_in_compose_files_are_current() {
        let ws = Workspace::for_tests("compose-check");
        let stack = Stack::load(&ws).unwrap();
        // The secret files it names are under .v7/, which git ignores: never checked in.
        let ignored = std::fs::read_to_string(ws.path(".gitignore")).unwrap_or_default();
        assert!(ignored.lines().any(|l| l.trim() == "/.v7/"), ".gitignore must keep ignoring /.v7/ (secret files)");
        assert!(compose::secret_file(&stack, "x").starts_with(".v7/"), "a secret file outside .v7/");
        for (name, want) in compose_files(&stack, ".") {
            let have = std::fs::read_to_string(ws.path(name)).unwrap_or_default();
            if let Some((line, h, w)) = first_difference(&have, &want) {
                panic!(
                    "{name} is stale: not what docker/stack.toml gives now (line {line}: {h:?}, generated: {w:?}); \
                     hint: run `cargo xtask export compose --write` and commit {COMPOSE_FILE} and {OFFLINE_FILE}"
                );
            }
        }
    }

    /// Without `--profile` every export is what the stack file gave before it had profiles.
    #[test]
    fn without_a_profile_the_exports_are_the_ones_before_profiles() {
        let ws = Workspace::for_tests("export-profiles");
        let text = std::fs::read_to_string(ws.path("docker/stack.toml")).unwrap();
        let before = Stack::parse("docker/stack.toml", &crate::stack::profile::without_profiles(&text)).unwrap();
        let now = Stack::load(&ws).unwrap();
        assert_eq!(compose_files(&before, "."), compose_files(&now, "."), "line: compose.yaml, compose.offline.yaml");
        let mut podman = Options::podman(Mode::RegistryFree);
        podman.secret_files = Some("/s".into());
        for opts in [Options::cluster("abc1234", "v7"), podman] {
            let kube_of = |s: &Stack| kube(s, &ws.root, &opts).unwrap();
            assert!(kube_of(&before) == kube_of(&now), "line: export kube --target {:?}", opts.target);
        }
        let prod = Stack::load_profile(&ws, Some("prod")).unwrap();
        let text = compose::compose(&prod, ".");
        assert!(text.starts_with("# Generated by `cargo xtask export compose --profile prod`"), "{text}");
        assert!(!text.contains("127.0.0.1:8123:8123") && text.contains("127.0.0.1:5173:3000"), "line: prod's ports");
    }

    #[test]
    fn differences_are_named_by_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None, "line: same");
        assert_eq!(first_difference("a\nb\n", "a\nc\n"), Some((2, "b".into(), "c".into())), "line: changed");
        assert_eq!(first_difference("a\n", "a\nc\n"), Some((2, "(end of file)".into(), "c".into())), "line: short");
        assert_eq!(first_difference("", "a\n"), Some((1, "(end of file)".into(), "a".into())), "line: missing file");
        assert_eq!(
            first_difference("a", "a\n"),
            Some((2, "(end of file)".into(), "(end of file)".into())),
            "line: eol"
        );
    }

    #[test]
    fn the_way_back_to_the_root() {
        let root = Path::new("/repo");
        assert_eq!(way_back(root, Path::new(".")).as_deref(), Some("."), "line: root");
        assert_eq!(way_back(root, Path::new("/repo")).as_deref(), Some("."), "line: absolute root");
        assert_eq!(way_back(root, Path::new(".v7/x")).as_deref(), Some("../.."), "line: two down");
        assert_eq!(way_back(root, Path::new("/repo/a/b/c")).as_deref(), Some("../../.."), "line: absolute");
        assert_eq!(way_back(root, Path::new("a/../b")).as_deref(), Some(".."), "line: up and down");
        assert_eq!(way_back(root, Path::new("..")), None, "line: outside");
        assert_eq!(way_back(root, Path::new("/elsewhere")), None, "line: absolute outside");
    }

    /// `cargo xtask down` and compose never take each other's objects: no name `down` removes
    /// is a compose object's name, no compose object carries the label deploy lists by, and
    /// `verify --compose` (the stack renamed to the compose project) finds the compose names.
    #[test]
    fn down_and_compose_never_touch_each_others_objects() {
        let ws = Workspace::for_tests("compose-names");
        let stack = Stack::load(&ws).unwrap();
        let text = compose::compose(&stack, ".");
        let names: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("container_name: ").or(l.strip_prefix("    name: ")))
            .map(str::to_string)
            .collect();
        assert_eq!(names.len(), stack.services.len() + stack.networks.len() + stack.volumes.len(), "{names:?}");
        let podman = Podman::fixed(&[]);
        let deployed: Vec<String> = stack.services.keys().map(|s| stack.container_name(s)).collect();
        let plan: Vec<String> = down::plan(&podman, &stack, &deployed, true).iter().map(|c| c.args.join(" ")).collect();
        for name in &names {
            assert!(name.contains('_'), "{name}: a compose name without `_` could be a deploy name");
            for cmd in &plan {
                assert!(!cmd.split(' ').any(|a| a == name), "`podman {cmd}` (down) would remove compose's {name}");
            }
        }
        assert!(!text.contains(&format!("{}:", crate::stack::names::PROJECT_LABEL)), "deploy's label in:\n{text}");
        assert!(text.contains(&format!("{}: {}\n", compose::COMPOSE_PROJECT_LABEL, yaml_str("v7_compose"))));
        let mut renamed = Stack::load(&ws).unwrap();
        renamed.project.name = compose::project_name(&stack);
        for svc in stack.services.keys() {
            assert_eq!(renamed.container_name(svc), compose::object_name(&stack, svc), "line: container {svc}");
        }
        for vol in stack.volumes.keys() {
            assert_eq!(renamed.volume_name(vol), compose::object_name(&stack, vol), "line: volume {vol}");
        }
        assert_eq!(
            secrets::files_dir(&ws, &renamed).join("clickhouse-password"),
            ws.state.join(compose::secret_file(&stack, "clickhouse-password").trim_start_matches(".v7/")),
            "the secret files the compose file names are the ones --write makes"
        );
    }
}
