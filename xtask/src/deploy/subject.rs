//! Which containers `verify` looks at: the stack `deploy` made, or the same stack started by
//! another tool under names of its own, podman-compose (`<project>_compose-<service>`) or
//! `podman kube play` of `export kube --target podman` (`<pod>-<container>`, both named as the
//! service: `backend-backend`). One mapping from the stack's services and volumes to podman's
//! names, so that every check of `verify.rs` is written once; the names come from the modules
//! that make them (`stack/names.rs`, `export/compose.rs`, `export/kube/pod.rs`), which
//! `cli/verify.rs` passes in (deploy and export do not use each other).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::stack::Stack;

/// Who started the containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Starter {
    /// `cargo xtask deploy`: health gated, labelled `v7.project`.
    Deploy,
    /// `podman-compose` (or docker compose) of the exported compose.yaml.
    Compose,
    /// `podman kube play` of `export kube --target podman`.
    KubePlay,
}

/// The stack as one starter named it.
#[derive(Clone, Debug)]
pub struct Subject {
    pub starter: Starter,
    /// `(service, container)` for every service of the stack, by service name; `retain` keeps
    /// those that have a container.
    pub containers: Vec<(String, String)>,
    /// The podman volume of each of the stack's named volumes.
    pub volumes: BTreeMap<String, String>,
    /// Where verify remembers how many marker events it left stored (`verify-kept`): one file
    /// per set of volumes, since each starter keeps its data in volumes of its own.
    pub kept: PathBuf,
    /// `(label, value)` every container must carry when the xtask did not start it, so that
    /// verify never runs its checks (which stop and start analytics-engine) on someone else's
    /// containers of the same name.
    pub owner: Option<(String, String)>,
}

impl Subject {
    /// Every service and volume of `stack`, named by `container` and `volume`.
    pub fn new(
        starter: Starter,
        stack: &Stack,
        container: impl Fn(&str) -> String,
        volume: impl Fn(&str) -> String,
        kept: PathBuf,
    ) -> Subject {
        Subject {
            starter,
            containers: stack.services.keys().map(|s| (s.clone(), container(s))).collect(),
            volumes: stack.volumes.keys().map(|v| (v.clone(), volume(v))).collect(),
            kept,
            owner: None,
        }
    }

    /// Keeps the services whose container `exists`.
    pub fn retain(&mut self, mut exists: impl FnMut(&str) -> bool) {
        self.containers.retain(|(_, c)| exists(c));
    }

    pub fn has(&self, service: &str) -> bool {
        self.containers.iter().any(|(s, _)| s == service)
    }

    /// The container of `service`; a service without one is named as deploy would name it, so
    /// podman's own error says what is missing.
    pub fn container(&self, service: &str) -> String {
        let found = self.containers.iter().find(|(s, _)| s == service).map(|(_, c)| c.clone());
        found.unwrap_or_else(|| format!("{service} (no container)"))
    }

    /// The podman volume of a stack volume (the name itself when the stack has none such).
    pub fn volume(&self, volume: &str) -> String {
        self.volumes.get(volume).cloned().unwrap_or_else(|| volume.to_string())
    }

    /// Whose containers are verified, for messages.
    pub fn what(&self) -> &'static str {
        match self.starter {
            Starter::Deploy => "deploy's containers",
            Starter::Compose => "the compose project's containers",
            Starter::KubePlay => "the containers of `podman kube play`",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = r#"
[project]
name = "p"
[volumes.data]
[services.db]
image = "db:1"
volumes = ["data:/data"]
[services.api]
image = "api:1"
depends_on = ["db"]
"#;

    #[test]
    fn one_mapping_names_containers_and_volumes() {
        let stack = Stack::parse("stack.toml", STACK).unwrap();
        let deploy = Subject::new(
            Starter::Deploy,
            &stack,
            |s| stack.container_name(s),
            |v| stack.volume_name(v),
            PathBuf::from("k"),
        );
        assert_eq!(deploy.container("db"), "p-db", "line: deploy's container");
        assert_eq!(deploy.volume("data"), "p-data", "line: deploy's volume");
        let mut kube = Subject::new(
            Starter::KubePlay,
            &stack,
            |s| format!("{s}-{s}"),
            |v| format!("p-kube-{v}"),
            PathBuf::from("k"),
        );
        assert_eq!(kube.container("api"), "api-api", "line: kube play's container");
        assert_eq!(kube.volume("data"), "p-kube-data", "line: kube play's volume");
        kube.retain(|c| c == "db-db");
        assert_eq!(kube.containers, [("db".to_string(), "db-db".to_string())], "line: only those with a container");
        assert!(kube.has("db") && !kube.has("api"));
        assert_eq!(kube.container("api"), "api (no container)", "line: a missing one says so");
    }
}
