//! Dockerfiles as text, read and rewritten by pure functions (tested on inline Dockerfiles,
//! with assertions that name the line):
//! - this module splits a Dockerfile into logical instructions (parser directives, line
//!   continuations, comments inside continuations, heredocs, lower-case keywords);
//! - `base_images.rs`: the external images every stage needs (ARG expansion, multi-stage);
//! - `rewrite.rs`: where Dockerfiles are rewritten for package mirrors (`build --mirror`);
//! - `diff.rs`: the rewrite shown as a unified diff (`build --mirror --dry-run`);
//! - `mirror_doc.rs`: docs/build-mirrors.md, the rewrite of the services for one preset.

pub mod base_images;
pub mod diff;
#[cfg(test)]
pub mod mirror_doc;
pub mod rewrite;

/// One logical instruction: keyword upper-cased, arguments with continuations joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    pub keyword: String,
    pub args: String,
}

/// Splits a Dockerfile into logical instructions.
pub fn instructions(text: &str) -> Vec<Instruction> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: only at the very top, `# key=value`, before anything else.
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(body) = l.strip_prefix('#') else { break };
        let Some((k, v)) = body.split_once('=') else { break };
        let key = k.trim().to_ascii_lowercase();
        if key.contains(char::is_whitespace) || key.is_empty() {
            break;
        }
        if key == "escape" {
            escape = v.trim().chars().next().unwrap_or('\\');
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let raw = lines[i];
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut logical = String::new();
        let mut current = raw.trim_start().to_string();
        loop {
            let t = current.trim_end();
            if let Some(stripped) = t.strip_suffix(escape) {
                logical.push_str(stripped);
                logical.push(' ');
                i += 1;
                // Skip comment lines and blank lines inside a continuation, as docker does.
                while i < lines.len() && (lines[i].trim().starts_with('#') || lines[i].trim().is_empty()) {
                    i += 1;
                }
                if i >= lines.len() {
                    break;
                }
                current = lines[i].to_string();
            } else {
                logical.push_str(t);
                i += 1;
                break;
            }
        }
        let logical = logical.trim().to_string();
        let (kw, args) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim()),
            None => (logical.as_str(), ""),
        };
        // Heredocs (`RUN <<EOF ... EOF`): their bodies are data, not instructions.
        for word in heredoc_terminators(args) {
            while i < lines.len() {
                let body_line = lines[i];
                i += 1;
                if body_line.trim() == word {
                    break;
                }
            }
        }
        out.push(Instruction { line: start, keyword: kw.to_ascii_uppercase(), args: args.to_string() });
    }
    out
}

fn heredoc_terminators(args: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = args;
    while let Some(p) = rest.find("<<") {
        rest = &rest[p + 2..];
        let r = rest.strip_prefix('-').unwrap_or(rest);
        let r = r.trim_start_matches(['"', '\'']);
        let word: String = r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !word.is_empty() && word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            words.push(word);
        }
    }
    words
}
