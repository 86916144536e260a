//! What the stack's objects are called: containers, networks and volumes (`<project>-<name>`),
//! the registry-free images (`localhost/<project>-registry-free/<service>:latest`) and their base,
//! and the labels the xtask puts on everything it makes, so that `status`, `down` and the tests'
//! cleanup find exactly what is theirs.

use super::Stack;

/// On every container, network, volume and image the xtask makes: `v7.project=<project.name>`.
/// podman puts a build's `--label` on the builder stages' and each step's intermediate images
/// too, so `podman images -a --filter label=v7.project=NAME` lists everything a project's builds
/// left, dangling intermediates included (docs/xtask.md).
pub const PROJECT_LABEL: &str = "v7.project";
/// On every container: the service it runs.
pub const SERVICE_LABEL: &str = "v7.service";
/// On every container: the fingerprint of everything that decides it (`deploy/spec.rs`).
pub const FINGERPRINT_LABEL: &str = "v7.fingerprint";
/// On every container: the fingerprint per aspect (`image=… environment=…`), so that deploy
/// can say what changed.
pub const ASPECTS_LABEL: &str = "v7.fingerprint.aspects";
/// On every image a build commits: the fingerprint of its inputs (`images/build/fingerprint.rs`).
pub const INPUTS_LABEL: &str = "v7.inputs";
/// On registry-free images: `v7.mode=registry-free`.
pub const MODE_LABEL: &str = "v7.mode";
/// On every object of the compose export (`export/compose.rs`): its compose project. podman
/// copies an image's labels onto its containers, so those carry `v7.project` too; this label
/// tells deploy they are not its own.
pub const COMPOSE_PROJECT_LABEL: &str = "v7.compose.project";
/// On every object of the kube export's podman target (`export/kube/`), for the same reason.
pub const KUBE_PROJECT_LABEL: &str = "v7.kube.project";

impl Stack {
    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{service}", self.project.name)
    }

    /// The container a replacement keeps (stopped) until the new one is healthy.
    pub fn previous_container_name(&self, service: &str) -> String {
        format!("{}-{service}-previous", self.project.name)
    }

    /// The podman secret of a `[secrets.NAME]`.
    pub fn secret_name(&self, secret: &str) -> String {
        format!("{}-{secret}", self.project.name)
    }

    pub fn network_name(&self, network: &str) -> String {
        format!("{}-{network}", self.project.name)
    }

    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}-{volume}", self.project.name)
    }

    /// `v7.project=<project.name>`, as `--label` and `--filter label=` take it.
    pub fn project_label(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.project.name)
    }

    /// The local name of a service's registry-free image: `localhost/v7-registry-free/backend:latest`.
    pub fn registry_free_image(&self, service: &str) -> String {
        format!("localhost/{}-registry-free/{service}:latest", self.project.name)
    }

    /// The Debian base every registry-free image is built on: `localhost/v7-registry-free/base:bookworm`.
    pub fn registry_free_base(&self) -> String {
        format!("localhost/{}-registry-free/base:{}", self.project.name, self.project.debian_suite)
    }
}

#[cfg(test)]
mod tests {
    use crate::stack::Stack;
    use crate::util::workspace::Workspace;

    #[test]
    fn names_carry_the_project() {
        let stack = Stack::load(&Workspace::for_tests("names")).unwrap();
        assert_eq!(stack.container_name("backend"), "v7-backend");
        assert_eq!(stack.network_name("frontend"), "v7-frontend");
        assert_eq!(stack.volume_name("nats-data"), "v7-nats-data");
        assert_eq!(stack.project_label(), "v7.project=v7");
        assert_eq!(stack.registry_free_image("nats"), "localhost/v7-registry-free/nats:latest");
        assert_eq!(stack.registry_free_base(), "localhost/v7-registry-free/base:bookworm");
    }
}
