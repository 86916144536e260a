//! `cargo xtask doctor`: is podman here, what this host needs (runtime, rlimits, health
//! checks) and what the xtask did about it, and which proxies and mirrors are in effect.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::flags;
use crate::net::proxy;
use crate::podman::{host, Podman};
use crate::process::{find_on_path, mask_url_credentials, Runner};
use crate::stack::{mode, Stack};
use crate::util::workspace::Workspace;

impl flags::Doctor {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let facts = host::gather_facts();
        println!(
            "host: cgroups {:?}, runc {}, crun {}, hard nofile {}, hard nproc {}, systemd {}",
            facts.cgroups,
            yes_no(facts.has_runc),
            yes_no(facts.has_crun),
            facts.nofile_hard.map_or("unlimited".to_string(), |n| n.to_string()),
            facts.nproc_hard.map_or("unlimited".to_string(), |n| n.to_string()),
            yes_no(facts.has_systemd)
        );
        let podman = Podman::prepare(ws)?;
        let runner = Runner::new(false);
        let version = runner.query(&podman.cmd().args(["version", "--format", "{{.Client.Version}}"]))?;
        println!(
            "podman: {} (version {})",
            find_on_path("podman").map(|p| p.display().to_string()).unwrap_or_default(),
            version.trim()
        );
        if podman.adaptation.reasons.is_empty() {
            println!("podman defaults work on this host: nothing to adapt");
        }
        for reason in &podman.adaptation.reasons {
            println!("adapted: {reason}");
        }
        for (k, v) in &podman.env {
            println!("every podman call of the xtask gets {k}={v}");
        }
        // Proof that the settings took: the runtime podman itself reports.
        let runtime = runner.query(&podman.cmd().args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]))?;
        println!("podman reports OCI runtime: {}", runtime.trim());

        let env: BTreeMap<String, String> = std::env::vars().collect();
        // The same check as build's: a malformed variable is named here, not first by a build.
        let proxy_errors = proxy::validate(&env);
        for e in &proxy_errors {
            println!("proxy variable unusable: {e}");
        }
        let proxies = proxy::detect(&env);
        for w in proxies.warnings() {
            println!("warning: {w}");
        }
        if !proxy_errors.is_empty() {
            // Named above; what the tools would misread is not shown as if it were in use.
        } else if proxies.is_empty() {
            println!("proxies: none (http_proxy, https_proxy, all_proxy unset)");
        } else {
            for (k, v) in proxies.env().iter().filter(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) {
                println!("proxy for builds: {k}={}", mask_url_credentials(v));
            }
        }
        match Stack::load(ws) {
            Ok(stack) => {
                let mirrors: Vec<&str> = stack.pull.registry_mirrors.iter().map(|m| m.get_ref().as_str()).collect();
                println!(
                    "registry mirrors (docker/stack.toml pull.registry_mirrors): {}",
                    if mirrors.is_empty() { "none".to_string() } else { mirrors.join(", ") }
                );
                for (name, p) in &stack.package_mirrors.presets {
                    let default = stack.package_mirrors.default_preset.as_ref().is_some_and(|d| d.get_ref() == name);
                    println!(
                        "package mirror preset {name}{}: apk={} apt={} npm={} pip={} cargo={}",
                        if default { " (--mirror default)" } else { "" },
                        p.apk.as_deref().unwrap_or("-"),
                        p.apt.as_deref().unwrap_or("-"),
                        p.npm.as_deref().unwrap_or("-"),
                        p.pip.as_deref().unwrap_or("-"),
                        p.cargo.as_deref().unwrap_or("-"),
                    );
                }
                println!("stack mode: {:?} ({} project.mode)", stack.project.mode, ws.stack_file);
                if stack.project.mode == crate::stack::ModeSetting::Auto {
                    // doctor is where the remembered `auto` decision is made again.
                    if let Some((m, why)) = mode::remembered(ws, &stack) {
                        println!("remembered decision: {m} ({why}); probing again");
                    }
                    mode::probe_and_remember(ws, &stack);
                }
            }
            Err(e) => println!("{}: {e:#}", ws.stack_file),
        }
        if !proxy_errors.is_empty() {
            bail!(
                "{} proxy variable(s) cannot be used (above): builds refuse them; fix or unset each",
                proxy_errors.len()
            );
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
