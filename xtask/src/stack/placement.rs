//! Which image each service runs in a mode, and which services are left out and why. `deploy`,
//! `bundle` and `export` all ask here, so they agree on what the stack is in each mode.

use super::{Mode, Stack};

/// What runs for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Image(String),
    /// Left out of this mode, with the reason.
    Skipped(String),
}

/// The service's image in `mode`: the production image in registry mode; in registry-free mode
/// its registry-free image, or its production image when it has no registry-free section, or
/// nothing (with the manifest's reason) when it cannot be made from Debian packages.
pub fn placement(stack: &Stack, service: &str, mode: Mode) -> Placement {
    let svc = &stack.services[service];
    if mode == Mode::Registry {
        return Placement::Image(svc.image.get_ref().clone());
    }
    match &svc.registry_free {
        Some(r) => match &r.unavailable {
            Some(why) => Placement::Skipped(why.clone()),
            None => Placement::Image(stack.registry_free_image(service)),
        },
        None => Placement::Image(svc.image.get_ref().clone()),
    }
}

/// The stack in one mode: the services that run, in start order, with their images, and the
/// services left out with why. A service that depends on one left out is left out too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    pub run: Vec<(&'a str, String)>,
    pub skipped: Vec<(&'a str, String)>,
}

pub fn plan(stack: &Stack, mode: Mode) -> Plan<'_> {
    let order = stack.start_order().expect("the stack file was validated: no cycles");
    let mut plan = Plan { run: Vec::new(), skipped: Vec::new() };
    for name in order {
        match placement(stack, name, mode) {
            Placement::Skipped(why) => plan.skipped.push((name, why)),
            Placement::Image(image) => {
                let missing =
                    stack.services[name].depends_on.iter().find(|d| plan.skipped.iter().any(|(s, _)| s == d.get_ref()));
                match missing {
                    Some(dep) => plan
                        .skipped
                        .push((name, format!("it depends on {}, which is not available in this mode", dep.get_ref()))),
                    None => plan.run.push((name, image)),
                }
            }
        }
    }
    plan
}

impl Plan<'_> {
    /// The images the plan runs, once each, in start order.
    pub fn images(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, image) in &self.run {
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace::Workspace;

    const STACK: &str = r#"
[project]
name = "v7"
[services.nats]
image = "docker.io/library/nats:2.10-alpine"
registry_free = { dockerfile = "docker/nats/Dockerfile.registry-free", context = "docker/nats" }
[services.grafana]
image = "docker.io/grafana/grafana:11.1.0"
registry_free = { unavailable = "no Debian package" }
depends_on = ["nats"]
[services.viewer]
image = "ghcr.io/x/api:latest"
depends_on = ["grafana"]
[services.api]
image = "ghcr.io/x/api:latest"
depends_on = ["nats"]
"#;

    #[test]
    fn registry_mode_runs_every_production_image() {
        let stack = Stack::parse("docker/stack.toml", STACK).unwrap();
        let plan = plan(&stack, Mode::Registry);
        assert_eq!(
            plan.run,
            [
                ("nats", "docker.io/library/nats:2.10-alpine".to_string()),
                ("api", "ghcr.io/x/api:latest".to_string()),
                ("grafana", "docker.io/grafana/grafana:11.1.0".to_string()),
                ("viewer", "ghcr.io/x/api:latest".to_string()),
            ]
        );
        assert!(plan.skipped.is_empty());
        assert_eq!(
            plan.images(),
            ["docker.io/library/nats:2.10-alpine", "ghcr.io/x/api:latest", "docker.io/grafana/grafana:11.1.0"]
        );
    }

    #[test]
    fn registry_free_mode_leaves_out_what_cannot_be_made_and_its_dependents() {
        let stack = Stack::parse("docker/stack.toml", STACK).unwrap();
        let plan = plan(&stack, Mode::RegistryFree);
        assert_eq!(
            plan.run,
            [
                ("nats", "localhost/v7-registry-free/nats:latest".to_string()),
                ("api", "ghcr.io/x/api:latest".to_string())
            ]
        );
        assert_eq!(
            plan.skipped,
            [
                ("grafana", "no Debian package".to_string()),
                ("viewer", "it depends on grafana, which is not available in this mode".to_string())
            ]
        );
    }

    #[test]
    fn the_repository_runs_without_grafana_when_registry_free() {
        let stack = Stack::load(&Workspace::for_tests("placement")).unwrap();
        assert!(
            matches!(placement(&stack, "grafana", Mode::RegistryFree), Placement::Skipped(why) if why.contains("no Debian package"))
        );
        assert_eq!(
            placement(&stack, "backend", Mode::RegistryFree),
            Placement::Image("localhost/v7-registry-free/backend:latest".into())
        );
        assert_eq!(
            placement(&stack, "backend", Mode::Registry),
            Placement::Image("ghcr.io/hellocplusplus0/v7/backend:latest".into())
        );
        let plan = plan(&stack, Mode::RegistryFree);
        let running: Vec<&str> = plan.run.iter().map(|(n, _)| *n).collect();
        assert_eq!(running, ["clickhouse", "nats", "analytics-engine", "backend", "prometheus", "web"]);
    }
}
