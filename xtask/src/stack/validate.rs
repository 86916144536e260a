//! What reading the stack file cannot check: references between services, networks and
//! volumes; ports (their form, and no host address published twice); image references;
//! durations; memory sizes; dependency cycles. Each error points at the offending value's line.

use anyhow::{bail, Result};

use super::model::*;
use super::reader::{line_col, Reader};
use crate::oci::ImageRef;

fn memory_ok(text: &str) -> bool {
    let t = text.trim_end_matches(['b', 'k', 'm', 'g', 'B', 'K', 'M', 'G']);
    !t.is_empty() && t.len() + 1 >= text.len() && t.parse::<u64>().is_ok()
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn validate(stack: &Stack, r: &Reader) -> Result<()> {
    let file = r.file;
    if !name_ok(&stack.project.name) {
        bail!(
            "{file}: project.name = {:?}: use lowercase letters, digits and '-' (it prefixes container names)",
            stack.project.name
        );
    }
    let mirrors = &stack.package_mirrors;
    if let Some(preset) = &mirrors.default_preset {
        if !mirrors.presets.contains_key(preset.get_ref()) {
            return Err(r.error(
                preset.span(),
                format!(
                    "package_mirrors.default_preset = {:?} is not a preset; defined: {}",
                    preset.get_ref(),
                    join_keys(mirrors.presets.keys())
                ),
            ));
        }
    }
    for m in &stack.pull.registry_mirrors {
        if let Err(e) = crate::podman::registries_conf::RegistryMirror::parse(m.get_ref()) {
            return Err(r.error(m.span(), format!("pull.registry_mirrors: {e}")));
        }
    }
    for (name, svc) in &stack.services {
        if !name_ok(name) {
            bail!("{file}: [services.{name}]: service names use lowercase letters, digits and '-'");
        }
        service(stack, r, name, svc)?;
    }
    duplicate_ports(stack, r)?;
    stack.start_order().map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    Ok(())
}

/// Whether two published ports bind the same host address: the same ip and port, or the same port
/// where either ip is 0.0.0.0 (the wildcard takes the port on every address).
fn clash(a: &Port, b: &Port) -> bool {
    a.host == b.host && (a.host_ip == b.host_ip || a.host_ip == "0.0.0.0" || b.host_ip == "0.0.0.0")
}

/// No host address published twice, across services or within one. Podman would start the first
/// container and fail the second with "address already in use" half way through a deploy, so the
/// file is refused before anything starts, with every clash listed at once (fixing them one run
/// at a time is slow). Each clash is reported at the later port in the file, naming the earlier.
fn duplicate_ports(stack: &Stack, r: &Reader) -> Result<()> {
    let mut ports = Vec::new();
    for (name, svc) in &stack.services {
        for p in &svc.ports {
            if let Some(port) = Port::parse(p.get_ref()) {
                ports.push((p.span(), name.as_str(), port));
            }
        }
    }
    // The services are in name order; the file's order is what "earlier" and "later" mean.
    ports.sort_by_key(|(span, ..)| span.start);
    let mut clashes = Vec::new();
    for (i, (span, name, port)) in ports.iter().enumerate() {
        if let Some((first_span, first_name, first)) = ports[..i].iter().find(|(.., p)| clash(p, port)) {
            let (first_line, _) = line_col(r.text, first_span.start);
            let msg = format!(
                "services.{name}.ports: {:?} publishes host port {}, already published by services.{first_name} ({:?}, line {first_line})",
                port.to_podman(),
                port.host,
                first.to_podman()
            );
            clashes.push(r.error(span.clone(), msg).to_string());
        }
    }
    if clashes.is_empty() {
        return Ok(());
    }
    bail!("{}\n  hint: each host port can be published once; change one of them", clashes.join("\n"))
}

fn service(stack: &Stack, r: &Reader, name: &str, svc: &Service) -> Result<()> {
    if let Err(e) = ImageRef::parse(svc.image.get_ref()) {
        return Err(r.error(svc.image.span(), format!("services.{name}.image: {e}")));
    }
    for p in &svc.ports {
        if Port::parse(p.get_ref()).is_none() {
            return Err(r.error(
                p.span(),
                format!(
                    "services.{name}.ports: {:?} is not `[ip:]host_port:container_port` (e.g. \"127.0.0.1:3000:3000\")",
                    p.get_ref()
                ),
            ));
        }
    }
    for n in &svc.networks {
        if !stack.networks.contains_key(n.get_ref()) {
            return Err(r.error(
                n.span(),
                format!(
                    "services.{name}.networks: {:?} is not declared; declared networks: {}",
                    n.get_ref(),
                    join_keys(stack.networks.keys())
                ),
            ));
        }
    }
    for v in &svc.volumes {
        let spec = v.get_ref();
        let mut parts = spec.splitn(3, ':');
        let (source, target, mode) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
        let bad = |why: &str| r.error(v.span(), format!("services.{name}.volumes: {spec:?}: {why}"));
        if !target.starts_with('/') {
            return Err(bad("expected `volume:/container/path[:ro]` or `./host/path:/container/path[:ro]`"));
        }
        if !matches!(mode, None | Some("ro") | Some("rw")) {
            return Err(bad("the mode after the second ':' must be ro or rw"));
        }
        if !source.starts_with("./") && !stack.volumes.contains_key(source) {
            return Err(bad(&format!(
                "volume {source:?} is not declared; declared volumes: {}",
                join_keys(stack.volumes.keys())
            )));
        }
    }
    for d in &svc.depends_on {
        if !stack.services.contains_key(d.get_ref()) || d.get_ref() == name {
            return Err(r.error(
                d.span(),
                format!(
                    "services.{name}.depends_on: {:?} is not another service; services: {}",
                    d.get_ref(),
                    join_keys(stack.services.keys())
                ),
            ));
        }
    }
    if let Some(hc) = &svc.healthcheck {
        if hc.test.is_empty() {
            bail!("{}: services.{name}.healthcheck.test is empty: give the command to run", r.file);
        }
        for d in [&hc.interval, &hc.timeout, &hc.start_period] {
            if parse_duration(d.get_ref()).is_none() {
                return Err(r.error(
                    d.span(),
                    format!("services.{name}.healthcheck: {:?} is not a duration like 10s, 500ms, 2m", d.get_ref()),
                ));
            }
        }
    }
    if let Some(m) = &svc.resources.memory {
        if !memory_ok(m.get_ref()) {
            return Err(r.error(
                m.span(),
                format!("services.{name}.resources.memory: {:?} is not like 256m or 1g", m.get_ref()),
            ));
        }
    }
    if let Some(recipe) = &svc.registry_free {
        if recipe.dockerfile.is_none() == recipe.unavailable.is_none() {
            bail!(
                "{}: services.{name}.registry_free: give either `dockerfile` (the registry-free recipe) or `unavailable` (why there is none)",
                r.file
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    const MINIMAL: &str = r#"
[project]
name = "v7"

[networks.backend]

[volumes.data]

[services.nats]
image = "docker.io/library/nats:2.10-alpine"
networks = ["backend"]
volumes = ["data:/data"]

[services.api]
image = "ghcr.io/x/api:latest"
depends_on = ["nats"]
ports = ["3000:3000"]
healthcheck = { test = ["/api", "healthcheck"] }
"#;

    fn parse_err(text: &str) -> String {
        format!("{:#}", Stack::parse("docker/stack.toml", text).unwrap_err())
    }

    #[test]
    fn minimal_stack_parses_in_dependency_order() {
        let stack = Stack::parse("docker/stack.toml", MINIMAL).unwrap();
        assert_eq!(stack.start_order().unwrap(), vec!["nats", "api"]);
        assert_eq!(stack.services["api"].published()[0].to_podman(), "127.0.0.1:3000:3000");
        let hc = stack.services["api"].healthcheck.as_ref().unwrap();
        assert_eq!((hc.interval.get_ref().as_str(), hc.retries), ("10s", 3), "defaults");
    }

    #[test]
    fn unknown_key_names_line_and_allowed_keys() {
        let e = parse_err(&MINIMAL.replace("ports = [", "prots = ["));
        assert!(
            e.starts_with("docker/stack.toml:17:1: unknown key `prots` in [services.api]; allowed: `image`"),
            "{e}"
        );
        assert!(e.contains("`ports`"), "{e}");
    }

    #[test]
    fn renamed_keys_say_their_new_name() {
        let e = parse_err(
            &MINIMAL.replace("depends_on = [\"nats\"]", "offline = { unavailable = \"x\" }\ndepends_on = [\"nats\"]"),
        );
        assert!(
            e.starts_with("docker/stack.toml:16:1: `offline` in [services.api] is now called `registry_free`"),
            "{e}"
        );
        let e = parse_err(&format!("{MINIMAL}\n[mirrors]\n"));
        assert!(e.contains("`mirrors` in the top level is now called `package_mirrors`"), "{e}");
        let e = parse_err(&MINIMAL.replace("name = \"v7\"", "name = \"v7\"\nmode = \"offline\""));
        assert!(
            e.starts_with("docker/stack.toml:4:8: project.mode: \"offline\" is now called \"registry-free\""),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_line() {
        let e = parse_err(&MINIMAL.replace("name = \"v7\"", "name = 7"));
        assert_eq!(e, "docker/stack.toml:3:8: project.name: expected a string, found integer");
        let e = parse_err(&MINIMAL.replace("name = \"v7\"", "name = \"v7\"\nmode = \"sometimes\""));
        assert!(
            e.starts_with("docker/stack.toml:4:8: project.mode: \"sometimes\" is not a mode; allowed: \"auto\""),
            "{e}"
        );
        let e = parse_err(&MINIMAL.replace("image = \"ghcr.io/x/api:latest\"\n", ""));
        assert!(e.starts_with("docker/stack.toml:14:1: [services.api]: `image` is required"), "{e}");
        let e = parse_err(&MINIMAL.replace("[volumes.data]", "[volumes.data"));
        assert!(e.starts_with("docker/stack.toml:7:") && e.ends_with("(the file is not valid TOML)"), "{e}");
        let e = parse_err(&MINIMAL.replace("ports = [\"3000:3000\"]", "ports = [3000]"));
        assert_eq!(e, "docker/stack.toml:17:10: services.api.ports: expected a string, found integer");
    }

    #[test]
    fn bad_port_names_line_and_form() {
        let e = parse_err(&MINIMAL.replace("\"3000:3000\"", "\"3000\""));
        assert!(e.starts_with("docker/stack.toml:17:10: services.api.ports: \"3000\" is not"), "{e}");
    }

    #[test]
    fn a_host_port_published_by_two_services_names_both_and_the_later_line() {
        let text = MINIMAL
            .replace("volumes = [\"data:/data\"]", "volumes = [\"data:/data\"]\nports = [\"0.0.0.0:3000:4222\"]");
        let e = parse_err(&text);
        assert!(
            e.starts_with("docker/stack.toml:18:10: services.api.ports: \"127.0.0.1:3000:3000\" publishes host port 3000, already published by services.nats (\"0.0.0.0:3000:4222\", line 13)"),
            "the wildcard on nats clashes with api's loopback port: {e}"
        );
        assert!(e.ends_with("\n  hint: each host port can be published once; change one of them"), "{e}");
        assert_eq!(e.lines().count(), 2, "one clash, one hint: {e}");
    }

    #[test]
    fn every_duplicate_port_is_reported_at_once() {
        let text = MINIMAL
            .replace("volumes = [\"data:/data\"]", "volumes = [\"data:/data\"]\nports = [\"127.0.0.1:3000:4222\"]")
            .replace("ports = [\"3000:3000\"]", "ports = [\"8080:80\", \"127.0.0.1:8080:81\", \"3000:3000\"]");
        let e = parse_err(&text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "two clashes and the hint: {e}");
        assert!(lines[0].starts_with("docker/stack.toml:18:21: services.api.ports: \"127.0.0.1:8080:81\" publishes host port 8080, already published by services.api (\"127.0.0.1:8080:80\", line 18)"), "within one service: {e}");
        assert!(lines[1].starts_with("docker/stack.toml:18:42: services.api.ports: \"127.0.0.1:3000:3000\" publishes host port 3000, already published by services.nats (\"127.0.0.1:3000:4222\", line 13)"), "across services: {e}");
        assert!(lines[2].contains("hint: each host port can be published once"), "{e}");
    }

    #[test]
    fn the_same_host_port_on_two_addresses_is_allowed() {
        let text = MINIMAL.replace(
            "ports = [\"3000:3000\"]",
            "ports = [\"127.0.0.1:3000:3000\", \"127.0.0.2:3000:3001\", \"3001:3000\"]",
        );
        let stack = Stack::parse("docker/stack.toml", &text).unwrap();
        assert_eq!(stack.services["api"].published().len(), 3);
        assert!(clash(&Port::parse("0.0.0.0:80:1").unwrap(), &Port::parse("0.0.0.0:80:2").unwrap()), "wildcard twice");
        assert!(!clash(&Port::parse("0.0.0.0:80:1").unwrap(), &Port::parse("0.0.0.0:81:1").unwrap()), "another port");
    }

    #[test]
    fn undeclared_network_and_volume_and_dependency() {
        let e = parse_err(&MINIMAL.replace("networks = [\"backend\"]", "networks = [\"front\"]"));
        assert!(e.starts_with("docker/stack.toml:11:13: services.nats.networks: \"front\" is not declared; declared networks: backend"), "{e}");
        let e = parse_err(&MINIMAL.replace("\"data:/data\"", "\"dat:/data\""));
        assert!(e.contains(":12:12: services.nats.volumes: \"dat:/data\": volume \"dat\" is not declared"), "{e}");
        let e = parse_err(&MINIMAL.replace("depends_on = [\"nats\"]", "depends_on = [\"natz\"]"));
        assert!(e.contains(":16:15: services.api.depends_on: \"natz\" is not another service"), "{e}");
        let e = parse_err(&format!("{MINIMAL}\n[pull]\nregistry_mirrors = [\"ftp://m\"]\n"));
        assert!(
            e.contains(":21:21: pull.registry_mirrors: registry mirror \"ftp://m\": the URL must start with http://"),
            "{e}"
        );
    }

    #[test]
    fn cycle_is_reported() {
        let text = MINIMAL
            .replace("networks = [\"backend\"]\nvolumes", "networks = [\"backend\"]\ndepends_on = [\"api\"]\nvolumes");
        let e = parse_err(&text);
        assert!(e.contains("depends_on forms a cycle among: api, nats"), "{e}");
    }

    #[test]
    fn bad_image_duration_memory_and_recipe() {
        let e = parse_err(&MINIMAL.replace("ghcr.io/x/api:latest", "ghcr.io/x/API:latest"));
        assert!(e.contains(":15:9: services.api.image:"), "{e}");
        let e = parse_err(&MINIMAL.replace("healthcheck = { test", "healthcheck = { interval = \"10 sec\", test"));
        assert!(e.contains(":18:28: services.api.healthcheck: \"10 sec\" is not a duration"), "{e}");
        let e = parse_err(&MINIMAL.replace("ports = [", "resources = { memory = \"lots\" }\nports = ["));
        assert!(e.contains(":17:24: services.api.resources.memory: \"lots\" is not like 256m"), "{e}");
        let e = parse_err(&MINIMAL.replace("ports = [", "registry_free = { }\nports = ["));
        assert!(e.contains("services.api.registry_free: give either `dockerfile`"), "{e}");
        assert!(memory_ok("256m") && memory_ok("1g") && memory_ok("4096") && !memory_ok("1mb") && !memory_ok("m"));
    }

    #[test]
    fn the_repository_stack_is_valid() {
        let stack = Stack::load(&Workspace::for_tests("stack")).unwrap();
        let order = stack.start_order().unwrap();
        let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("nats") < pos("analytics-engine"));
        assert!(pos("clickhouse") < pos("analytics-engine"));
        assert!(pos("analytics-engine") < pos("backend"));
        assert!(pos("backend") < pos("web"));
        assert_eq!(stack.built_services().count(), 3);
        assert_eq!(stack.registry_free_recipes().count(), 6);
    }
}
