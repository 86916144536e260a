//! The GitHub workflows: every action pinned by a full commit hash, with the tag it was in a
//! comment (a moved tag cannot change what CI runs), and no action from before its node24
//! release (GitHub retires the node20 runtime; actionlint reports those versions).
//!
//! The node24 releases were read from each action's `action.yml` (`runs.using`) at its tags:
//! checkout v5.0.0, setup-node v5.0.0, setup-python v6.0.0, upload-artifact v6.0.0.

/// The first major version of each action that runs on node24.
const NODE24_SINCE: &[(&str, u32)] =
    &[("actions/checkout", 5), ("actions/setup-node", 5), ("actions/setup-python", 6), ("actions/upload-artifact", 6)];

/// What is wrong with the `uses:` lines of one workflow, each as `file:line: problem`.
pub fn check(file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ");
        let Some(rest) = t.strip_prefix("uses:") else { continue };
        let at = format!("{file}:{}", i + 1);
        let (spec, comment) = match rest.split_once('#') {
            Some((s, c)) => (s.trim(), c.trim()),
            None => (rest.trim(), ""),
        };
        if spec.starts_with("./") || spec.starts_with("docker://") {
            continue;
        }
        let Some((action, pin)) = spec.split_once('@') else {
            problems.push(format!("{at}: {spec} has no @version"));
            continue;
        };
        if pin.len() != 40 || !pin.chars().all(|c| c.is_ascii_hexdigit()) {
            problems.push(format!("{at}: {action}@{pin} is not pinned by commit: use {action}@<40-hex sha> # <tag>"));
            continue;
        }
        if comment.is_empty() {
            problems.push(format!("{at}: {action}@{pin} needs the tag it was in a comment (# v1.2.3)"));
            continue;
        }
        if let Some((_, since)) = NODE24_SINCE.iter().find(|(a, _)| *a == action) {
            let major = comment.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
            match major {
                Some(m) if m >= *since => {}
                _ => problems.push(format!(
                    "{at}: {action} {comment} runs on node20, which GitHub retires: use v{since} or later"
                )),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "3d3c42e5aac5ba805825da76410c181273ba90b1";

    #[test]
    fn pins_comments_and_runtimes_are_checked_line_by_line() {
        let text = format!(
            "steps:\n      - uses: actions/checkout@v4\n      - uses: actions/checkout@{SHA}\n      \
             - uses: actions/setup-python@{SHA} # v5.0.0\n      - uses: actions/setup-node@{SHA} # v7.0.0\n      \
             - uses: ./local-action\n"
        );
        let p = check("w.yml", &text);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("w.yml:2: actions/checkout@v4 is not pinned by commit"), "{}", p[0]);
        assert!(p[1].starts_with("w.yml:3: actions/checkout@3d3c") && p[1].contains("needs the tag"), "{}", p[1]);
        assert!(p[2].starts_with("w.yml:4: actions/setup-python v5.0.0 runs on node20"), "{}", p[2]);
    }

    #[test]
    fn the_repository_workflows_are_pinned() {
        let ws = crate::util::workspace::Workspace::for_tests("tidy-workflows");
        let dir = ws.path(".github/workflows");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = format!(".github/workflows/{}", path.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(check(&name, &text), Vec::<String>::new());
            seen += 1;
        }
        assert!(seen >= 2, "ci.yml and images.yml");
    }
}
