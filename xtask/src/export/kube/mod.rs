//! The stack as Kubernetes manifests, for two targets (`options.rs`) built from one model:
//!
//! - **cluster** (`export kube`): a Namespace that enforces the Pod Security "restricted"
//!   profile; ConfigMaps of the files docker/stack.toml mounts (`./docker/...`); Secrets (the
//!   placeholder `REPLACE_ME`, or none with `--existing-secrets`: never a value); per service,
//!   in start order, a ClusterIP Service and a Deployment (no named volume: web, backend,
//!   analytics-engine) or a StatefulSet whose volumeClaimTemplates are its named volumes (NATS,
//!   ClickHouse, Prometheus, Grafana); NetworkPolicies that keep the stack's networks apart
//!   (`objects.rs`). The service images (those the stack builds) are named as `cargo xtask push`
//!   names them (`images/push/plan.rs`: the stack's image, or `--registry PREFIX` + `/<service>`)
//!   with the tag it publishes (the git short revision, `-dirty` when tracked files changed); the others are the stack's pinned images. A `latest`
//!   or `localhost/` image, registry-free mode, or a Pod template that breaks the restricted
//!   profile (`restricted.rs`) is an error, not a manifest.
//! - **podman** (`export kube --target podman`): what `podman kube play` 4.3 runs here: a Pod per
//!   service (named as the service, so `nats`, `backend`... resolve on a DNS network),
//!   PersistentVolumeClaims as podman volumes `<project>-kube-<volume>` (never deploy's), the
//!   checkout's files and deploy's secret files as hostPath volumes (4.3 ignores `subPath` on
//!   ConfigMap volumes and crashes on Secret volumes: measured), the stack's published ports as
//!   hostPorts, the images on this machine. The same containers, probes and securityContext.
//!
//! The Pod templates are `pod.rs`; what the stack file does not say (numeric users, writable
//! directories, HTTP health endpoints, volume sizes) is `facts.rs`.

pub mod facts;
pub mod objects;
pub mod options;
pub mod pod;
pub mod restricted;

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::export::yaml::{document, num, s, strs, Map, Node};
use crate::export::{header, labels, mounts, secret_mounts, used, with_profile, Mount};
use crate::images::push::plan::repository;
use crate::stack::placement::plan;
use crate::stack::{Mode, Stack};
use facts::{run_as, volume_size};
use objects::{
    config_map, namespace, network_label, network_policies, object, podman_labels, secret_object, service, Source,
};
use options::{Options, Target};
use pod::{config_map_name, pod_spec, podman_claim, Files};

/// The manifests as YAML documents separated by `---`, the first with the header comments.
pub fn kube(stack: &Stack, root: &Path, opts: &Options) -> Result<String> {
    let files = if opts.target == Target::Cluster { read_files(stack, root, opts.mode)? } else { Files::new() };
    let (head, docs) = model(stack, root, opts, &files)?;
    Ok(render(&head, docs))
}

/// The documents, separated by `---`; `head` as comments above the first.
pub fn render(head: &[String], docs: Vec<Node>) -> String {
    let mut out = String::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&document(if i == 0 { head } else { &[] }, doc));
    }
    out
}

/// Reads what the bind mounts of the services that run name: each file, or each file of a
/// directory (sorted, recursively). A ConfigMap is text: a file that is not UTF-8 is an error.
pub fn read_files(stack: &Stack, root: &Path, mode: Mode) -> Result<Files> {
    let mut files = Files::new();
    for (name, _) in plan(stack, mode).run {
        for m in mounts(stack, root, name) {
            let Mount::Bind { source, .. } = m else { continue };
            let path = Path::new(&source);
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "kube: services.{name}.volumes: cannot read {} for its ConfigMap; hint: the file must exist and be UTF-8 text",
                        p.display()
                    )
                })
            };
            let held = if path.is_dir() {
                let mut entries = Vec::new();
                walk(path, path, &mut entries)?;
                let mut out = Vec::new();
                for (rel, p) in entries {
                    out.push((rel, read(&p)?));
                }
                Source::Dir(out)
            } else {
                Source::File(read(path)?)
            };
            files.insert(source, held);
        }
    }
    Ok(files)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("kube: cannot list {}; hint: check its permissions", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(base, &p, out)?;
        } else {
            let rel = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

/// The image a service runs on the target: on a cluster the built services' images as
/// `push` publishes them, the others as pinned in the stack file; on podman what runs here.
pub fn image(stack: &Stack, name: &str, planned: &str, opts: &Options) -> Result<String> {
    if opts.target == Target::Podman {
        return Ok(planned.to_string());
    }
    let svc = &stack.services[name];
    if svc.build.is_some() {
        if let Some(r) = opts.registry.as_deref().filter(|r| r.starts_with("localhost")) {
            bail!("kube: --registry {r:?}: a cluster cannot pull from this machine's localhost; hint: name the registry `cargo xtask push` publishes to, e.g. --registry ghcr.io/OWNER/v7");
        }
        // Where `cargo xtask push` publishes it (the same function decides).
        let repo = repository(name, svc.image.get_ref(), opts.registry.as_deref()).map_err(|e| {
            anyhow::anyhow!("kube: {e}; hint: `cargo xtask push` publishes there, so both need the same name")
        })?;
        if opts.tag.is_empty() || opts.tag == "latest" || !valid_tag(&opts.tag) {
            bail!("kube: --tag {:?}: a cluster needs the tag `cargo xtask push` published (a git short revision or a version), not latest; hint: leave --tag out to use the git short revision", opts.tag);
        }
        return Ok(format!("{repo}:{}", opts.tag));
    }
    let pinned = svc.image.get_ref();
    let last = pinned.rsplit('/').next().unwrap_or(pinned);
    let tag = last.split_once(':').map(|(_, t)| t);
    if pinned.starts_with("localhost/") || !(last.contains('@') || tag.is_some_and(|t| t != "latest")) {
        bail!("kube: services.{name}.image = {pinned:?}: a cluster needs an image it can pull by a pinned tag (not latest, not localhost/); hint: pin a version in docker/stack.toml");
    }
    Ok(pinned.clone())
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn dns_label(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The header comments and the documents of the target.
pub fn model(stack: &Stack, root: &Path, opts: &Options, files: &Files) -> Result<(Vec<String>, Vec<Node>)> {
    if opts.target == Target::Cluster && opts.mode == Mode::RegistryFree {
        bail!("kube: registry-free images exist only on this machine, a cluster cannot pull them; hint: `cargo xtask export kube --target podman --registry-free` runs them here with `podman kube play`, or leave --registry-free out for a cluster");
    }
    let plan = plan(stack, opts.mode);
    let cluster = opts.target == Target::Cluster;
    if cluster && !dns_label(&opts.namespace) {
        bail!("kube: --namespace {:?}: not a DNS label (lowercase letters, digits and `-`, at most 63); hint: e.g. --namespace v7", opts.namespace);
    }
    if let Some(class) = opts.storage_class.as_deref().filter(|c| !c.split('.').all(dns_label) || c.len() > 253) {
        bail!("kube: --storage-class {class:?}: not a DNS name; hint: `kubectl get storageclass` lists the cluster's classes");
    }
    let ns = cluster.then_some(opts.namespace.as_str());
    let mut head = header("kube", root, opts.mode, &plan.skipped);
    head.retain(|l| !cluster || !(l.starts_with("Bind mounts are absolute paths") || l.starts_with("Registry mode:")));
    if !cluster {
        head[0] = head[0].replace("`cargo xtask export kube", "`cargo xtask export kube --target podman");
    } else if opts.existing_secrets {
        head[0] = head[0].replace("`cargo xtask export kube", "`cargo xtask export kube --existing-secrets");
    }
    head.extend(header_lines(stack, opts, cluster));
    if stack.profile.is_some() {
        let command = head[0].split('`').nth(1).unwrap_or("cargo xtask export kube").to_string();
        head = with_profile(stack, head, &command);
    }
    let mut docs: Vec<Node> = Vec::new();
    if cluster {
        docs.push(namespace(stack, &opts.namespace));
    }
    let uses_secret = |x: &str| plan.run.iter().any(|(n, _)| secret_mounts(stack, n).iter().any(|(s, _)| s == x));
    if cluster && !opts.existing_secrets {
        for secret in used(stack.secrets.keys(), uses_secret) {
            docs.push(secret_object(stack, secret, ns));
        }
    }
    if !cluster {
        let uses_volume = |v: &str| {
            plan.run.iter().any(|(n, _)| {
                mounts(stack, root, n).iter().any(|m| matches!(m, Mount::Named { volume, .. } if volume == v))
            })
        };
        for vol in used(stack.volumes.keys(), uses_volume) {
            let name = podman_claim(stack, vol);
            docs.push(object(
                "v1",
                "PersistentVolumeClaim",
                &name,
                None,
                podman_labels(stack, None),
                claim_spec(vol, None),
            ));
        }
    }
    let mut networks: Vec<String> = Vec::new();
    for (name, planned) in &plan.run {
        let image = image(stack, name, planned, opts)?;
        let svc = &stack.services[*name];
        let mut pod_labels = Map::new()
            .kv(crate::stack::names::PROJECT_LABEL, s(&stack.project.name))
            .kv(crate::stack::names::SERVICE_LABEL, s(*name));
        let nets: Vec<String> = if svc.networks.is_empty() {
            vec!["default".to_string()]
        } else {
            svc.networks.iter().map(|n| n.get_ref().clone()).collect()
        };
        for n in &nets {
            pod_labels.put(&network_label(n), s("true"));
            if !networks.contains(n) {
                networks.push(n.clone());
            }
        }
        let user = run_as(name, opts.mode);
        if cluster && user.is_none() {
            bail!("kube: services.{name}: no numeric UID known for its image {image}; the restricted profile needs one (runAsNonRoot); hint: add the service to USERS in xtask/src/export/kube/facts.rs, or give its Dockerfile a numeric `USER uid:gid`");
        }
        let (spec, claims) = pod_spec(stack, root, name, &image, opts, user, files);
        if cluster {
            let broken = restricted::violations(&spec);
            if !broken.is_empty() {
                bail!("kube: the Pod template of {name} breaks the Pod Security restricted profile: {}; hint: this is a bug of xtask/src/export/kube", broken.join("; "));
            }
            for m in mounts(stack, root, name) {
                if let Mount::Bind { source, .. } = m {
                    let from = source.strip_prefix(&format!("{}/", root.display())).unwrap_or(&source).to_string();
                    let held = files.get(&source).with_context(|| format!("kube: services.{name}.volumes: {from} was not read; hint: a bug of export kube (read_files)"))?;
                    let cm = config_map_name(name, &source);
                    if docs.iter().any(|d| {
                        d.at("kind").and_then(Node::text) == Some("ConfigMap")
                            && d.at("metadata.name").and_then(Node::text) == Some(cm.as_str())
                    }) {
                        bail!("kube: services.{name}.volumes: two mounts make ConfigMap {cm} ({from} is one); hint: give the mounted files different names");
                    }
                    docs.push(config_map(stack, &cm, ns, &from, held));
                }
            }
            docs.push(service(stack, name, ns));
            docs.push(workload(stack, name, opts, pod_labels.node(), spec, &claims));
        } else {
            let meta = Map::new().kv("name", s(*name)).kv("labels", podman_labels(stack, Some(name)));
            docs.push(
                Map::new()
                    .kv("apiVersion", s("v1"))
                    .kv("kind", s("Pod"))
                    .kv("metadata", meta.node())
                    .kv("spec", spec)
                    .node(),
            );
        }
    }
    if cluster {
        docs.extend(network_policies(stack, &networks, ns));
    }
    Ok((head, docs))
}

fn header_lines(stack: &Stack, opts: &Options, cluster: bool) -> Vec<String> {
    if !cluster {
        return vec![
            "For `podman kube play` on this machine (podman 4.3): one Pod per service, named as the service; run it on a network with DNS,".to_string(),
            format!("e.g. `podman network create {0}-kube && podman kube play --network {0}-kube FILE`, remove it with `podman kube down FILE`.", stack.project.name),
            format!("Volumes are podman volumes {}-kube-NAME (not deploy's): `podman kube down` keeps them, `podman volume rm` removes them.", stack.project.name),
            "Secrets: deploy's secret files (hostPath), which this export makes with deploy's generator when missing.".to_string(),
            "Probes are the stack's health commands (podman turns httpGet into curl, which the images lack); `podman healthcheck run POD-CONTAINER` runs one.".to_string(),
            "podman has no NetworkPolicy: the stack's networks are one network here.".to_string(),
        ];
    }
    let mut h = vec![
        format!("For a Kubernetes cluster: `kubectl apply -f FILE` makes namespace {} and everything in it.", opts.namespace),
        format!(
            "Images: the service images as `cargo xtask push` publishes them (tag {}), the others pinned in docker/stack.toml.",
            opts.tag
        ),
        "Every Pod meets the Pod Security restricted profile, which the namespace enforces; the NetworkPolicies keep the stack's".to_string(),
        format!(
            "networks ({}) apart: a Pod is reached only from Pods of a network it is on.",
            stack.networks.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ];
    h.push(if opts.existing_secrets {
        "The Secrets are not in this file: make them first (the kubectl command is in the placeholder export without --existing-secrets).".to_string()
    } else {
        "The Secrets hold the placeholder REPLACE_ME, never a value: replace it before applying, or run the kubectl command above each Secret after each apply (which puts the placeholder back) and restart the Pods that mount it.".to_string()
    });
    h
}

/// A claim's spec: ReadWriteOnce, the volume's size, the storage class when given.
fn claim_spec(volume: &str, class: Option<&str>) -> Vec<(&'static str, Node)> {
    let mut spec = Map::new().kv("accessModes", strs(["ReadWriteOnce"]));
    if let Some(class) = class {
        spec.put("storageClassName", s(class));
    }
    spec.put("resources", Map::new().kv("requests", Map::new().kv("storage", s(volume_size(volume))).node()).node());
    vec![("spec", spec.node())]
}

/// A Deployment, or a StatefulSet when the service has named volumes (one claim per volume,
/// per replica); one replica each (the stack runs one of each).
fn workload(stack: &Stack, name: &str, opts: &Options, pod_labels: Node, spec: Node, claims: &[String]) -> Node {
    let selector = labels(stack, Some(name));
    let template = Map::new().kv("metadata", Map::new().kv("labels", pod_labels).node()).kv("spec", spec);
    let mut w = Map::new().kv("replicas", num(1));
    let kind = if claims.is_empty() {
        w.put("revisionHistoryLimit", num(3));
        "Deployment"
    } else {
        w.put("serviceName", s(name));
        "StatefulSet"
    };
    w.put("selector", Map::new().kv("matchLabels", selector.clone()).node());
    w.put("template", template.node());
    if !claims.is_empty() {
        let templates = claims.iter().map(|c| {
            let mut m = Map::new().kv("metadata", Map::new().kv("name", s(c)).kv("labels", labels(stack, None)).node());
            for (k, v) in claim_spec(c, opts.storage_class.as_deref()) {
                m.put(k, v);
            }
            m.node()
        });
        w.put("volumeClaimTemplates", Node::Seq(templates.collect()));
    }
    object("apps/v1", kind, name, Some(&opts.namespace), selector, vec![("spec", w.node())])
}

#[cfg(test)]
mod tests;
