//! What `build --mirror SPEC` means, as pure functions tested on inline values: a preset of
//! `[package_mirrors.presets]` by name, `default` (the stack file's `default_preset`), `auto`
//! (the fastest reachable mirror per manager, measured by `mirrors.rs`), or explicit URLs per
//! package manager, `apk=URL,apt=URL,npm=URL,pip=URL,cargo=URL`. Every URL
//! used, from the flag or from a preset, is checked before anything is rewritten: a known
//! manager, scheme http or https (`sparse+` in front for cargo), a host, a port from 1 to 65535.

use anyhow::{bail, Result};

use crate::net::proxy::mask;
use crate::stack::{PackageMirrors, Stack};

/// The package managers a mirror can be given for, in the order they are shown.
pub const MANAGERS: &[&str] = &["apk", "apt", "npm", "pip", "cargo"];

/// `--mirror SPEC`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorSpec {
    /// `package_mirrors.default_preset`.
    Default,
    Preset(String),
    Auto,
    Urls(PackageMirrors),
}

fn slot<'a>(m: &'a mut PackageMirrors, manager: &str) -> Option<&'a mut Option<String>> {
    match manager {
        "apk" => Some(&mut m.apk),
        "apt" => Some(&mut m.apt),
        "npm" => Some(&mut m.npm),
        "pip" => Some(&mut m.pip),
        "cargo" => Some(&mut m.cargo),
        _ => None,
    }
}

/// The mirrors of `m` that are set, as `(manager, url)`, in [`MANAGERS`] order.
pub fn entries(m: &PackageMirrors) -> Vec<(&'static str, &str)> {
    let all = [&m.apk, &m.apt, &m.npm, &m.pip, &m.cargo];
    MANAGERS.iter().zip(all).filter_map(|(n, v)| v.as_deref().map(|v| (*n, v))).collect()
}

/// Reads `--mirror SPEC` (URLs checked by [`check_url`]); presets are looked up later.
pub fn parse(spec: &str) -> Result<MirrorSpec> {
    let spec = spec.trim();
    let example =
        "--mirror aliyun, --mirror default, or --mirror npm=http://host.containers.internal:4873,apt=http://...";
    if spec.is_empty() {
        bail!("--mirror \"\": no preset or URL given; hint: {example}");
    }
    if !spec.contains('=') {
        return Ok(match spec {
            "auto" => MirrorSpec::Auto,
            "default" => MirrorSpec::Default,
            name => MirrorSpec::Preset(name.to_string()),
        });
    }
    let mut out = PackageMirrors::default();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((manager, url)) = item.split_once('=') else {
            bail!("--mirror: {:?} is not MANAGER=URL; hint: {example}", mask(item));
        };
        let manager = manager.trim();
        let Some(slot) = slot(&mut out, manager) else {
            bail!(
                "--mirror: unknown package manager {manager:?}; hint: one of {} (as {manager}=URL)",
                MANAGERS.join(", ")
            );
        };
        if slot.is_some() {
            bail!("--mirror: {manager} is given twice; hint: one URL per package manager");
        }
        if let Err(cause) = check_url(manager, url.trim()) {
            bail!("--mirror {manager}={}: {cause}", mask(url.trim()));
        }
        *slot = Some(url.trim().to_string());
    }
    Ok(MirrorSpec::Urls(out))
}

/// Checks one mirror URL for `manager`; the error is the cause and a hint.
pub fn check_url(manager: &str, url: &str) -> Result<(), String> {
    let form = match manager {
        "cargo" => "sparse+https://HOST[:PORT]/PATH/ (a sparse index) or https://HOST/PATH (a git index)",
        _ => "http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH",
    };
    let plain = if manager == "cargo" { url.strip_prefix("sparse+").unwrap_or(url) } else { url };
    let Some((scheme, rest)) = plain.split_once("://") else {
        return Err(format!("no scheme; hint: write {form}"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("scheme {scheme:?} is not http or https; hint: write {form}"));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) if !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit() || ":.".contains(c)) => {
                match (tail, tail.strip_prefix(':')) {
                    ("", _) => (h, None),
                    (_, Some(p)) => (h, Some(p)),
                    _ => return Err(format!("{tail:?} after the IPv6 address; hint: write {form}")),
                }
            }
            _ => return Err(format!("the IPv6 address in [ ] is malformed; hint: write {form}")),
        },
        None => {
            let (h, p) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            };
            if h.is_empty() {
                return Err(format!("no host; hint: write {form}"));
            }
            if let Some(c) = h.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._".contains(*c))) {
                return Err(format!("{c:?} in the host name {h:?}; hint: write {form}"));
            }
            (h, p)
        }
    };
    debug_assert!(!host.is_empty());
    if let Some(p) = port {
        if !p.chars().all(|c| c.is_ascii_digit()) || !p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) {
            return Err(format!("port {p:?} is not a number from 1 to 65535; hint: write {form}"));
        }
    }
    Ok(())
}

/// The mirrors `spec` stands for in `stack`, with a label for the output (`preset aliyun`,
/// `--mirror npm=...`); every URL checked. `auto` calls `measure` (`mirrors::auto`).
pub fn resolve(
    stack: &Stack,
    spec: &MirrorSpec,
    measure: impl FnOnce() -> Result<PackageMirrors>,
) -> Result<(String, PackageMirrors)> {
    let presets = &stack.package_mirrors.presets;
    let names = || presets.keys().cloned().collect::<Vec<_>>().join(", ");
    let (label, mirrors) = match spec {
        MirrorSpec::Auto => ("--mirror auto".to_string(), measure()?),
        MirrorSpec::Urls(m) => {
            let shown: Vec<String> = entries(m).iter().map(|(n, u)| format!("{n}={}", mask(u))).collect();
            (format!("--mirror {}", shown.join(",")), m.clone())
        }
        MirrorSpec::Default | MirrorSpec::Preset(_) => {
            let name = match spec {
                MirrorSpec::Preset(n) => n.clone(),
                _ => match &stack.package_mirrors.default_preset {
                    Some(d) => d.get_ref().clone(),
                    None => bail!(
                        "--mirror default: docker/stack.toml sets no package_mirrors.default_preset; hint: \
                         name a preset ({}) or give URLs",
                        names()
                    ),
                },
            };
            match presets.get(&name) {
                Some(p) => (format!("preset {name}"), p.clone()),
                None if presets.contains_key("default") || name != "default" => bail!(
                    "--mirror {name}: package mirror preset {name:?} is not in docker/stack.toml; hint: presets: {}, \
                     or `default`, or URLs (--mirror npm=URL,apt=URL)",
                    names()
                ),
                None => unreachable!("\"default\" is read as MirrorSpec::Default"),
            }
        }
    };
    for (manager, url) in entries(&mirrors) {
        if let Err(cause) = check_url(manager, url) {
            bail!("{label}: {manager} = {:?}: {cause}", mask(url));
        }
    }
    Ok((label, mirrors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    fn err(spec: &str) -> String {
        parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn presets_auto_default_and_urls_are_told_apart() {
        assert_eq!(parse("tuna").unwrap(), MirrorSpec::Preset("tuna".into()));
        assert_eq!(parse(" auto ").unwrap(), MirrorSpec::Auto);
        assert_eq!(parse("default").unwrap(), MirrorSpec::Default);
        let m =
            parse("npm=http://host.containers.internal:4873, cargo=sparse+http://h:8081/index/,apt=http://h/debian")
                .unwrap();
        let want = PackageMirrors {
            npm: Some("http://host.containers.internal:4873".into()),
            cargo: Some("sparse+http://h:8081/index/".into()),
            apt: Some("http://h/debian".into()),
            ..Default::default()
        };
        assert_eq!(m, MirrorSpec::Urls(want));
    }

    #[test]
    fn bad_urls_and_managers_are_refused_with_a_hint() {
        assert!(err("yum=http://m").starts_with("--mirror: unknown package manager \"yum\"; hint: one of apk, apt"));
        assert!(err("npm=ftp://m").starts_with("--mirror npm=ftp://m: scheme \"ftp\" is not http or https; hint:"));
        assert!(err("npm=registry.npmjs.org").contains("no scheme; hint: write http://HOST"), "{}", err("npm=x"));
        assert!(err("pip=http:///simple").contains("no host"), "{}", err("pip=http:///simple"));
        assert!(err("apk=https://m:70000/alpine").contains("port \"70000\" is not a number from 1 to 65535"));
        assert!(err("apt=http://a b/debian").contains("' ' in the host name"));
        assert!(err("npm=http://a,npm=http://b").contains("npm is given twice"));
        assert_eq!(parse("npm").unwrap(), MirrorSpec::Preset("npm".into()), "a bare word is a preset name");
        assert!(err("npm=http://a,oops").starts_with("--mirror: \"oops\" is not MANAGER=URL"));
        assert!(err("").starts_with("--mirror \"\": no preset or URL given"));
        assert!(err("cargo=sparse+ftp://m/").contains("scheme \"ftp\""), "sparse+ only in front of http(s)");
        assert!(err("npm=sparse+http://m/").contains("scheme \"sparse+http\" is not"), "sparse+ is for cargo only");
        let e = err("npm=http://bob:hunter2@m:0");
        assert!(!e.contains("hunter2") && e.starts_with("--mirror npm=http://bob:***@m:0: port"), "{e}");
    }

    #[test]
    fn good_urls_pass() {
        for (m, u) in [
            ("apk", "https://mirrors.aliyun.com/alpine"),
            ("apt", "http://host.containers.internal:3142/deb.debian.org/debian"),
            ("pip", "http://[::1]:3141/simple"),
            ("pip", "http://[::1]/simple"),
            ("cargo", "sparse+https://mirrors.ustc.edu.cn/crates.io-index/"),
            ("cargo", "https://github.com/rust-lang/crates.io-index"),
        ] {
            assert_eq!(check_url(m, u), Ok(()), "{m}={u}");
        }
    }

    #[test]
    fn resolved_against_the_stack_file() {
        let ws = Workspace::for_tests("mirror-spec");
        let stack = Stack::load(&ws).unwrap();
        let never = || -> Result<PackageMirrors> { panic!("only auto measures") };
        let (label, m) = resolve(&stack, &MirrorSpec::Default, never).unwrap();
        assert_eq!(label, "preset aliyun", "the stack file's default_preset");
        assert_eq!(m.npm.as_deref(), Some("https://registry.npmmirror.com"));
        assert_eq!(resolve(&stack, &MirrorSpec::Preset("tuna".into()), never).unwrap().0, "preset tuna");
        let e = resolve(&stack, &MirrorSpec::Preset("nope".into()), never).unwrap_err().to_string();
        assert!(e.starts_with("--mirror nope: package mirror preset \"nope\" is not in docker/stack.toml; hint: presets: aliyun, local"), "{e}");
        let measured = PackageMirrors { npm: Some("http://fast:4873".into()), ..Default::default() };
        let (label, m) = resolve(&stack, &MirrorSpec::Auto, || Ok(measured.clone())).unwrap();
        assert_eq!((label.as_str(), m), ("--mirror auto", measured), "auto takes what was measured");
        let bad = || Ok(PackageMirrors { pip: Some("ftp://m".into()), ..Default::default() });
        let e = resolve(&stack, &MirrorSpec::Auto, bad).unwrap_err().to_string();
        assert!(e.starts_with("--mirror auto: pip = \"ftp://m\": scheme"), "checked like the others: {e}");
        let urls = parse("npm=http://u:pw@h:4873").unwrap();
        assert_eq!(resolve(&stack, &urls, never).unwrap().0, "--mirror npm=http://u:***@h:4873");
        let _ = std::fs::remove_dir_all(&ws.state);
    }
}
