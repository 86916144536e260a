//! `[profiles.NAME]`: overlays of the stack file that `--profile NAME` applies (deploy, both
//! exports, verify), the seed's development and production configuration sets in one file.
//!
//! What a profile may change, per service (`[profiles.NAME.services.SERVICE]`): `environment`
//! is merged into the service's (the profile's value wins; nothing is removed), `ports`,
//! `resources` and `command` replace the service's (`ports = []` publishes nothing). Then
//! `host_ip` becomes the host address of every published port. Everything else (images,
//! networks, volumes, secrets, health checks, dependencies) is the stack file's in every
//! profile, so a profile never changes what a service is, only how it is run. Without
//! `--profile` nothing is applied: the stack, and every container's fingerprint, is the file's.
//!
//! Reading (`reader.rs`) checks the keys and that each overlay names a service; the stack
//! under every profile is then validated like the file itself (`validate.rs`), with errors at
//! the profile's own line and naming the profile.

use toml::Spanned;

use super::model::{Port, Stack};

impl Stack {
    /// Applies `[profiles.NAME]`, which the stack has (`Stack::parse_profile` checks).
    pub fn apply_profile(&mut self, name: &str) {
        let profiles = std::mem::take(&mut self.profiles);
        let profile = &profiles[name];
        for (service, overlay) in &profile.services {
            let svc = self.services.get_mut(service).expect("read: overlays name services of the stack");
            for (k, v) in &overlay.environment {
                svc.environment.insert(k.clone(), v.clone());
            }
            if let Some(ports) = &overlay.ports {
                svc.ports = ports.clone();
            }
            if let Some(resources) = &overlay.resources {
                svc.resources = resources.clone();
            }
            if let Some(command) = &overlay.command {
                svc.command = command.clone();
            }
        }
        if let Some(ip) = &profile.host_ip {
            for svc in self.services.values_mut() {
                for port in &mut svc.ports {
                    // A port that does not parse is left for validation to report.
                    if let Some(p) = Port::parse(port.get_ref()) {
                        *port = Spanned::new(port.span(), format!("{}:{}:{}", ip.get_ref(), p.host, p.container));
                    }
                }
            }
        }
        self.profiles = profiles;
        self.profile = Some(name.to_string());
    }
}

/// A validation error of the stack under profile `name`: its first line says so.
pub fn in_profile(e: anyhow::Error, name: &str) -> anyhow::Error {
    let text = format!("{e:#}");
    let (first, rest) = text.split_once('\n').map_or((text.as_str(), None), |(f, r)| (f, Some(r)));
    let mut out = format!("{first} (with [profiles.{name}] applied)");
    if let Some(rest) = rest {
        out.push('\n');
        out.push_str(rest);
    }
    anyhow::anyhow!(out)
}

/// The stack file's text without its `[profiles.*]` tables, which are its last (asserted): the
/// file as it was before profiles, for the tests that prove the default output unchanged.
#[cfg(test)]
pub fn without_profiles(text: &str) -> String {
    let start = text.find("\n[profiles.").expect("the stack file has profiles") + 1;
    let tables = text[start..].lines().filter(|l| l.starts_with('['));
    assert!(tables.clone().all(|l| l.starts_with("[profiles.")), "[profiles.*] must be the file's last tables");
    text[..start].to_string()
}

#[cfg(test)]
mod tests {
    use crate::stack::Stack;
    use crate::util::workspace::Workspace;

    const STACK: &str = r#"
[project]
name = "v7"

[services.db]
image = "db:1"
ports = ["0.0.0.0:5432:5432"]
environment = { LOG = "info", KEEP = "1" }
resources = { cpus = 1.0, memory = "1g" }

[services.api]
image = "api:1"
ports = ["3000:3000", "9100:9100"]
command = ["serve"]

[profiles.dev]
host_ip = "127.0.0.1"
[profiles.dev.services.db]
environment = { LOG = "debug", EXTRA = "x" }

[profiles.prod]
[profiles.prod.services.api]
ports = ["0.0.0.0:80:3000"]
command = ["serve", "--release"]
[profiles.prod.services.db]
ports = []
resources = { memory = "4g" }
"#;

    fn parse(text: &str, profile: Option<&str>) -> Stack {
        Stack::parse_profile("docker/stack.toml", text, profile).unwrap()
    }

    fn parse_err(text: &str, profile: Option<&str>) -> String {
        format!("{:#}", Stack::parse_profile("docker/stack.toml", text, profile).unwrap_err())
    }

    fn ports(stack: &Stack, svc: &str) -> Vec<String> {
        stack.services[svc].published().iter().map(|p| p.to_podman()).collect()
    }

    #[test]
    fn without_a_profile_the_file_is_used_as_it_is() {
        let stack = parse(STACK, None);
        assert_eq!(stack.profile, None);
        assert_eq!(stack.profiles.keys().collect::<Vec<_>>(), ["dev", "prod"]);
        assert_eq!(ports(&stack, "db"), ["0.0.0.0:5432:5432"]);
        assert_eq!(stack.services["db"].environment["LOG"], "info");
        assert_eq!(stack.services["api"].command, ["serve"]);
    }

    #[test]
    fn environment_is_merged_and_host_ip_applies_to_every_port() {
        let stack = parse(STACK, Some("dev"));
        assert_eq!(stack.profile.as_deref(), Some("dev"));
        let env = &stack.services["db"].environment;
        assert_eq!(
            (env["LOG"].as_str(), env["KEEP"].as_str(), env["EXTRA"].as_str()),
            ("debug", "1", "x"),
            "line: merge"
        );
        assert_eq!(ports(&stack, "db"), ["127.0.0.1:5432:5432"], "line: the wildcard goes to loopback");
        assert_eq!(ports(&stack, "api"), ["127.0.0.1:3000:3000", "127.0.0.1:9100:9100"], "line: every service");
        assert_eq!(stack.services["db"].resources.memory.as_ref().unwrap().get_ref(), "1g", "line: untouched");
    }

    #[test]
    fn ports_resources_and_command_are_replaced() {
        let stack = parse(STACK, Some("prod"));
        assert_eq!(ports(&stack, "api"), ["0.0.0.0:80:3000"], "line: replaced, not appended");
        assert!(ports(&stack, "db").is_empty(), "line: `ports = []` publishes nothing");
        assert_eq!(stack.services["api"].command, ["serve", "--release"], "line: command");
        let r = &stack.services["db"].resources;
        assert_eq!((r.cpus, r.memory.as_ref().map(|m| m.get_ref().as_str())), (None, Some("4g")), "line: whole table");
        assert_eq!(stack.services["db"].environment["LOG"], "info", "line: no environment in prod");
    }

    #[test]
    fn an_unknown_profile_is_refused_with_the_known_ones() {
        let e = parse_err(STACK, Some("staging"));
        assert!(
            e.starts_with("docker/stack.toml: --profile \"staging\": the stack file has no [profiles.staging]; profiles: dev, prod; hint:"),
            "{e}"
        );
        let none = parse_err("[project]\nname = \"v7\"\n", Some("dev"));
        assert!(none.contains("profiles: (none)"), "{none}");
    }

    #[test]
    fn profile_keys_are_checked_with_line_and_column() {
        let e = parse_err(&STACK.replace("host_ip = ", "host = "), None);
        assert!(
            e.starts_with(
                "docker/stack.toml:17:1: unknown key `host` in [profiles.dev]; allowed: `host_ip`, `services`"
            ),
            "{e}"
        );
        let e = parse_err(&STACK.replace("command = [\"serve\", \"--release\"]", "image = \"other:2\""), None);
        assert!(
            e.starts_with("docker/stack.toml:24:1: unknown key `image` in [profiles.prod.services.api]; allowed: `environment`, `ports`, `resources`, `command`"),
            "a profile never changes the image: {e}"
        );
        let e = parse_err(&STACK.replace("[profiles.dev.services.db]", "[profiles.dev.services.dbx]"), None);
        assert!(
            e.starts_with("docker/stack.toml:18:24: profiles.dev.services.dbx: the stack has no service \"dbx\"; services: api, db"),
            "{e}"
        );
        let e = parse_err(&STACK.replace("host_ip = \"127.0.0.1\"", "host_ip = \"localhost\""), None);
        assert!(
            e.starts_with("docker/stack.toml:17:11: profiles.dev.host_ip: \"localhost\" is not an IPv4 address"),
            "{e}"
        );
        let e = parse_err(&STACK.replace("ports = []", "ports = 5432"), None);
        assert_eq!(
            e,
            "docker/stack.toml:26:9: profiles.prod.services.db.ports: expected an array of strings, found integer"
        );
        let e = parse_err(&format!("{STACK}[profiles.x.services]\ndb = 1\n"), None);
        assert!(
            e.starts_with("docker/stack.toml:29:6: profiles.x.services.db: expected a table, found integer"),
            "{e}"
        );
    }

    #[test]
    fn the_stack_under_every_profile_is_validated_at_the_profiles_line() {
        // Chosen or not: the mistake is in prod, the command asked for no profile.
        let e = parse_err(&STACK.replace("[\"0.0.0.0:80:3000\"]", "[\"80\"]"), None);
        assert!(
            e.starts_with("docker/stack.toml:23:10: services.api.ports: \"80\" is not `[ip:]host_port:container_port` (e.g. \"127.0.0.1:3000:3000\") (with [profiles.prod] applied)"),
            "{e}"
        );
        let e = parse_err(&STACK.replace("resources = { memory = \"4g\" }", "resources = { memory = \"lots\" }"), None);
        assert!(e.contains(":27:24: services.db.resources.memory: \"lots\" is not like 256m"), "{e}");
        assert!(e.ends_with("(with [profiles.prod] applied)"), "{e}");
        // Two ports that differ only by address (valid in the file alone) clash once dev moves
        // both to loopback.
        let clash = STACK.replace("ports = [\"0.0.0.0:5432:5432\"]", "ports = [\"127.0.0.2:3000:5432\"]");
        let alone = clash[..clash.find("[profiles.dev]").unwrap()].to_string();
        assert_eq!(parse(&alone, None).services.len(), 2);
        let e = parse_err(&clash, Some("prod"));
        let e2 = parse_err(&clash, None);
        assert_eq!(e, e2, "the same error whichever profile is chosen");
        assert!(
            e.starts_with("docker/stack.toml:13:10: services.api.ports: \"127.0.0.1:3000:3000\" publishes host port 3000, already published by services.db (\"127.0.0.1:3000:5432\", line 7) (with [profiles.dev] applied)\n  hint: each host port can be published once"),
            "{e}"
        );
    }

    /// docker/stack.toml's own profiles: dev is loopback and debug logs, prod publishes only
    /// the dashboard, Grafana and backend's gRPC ingestion.
    #[test]
    fn the_repository_profiles() {
        let ws = Workspace::for_tests("profiles");
        let dev = Stack::load_profile(&ws, Some("dev")).unwrap();
        for (name, svc) in &dev.services {
            assert!(svc.published().iter().all(|p| p.host_ip == "127.0.0.1"), "line: {name} on loopback");
        }
        for rust in ["backend", "analytics-engine"] {
            assert_eq!(dev.services[rust].environment["RUST_LOG"], "debug", "line: {rust} logs debug");
        }
        let prod = Stack::load_profile(&ws, Some("prod")).unwrap();
        let published: Vec<String> = prod
            .services
            .iter()
            .flat_map(|(n, s)| s.published().into_iter().map(move |p| format!("{n}:{}", p.container)))
            .collect();
        assert_eq!(published, ["backend:50053", "grafana:3000", "web:3000"], "line: no debug ports");
        for (name, svc) in &prod.services {
            assert!(svc.resources.cpus.is_some() && svc.resources.memory.is_some(), "line: {name} has limits");
            assert_ne!(svc.environment.get("RUST_LOG").map(String::as_str), Some("debug"), "line: {name}");
        }
    }
}
