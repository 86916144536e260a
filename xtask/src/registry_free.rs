//! Registry-free mode: every image of the stack made on this machine from Debian packages,
//! for networks where no container registry answers. (Being written: issue 4.)

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::image_ref::ImageRef;
use crate::manifest::{Mode, Stack};

/// The local name of a service's registry-free image.
pub fn image_name(service: &str) -> String {
    format!("localhost/v7-offline/{service}:latest")
}

/// The flag, then the manifest's `project.mode`; in `auto` mode, registry-free when none of
/// the registries the stack's images come from (or their mirrors) answers within a few seconds.
pub fn use_registry_free(stack: &Stack, flag: bool) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    match stack.project.mode {
        Mode::Offline => Ok(true),
        Mode::Registry => Ok(false),
        Mode::Auto => {
            let mut hosts: Vec<String> = Vec::new();
            for svc in stack.services.values() {
                if let Ok(r) = ImageRef::parse(svc.image.get_ref()) {
                    let host = if r.registry == "docker.io" { "registry-1.docker.io".to_string() } else { r.registry };
                    if host != "localhost" && !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
            }
            for m in &stack.pull.registry_mirrors {
                let rest = m.get_ref().split("://").nth(1).unwrap_or("");
                let host = rest.split('/').next().unwrap_or("").to_string();
                if !host.is_empty() && !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            let reachable = any_reachable(&hosts, Duration::from_secs(3));
            match &reachable {
                Some(h) => eprintln!("mode: registry ({h} answers)"),
                None => eprintln!(
                    "mode: registry-free: no registry answered within 3 s ({}); images are built here from Debian packages (force a mode with project.mode in docker/stack.toml or --offline)",
                    hosts.join(", ")
                ),
            }
            Ok(reachable.is_none())
        }
    }
}

/// The first host that accepts a TCP connection (port 443 unless one is given), probing all at once.
fn any_reachable(hosts: &[String], timeout: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    for h in hosts {
        let tx = tx.clone();
        let h = h.clone();
        std::thread::spawn(move || {
            let target = if h.contains(':') { h.clone() } else { format!("{h}:443") };
            let ok = target
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok());
            let _ = tx.send((h, ok));
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + timeout + Duration::from_millis(500);
    while let Ok((h, ok)) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if ok {
            return Some(h);
        }
    }
    None
}

pub fn build_all(_sh: &Shell, _stack: &Stack, _services: &[String], _force: bool, _dry_run: bool) -> Result<()> {
    bail!("registry-free mode is not implemented yet")
}
