//! The GitHub workflows: every action pinned by a full commit hash, with the tag it was in a
//! comment (a moved tag cannot change what CI runs), and no action from before its node24
//! release (GitHub retires the node20 runtime; actionlint reports those versions).
//!
//! The node24 releases were read from each action's `action.yml` (`runs.using`) at its tags:
//! checkout v5.0.0, setup-node v5.0.0, setup-python v6.0.0, upload-artifact v6.0.0.
//!
//! Also: every `cargo xtask ...` a workflow runs is a valid invocation, parsed by the xtask's own
//! flag parser (`flags.rs`, the parser `main` uses; nothing runs), so a renamed flag or command
//! fails here rather than in CI.

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

/// Every `cargo xtask ...` command of a workflow (not in comments or step names): (line,
/// arguments). A command ends at the end
/// of the line or at a shell operator (`||`, `&&`, `;`, `|`, `>`, `<`, `#`); quotes are removed,
/// and `$VAR` or `${VAR}` stands for a value (`VALUE`).
pub fn xtask_invocations(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // YAML comments and step names only talk about commands.
        let t = line.trim_start().trim_start_matches("- ");
        if t.starts_with('#') || t.starts_with("name:") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("cargo xtask") {
            let after = &rest[at + "cargo xtask".len()..];
            if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
                rest = after;
                continue;
            }
            let (args, tail) = shell_words(after);
            out.push((i + 1, args));
            rest = tail;
        }
    }
    out
}

/// The words of a simple command, up to the first shell operator, and what follows it.
fn shell_words(text: &str) -> (Vec<String>, &str) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (at, c) = chars[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '$' => {
                k = skip_variable(&chars, k);
                word.push_str("VALUE");
                continue;
            }
            Some(_) => word.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '$' => {
                    k = skip_variable(&chars, k);
                    word.push_str("VALUE");
                    in_word = true;
                    continue;
                }
                c if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                '|' | '&' | ';' | '>' | '<' | '#' | ')' => {
                    if in_word {
                        words.push(word);
                    }
                    return (words, &text[at..]);
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
        k += 1;
    }
    if in_word {
        words.push(word);
    }
    (words, "")
}

/// The index after `$NAME`, `${...}` or `$(...)` starting at `k`.
fn skip_variable(chars: &[(usize, char)], k: usize) -> usize {
    let mut j = k + 1;
    match chars.get(j).map(|c| c.1) {
        Some(open @ ('{' | '(')) => {
            let close = if open == '{' { '}' } else { ')' };
            while j < chars.len() && chars[j].1 != close {
                j += 1;
            }
            j + 1
        }
        _ => {
            while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == '_') {
                j += 1;
            }
            j
        }
    }
}

/// Whether the xtask's flag parser accepts `args` (the parser `main` runs; nothing is run).
pub fn parse_error(args: &[String]) -> Option<String> {
    if let Some((old, new)) = crate::flags::renamed(args) {
        return Some(format!("`{old}` is now called `{new}`"));
    }
    let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    crate::flags::Xtask::from_vec(os).err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtask_commands_are_read_from_run_lines() {
        let text = "run: cargo xtask pull --json > pull-report.json\n\
                    for s in a b; do cargo xtask logs \"$s\" --tail 50 || true; done\n\
                    cargo xtask export kube --tag \"${version}\" && cargo xtask test\n# cargo xtasks\n";
        let got: Vec<String> = xtask_invocations(text).iter().map(|(l, a)| format!("{l}: {}", a.join(" "))).collect();
        assert_eq!(got, ["1: pull --json", "2: logs VALUE --tail 50", "3: export kube --tag VALUE", "3: test"]);
        assert_eq!(parse_error(&["pull".into(), "--json".into()]), None);
        assert!(parse_error(&["pull".into(), "--jsn".into()]).is_some());
        assert!(parse_error(&["build".into(), "--offline".into()]).unwrap().contains("--registry-free"));
    }

    #[test]
    fn every_xtask_command_of_the_workflows_parses() {
        let ws = crate::util::workspace::Workspace::for_tests("tidy-workflow-commands");
        let mut seen = 0;
        let mut problems = Vec::new();
        for entry in std::fs::read_dir(ws.path(".github/workflows")).unwrap() {
            let path = entry.unwrap().path();
            let name = format!(".github/workflows/{}", path.file_name().unwrap().to_string_lossy());
            for (line, args) in xtask_invocations(&std::fs::read_to_string(&path).unwrap()) {
                seen += 1;
                if let Some(e) = parse_error(&args) {
                    problems.push(format!("{name}:{line}: cargo xtask {}: {e}", args.join(" ")));
                }
            }
        }
        assert!(seen >= 10, "only {seen} `cargo xtask` commands found in the workflows");
        assert!(problems.is_empty(), "workflow commands the xtask does not take:\n{}", problems.join("\n"));
    }

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
        assert!(seen >= 3, "ci.yml, images.yml and release.yml");
    }
}
