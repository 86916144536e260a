//! The external images a Dockerfile needs: every stage's `FROM`, `COPY --from=` and
//! `RUN --mount=...,from=` that names an image rather than a stage, with global `ARG`s before
//! the first `FROM` (defaults and overrides) expanded: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR:+alt}`; `FROM --platform=...` and `FROM scratch` handled.

use std::collections::BTreeMap;

use super::instructions;
use crate::oci::ImageRef;

/// Where an external image is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    From,
    CopyFrom,
    MountFrom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalImage {
    pub image: ImageRef,
    pub line: usize,
    pub used_by: Use,
}

/// A problem in a Dockerfile, at a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerfileError {
    pub line: usize,
    pub message: String,
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`.
/// Unknown variables are an error naming them; `\$` is a literal `$`.
pub fn expand(text: &str, vars: &BTreeMap<String, Option<String>>) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let lookup = |name: &str| -> Option<Option<&String>> { vars.get(name).map(|v| v.as_ref()) };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                return Err(format!("unclosed ${{ in {text:?}"));
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            i += close + 3;
            let name_len = inner.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
            let (name, op) = inner.split_at(name_len);
            if name.is_empty() {
                return Err(format!("bad substitution ${{{inner}}}"));
            }
            let value = lookup(name);
            let set_nonempty = matches!(value, Some(Some(v)) if !v.is_empty());
            let set = matches!(value, Some(Some(_)));
            match op {
                "" => match value {
                    Some(Some(v)) => out.push_str(v),
                    _ => return Err(undefined(name, value.is_some())),
                },
                _ if op.starts_with(":-") => {
                    if set_nonempty {
                        out.push_str(value.unwrap().unwrap())
                    } else {
                        out.push_str(&expand(&op[2..], vars)?)
                    }
                }
                _ if op.starts_with('-') => {
                    if set {
                        out.push_str(value.unwrap().unwrap())
                    } else {
                        out.push_str(&expand(&op[1..], vars)?)
                    }
                }
                _ if op.starts_with(":+") => {
                    if set_nonempty {
                        out.push_str(&expand(&op[2..], vars)?)
                    }
                }
                _ if op.starts_with('+') => {
                    if set {
                        out.push_str(&expand(&op[1..], vars)?)
                    }
                }
                _ => return Err(format!("unsupported substitution ${{{inner}}}")),
            }
        } else {
            let name: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
            if name.is_empty() {
                out.push('$');
                i += 1;
                continue;
            }
            i += 1 + name.len();
            match lookup(&name) {
                Some(Some(v)) => out.push_str(v),
                other => return Err(undefined(&name, other.is_some())),
            }
        }
    }
    Ok(out)
}

fn undefined(name: &str, declared: bool) -> String {
    if declared {
        format!(
            "ARG {name} has no default and no value was given: set it in docker/stack.toml [pull.build_args] or the service's build.args"
        )
    } else {
        format!("${name} is not defined by an ARG before the first FROM (only those ARGs apply to FROM)")
    }
}

/// `ARG A=1 B` -> [("A", Some("1")), ("B", None)]. Quotes around values are removed.
fn parse_arg(args: &str) -> Vec<(String, Option<String>)> {
    args.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.trim_matches(['"', '\'']).to_string())),
            None => (word.to_string(), None),
        })
        .collect()
}

/// Every external image the Dockerfile needs, in order of first use, de-duplicated.
/// `build_args` override ARG defaults, like `--build-arg`.
pub fn external_images(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<Vec<ExternalImage>, DockerfileError> {
    let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut out: Vec<ExternalImage> = Vec::new();
    let mut seen_from = false;
    let err = |line: usize, message: String| DockerfileError { line, message };

    let push = |out: &mut Vec<ExternalImage>, reference: &str, line: usize, used_by: Use| {
        let image = ImageRef::parse(reference).map_err(|e| err(line, e))?;
        if !out.iter().any(|x| x.image == image) {
            out.push(ExternalImage { image, line, used_by });
        }
        Ok::<(), DockerfileError>(())
    };
    let is_stage = |stages: &[String], name: &str| {
        let lower = name.to_ascii_lowercase();
        stages.contains(&lower) || name.parse::<usize>().is_ok_and(|n| n < stages.len())
    };

    for ins in instructions(text) {
        match ins.keyword.as_str() {
            "ARG" if !seen_from => {
                for (k, default) in parse_arg(&ins.args) {
                    let value = build_args.get(&k).cloned().or(default);
                    global.insert(k, value);
                }
            }
            "FROM" => {
                seen_from = true;
                let words: Vec<&str> = ins.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let (image, name) = match words.as_slice() {
                    [image] => (*image, None),
                    [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => (*image, Some(*name)),
                    _ => {
                        return Err(err(
                            ins.line,
                            format!("FROM {:?}: expected `FROM [--platform=..] image [AS name]`", ins.args),
                        ))
                    }
                };
                let image = expand(image, &global).map_err(|e| err(ins.line, format!("FROM {image}: {e}")))?;
                if image.is_empty() {
                    return Err(err(ins.line, "FROM names no image after expanding its variables".to_string()));
                }
                if !image.eq_ignore_ascii_case("scratch") && !is_stage(&stages, &image) {
                    push(&mut out, &image, ins.line, Use::From)?;
                }
                stages.push(name.unwrap_or("").to_ascii_lowercase());
            }
            "COPY" | "ADD" => {
                for flag in ins.args.split_whitespace().take_while(|w| w.starts_with("--")) {
                    if let Some(from) = flag.strip_prefix("--from=") {
                        let from = expand(from, &global).map_err(|e| err(ins.line, format!("COPY --from: {e}")))?;
                        if !is_stage(&stages, &from) {
                            push(&mut out, &from, ins.line, Use::CopyFrom)?;
                        }
                    }
                }
            }
            "RUN" => {
                for flag in ins.args.split_whitespace().take_while(|w| w.starts_with("--")) {
                    let Some(spec) = flag.strip_prefix("--mount=") else { continue };
                    for kv in spec.split(',') {
                        if let Some(from) = kv.strip_prefix("from=") {
                            let from =
                                expand(from, &global).map_err(|e| err(ins.line, format!("RUN --mount from: {e}")))?;
                            if !is_stage(&stages, &from) {
                                push(&mut out, &from, ins.line, Use::MountFrom)?;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_from {
        return Err(err(1, "no FROM instruction: a Dockerfile must start its first stage with FROM".to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str) -> Vec<String> {
        images_with(text, &[])
    }

    fn images_with(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        external_images(text, &args).unwrap().into_iter().map(|x| format!("{}@{}", x.image, x.line)).collect()
    }

    fn error(text: &str) -> DockerfileError {
        external_images(text, &BTreeMap::new()).unwrap_err()
    }

    #[test]
    fn multi_stage_with_stage_references() {
        let df = "FROM rust:1.87-alpine AS builder\nRUN cargo build\n\nFROM builder AS tested\n\
                  FROM alpine:3.19\nCOPY --from=builder /a /a\nCOPY --from=0 /b /b\n";
        assert_eq!(images(df), ["docker.io/library/rust:1.87-alpine@1", "docker.io/library/alpine:3.19@5"]);
    }

    #[test]
    fn args_defaults_overrides_and_forms() {
        let df = "ARG NODE=18\nARG VARIANT=alpine REG=docker.io\nFROM ${REG}/library/node:${NODE}-$VARIANT\n\
                  FROM nginx:${NGINX:-1.25}-alpine\n";
        assert_eq!(images(df), ["docker.io/library/node:18-alpine@3", "docker.io/library/nginx:1.25-alpine@4"]);
        assert_eq!(images_with(df, &[("NODE", "20")])[0], "docker.io/library/node:20-alpine@3");
    }

    #[test]
    fn arg_after_from_does_not_apply_to_from() {
        let df = "FROM alpine:3.19\nARG TAG=1\nFROM busybox:${TAG}\n";
        let e = error(df);
        assert_eq!(e.line, 3);
        assert!(e.message.contains("$TAG is not defined by an ARG before the first FROM"), "{}", e.message);
    }

    #[test]
    fn declared_arg_without_value_is_an_error_with_a_hint() {
        let e = error("ARG BASE\nFROM ${BASE}\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("ARG BASE has no default"), "{}", e.message);
        assert_eq!(
            images_with("ARG BASE\nFROM ${BASE}\n", &[("BASE", "debian:12")]),
            ["docker.io/library/debian:12@2"]
        );
    }

    #[test]
    fn continuations_comments_lowercase_platform_and_scratch() {
        let df = "# syntax=docker/dockerfile:1\n# a comment\nfrom --platform=$BUILDPLATFORM \\\n  # inner comment\n\
                  \n  golang:1.22 \\\n  as build\nFROM scratch\ncopy --from=build /x /x\n";
        assert_eq!(images(df), ["docker.io/library/golang:1.22@3"]);
    }

    #[test]
    fn escape_directive_changes_continuation_character() {
        let df = "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022 `\n  AS win\nRUN dir c:\\\n";
        assert_eq!(images(df), ["mcr.microsoft.com/windows/servercore:ltsc2022@2"]);
    }

    #[test]
    fn copy_from_and_mount_from_images() {
        let df = "FROM debian:12 AS base\nCOPY --from=nginx:1.25 /etc/nginx /etc/nginx\n\
                  RUN --mount=type=bind,from=busybox:1.36,source=/bin,target=/bb --mount=type=cache,target=/c true\n\
                  RUN --mount=type=bind,from=base,target=/b true\n";
        assert_eq!(
            images(df),
            ["docker.io/library/debian:12@1", "docker.io/library/nginx:1.25@2", "docker.io/library/busybox:1.36@3"]
        );
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let df =
            "FROM alpine:3.19\nRUN <<EOF\nFROM evil:latest\necho hi\nEOF\nCOPY <<-'CONF' /etc/x\n\tFROM no\n\tCONF\n";
        assert_eq!(images(df), ["docker.io/library/alpine:3.19@1"]);
    }

    #[test]
    fn digests_are_kept_and_duplicates_removed() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let df = format!("FROM alpine@{d}\nFROM node:18-alpine AS a\nFROM docker.io/library/node:18-alpine AS b\n");
        assert_eq!(
            images(&df),
            [format!("docker.io/library/alpine@{d}@1"), "docker.io/library/node:18-alpine@2".into()]
        );
    }

    #[test]
    fn bad_references_name_the_line() {
        let e = error("FROM alpine:3.19\n\nFROM Node:18\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("lowercase"), "{}", e.message);
        assert_eq!(
            error("RUN echo\n").message,
            "no FROM instruction: a Dockerfile must start its first stage with FROM"
        );
        assert_eq!(error("FROM a b c d\n").line, 1);
        assert!(error("FROM ${X\n").message.contains("unclosed"));
    }

    #[test]
    fn expansion_forms() {
        let vars: BTreeMap<String, Option<String>> =
            [("A".to_string(), Some("x".to_string())), ("E".to_string(), Some(String::new()))].into_iter().collect();
        assert_eq!(expand("${A:+set}-${E:-d}-${E-d}-${U:-u}-\\$A-$A", &vars).unwrap(), "set-d--u-$A-x");
    }

    #[test]
    fn the_projects_dockerfiles_need_exactly_the_seeds_five_images() {
        let root = crate::util::workspace::Workspace::for_tests("base-images").root;
        let mut all = std::collections::BTreeSet::new();
        for df in ["analytics-engine/Dockerfile", "backend/Dockerfile", "web/Dockerfile"] {
            let text = std::fs::read_to_string(root.join(df)).unwrap();
            for x in external_images(&text, &BTreeMap::new()).unwrap() {
                all.insert(x.image.to_string());
            }
        }
        let expected = [
            "docker.io/library/alpine:3.19",
            "docker.io/library/nginx:1.25-alpine",
            "docker.io/library/node:18-alpine",
            "docker.io/library/python:3.11-alpine",
            "docker.io/library/rust:1.87-alpine",
        ];
        assert_eq!(all.into_iter().collect::<Vec<_>>(), expected);
    }
}
