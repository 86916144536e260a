//! A build's context as the build sees it: the files under the context directory that its
//! `.dockerignore` lets through, matched by Docker's rules (patterns anchored at the context root,
//! `*`, `?`, `**`, `!` exceptions, the last matching pattern wins).

use std::path::Path;

use anyhow::{Context, Result};
use regex_lite::Regex;

/// A compiled `.dockerignore`.
pub struct IgnoreRules {
    rules: Vec<(Regex, bool)>,
    /// For each `!` exception, the literal part of its pattern before the first wildcard:
    /// an ignored directory is only walked when an exception could reach inside it.
    exception_prefixes: Vec<String>,
}

impl IgnoreRules {
    pub fn parse(text: &str) -> IgnoreRules {
        let mut rules = Vec::new();
        let mut exception_prefixes = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            if pattern.is_empty() {
                continue;
            }
            if include {
                exception_prefixes.push(pattern.chars().take_while(|c| !"*?[".contains(*c)).collect());
            }
            rules.push((Regex::new(&glob_to_regex(pattern)).expect("escaped glob is a valid regex"), include));
        }
        IgnoreRules { rules, exception_prefixes }
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context. A path is also
    /// left out when one of its parent directories is.
    pub fn is_ignored(&self, path: &str) -> bool {
        let mut ignored = false;
        for (re, include) in &self.rules {
            if matches_self_or_parent(re, path) {
                ignored = !include;
            }
        }
        ignored
    }

    /// Whether an exception pattern could re-include something below directory `dir`.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.exception_prefixes.iter().any(|p| p.starts_with(&dir_slash) || dir_slash.starts_with(p.as_str()))
    }
}

fn matches_self_or_parent(re: &Regex, path: &str) -> bool {
    if re.is_match(path) {
        return true;
    }
    path.match_indices('/').any(|(i, _)| re.is_match(&path[..i]))
}

fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // `**/` matches zero or more directories; a trailing `**` matches everything.
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c if "\\.+()|[]{}^$".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
        i += 1;
    }
    re.push('$');
    re
}

/// The files of `context` the rules let through, relative and `/`-separated, sorted.
pub fn files(context: &Path, rules: &IgnoreRules) -> Result<Vec<String>> {
    let mut out = Vec::new();
    walk(context, context, rules, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, rules: &IgnoreRules, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            // An ignored directory holds no included file unless an exception reaches into it
            // (`.v7/offline/cargo-vendor` alone is 13,000 files: never walk it for nothing).
            if rules.is_ignored(&rel) && !rules.may_reinclude_below(&rel) {
                continue;
            }
            walk(root, &path, rules, out)?;
        } else if !rules.is_ignored(&rel) {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_ignore_rules() {
        let rules =
            IgnoreRules::parse("# comment\ntarget\n**/node_modules\n*.md\n!README.md\nweb/\n/.git\ndocs/**/*.png\n");
        let ignored = |p: &str| rules.is_ignored(p);
        assert!(ignored("target/debug/x"), "a directory pattern covers its contents");
        assert!(!ignored("backend/target/x"), "patterns are anchored at the context root");
        assert!(ignored("web/node_modules/a") && ignored("node_modules/a"), "**/ matches any depth, zero included");
        assert!(ignored("CHANGES.md") && !ignored("README.md"), "the last matching pattern wins");
        assert!(!ignored("backend/notes.md"), "* does not cross /");
        assert!(ignored("web/src/main.ts") && ignored(".git/HEAD"));
        assert!(ignored("docs/a/b/c.png") && ignored("docs/c.png") && !ignored("docs/c.txt"));
        assert!(!ignored("backend/src/main.rs"));
    }

    #[test]
    fn ignored_directories_are_walked_only_when_an_exception_reaches_inside() {
        let rules = IgnoreRules::parse("*\n!backend/src/**\n!Cargo.toml\n");
        assert!(rules.may_reinclude_below("backend"));
        assert!(rules.may_reinclude_below("backend/src"));
        assert!(!rules.may_reinclude_below("web"));
        assert!(!rules.may_reinclude_below(".v7"));
        assert!(IgnoreRules::parse("*\n!**/keep\n").may_reinclude_below("any/dir"));
    }
}
