//! Every recipe of every service, production and registry-free, against the stack file: the
//! stack file is the source of truth for health checks and ports, and the Dockerfiles must agree
//! with it. The production images cannot be built on machines without a registry, so this is
//! where they are checked statically.

use std::collections::BTreeMap;
use std::path::Path;

use super::read;
use crate::images::dockerfile::instructions;
use crate::stack::{Service, Stack};
use crate::util::workspace::Workspace;

/// What a production Dockerfile declares, by instruction.
fn declared(text: &str) -> BTreeMap<String, Vec<(usize, String)>> {
    let mut out: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for ins in instructions(text) {
        out.entry(ins.keyword).or_default().push((ins.line, ins.args));
    }
    out
}

/// Every recipe of every service, production and registry-free: (service, Dockerfile, ignorefile).
fn recipes(stack: &Stack) -> Vec<(&str, &Service, &str, Option<&str>)> {
    let mut out = Vec::new();
    for (name, svc) in &stack.services {
        if let Some(b) = &svc.build {
            out.push((name.as_str(), svc, b.dockerfile.as_str(), Some(b.ignorefile.as_deref().unwrap_or(""))));
        }
        if let Some(r) = &svc.registry_free {
            if let Some(d) = r.dockerfile.as_deref() {
                out.push((name.as_str(), svc, d, r.ignorefile.as_deref()));
            }
        }
    }
    out
}

#[test]
fn every_recipe_agrees_with_the_manifest() {
    let ws = Workspace::for_tests("tidy-recipes");
    let stack = Stack::load(&ws).unwrap();
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
            .flat_map(|(_, a)| {
                a.split_whitespace().map(|p| p.trim_end_matches("/tcp").parse::<u16>().unwrap()).collect::<Vec<_>>()
            })
            .collect();
        for port in svc.published() {
            assert!(
                exposed.contains(&port.container),
                "{file}: EXPOSE is missing {} (published by docker/stack.toml)",
                port.container
            );
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
            assert!(ws.path(ignore).exists(), "{ignore} is missing");
            assert_eq!(Path::new(ignore).parent(), Path::new(file).parent(), "{ignore} must sit beside {file}");
        }
    }
}

/// The user of a service's two recipes is the same, and so is the binary where the service is
/// ours. Every service the xtask builds has both recipes (counted: a stack without registry-free
/// recipes must fail here, not pass with nothing checked).
#[test]
fn both_recipes_of_a_service_install_the_same_binary_for_the_same_user() {
    let stack = Stack::load(&Workspace::for_tests("tidy-users")).unwrap();
    let mut checked = Vec::new();
    for (name, svc, build) in stack.built_services() {
        let registry_free_recipe = svc
            .registry_free
            .as_ref()
            .and_then(|r| r.dockerfile.as_deref())
            .unwrap_or_else(|| panic!("services.{name} is built but has no registry-free recipe"));
        let last = |file: &str, kw: &str| -> String {
            instructions(&read(file))
                .into_iter()
                .filter(|i| i.keyword == kw)
                .map(|i| i.args)
                .next_back()
                .unwrap_or_default()
        };
        let production = &build.dockerfile;
        // Services whose health check is their own binary must install it at the same path.
        let own_binary = svc.healthcheck.as_ref().is_some_and(|h| h.test[0].starts_with("/usr/local/bin/"));
        let kws: &[&str] = if own_binary { &["USER", "ENTRYPOINT"] } else { &["USER"] };
        for kw in kws {
            let (a, b) = (last(production, kw), last(registry_free_recipe, kw));
            assert!(!a.is_empty(), "{production}: no {kw}");
            assert_eq!(a, b, "services.{name}: {kw} differs between {production} and {registry_free_recipe}");
        }
        checked.push(name.as_str());
    }
    assert_eq!(checked, ["analytics-engine", "backend", "web"]);
}
