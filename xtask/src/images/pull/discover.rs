//! Which images the stack needs: the external images of every stage of every Dockerfile the
//! stack builds (with `pull.build_args` and the service's `build.args`), then the images of the
//! services that are not built (infrastructure), normalised and de-duplicated, digests kept.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::images::dockerfile::base_images::external_images;
use crate::oci::ImageRef;
use crate::stack::Stack;
use crate::util::workspace::Workspace;

/// An image the stack needs, and where it is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub image: ImageRef,
    /// `backend/Dockerfile:7`, `services.nats`, `--image`.
    pub used_by: Vec<String>,
}

/// A Dockerfile to read: its path (for messages), text and build arguments.
pub struct DockerfileInput {
    pub path: String,
    pub text: String,
    pub build_args: BTreeMap<String, String>,
}

/// The images of the Dockerfiles, then the infrastructure images, de-duplicated in order.
pub fn needed_images(dockerfiles: &[DockerfileInput], infra: &[(String, String)]) -> Result<Vec<Needed>> {
    let mut out: Vec<Needed> = Vec::new();
    let mut add = |image: ImageRef, used: String| match out.iter_mut().find(|n| n.image == image) {
        Some(n) => n.used_by.push(used),
        None => out.push(Needed { image, used_by: vec![used] }),
    };
    for df in dockerfiles {
        let images = external_images(&df.text, &df.build_args)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", df.path, e.line, e.message))?;
        for ext in images {
            add(ext.image, format!("{}:{}", df.path, ext.line));
        }
    }
    for (service, reference) in infra {
        let image = ImageRef::parse(reference).map_err(|e| anyhow::anyhow!("services.{service}.image: {e}"))?;
        add(image, format!("services.{service}"));
    }
    Ok(out)
}

/// Every external image of the stack.
pub fn discover(ws: &Workspace, stack: &Stack) -> Result<Vec<Needed>> {
    let mut dockerfiles = Vec::new();
    let mut infra = Vec::new();
    for (name, svc) in &stack.services {
        match &svc.build {
            Some(build) => {
                let text = std::fs::read_to_string(ws.path(&build.dockerfile)).with_context(|| {
                    format!("{}: cannot read the Dockerfile of services.{name} (build.dockerfile)", build.dockerfile)
                })?;
                let mut build_args = stack.pull.build_args.clone();
                build_args.extend(build.args.clone());
                dockerfiles.push(DockerfileInput { path: build.dockerfile.clone(), text, build_args });
            }
            None => infra.push((name.clone(), svc.image.get_ref().clone())),
        }
    }
    needed_images(&dockerfiles, &infra)
}

/// `--image REF...` instead of the stack's images.
pub fn given(references: &[String]) -> Result<Vec<Needed>> {
    let mut out: Vec<Needed> = Vec::new();
    for r in references {
        let image = ImageRef::parse(r).map_err(|e| anyhow::anyhow!("--image {e}"))?;
        if !out.iter().any(|n| n.image == image) {
            out.push(Needed { image, used_by: vec!["--image".into()] });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(path: &str, text: &str) -> DockerfileInput {
        DockerfileInput { path: path.into(), text: text.into(), build_args: BTreeMap::new() }
    }

    #[test]
    fn dockerfiles_then_infra_normalised_and_deduplicated() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let needed = needed_images(
            &[
                df("a/Dockerfile", "FROM rust:1.87-alpine AS b\nFROM alpine:3.19\nCOPY --from=b /x /x\n"),
                df("b/Dockerfile", &format!("FROM docker.io/library/alpine:3.19\nFROM busybox@{d}\n")),
            ],
            &[("nats".into(), "nats:2.10-alpine".into()), ("again".into(), "alpine:3.19".into())],
        )
        .unwrap();
        let names: Vec<String> = needed.iter().map(|n| n.image.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/rust:1.87-alpine",
                "docker.io/library/alpine:3.19",
                format!("docker.io/library/busybox@{d}").as_str(),
                "docker.io/library/nats:2.10-alpine",
            ]
        );
        assert_eq!(needed[1].used_by, ["a/Dockerfile:2", "b/Dockerfile:1", "services.again"]);
        assert_eq!(given(&["alpine".into(), "docker.io/library/alpine:latest".into()]).unwrap().len(), 1);
        assert!(given(&["Alpine".into()]).unwrap_err().to_string().starts_with("--image "));
    }

    #[test]
    fn unresolvable_dockerfile_names_file_and_line() {
        let e = needed_images(&[df("web/Dockerfile", "# hi\nFROM node:${NODE_VERSION}\n")], &[]).unwrap_err();
        assert!(e.to_string().starts_with("web/Dockerfile:2: "), "{e}");
        let e = needed_images(&[df("x/Dockerfile", "FROM Alpine:3\n")], &[]).unwrap_err();
        assert!(e.to_string().starts_with("x/Dockerfile:1: "), "{e}");
    }

    #[test]
    fn the_repository_needs_the_five_base_images_and_the_infrastructure() {
        let ws = Workspace::for_tests("discover");
        let needed = discover(&ws, &Stack::load(&ws).unwrap()).unwrap();
        let mut names: Vec<String> = needed.iter().map(|n| n.image.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "docker.io/clickhouse/clickhouse-server:24.8-alpine",
                "docker.io/grafana/grafana:11.1.0",
                "docker.io/library/alpine:3.19",
                "docker.io/library/nats:2.10-alpine",
                "docker.io/library/nginx:1.25-alpine",
                "docker.io/library/node:18-alpine",
                "docker.io/library/python:3.11-alpine",
                "docker.io/library/rust:1.87-alpine",
                "docker.io/prom/prometheus:v2.53.0",
            ]
        );
    }
}
