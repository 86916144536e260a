//! `status`: each service of the stack, its container's state, its health (checked now), its
//! image and ports, as a table or as JSON:
//! `[{"service", "state": "running|exited|...|absent", "health": "healthy|unhealthy|-", "image", "ports", "note"}]`.

use anyhow::Result;

use super::health;
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::placement::{placement, Placement};
use crate::stack::{Mode, Stack};
use crate::util::json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub service: String,
    pub state: String,
    pub health: String,
    pub image: String,
    pub ports: String,
    /// Why a service that is not there is left out in this mode.
    pub note: String,
}

pub fn rows(runner: &Runner, podman: &Podman, stack: &Stack, mode: Mode) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for name in stack.start_order().map_err(anyhow::Error::msg)? {
        let container = stack.container_name(name);
        let format = "{{.State.Status}}\t{{.ImageName}}";
        let found = runner.query(&podman.cmd().args(["inspect", "--format", format, &container])).unwrap_or_default();
        let (state, image) = found.trim().split_once('\t').unwrap_or(("absent", ""));
        let health = if state == "running" && stack.services[name].healthcheck.is_some() {
            if health::check(runner, podman, &container)? {
                "healthy"
            } else {
                "unhealthy"
            }
        } else {
            "-"
        };
        let note = match placement(stack, name, mode) {
            Placement::Skipped(why) if state == "absent" => why,
            _ => String::new(),
        };
        let ports: Vec<String> = stack.services[name].ports.iter().map(|p| p.get_ref().clone()).collect();
        rows.push(Row {
            service: name.to_string(),
            state: state.to_string(),
            health: health.to_string(),
            image: image.to_string(),
            ports: ports.join(" "),
            note,
        });
    }
    Ok(rows)
}

pub fn to_json(rows: &[Row]) -> String {
    let mut out = String::new();
    {
        let mut list = json::array(&mut out);
        for r in rows {
            let mut o = list.object();
            o.string("service", &r.service).string("state", &r.state).string("health", &r.health);
            o.string("image", &r.image).string("ports", &r.ports).string("note", &r.note);
        }
    }
    out
}

pub fn to_table(rows: &[Row]) -> String {
    let mut out = format!("{:<18} {:<9} {:<10} {:<48} PORTS\n", "SERVICE", "STATE", "HEALTH", "IMAGE");
    for r in rows {
        let note = if r.note.is_empty() { String::new() } else { format!("  ({})", r.note) };
        out.push_str(&format!("{:<18} {:<9} {:<10} {:<48} {}{note}\n", r.service, r.state, r.health, r.image, r.ports));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::json::Read;

    #[test]
    fn status_json_reads_back() {
        let rows = vec![
            Row {
                service: "web".into(),
                state: "running".into(),
                health: "healthy".into(),
                image: "localhost/x:1".into(),
                ports: "127.0.0.1:5173:3000".into(),
                note: String::new(),
            },
            Row {
                service: "grafana".into(),
                state: "absent".into(),
                health: "-".into(),
                image: String::new(),
                ports: "127.0.0.1:3001:3000".into(),
                note: "no \"Debian\" package".into(),
            },
        ];
        let doc = json::parse(&to_json(&rows)).unwrap();
        let items = doc.items();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].field("health").and_then(Read::str), Some("healthy"));
        assert_eq!(items[1].field("note").and_then(Read::str), Some("no \"Debian\" package"));
        assert!(to_table(&rows).contains("(no \"Debian\" package)"));
    }
}
