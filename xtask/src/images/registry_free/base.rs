//! The Debian base every registry-free image is built on: `debootstrap --variant=minbase`,
//! the release's updates and security suites added and upgraded, slimmed by
//! `docker/base/customize.sh`, tarred and `podman import`ed with labels that record what it was
//! made from. Planned as commands ([`commands`]) and made by [`ensure`], which leaves nothing
//! half-made: the work directory goes, and nothing is tagged unless the import succeeded.

use std::path::Path;

use anyhow::{Context, Result};

use crate::podman::images::label;
use crate::podman::Podman;
use crate::process::{Cmd, Runner};
use crate::stack::names::PROJECT_LABEL;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

/// Bump when docker/base/customize.sh or the debootstrap options change what the base holds.
pub const BASE_RECIPE: &str = "v7-base-2";
/// The label that records [`BASE_RECIPE`].
const RECIPE_LABEL: &str = "org.v7.base.recipe";

/// Debian's security archive beside a mirror: `.../debian` -> `.../debian-security`; a mirror
/// laid out otherwise gets Debian's own.
pub fn security_mirror(mirror: &str) -> String {
    let m = mirror.trim_end_matches('/');
    match m.strip_suffix("/debian") {
        Some(prefix) => format!("{prefix}/debian-security"),
        None => "http://deb.debian.org/debian-security".to_string(),
    }
}

/// The commands that make the base image, as data (see `ensure_base`).
/// `cache`: registry-free mode's cache directory (debootstrap keeps its packages there).
pub fn commands(
    ws: &Workspace,
    podman: &Podman,
    stack: &Stack,
    cache: &Path,
    work: &Path,
    labels: &[(String, String)],
) -> Vec<Cmd> {
    let rootfs = work.join("rootfs");
    let tar = work.join("rootfs.tar");
    let debcache = cache.join("debcache");
    let image = stack.registry_free_base();
    let mut import = podman.cmd().args(["import", "--change", "CMD [\"/bin/bash\"]", "--change", "ENV LANG=C.UTF-8"]);
    // The project label like every build's (images/build); images built FROM the base inherit it.
    import = import.arg("--change").arg(format!("LABEL {PROJECT_LABEL}=\"{}\"", stack.project.name));
    for (k, v) in labels {
        import = import.arg("--change").arg(format!("LABEL {k}=\"{v}\""));
    }
    import = import
        .arg("--message")
        .arg(format!("debootstrap --variant=minbase {} {}", stack.project.debian_suite, stack.project.debian_mirror))
        .arg(tar.display().to_string())
        .arg(&image);
    vec![
        Cmd::new("debootstrap").args([
            "--variant=minbase".to_string(),
            format!("--cache-dir={}", debcache.display()),
            stack.project.debian_suite.clone(),
            rootfs.display().to_string(),
            stack.project.debian_mirror.clone(),
        ]),
        // debootstrap lists only the release itself: add its updates and security suites and
        // upgrade, so no image starts with known-vulnerable packages (and the security suite's
        // newer rustc-web is installable). debootstrap left the host's resolv.conf in the
        // rootfs for exactly this; customize.sh removes it afterwards.
        Cmd::new("chroot").args([
            rootfs.display().to_string(),
            "sh".to_string(),
            "-c".to_string(),
            format!(
                "printf '%s\\n' 'deb {mirror} {suite} main' 'deb {mirror} {suite}-updates main' \
                 'deb {security} {suite}-security main' > /etc/apt/sources.list && apt-get update -q && \
                 DEBIAN_FRONTEND=noninteractive apt-get -y -q upgrade && apt-get clean",
                mirror = stack.project.debian_mirror,
                suite = stack.project.debian_suite,
                security = security_mirror(&stack.project.debian_mirror),
            ),
        ]),
        Cmd::new("sh").args([
            ws.path("docker/base/customize.sh").display().to_string(),
            rootfs.display().to_string(),
            work.join("facts").display().to_string(),
        ]),
        Cmd::new("tar").args(["--numeric-owner", "--xattrs", "--acls", "-C"]).arg(rootfs.display().to_string()).args([
            "-cf",
            &tar.display().to_string(),
            ".",
        ]),
        import,
    ]
}

/// Makes the base image unless one with the current recipe is here (or `rebuild`).
pub fn ensure(
    ws: &Workspace,
    runner: &Runner,
    podman: &Podman,
    stack: &Stack,
    cache: &Path,
    rebuild: bool,
) -> Result<()> {
    let image = stack.registry_free_base();
    let recipe = label(runner, podman, &image, RECIPE_LABEL).unwrap_or_default();
    if !rebuild && recipe == BASE_RECIPE {
        eprintln!("base: {image} is here (recipe {BASE_RECIPE}); `build --registry-free --rebuild-base` makes it anew");
        return Ok(());
    }
    let work = cache.join("base");
    let clean = || {
        let _ = std::fs::remove_dir_all(&work);
    };
    clean();
    std::fs::create_dir_all(cache.join("debcache"))?;
    std::fs::create_dir_all(&work)?;
    eprintln!(
        "base: making {image} with debootstrap from {} ({})",
        stack.project.debian_mirror, stack.project.debian_suite
    );
    let cmds = commands(ws, podman, stack, cache, &work, &[]);
    let result = (|| -> Result<()> {
        for cmd in &cmds[..4] {
            runner.run_checked(cmd)?;
        }
        let facts = std::fs::read_to_string(work.join("facts")).unwrap_or_default();
        let fact = |k: &str| {
            facts
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('\'').replace('"', ""))
                .unwrap_or_default()
        };
        let labels = vec![
            ("org.v7.base.suite".to_string(), stack.project.debian_suite.clone()),
            ("org.v7.base.mirror".to_string(), stack.project.debian_mirror.clone()),
            ("org.v7.base.variant".to_string(), "minbase".to_string()),
            ("org.v7.base.archive-date".to_string(), fact("archive_date")),
            ("org.v7.base.debian-version".to_string(), fact("debian_version")),
            ("org.v7.base.packages".to_string(), fact("pkg_count")),
            ("org.v7.base.package-list".to_string(), fact("pkg_list")),
            (RECIPE_LABEL.to_string(), BASE_RECIPE.to_string()),
        ];
        let import = commands(ws, podman, stack, cache, &work, &labels).pop().expect("import is the last command");
        runner.run_checked(&import)?;
        Ok(())
    })();
    clean();
    result.context("making the registry-free base image failed; nothing was tagged")?;
    if !runner.dry_run {
        eprintln!("base: {image} made");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_planned_as_debootstrap_customize_tar_import() {
        let mut ws = Workspace::for_tests("rf-base");
        let stack = Stack::load(&ws).unwrap();
        ws.root = "/repo".into();
        let podman = Podman::fixed(&[]);
        let labels = vec![("org.v7.base.suite".to_string(), "bookworm".to_string())];
        let cmds = commands(&ws, &podman, &stack, Path::new("/c"), Path::new("/w"), &labels);
        let shown: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        assert!(shown[0].starts_with("debootstrap --variant=minbase --cache-dir=/c/debcache "), "{}", shown[0]);
        assert!(shown[0].ends_with(" bookworm /w/rootfs http://deb.debian.org/debian"), "{}", shown[0]);
        assert!(shown[1].starts_with("chroot /w/rootfs sh -c"), "{}", shown[1]);
        assert!(
            shown[1].contains("'deb http://deb.debian.org/debian-security bookworm-security main'"),
            "{}",
            shown[1]
        );
        assert_eq!(shown[2], "sh /repo/docker/base/customize.sh /w/rootfs /w/facts");
        assert_eq!(shown[3], "tar --numeric-owner --xattrs --acls -C /w/rootfs -cf /w/rootfs.tar .");
        assert!(shown[4].contains("--change 'LABEL v7.project=\"v7\"'"), "{}", shown[4]);
        assert!(shown[4].contains("--change 'LABEL org.v7.base.suite=\"bookworm\"'"), "{}", shown[4]);
        assert!(shown[4].ends_with("/w/rootfs.tar localhost/v7-registry-free/base:bookworm"), "{}", shown[4]);
        assert_eq!(security_mirror("http://mirrors.aliyun.com/debian/"), "http://mirrors.aliyun.com/debian-security");
        assert_eq!(security_mirror("http://10.0.0.1:3142/deb"), "http://deb.debian.org/debian-security");
    }
}
