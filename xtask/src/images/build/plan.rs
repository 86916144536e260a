//! The production builds (`*/Dockerfile` of the services with a `build` section), with the
//! Dockerfiles rewritten out of tree for package mirrors when `--mirror` is given (which mirrors:
//! `mirror_spec.rs`): the rewritten copy goes to `<state>/build/<service>/Dockerfile` and is
//! built with `-f`; the source is never touched. Under `--dry-run` each rewrite is printed as a
//! unified diff against the source (`images/dockerfile/diff.rs`).

use anyhow::{bail, Context, Result};

use super::ImageBuild;
use crate::images::dockerfile::diff::unified;
use crate::images::dockerfile::rewrite::rewrite;
use crate::stack::{PackageMirrors, Stack};
use crate::util::fs::write_if_changed;
use crate::util::workspace::Workspace;

/// Checks that the named services exist and are built; none named means all of `buildable`.
pub fn select_services<'a>(stack: &'a Stack, wanted: &[String], buildable: &[&'a str]) -> Result<Vec<&'a str>> {
    if wanted.is_empty() {
        return Ok(buildable.to_vec());
    }
    let mut out = Vec::new();
    for w in wanted {
        match buildable.iter().find(|b| **b == w) {
            Some(b) => out.push(*b),
            None if stack.services.contains_key(w) => {
                bail!("{w} is not built by the xtask (it has no build recipe); buildable: {}", buildable.join(", "))
            }
            None => bail!("no service named {w:?}; buildable: {}", buildable.join(", ")),
        }
    }
    Ok(out)
}

/// The production builds of `services` (all when empty), rewritten for `mirrors` when given;
/// with `show_diff`, each rewrite is printed as a diff on stdout.
pub fn plan(
    ws: &Workspace,
    stack: &Stack,
    services: &[String],
    mirrors: Option<(&str, &PackageMirrors)>,
    show_diff: bool,
) -> Result<Vec<ImageBuild>> {
    let buildable: Vec<&str> = stack.built_services().map(|(n, _, _)| n.as_str()).collect();
    let mut out = Vec::new();
    for name in select_services(stack, services, &buildable)? {
        let svc = &stack.services[name];
        let b = svc.build.as_ref().expect("a buildable service has a build section");
        let source_dockerfile = ws.path(&b.dockerfile);
        let text = std::fs::read_to_string(&source_dockerfile).with_context(|| {
            format!("services.{name}.build.dockerfile = {:?}: cannot read it ({})", b.dockerfile, ws.stack_file)
        })?;
        let dockerfile = match mirrors {
            Some((label, mirrors)) => {
                let (rewritten, inserted) = rewrite(&text, mirrors);
                let path = ws.state.join("build").join(name).join("Dockerfile");
                write_if_changed(&path, &rewritten)?;
                let mut managers: Vec<&str> = Vec::new();
                for i in &inserted {
                    if !managers.contains(&i.manager) {
                        managers.push(i.manager);
                    }
                }
                if show_diff {
                    let shown = path.strip_prefix(&ws.root).unwrap_or(&path).display().to_string();
                    let diff = unified(&text, &rewritten, &b.dockerfile, &shown, 3);
                    print!(
                        "{}",
                        if diff.is_empty() { format!("# {name}: {} unchanged\n", b.dockerfile) } else { diff }
                    );
                }
                eprintln!(
                    "{name}: {} rewritten for package mirrors {label} ({}) -> {}",
                    b.dockerfile,
                    if managers.is_empty() {
                        "no package manager to redirect".to_string()
                    } else {
                        managers.join(", ")
                    },
                    path.display()
                );
                path
            }
            None => source_dockerfile,
        };
        let mut build_args: Vec<(String, String)> = stack.pull.build_args.clone().into_iter().collect();
        build_args.retain(|(k, _)| !b.args.contains_key(k));
        build_args.extend(b.args.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.push(ImageBuild {
            service: name.to_string(),
            image: svc.image.get_ref().clone(),
            context: ws.path(&b.context),
            dockerfile,
            ignorefile: b.ignorefile.as_ref().map(|i| ws.path(i)),
            build_args,
            labels: Vec::new(),
            pull_never: false,
            volumes: Vec::new(),
            extra_inputs: Vec::new(),
            after: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_plans_three_builds_and_mirror_rewrites_out_of_tree() {
        let ws = Workspace::for_tests("build-plan");
        let stack = Stack::load(&ws).unwrap();
        let builds = plan(&ws, &stack, &[], None, false).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(names, ["analytics-engine", "backend", "web"]);
        assert_eq!(builds[1].dockerfile, ws.root.join("backend/Dockerfile"));

        let before = std::fs::read_to_string(ws.root.join("web/Dockerfile")).unwrap();
        let mirrors = PackageMirrors { npm: Some("http://host.containers.internal:4873".into()), ..Default::default() };
        let builds = plan(&ws, &stack, &["web".to_string()], Some(("t", &mirrors)), true).unwrap();
        assert_eq!(builds[0].dockerfile, ws.state.join("build/web/Dockerfile"));
        let rewritten = std::fs::read_to_string(&builds[0].dockerfile).unwrap();
        assert!(rewritten.contains("ARG NPM_CONFIG_REGISTRY=http://host.containers.internal:4873/"), "{rewritten}");
        assert_eq!(std::fs::read_to_string(ws.root.join("web/Dockerfile")).unwrap(), before, "the source is untouched");
        std::fs::remove_dir_all(&ws.state).unwrap();
    }

    #[test]
    fn unknown_services_are_refused() {
        let ws = Workspace::for_tests("build-refused");
        let stack = Stack::load(&ws).unwrap();
        let e = plan(&ws, &stack, &["frontend".to_string()], None, false).unwrap_err().to_string();
        assert_eq!(e, "no service named \"frontend\"; buildable: analytics-engine, backend, web");
        let e = plan(&ws, &stack, &["nats".to_string()], None, false).unwrap_err().to_string();
        assert!(e.starts_with("nats is not built by the xtask"), "{e}");
    }
}
