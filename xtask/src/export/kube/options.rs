//! What `export kube` is asked for: the target (a real cluster, or `podman kube play` here),
//! the mode, and the cluster's settings (registry prefix and tag of the service images, storage
//! class, namespace, whether the Secrets exist already).

use crate::stack::Mode;

/// Where the manifests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A real cluster: a Namespace, Deployments and StatefulSets, ConfigMaps, Secrets,
    /// NetworkPolicies; images from a registry; no hostPath, no hostPort.
    Cluster,
    /// `podman kube play` on this machine (podman 4.3: Pods, PersistentVolumeClaims): the
    /// images on this machine, the checkout's files and deploy's secret files as hostPath
    /// volumes, the stack's published ports as hostPorts.
    Podman,
}

impl Target {
    pub fn parse(text: &str) -> Option<Target> {
        match text {
            "cluster" => Some(Target::Cluster),
            "podman" => Some(Target::Podman),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub mode: Mode,
    /// Prefix of the service images (`ghcr.io/owner/v7`); `None`: the one the stack file names.
    pub registry: Option<String>,
    /// Tag of the service images (`cargo xtask push` publishes the git short revision).
    pub tag: String,
    /// `storageClassName` of the volume claims; `None`: the cluster's default class.
    pub storage_class: Option<String>,
    pub namespace: String,
    /// Reference Secrets made beforehand instead of writing placeholders.
    pub existing_secrets: bool,
    /// The cluster's DNS domain: nginx (web) resolves backend by its full name.
    pub cluster_domain: String,
    /// podman: the directory of deploy's secret files (`.v7/stacks/<project>/secret-files`
    /// of the checkout when `None`).
    pub secret_files: Option<String>,
}

impl Options {
    /// The podman target in `mode` (images as built on this machine).
    pub fn podman(mode: Mode) -> Options {
        Options {
            target: Target::Podman,
            mode,
            registry: None,
            tag: String::new(),
            storage_class: None,
            namespace: String::new(),
            existing_secrets: false,
            cluster_domain: String::new(),
            secret_files: None,
        }
    }

    /// The cluster target with the stack's registry, `tag`, and namespace `namespace`.
    pub fn cluster(tag: &str, namespace: &str) -> Options {
        Options {
            target: Target::Cluster,
            mode: Mode::Registry,
            registry: None,
            tag: tag.to_string(),
            storage_class: None,
            namespace: namespace.to_string(),
            existing_secrets: false,
            cluster_domain: "cluster.local".to_string(),
            secret_files: None,
        }
    }
}
