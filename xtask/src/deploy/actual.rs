//! What runs now: the project's containers, read with ONE `podman ps -a --format json` (by the
//! project label, so containers of other projects are never looked at), with their service,
//! state, fingerprint labels and published ports.

use anyhow::{anyhow, Result};

use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::names::{ASPECTS_LABEL, COMPOSE_PROJECT_LABEL, FINGERPRINT_LABEL, KUBE_PROJECT_LABEL, SERVICE_LABEL};
use crate::stack::Stack;
use crate::util::json::{self, JsonValue, Read};

/// One container of the project, as podman lists it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The `v7.service` label (empty on a container the xtask did not make).
    pub service: String,
    /// `running`, `exited`, `created`, ...
    pub state: String,
    /// podman's status text, with the health in parentheses: `Up 5 minutes (healthy)`.
    pub status: String,
    pub image: String,
    pub fingerprint: String,
    pub aspects: String,
    /// Carries an export's label (`v7.compose.project`, `v7.kube.project`): not deploy's.
    pub export_made: bool,
    /// Who made it, in words, for a container deploy did not make: "podman-compose (project
    /// v7_compose)", "podman kube play (project v7)", or "" when no label says.
    pub made_by: String,
    /// `host_ip:host_port` of every published port.
    pub ports: Vec<(String, u16)>,
    /// Unix seconds.
    pub started_at: u64,
}

impl Container {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// Every container deploy made for the project: the project's label, a service label, and no
/// export's label.
///
/// The project label alone is not enough: podman copies an image's labels onto the containers
/// made from it, and every image the xtask builds carries `v7.project`, so a container that
/// podman-compose or `podman kube play` starts from the project's images carries it too. The
/// exports label theirs `v7.compose.project` / `v7.kube.project` (the compose export also sets
/// `v7.service`), so `down`, `status` and deploy's clean-up never touch them.
pub fn containers(runner: &Runner, podman: &Podman, stack: &Stack) -> Result<Vec<Container>> {
    let filter = format!("label={}", stack.project_label());
    let out = runner.query(&podman.cmd().args(["ps", "-a", "--filter", &filter, "--format", "json"]))?;
    Ok(deploys_own(parse(&out)?))
}

/// Every container of the host that deploy did not make for this project, for the names deploy
/// is about to create (a kube play of a project named like a service takes `backend-backend`,
/// which a deploy of project `backend` would create too). Asked only when something is created.
pub fn others(runner: &Runner, podman: &Podman, ours: &[Container]) -> Result<Vec<Container>> {
    let out = runner.query(&podman.cmd().args(["ps", "-a", "--format", "json"]))?;
    Ok(parse(&out)?.into_iter().filter(|c| !ours.iter().any(|o| o.id == c.id)).collect())
}

/// The containers of `all` that deploy made (see [`containers`]).
pub fn deploys_own(all: Vec<Container>) -> Vec<Container> {
    all.into_iter().filter(|c| !c.service.is_empty() && !c.export_made).collect()
}

/// The containers in `podman ps -a --format json` output (podman 4.x field names).
pub fn parse(text: &str) -> Result<Vec<Container>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc = json::parse(text).map_err(|e| anyhow!("`podman ps --format json`: {e}"))?;
    let label = |c: &JsonValue, key: &str| {
        c.field("Labels").and_then(|l| l.field(key)).and_then(Read::str).unwrap_or("").to_string()
    };
    let text = |c: &JsonValue, key: &str| c.field(key).and_then(Read::str).unwrap_or("").to_string();
    let mut out = Vec::new();
    for c in doc.items() {
        let name = c.field("Names").map(Read::items).and_then(|n| n.first()).and_then(Read::str).unwrap_or("");
        let ports = c
            .field("Ports")
            .map(Read::items)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let ip = p.field("host_ip").and_then(Read::str).filter(|ip| !ip.is_empty()).unwrap_or("0.0.0.0");
                let port = p.field("host_port").and_then(Read::number)? as u16;
                Some((ip.to_string(), port))
            })
            .collect();
        out.push(Container {
            id: text(c, "Id"),
            name: name.to_string(),
            service: label(c, SERVICE_LABEL),
            state: text(c, "State"),
            status: text(c, "Status"),
            image: text(c, "Image"),
            fingerprint: label(c, FINGERPRINT_LABEL),
            aspects: label(c, ASPECTS_LABEL),
            export_made: !label(c, COMPOSE_PROJECT_LABEL).is_empty() || !label(c, KUBE_PROJECT_LABEL).is_empty(),
            made_by: match (label(c, COMPOSE_PROJECT_LABEL), label(c, KUBE_PROJECT_LABEL)) {
                (compose, _) if !compose.is_empty() => format!("podman-compose (project {compose})"),
                (_, kube) if !kube.is_empty() => format!("podman kube play (project {kube})"),
                _ => String::new(),
            },
            ports,
            started_at: c.field("StartedAt").and_then(Read::number).unwrap_or(0.0).max(0.0) as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_ps_json_is_read() {
        let text = r#"[{"Id":"189144c2","Image":"localhost/v7-registry-free/backend:latest",
            "Labels":{"v7.project":"v7","v7.service":"backend","v7.fingerprint":"abc","v7.fingerprint.aspects":"image=1 ports=2"},
            "Names":["v7-backend"],"Ports":[{"host_ip":"127.0.0.1","container_port":3000,"host_port":3000,"range":1,"protocol":"tcp"},
            {"host_ip":"","container_port":53,"host_port":5353}],
            "StartedAt":1796162015,"State":"running","Status":"Up 2 minutes (healthy)"},
            {"Id":"2","Names":["stray"],"State":"exited","StartedAt":-62135596800}]"#;
        let cs = parse(text).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            (cs[0].name.as_str(), cs[0].service.as_str(), cs[0].fingerprint.as_str()),
            ("v7-backend", "backend", "abc")
        );
        assert_eq!(cs[0].aspects, "image=1 ports=2");
        assert_eq!(cs[0].ports, [("127.0.0.1".to_string(), 3000), ("0.0.0.0".to_string(), 5353)]);
        assert!(cs[0].running() && !cs[1].running());
        assert_eq!((cs[1].service.as_str(), cs[1].started_at), ("", 0), "never started");
        assert!(parse("").unwrap().is_empty() && parse("[]").unwrap().is_empty());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn containers_of_the_project_images_without_deploys_labels_are_not_deploys() {
        // kube play / podman-compose containers inherit `v7.project` from the image's labels.
        let text = r#"[{"Id":"1","Names":["v7-backend"],"Labels":{"v7.project":"v7","v7.service":"backend"}},
            {"Id":"2","Names":["backend-backend"],"Labels":{"v7.project":"v7","v7.kube.project":"v7"}},
            {"Id":"3","Names":["v7_compose-nats"],"Labels":{"v7.project":"v7","v7.compose.project":"v7_compose","v7.service":"nats"}}]"#;
        let own: Vec<String> = deploys_own(parse(text).unwrap()).into_iter().map(|c| c.name).collect();
        assert_eq!(own, ["v7-backend"]);
    }
}
