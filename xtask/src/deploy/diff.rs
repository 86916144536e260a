//! Desired against actual: for every service, whether its container is kept, started, created
//! or replaced, and which of the project's containers are removed, each with the reason. A pure
//! function of the specs (`spec.rs`) and what podman lists (`actual.rs`): `--dry-run` prints
//! it, the tests compare it, and the rollout (`rollout.rs`) carries it out.

use super::actual::Container;
use super::spec::Spec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Same fingerprint and running: not touched (same container ID, not restarted).
    Keep,
    /// Same fingerprint but stopped: started again.
    Start,
    Create,
    /// Replaced; the old container is kept, stopped, until the new one is healthy.
    Replace,
    /// A container of the project that the manifest (in this mode) does not have.
    Remove,
}

impl Action {
    pub fn word(&self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Start => "start",
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Remove => "remove",
        }
    }

    /// Whether the service's container is (re)started by this deploy, so it must pass its
    /// health gate.
    pub fn starts(&self) -> bool {
        matches!(self, Action::Start | Action::Create | Action::Replace)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The service; for a removal of a container the xtask did not label, its name.
    pub service: String,
    pub container: String,
    pub action: Action,
    pub why: String,
}

/// One change per desired service (in `specs` order, the start order), then the removals.
/// `left_out`: the services the mode does not run, with the reason (their containers go).
pub fn diff(specs: &[Spec], actual: &[Container], left_out: &[(&str, String)], force_recreate: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    for spec in specs {
        let found = actual.iter().find(|c| c.name == spec.container);
        let (action, why) = match found {
            None => (Action::Create, "no container yet".to_string()),
            Some(_) if force_recreate => (Action::Replace, "--force-recreate".to_string()),
            Some(c) if c.state == "created" => (Action::Replace, "left in state Created".to_string()),
            Some(c) if c.fingerprint != spec.fingerprint() => {
                let changed = spec.changed_aspects(&c.aspects);
                let why = if changed.is_empty() {
                    "its fingerprint differs".to_string()
                } else {
                    format!("{} changed", changed.join(", "))
                };
                (Action::Replace, why)
            }
            Some(c) if c.running() => (Action::Keep, "unchanged".to_string()),
            Some(c) => (Action::Start, format!("unchanged but {}", c.state)),
        };
        changes.push(Change { service: spec.service.clone(), container: spec.container.clone(), action, why });
    }
    for c in actual {
        if specs.iter().any(|s| s.container == c.name) || c.name.ends_with("-previous") || c.name.ends_with("-next") {
            continue;
        }
        // `actual::containers` keeps only containers with a service label, so every one here names
        // the service it was made for.
        let why = match left_out.iter().find(|(s, _)| *s == c.service) {
            Some((_, reason)) => format!("not run in this mode: {reason}"),
            None => format!("the manifest has no service {}", c.service),
        };
        changes.push(Change { service: c.service.clone(), container: c.name.clone(), action: Action::Remove, why });
    }
    changes
}

/// The plan as `--dry-run` and every deploy print it: one line per service.
pub fn describe(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        out.push_str(&format!("  {:<8} {:<18} {}\n", c.action.word(), c.service, c.why));
    }
    out
}

/// Whether the deploy changes nothing.
pub fn is_noop(changes: &[Change]) -> bool {
    changes.iter().all(|c| c.action == Action::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(service: &str, env: &str) -> Spec {
        Spec {
            service: service.into(),
            container: format!("v7-{service}"),
            image: "img".into(),
            aspects: vec![("image", vec!["img@1".into()]), ("environment", vec![env.into()])],
        }
    }

    fn running(s: &Spec) -> Container {
        Container {
            name: s.container.clone(),
            service: s.service.clone(),
            state: "running".into(),
            fingerprint: s.fingerprint(),
            aspects: s.aspect_digests(),
            ..Container::default()
        }
    }

    #[test]
    fn unchanged_is_kept_changed_is_replaced_and_strays_are_removed() {
        let (nats, backend, web) = (spec("nats", "A=1"), spec("backend", "B=1"), spec("web", "W=1"));
        let mut stopped = running(&spec("nats", "A=1"));
        stopped.state = "exited".into();
        let actual = vec![
            running(&spec("backend", "B=0")),
            running(&web),
            Container { name: "v7-grafana".into(), service: "grafana".into(), ..Container::default() },
            Container { name: "v7-old".into(), service: "old".into(), ..Container::default() },
            Container { name: "v7-web-previous".into(), service: "web".into(), ..Container::default() },
        ];
        let left_out = [("grafana", "no Debian package".to_string())];
        let changes = diff(&[nats.clone(), backend.clone(), web.clone()], &actual, &left_out, false);
        let summary: Vec<(&str, &str, &str)> =
            changes.iter().map(|c| (c.service.as_str(), c.action.word(), c.why.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("nats", "create", "no container yet"),
                ("backend", "replace", "environment changed"),
                ("web", "keep", "unchanged"),
                ("grafana", "remove", "not run in this mode: no Debian package"),
                ("old", "remove", "the manifest has no service old"),
            ],
            "a -previous container is the rollout's, not a stray"
        );
        let again = diff(std::slice::from_ref(&nats), &[stopped], &[], false);
        assert_eq!((again[0].action.clone(), again[0].why.as_str()), (Action::Start, "unchanged but exited"));
        let forced = diff(std::slice::from_ref(&web), &[running(&web)], &[], true);
        assert_eq!(forced[0].action, Action::Replace);
        assert!(is_noop(&diff(std::slice::from_ref(&web), &[running(&web)], &[], false)));
        assert!(describe(&changes).contains("  replace  backend            environment changed\n"));
    }
}
