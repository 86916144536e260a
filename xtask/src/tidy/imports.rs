//! The module graph of `xtask/src`, read from the source: which file uses which. Fails, naming
//! the files, when a circle appears, and when a dependency points up the layers:
//!
//! ```text
//! main > cli > flags > deploy, export > images > stack > podman > process, net, oci > util
//! ```
//!
//! A file's dependencies are the modules its paths name outside its test module: `crate::...`,
//! `super::...`, `self::...`, and its own child modules (`plan::Item` in `pull/mod.rs`), braces
//! expanded. A `pub use` in a `mod.rs` only re-exports: a path through it counts as a
//! dependency on the file that defines the item, not on `mod.rs`. So a `mod.rs` may call its
//! children, and children may use each other, but a child that uses its `mod.rs` while the
//! `mod.rs` uses it is a circle.

use std::collections::{BTreeMap, BTreeSet};

/// Layers, top first. Modules of one layer may not use each other (they are independent).
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["flags"],
    &["deploy", "export"],
    &["images"],
    &["stack"],
    &["podman"],
    &["process", "net", "oci"],
    &["util"],
];

/// A source file as a module: `images/pull/retry.rs` -> `images::pull::retry`, `x/mod.rs` -> `x`,
/// `main.rs` -> `` (the crate root).
fn module_of(path: &str) -> String {
    let p = path.trim_end_matches(".rs");
    let p = p.strip_suffix("/mod").unwrap_or(p);
    if p == "main" {
        String::new()
    } else {
        p.replace('/', "::")
    }
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default()
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

/// The text without its test module (`#[cfg(test)] mod tests { ... }` at the end) and comments.
fn code_of(text: &str) -> String {
    let end = text.find("\n#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end].lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path the code names, from its first segment: `crate::a::b`, `super::x`, `plan::Item`,
/// with `use a::{b, c::d}` expanded to `a::b`, `a::c::d`.
fn paths(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let (path, next) = read_path(&chars, i);
        out.extend(path);
        i = next.max(i + 1);
    }
    out
}

/// Reads a path at `i` (segments joined by `::`, then maybe a brace group); returns the full
/// paths it names and where it ended.
fn read_path(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut segments: Vec<String> = Vec::new();
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        segments.push(chars[start..i].iter().collect());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
            if chars.get(i) == Some(&'{') {
                let (inner, end) = read_group(chars, i + 1);
                let prefix = segments.join("::");
                return (inner.into_iter().map(|p| join(&prefix, &p)).collect(), end);
            }
            if chars.get(i).is_some_and(|c| is_ident(*c)) {
                continue;
            }
        }
        return (if segments.len() > 1 { vec![segments.join("::")] } else { Vec::new() }, i);
    }
}

/// The items of a `{ ... }` group starting after its `{`, each as a (possibly one-segment) path.
fn read_group(chars: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '}' => return (out, i + 1),
            c if is_ident(c) => {
                let start = i;
                let (mut inner, end) = read_path(chars, i);
                if inner.is_empty() {
                    // One segment: `self`, an item, or a module.
                    inner.push(chars[start..end].iter().collect());
                }
                out.extend(inner);
                i = end;
            }
            _ => i += 1,
        }
    }
    (out, i)
}

struct Module {
    /// Child modules declared with `mod x;`.
    children: BTreeSet<String>,
    /// `pub use` re-exports: item name -> the path it comes from; `*` for a glob.
    reexports: Vec<(String, String)>,
    /// Items the file defines itself.
    defines: BTreeSet<String>,
    code: String,
}

fn parse(text: &str) -> Module {
    let code = code_of(text);
    let mut children = BTreeSet::new();
    let mut reexports = Vec::new();
    let mut defines = BTreeSet::new();
    for line in code.lines().map(str::trim) {
        let line = line.strip_prefix("pub(crate) ").or_else(|| line.strip_prefix("pub ")).unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            children.insert(name.trim().to_string());
        }
        for kw in ["fn ", "struct ", "enum ", "const ", "static ", "trait ", "type "] {
            if let Some(rest) = line.strip_prefix(kw) {
                defines.insert(rest.chars().take_while(|c| is_ident(*c)).collect::<String>());
            }
        }
    }
    for stmt in code.split(';') {
        let s = stmt.trim();
        let Some(rest) = s.strip_prefix("pub use ").or_else(|| s.strip_prefix("pub(crate) use ")) else { continue };
        for p in paths(rest) {
            let name = p.rsplit("::").next().unwrap_or("").to_string();
            reexports.push((name, p));
        }
        if rest.trim_end().ends_with("::*") {
            reexports.push(("*".into(), rest.trim_end().trim_end_matches("::*").to_string()));
        }
    }
    Module { children, reexports, defines, code }
}

/// The file (module) a path from `from` ends up in.
fn resolve(modules: &BTreeMap<String, Module>, from: &str, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    let (mut base, rest): (String, &[&str]) = match segs[0] {
        "crate" => (String::new(), &segs[1..]),
        "self" => (from.to_string(), &segs[1..]),
        "super" => (parent(from), &segs[1..]),
        first if modules.get(from).is_some_and(|m| m.children.contains(first)) => (join(from, first), &segs[1..]),
        _ => return None, // another crate, or a local name
    };
    let mut rest = rest.to_vec();
    while rest.first() == Some(&"super") {
        base = parent(&base);
        rest.remove(0);
    }
    // Walk down as far as the segments are modules.
    let mut module = base;
    let mut i = 0;
    while i < rest.len() && modules.contains_key(&join(&module, rest[i])) {
        module = join(&module, rest[i]);
        i += 1;
    }
    // Through a re-export of the module that was reached.
    if let (Some(name), Some(m)) = (rest.get(i), modules.get(&module)) {
        if *name != "self" {
            if let Some((_, target)) = m.reexports.iter().find(|(n, _)| n == name) {
                return resolve(modules, &module, target).or(Some(module));
            }
            if !m.defines.contains(*name) {
                if let Some((_, glob)) = m.reexports.iter().find(|(n, _)| n == "*") {
                    return resolve(modules, &module, &format!("{glob}::{name}")).or(Some(module));
                }
            }
        }
    }
    Some(module)
}

/// module -> the modules it uses (itself, and the `pub use` of a `mod.rs`, not counted).
fn graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<String, Module> = files.iter().map(|(p, t)| (module_of(p), parse(t))).collect();
    let mut out = BTreeMap::new();
    for (name, m) in &modules {
        let mut deps = BTreeSet::new();
        for stmt in m.code.split(';') {
            let s = stmt.trim();
            if s.starts_with("pub use ") || s.starts_with("pub(crate) use ") {
                continue;
            }
            for p in paths(s) {
                if let Some(target) = resolve(&modules, name, &p) {
                    // A module's own ancestors are where it lives, not what it uses, unless the
                    // path names something defined there (that is checked as a real use).
                    if target != *name {
                        deps.insert(target);
                    }
                }
            }
        }
        out.insert(name.clone(), deps);
    }
    out
}

fn file_of(module: &str, files: &[(String, String)]) -> String {
    files.iter().find(|(p, _)| module_of(p) == module).map(|(p, _)| format!("xtask/src/{p}")).unwrap_or_default()
}

/// Circles (strongly connected components of more than one module), each as its files.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then components on the reversed graph.
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(n.to_string()) {
            return;
        }
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, seen, order);
        }
        order.push(n.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for n in graph.keys() {
        visit(n, graph, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, deps) in graph {
        for b in deps {
            reversed.entry(b.clone()).or_default().insert(a.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for n in order.iter().rev() {
        let mut component = Vec::new();
        visit(n, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

fn layer(module: &str) -> Option<usize> {
    let top = if module.is_empty() { "main" } else { module.split("::").next().unwrap_or("") };
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Everything wrong with the graph of `files`, one line each.
pub fn problems(files: &[(String, String)]) -> Vec<String> {
    let files: Vec<(String, String)> =
        files.iter().filter(|(p, _)| !p.starts_with("tidy/") && !p.ends_with("e2e.rs")).cloned().collect();
    let g = graph(&files);
    let mut out = Vec::new();
    for c in circles(&g) {
        let names: Vec<String> = c.iter().map(|m| file_of(m, &files)).collect();
        out.push(format!("these files use each other in a circle: {}", names.join(", ")));
    }
    for (from, deps) in &g {
        let Some(lf) = layer(from) else {
            out.push(format!("{}: module `{from}` is in no layer (add it to tidy/imports.rs)", file_of(from, &files)));
            continue;
        };
        let top_from = from.split("::").next().unwrap_or("");
        for to in deps {
            let top_to = to.split("::").next().unwrap_or("");
            if top_from == top_to && !from.is_empty() {
                continue;
            }
            match layer(to) {
                Some(lt) if lt > lf => {}
                _ => out.push(format!(
                    "{} uses {}: `{top_from}` may only use layers below it ({})",
                    file_of(from, &files),
                    file_of(to, &files),
                    LAYERS[lf + 1..].iter().map(|l| l.join(", ")).collect::<Vec<_>>().join(" > ")
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
    }

    #[test]
    fn paths_are_read_with_braces_and_without_tests_or_comments() {
        let code = code_of(
            "use crate::a::{self, b::C, d::{e, F}};\nfn f() { super::g::h(); x.y(); // crate::no\n}\n#[cfg(test)]\nmod tests { use crate::t; }",
        );
        assert_eq!(
            paths(&code),
            ["crate::a::self", "crate::a::b::C", "crate::a::d::e", "crate::a::d::F", "super::g::h"]
        );
    }

    #[test]
    fn a_circle_is_found_and_named() {
        let f = files(&[
            ("main.rs", "mod util; mod stack;"),
            ("util/mod.rs", "pub mod a;\npub mod b;"),
            ("util/a.rs", "use super::b::X;"),
            ("util/b.rs", "pub struct X; fn f() { crate::util::a::g(); }"),
            ("stack/mod.rs", "use crate::util::a;"),
        ]);
        let p = problems(&f);
        assert_eq!(p, ["these files use each other in a circle: xtask/src/util/a.rs, xtask/src/util/b.rs"], "{p:?}");
    }

    #[test]
    fn a_mod_rs_and_a_child_that_uses_it_are_a_circle_but_re_exports_are_not() {
        let f = files(&[
            ("main.rs", "mod images;"),
            ("images/mod.rs", "mod run;\npub use run::Thing;\npub struct Options;\nfn go() { run::start(); }"),
            ("images/run.rs", "use super::Options;\npub struct Thing;"),
        ]);
        assert_eq!(
            problems(&f),
            ["these files use each other in a circle: xtask/src/images/mod.rs, xtask/src/images/run.rs"]
        );
        let f = files(&[
            ("main.rs", "mod images;"),
            ("images/mod.rs", "mod options;\nmod run;\npub use options::Options;\nfn go() { run::start(); }"),
            ("images/options.rs", "pub struct Options;"),
            ("images/run.rs", "use super::Options;"),
        ]);
        assert!(problems(&f).is_empty(), "{:?}", problems(&f));
    }

    #[test]
    fn dependencies_point_down_and_peers_stay_apart() {
        let f = files(&[
            ("main.rs", "mod util; mod stack; mod deploy; mod export;"),
            ("util/mod.rs", "use crate::stack::Stack;"),
            ("stack/mod.rs", "pub mod model;\npub use model::*;"),
            ("stack/model.rs", "pub struct Stack;"),
            ("deploy/mod.rs", "use crate::export::yaml;"),
            ("export/mod.rs", "pub mod yaml;"),
            ("export/yaml.rs", "fn f() {}"),
        ]);
        let p = problems(&f);
        assert!(
            p.contains(
                &"xtask/src/util/mod.rs uses xtask/src/stack/model.rs: `util` may only use layers below it ()"
                    .to_string()
            ),
            "{p:?}"
        );
        assert!(p.iter().any(|l| l.starts_with("xtask/src/deploy/mod.rs uses xtask/src/export/yaml.rs")), "{p:?}");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn the_xtask_has_no_circles_and_its_dependencies_point_down() {
        let sources = super::super::sources();
        let p = problems(&sources);
        assert!(p.is_empty(), "the module graph of xtask/src:\n  {}", p.join("\n  "));
        // The graph is read, not empty: known uses are in it.
        let g = graph(&sources);
        let uses = |a: &str, b: &str| g.get(a).is_some_and(|d| d.contains(b));
        assert!(uses("cli::deploy", "images") && uses("cli::deploy", "deploy"), "{:?}", g.get("cli::deploy"));
        assert!(uses("images::pull::session", "images::pull::retry"), "{:?}", g.get("images::pull::session"));
        assert!(
            uses("images::pull::session", "images::pull::options"),
            "through the re-export: {:?}",
            g.get("images::pull::session")
        );
        assert!(uses("stack::names", "stack::model"), "through the glob re-export: {:?}", g.get("stack::names"));
        assert!(uses("", "util::workspace") && uses("", "flags"), "main: {:?}", g.get(""));
        let edges: usize = g.values().map(|d| d.len()).sum();
        assert!(edges > 200, "{edges} edges");
    }
}
