//! Every `COPY`/`ADD` source of every recipe exists in its build context as the build sees it:
//! the files under the context directory that the ignorefile lets through
//! (`images/build/context.rs`, the matcher builds use: patterns anchored at the context root,
//! `*`, `?`, `**`, `!` exceptions, the last matching pattern wins). A source that is missing, or
//! that the ignorefile leaves out, fails the build with podman's "no such file or directory"
//! long after the build started; here it fails naming the Dockerfile's line.
//!
//! Which ignorefile: the stack file's `ignorefile` for that recipe, else `<Dockerfile>.dockerignore`
//! beside the Dockerfile, else `<context>/.dockerignore` (what podman and BuildKit read).
//! Recipes the stack file does not name (the registry-free workspace builder) are listed in
//! [`OTHER_RECIPES`] with their context; a Dockerfile of the checkout in neither fails, so none
//! goes unchecked. Sources from another stage or image (`--from=`), URLs, heredocs and sources with variables
//! are not the context's and are not checked.

use std::path::Path;

use crate::images::build::context::{files, IgnoreRules};
use crate::images::dockerfile::instructions;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

/// Recipes the xtask builds that are not in docker/stack.toml: (Dockerfile, context).
const OTHER_RECIPES: &[(&str, &str)] = &[("docker/rust-builder/Dockerfile.registry-free", ".")];

/// The context sources of each `COPY`/`ADD`: (line, source), as written.
pub fn copy_sources(dockerfile: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for ins in instructions(dockerfile) {
        if ins.keyword != "COPY" && ins.keyword != "ADD" {
            continue;
        }
        let args = ins.args.trim();
        let mut words: Vec<String> = Vec::new();
        let mut rest = args;
        // Flags first: `--from=` means the sources are not the context's.
        while let Some(flag) = rest.strip_prefix("--") {
            let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
            if flag[..end].starts_with("from=") {
                words.clear();
                rest = "";
                break;
            }
            rest = flag[end..].trim_start();
        }
        if rest.is_empty() {
            continue;
        }
        if rest.starts_with('[') {
            // JSON form: ["src", ..., "dest"]
            let inner = rest.trim_start_matches('[').trim_end_matches(']');
            words = inner.split(',').map(|w| w.trim().trim_matches('"').to_string()).collect();
        } else {
            words = rest.split_whitespace().map(str::to_string).collect();
        }
        words.pop(); // the destination
        for w in words {
            let skip = w.starts_with("<<") || w.contains("://") || w.starts_with("git@") || w.contains('$');
            if !skip {
                out.push((ins.line, w));
            }
        }
    }
    out
}

/// A source, cleaned: no `./` in front, no `/` at the end; `.` for the whole context.
fn clean(source: &str) -> String {
    let s = source.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    if s.is_empty() {
        ".".to_string()
    } else {
        s.to_string()
    }
}

/// Whether the glob `pattern` (`*`, `?`; not across `/`) matches `text`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (text.first().is_some_and(|c| *c != b'/') && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(c)) if p == c => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Whether `source` names something in `context_files` (the files the build receives): a file
/// itself, a directory holding some, or a glob matching one of them or their directories.
pub fn in_context(source: &str, context_files: &[String]) -> bool {
    let s = clean(source);
    if s == "." {
        return !context_files.is_empty();
    }
    context_files.iter().any(|f| {
        let mut prefixes = vec![f.as_str()];
        prefixes.extend(f.match_indices('/').map(|(i, _)| &f[..i]));
        prefixes.iter().any(|p| glob(s.as_bytes(), p.as_bytes()))
    })
}

/// Each source of `dockerfile` that is not in the context, as `FILE:LINE: ...` with what to do.
pub fn missing_sources(
    file: &str,
    dockerfile: &str,
    context: &str,
    ignorefile: Option<&str>,
    context_files: &[String],
) -> Vec<String> {
    let after = ignorefile.map(|i| format!(" after {i}")).unwrap_or_default();
    copy_sources(dockerfile)
        .into_iter()
        .filter(|(_, src)| !in_context(src, context_files))
        .map(|(line, src)| {
            format!(
                "{file}:{line}: {src} is not in the build context {context}{after}: add it, fix the path, or let it \
                 through the ignorefile (`!{}`)",
                clean(&src)
            )
        })
        .collect()
}

/// The ignorefile a recipe's build reads.
fn ignorefile_of(ws: &Workspace, dockerfile: &str, context: &str, declared: Option<&str>) -> Option<String> {
    if let Some(d) = declared.filter(|d| !d.is_empty()) {
        return Some(d.to_string());
    }
    let beside = format!("{dockerfile}.dockerignore");
    let in_context = format!("{}/.dockerignore", context.trim_end_matches('/'));
    [beside, in_context].into_iter().find(|p| ws.path(p).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = "FROM x AS build\nCOPY package.json package-lock.json ./\nCOPY --chown=1:1 src ./src\n\
                              COPY --from=build /app/dist /srv\nADD https://example.com/a.tgz /tmp/\n\
                              COPY [\"conf/nginx.conf\", \"/etc/nginx/\"]\nCOPY secrets.env notes/*.md /x/\n";

    #[test]
    fn sources_are_read_from_copy_and_add_but_not_from_stages_or_urls() {
        let s: Vec<String> = copy_sources(DOCKERFILE).into_iter().map(|(l, s)| format!("{l}:{s}")).collect();
        assert_eq!(
            s,
            ["2:package.json", "2:package-lock.json", "3:src", "6:conf/nginx.conf", "7:secrets.env", "7:notes/*.md"]
        );
    }

    #[test]
    fn a_source_the_ignorefile_leaves_out_names_its_line() {
        let ignore = IgnoreRules::parse("*.env\nnotes\n!notes/keep.md\nsrc/**/*.test.ts\n");
        let all = [
            "package.json",
            "package-lock.json",
            "src/a.ts",
            "src/x/a.test.ts",
            "conf/nginx.conf",
            "secrets.env",
            "notes/a.md",
            "notes/keep.md",
        ];
        let kept: Vec<String> = all.iter().filter(|f| !ignore.is_ignored(f)).map(|f| f.to_string()).collect();
        assert!(!kept.contains(&"src/x/a.test.ts".to_string()), "`**` reaches any depth");
        assert_eq!(
            missing_sources("web/Dockerfile", DOCKERFILE, "web", Some("web/.dockerignore"), &kept),
            ["web/Dockerfile:7: secrets.env is not in the build context web after web/.dockerignore: add it, fix the \
              path, or let it through the ignorefile (`!secrets.env`)"],
            "notes/*.md still matches notes/keep.md, let through by its `!` exception"
        );
        let without_exception = IgnoreRules::parse("*.env\nnotes\n");
        let kept: Vec<String> =
            all.iter().filter(|f| !without_exception.is_ignored(f)).map(|f| f.to_string()).collect();
        let missing = missing_sources("web/Dockerfile", DOCKERFILE, "web", None, &kept);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[1].starts_with("web/Dockerfile:7: notes/*.md is not in the build context web: "),
            "{missing:?}"
        );
    }

    #[test]
    fn directories_and_globs_match_what_they_hold() {
        let files = vec!["src/main.rs".to_string(), "docker/nats/a.conf".to_string()];
        assert!(
            in_context("./src/", &files) && in_context("src/*.rs", &files) && in_context("docker/*/a.conf", &files)
        );
        assert!(in_context(".", &files) && in_context("docker", &files));
        assert!(!in_context("sr", &files) && !in_context("*.rs", &files) && !in_context("src/main", &files));
    }

    /// Every recipe of docker/stack.toml, production and registry-free.
    #[test]
    fn every_copy_source_of_every_recipe_is_in_its_context() {
        let ws = Workspace::for_tests("tidy-contexts");
        let stack = Stack::load(&ws).unwrap();
        let mut recipes: Vec<(String, String, Option<String>)> = Vec::new();
        for svc in stack.services.values() {
            if let Some(b) = &svc.build {
                recipes.push((b.dockerfile.clone(), b.context.clone(), b.ignorefile.clone()));
            }
            if let Some(r) = &svc.registry_free {
                if let Some(d) = &r.dockerfile {
                    let context = r.context.clone().unwrap_or_else(|| {
                        Path::new(d).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or(".".into())
                    });
                    recipes.push((d.clone(), context, r.ignorefile.clone()));
                }
            }
        }
        assert_eq!(recipes.len(), 9, "3 production + 6 registry-free recipes");
        for found in crate::cli::test::recipes(&ws.root) {
            if recipes.iter().any(|(d, ..)| *d == found) {
                continue;
            }
            match OTHER_RECIPES.iter().find(|(d, _)| *d == found) {
                Some((d, context)) => recipes.push((d.to_string(), context.to_string(), None)),
                None => panic!(
                    "{found} is neither a recipe of docker/stack.toml nor in OTHER_RECIPES (xtask/src/tidy/contexts.rs): \
                     add it there with its build context"
                ),
            }
        }
        let mut problems = Vec::new();
        let mut checked = 0;
        for (dockerfile, context, declared) in &recipes {
            let ignorefile = ignorefile_of(&ws, dockerfile, context, declared.as_deref());
            let rules = match &ignorefile {
                Some(i) => IgnoreRules::parse(&std::fs::read_to_string(ws.path(i)).unwrap()),
                None => IgnoreRules::parse(""),
            };
            let kept = files(&ws.path(context), &rules).unwrap();
            let text = std::fs::read_to_string(ws.path(dockerfile)).unwrap();
            checked += copy_sources(&text).len();
            problems.extend(missing_sources(dockerfile, &text, context, ignorefile.as_deref(), &kept));
        }
        assert!(checked >= 15, "only {checked} COPY/ADD sources read: is the parser broken?");
        assert!(problems.is_empty(), "COPY/ADD sources missing from their build context:\n{}", problems.join("\n"));
    }
}
