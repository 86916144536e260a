//! Where Dockerfiles are rewritten to use package mirrors (`cargo xtask build --mirror`).
//!
//! A pure function from Dockerfile text and a [`PackageMirrors`] to new text. The source file is
//! never touched: the build writes the result under `.v7/build/<service>/Dockerfile` and passes
//! it with `-f`. In each stage, directly before the first `RUN` that uses a package manager, one
//! instruction is inserted that points that manager at the mirror; everything above it is
//! unchanged, so cached layers stay valid. Settings go in as `ARG`s where the tool reads an
//! environment variable (npm, pip), so they do not persist in the image's config; apk and apt
//! read files, which are rewritten in place (the mirror stays in the image's sources list).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use regex_lite::Regex;

use super::instructions;
use crate::stack::PackageMirrors;
use crate::util::fs::write_if_changed;

/// One inserted instruction, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insertion {
    /// The source line the instruction was inserted before.
    pub before_line: usize,
    pub manager: &'static str,
}

#[derive(Clone, Copy)]
struct Manager {
    name: &'static str,
    pattern: &'static str,
}

const MANAGERS: &[Manager] = &[
    Manager { name: "apk", pattern: r"(^|[\s;&|(])apk\s+(add|update|upgrade|fetch)\b" },
    Manager { name: "apt", pattern: r"(^|[\s;&|(])apt(-get)?\s+(update|install|upgrade|dist-upgrade)\b" },
    Manager { name: "npm", pattern: r"(^|[\s;&|(])(npm|npx)\s+(ci|install|i)\b" },
    Manager { name: "pip", pattern: r"(^|[\s;&|(])(pip3?|python3? -m pip)\s+(install|download|wheel)\b" },
    Manager { name: "cargo", pattern: r"(^|[\s;&|(])cargo\s+(build|fetch|install|vendor|test)\b" },
];

fn regexes() -> &'static Vec<Regex> {
    static RE: OnceLock<Vec<Regex>> = OnceLock::new();
    RE.get_or_init(|| MANAGERS.iter().map(|m| Regex::new(m.pattern).unwrap()).collect())
}

/// The instruction that points `manager` at `url`.
fn setup_instruction(manager: &str, url: &str) -> String {
    let url = url.trim_end_matches('/');
    match manager {
        "apk" => format!("RUN sed -i -E 's#^https?://[^/]+/alpine#{url}#' /etc/apk/repositories"),
        "apt" => {
            // Debian's security archive first (deb.debian.org/debian-security, or the older
            // security.debian.org), to the mirror's `-security` sibling when the mirror ends in
            // `/debian` (Debian's own layout, apt-cacher-ng's `/HOST/debian` and the presets');
            // otherwise it is left as it is. Then the main archive, `/debian` as a whole path
            // segment only, so `debian-security` is never rewritten twice.
            let security = match security_mirror(url) {
                Some(s) => format!("-e 's#https?://(deb|security)\\.debian\\.org/debian-security#{s}#g' "),
                None => String::new(),
            };
            format!(
                "RUN for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do \
                 [ -f \"$f\" ] && sed -i -E {security}\
                 -e 's#https?://deb\\.debian\\.org/debian([/[:space:]]|$)#{url}\\1#g' \"$f\"; done; true"
            )
        }
        "npm" => format!("ARG NPM_CONFIG_REGISTRY={url}/"),
        "pip" => {
            let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
            format!("ARG PIP_INDEX_URL={url}/\nARG PIP_TRUSTED_HOST={host}")
        }
        // A sparse index URL must end in `/` (cargo refuses it otherwise: "sparse registry url
        // must end in a slash"); a git index URL is taken as given.
        "cargo" => format!(
            "RUN mkdir -p \"${{CARGO_HOME:-$HOME/.cargo}}\" && printf '%s\\n' '[source.crates-io]' \
             'replace-with = \"v7-mirror\"' '[source.v7-mirror]' 'registry = \"{url}{slash}\"' \
             >> \"${{CARGO_HOME:-$HOME/.cargo}}/config.toml\"",
            slash = if url.starts_with("sparse+") { "/" } else { "" }
        ),
        _ => unreachable!(),
    }
}

/// The security archive beside an apt mirror: `.../debian` -> `.../debian-security`; `None`
/// when the mirror's layout is not Debian's (its security archive cannot be guessed).
pub fn security_mirror(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/');
    url.ends_with("/debian").then(|| format!("{url}-security"))
}

fn url_for<'a>(mirrors: &'a PackageMirrors, manager: &str) -> Option<&'a String> {
    match manager {
        "apk" => mirrors.apk.as_ref(),
        "apt" => mirrors.apt.as_ref(),
        "npm" => mirrors.npm.as_ref(),
        "pip" => mirrors.pip.as_ref(),
        "cargo" => mirrors.cargo.as_ref(),
        _ => None,
    }
}

/// Rewrites `text` so the package managers it uses go through `mirrors`.
pub fn rewrite(text: &str, mirrors: &PackageMirrors) -> (String, Vec<Insertion>) {
    // Which managers are already set up in the current stage.
    let mut done: Vec<&str> = Vec::new();
    let mut inserts: Vec<(usize, String, &'static str)> = Vec::new();
    for ins in instructions(text) {
        if ins.keyword == "FROM" {
            done.clear();
            continue;
        }
        if ins.keyword != "RUN" {
            continue;
        }
        for (m, re) in MANAGERS.iter().zip(regexes()) {
            if done.contains(&m.name) || !re.is_match(&ins.args) {
                continue;
            }
            if let Some(url) = url_for(mirrors, m.name) {
                inserts.push((ins.line, setup_instruction(m.name, url), m.name));
                done.push(m.name);
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 256);
    let mut report = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        for (at, instruction, manager) in &inserts {
            if *at == lineno {
                out.push_str(&format!("# cargo xtask build --mirror: {manager} mirror\n{instruction}\n"));
                report.push(Insertion { before_line: lineno, manager });
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, report)
}

/// The rewrite of the Dockerfile `source` written to `out` (when it changed), for builds that
/// take it with `-f` (registry-free recipes; production ones: `images/build/plan.rs`); prints
/// one line naming the managers redirected.
pub fn rewrite_out_of_tree(
    service: &str,
    source: &Path,
    out: &Path,
    label: &str,
    mirrors: &PackageMirrors,
) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(source).with_context(|| format!("{service}: cannot read {}", source.display()))?;
    let (rewritten, inserted) = rewrite(&text, mirrors);
    write_if_changed(out, &rewritten)?;
    let mut managers: Vec<&str> = Vec::new();
    for i in &inserted {
        if !managers.contains(&i.manager) {
            managers.push(i.manager);
        }
    }
    let what = if managers.is_empty() { "no package manager to redirect".to_string() } else { managers.join(", ") };
    eprintln!("{service}: {} rewritten for package mirrors {label} ({what}) -> {}", source.display(), out.display());
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset() -> PackageMirrors {
        PackageMirrors {
            apk: Some("https://mirrors.example/alpine".into()),
            apt: Some("http://host.containers.internal:3142/deb.debian.org/debian".into()),
            npm: Some("http://host.containers.internal:4873".into()),
            pip: Some("http://host.containers.internal:3141/simple".into()),
            cargo: Some("sparse+http://host.containers.internal:8081/index/".into()),
        }
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in\n{text}")) + 1
    }

    #[test]
    fn apk_is_set_up_once_per_stage_before_its_first_use() {
        let df = "FROM rust:1.87-alpine AS b\nWORKDIR /src\nRUN apk add --no-cache musl-dev\nRUN apk add git\n\
                  FROM alpine:3.19\nRUN apk add --no-cache python3\n";
        let (out, report) = rewrite(df, &preset());
        assert_eq!(
            report,
            [Insertion { before_line: 3, manager: "apk" }, Insertion { before_line: 6, manager: "apk" }]
        );
        let sed = "RUN sed -i -E 's#^https?://[^/]+/alpine#https://mirrors.example/alpine#' /etc/apk/repositories";
        assert_eq!(line_of(&out, sed), 4, "line 4 sets the mirror before the first apk\n{out}");
        assert_eq!(line_of(&out, "RUN apk add --no-cache musl-dev"), 5);
        assert_eq!(out.matches(sed).count(), 2, "{out}");
        assert_eq!(line_of(&out, "WORKDIR /src"), 2, "lines above are untouched");
    }

    #[test]
    fn npm_pip_cargo_apt_each_get_their_setting() {
        let df = "FROM node:18-alpine\nCOPY package*.json ./\nRUN npm ci\n\
                  FROM python:3.11-alpine\nRUN pip install --prefix=/install -r requirements.txt\n\
                  FROM rust:1.87\nRUN apt-get update && apt-get install -y protobuf-compiler && cargo build --release\n";
        let (out, report) = rewrite(df, &preset());
        let names: Vec<&str> = report.iter().map(|r| r.manager).collect();
        assert_eq!(names, ["npm", "pip", "apt", "cargo"]);
        assert_eq!(line_of(&out, "ARG NPM_CONFIG_REGISTRY=http://host.containers.internal:4873/"), 4);
        assert!(out.contains("ARG PIP_INDEX_URL=http://host.containers.internal:3141/simple/\nARG PIP_TRUSTED_HOST=host.containers.internal\n"));
        assert!(
            out.contains("'registry = \"sparse+http://host.containers.internal:8081/index/\"'"),
            "a sparse URL keeps its /: {out}"
        );
        assert!(out.contains("deb\\.debian\\.org/debian([/[:space:]]|$)#http://host.containers.internal:3142/deb.debian.org/debian\\1#g"), "{out}");
    }

    #[test]
    fn managers_without_a_mirror_and_lookalikes_are_left_alone() {
        let df = "FROM alpine\nRUN echo apkadd && my-apk add x\nRUN npm run build\nRUN apk add x\n";
        let only_npm = PackageMirrors { npm: Some("http://m".into()), ..Default::default() };
        let (out, report) = rewrite(df, &only_npm);
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(out, df);
        let (_, report) = rewrite(df, &preset());
        assert_eq!(report, [Insertion { before_line: 4, manager: "apk" }]);
    }

    #[test]
    fn continuation_lines_are_one_instruction() {
        let df = "FROM alpine\nRUN set -eux; \\\n    apk add --no-cache \\\n      curl\n";
        let (out, report) = rewrite(df, &preset());
        assert_eq!(report, [Insertion { before_line: 2, manager: "apk" }]);
        assert_eq!(line_of(&out, "RUN set -eux"), 4);
    }

    /// The apt instruction run by a real shell and sed on the sources a Debian image has: the
    /// registry-free base's sources.list (main, updates, security) and a deb822 file.
    #[test]
    fn apt_sources_of_main_and_security_archives_both_go_to_the_mirror() {
        let dir = std::env::temp_dir().join(format!("v7-rewrite-apt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
        let list = "deb http://deb.debian.org/debian bookworm main\n\
                    deb http://deb.debian.org/debian bookworm-updates main\n\
                    deb http://deb.debian.org/debian-security bookworm-security main\n\
                    deb http://security.debian.org/debian-security bookworm-security main\n";
        std::fs::write(dir.join("sources.list"), list).unwrap();
        std::fs::write(
            dir.join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n",
        )
        .unwrap();
        let run = |url: &str| {
            let ins = setup_instruction("apt", url);
            let script = ins.strip_prefix("RUN ").unwrap().replace("/etc/apt/", &format!("{}/", dir.display()));
            let ok = std::process::Command::new("sh").arg("-c").arg(&script).status().unwrap();
            assert!(ok.success(), "{script}");
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
            (read("sources.list"), read("sources.list.d/debian.sources"))
        };
        let (list_out, deb822) = run("http://host.containers.internal:3142/deb.debian.org/debian");
        let m = "http://host.containers.internal:3142/deb.debian.org";
        assert_eq!(
            list_out,
            format!(
                "deb {m}/debian bookworm main\ndeb {m}/debian bookworm-updates main\n\
                 deb {m}/debian-security bookworm-security main\ndeb {m}/debian-security bookworm-security main\n"
            )
        );
        assert_eq!(deb822, format!("Types: deb\nURIs: {m}/debian\nSuites: bookworm\n"));
        // Run again on the rewritten files: nothing changes (a second stage, a rebuilt layer).
        assert_eq!(run("http://host.containers.internal:3142/deb.debian.org/debian").0, list_out);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            security_mirror("http://mirrors.aliyun.com/debian/").as_deref(),
            Some("http://mirrors.aliyun.com/debian-security")
        );
        assert_eq!(security_mirror("http://10.0.0.1:3142/deb"), None, "not Debian's layout: security left alone");
    }
}
