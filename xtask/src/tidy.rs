//! Repository-wide checks that run with `cargo test`: the xtask's dependency budget, module
//! docs, the Rust version the services promise, and the production Dockerfiles against
//! `docker/stack.toml` (the manifest is the source of truth for health checks and ports; the
//! Dockerfiles must agree with it). The production images cannot be built on machines without a
//! registry, so this is where they are checked statically.

use std::collections::BTreeMap;
use std::path::Path;

use crate::dockerfile::instructions;
use crate::manifest::{Port, Stack};

fn read(path: &str) -> String {
    std::fs::read_to_string(crate::project_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Avoid adding dependencies: each one here costs cold build time (docs/benchmarks.md).
/// Adding one means adding it here with its reason in xtask/Cargo.toml.
const XTASK_DEPENDENCIES: &[&str] =
    &["anyhow", "duct", "regex-lite", "signal-hook", "toml", "xflags", "xshell"];

#[test]
fn xtask_dependencies_are_the_budgeted_ones() {
    let manifest: toml::Table = toml::from_str(&read("xtask/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest["dependencies"].as_table().unwrap().keys().map(String::as_str).collect();
    assert_eq!(deps, XTASK_DEPENDENCIES, "xtask dependencies changed: update tidy.rs and say why in xtask/Cargo.toml");
}

#[test]
fn every_xtask_module_has_a_doc_comment() {
    let dir = crate::project_root().join("xtask/src");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("//!"), "{} must start with a `//!` module doc", path.display());
        }
    }
}

#[test]
fn rust_crates_promise_rust_1_87() {
    let root: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    assert_eq!(root["workspace"]["package"]["rust-version"].as_str(), Some("1.87"));
    assert_eq!(root["workspace"]["resolver"].as_str(), Some("3"), "resolver 3 keeps Cargo.lock buildable on 1.87");
    for krate in ["backend", "analytics-engine", "xtask"] {
        let m: toml::Table = toml::from_str(&read(&format!("{krate}/Cargo.toml"))).unwrap();
        let rv = &m["package"]["rust-version"];
        assert!(rv.get("workspace").and_then(|w| w.as_bool()) == Some(true), "{krate} must use rust-version.workspace = true");
    }
    let lock = read("Cargo.lock");
    assert!(lock.contains("version = 4") || lock.contains("version = 3"), "Cargo.lock must be committed");
}

/// What a production Dockerfile declares, by instruction.
fn declared(text: &str) -> BTreeMap<String, Vec<(usize, String)>> {
    let mut out: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for ins in instructions(text) {
        out.entry(ins.keyword).or_default().push((ins.line, ins.args));
    }
    out
}

/// Every recipe of every service, production and registry-free: (service, Dockerfile, ignorefile).
fn recipes(stack: &Stack) -> Vec<(&str, &crate::manifest::Service, &str, Option<&str>)> {
    let mut out = Vec::new();
    for (name, svc) in &stack.services {
        if let Some(b) = &svc.build {
            out.push((name.as_str(), svc, b.dockerfile.as_str(), Some(b.ignorefile.as_deref().unwrap_or(""))));
        }
        if let Some(d) = svc.offline.as_ref().and_then(|o| o.dockerfile.as_deref()) {
            out.push((name.as_str(), svc, d, svc.offline.as_ref().unwrap().ignorefile.as_deref()));
        }
    }
    out
}

#[test]
fn every_recipe_agrees_with_the_manifest() {
    let root = crate::project_root();
    let stack = Stack::load(&root).unwrap();
    let all = recipes(&stack);
    assert_eq!(all.len(), 9, "3 production + 6 registry-free recipes");
    for (name, svc, file, ignorefile) in all {
        let text = read(file);
        let d = declared(&text);
        let last_stage_start = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
            .map(|(i, _)| i + 1)
            .last()
            .unwrap();
        let in_final = |kw: &str| -> Vec<(usize, String)> {
            d.get(kw).map(|v| v.iter().filter(|(l, _)| *l > last_stage_start).cloned().collect()).unwrap_or_default()
        };

        let hc = in_final("HEALTHCHECK");
        assert_eq!(hc.len(), 1, "{file}: the final stage needs exactly one HEALTHCHECK");
        let expected: Vec<String> = svc.healthcheck.as_ref().unwrap().test.iter().map(|a| format!("\"{a}\"")).collect();
        let expected = format!("CMD [{}]", expected.join(", "));
        assert!(
            hc[0].1.ends_with(&expected),
            "{file}:{}: HEALTHCHECK must run what docker/stack.toml services.{name}.healthcheck.test says: {expected}\n got: {}",
            hc[0].0,
            hc[0].1
        );

        let users = in_final("USER");
        let user = users.last().map(|u| u.1.as_str()).unwrap_or("root");
        assert!(user != "root" && user != "0", "{file}: the final stage must run as a non-root USER");

        let exposed: Vec<u16> = in_final("EXPOSE")
            .iter()
            .flat_map(|(_, a)| a.split_whitespace().map(|p| p.trim_end_matches("/tcp").parse::<u16>().unwrap()).collect::<Vec<_>>())
            .collect();
        for p in &svc.ports {
            let port = Port::parse(p.get_ref()).unwrap();
            assert!(exposed.contains(&port.container), "{file}: EXPOSE is missing {} (published by docker/stack.toml)", port.container);
        }

        for (kw, list) in &d {
            if kw == "ARG" || kw == "ENV" {
                for (line, args) in list {
                    let upper = args.to_ascii_uppercase();
                    for secret in ["PASSWORD", "TOKEN", "SECRET", "_KEY="] {
                        assert!(!upper.contains(secret), "{file}:{line}: {kw} {args}: no secrets in images");
                    }
                }
            }
        }
        if let Some(ignore) = ignorefile {
            assert!(!ignore.is_empty(), "services.{name}: the recipe {file} needs an ignorefile");
            assert!(Path::new(&root.join(ignore)).exists(), "{ignore} is missing");
            assert_eq!(Path::new(ignore).parent(), Path::new(file).parent(), "{ignore} must sit beside {file}");
        }
    }
}

/// The user of a service's two recipes is the same, and so is the binary where the service is ours.
#[test]
fn both_recipes_of_a_service_install_the_same_binary_for_the_same_user() {
    let stack = Stack::load(&crate::project_root()).unwrap();
    for (name, svc) in stack.built_services().map(|(n, s, _)| (n, s)) {
        let Some(offline) = svc.offline.as_ref().and_then(|o| o.dockerfile.as_deref()) else { continue };
        let last = |file: &str, kw: &str| -> String {
            instructions(&read(file)).into_iter().filter(|i| i.keyword == kw).map(|i| i.args).next_back().unwrap_or_default()
        };
        let production = &svc.build.as_ref().unwrap().dockerfile;
        // Services whose health check is their own binary must install it at the same path.
        let own_binary = svc.healthcheck.as_ref().is_some_and(|h| h.test[0].starts_with("/usr/local/bin/"));
        let kws: &[&str] = if own_binary { &["USER", "ENTRYPOINT"] } else { &["USER"] };
        for kw in kws {
            assert_eq!(last(production, kw), last(offline, kw), "services.{name}: {kw} differs between {production} and {offline}");
        }
    }
}
