//! `status`: each service of the stack, its container's state, its health as last checked (by
//! deploy's gate or the health supervisor; `status` runs no check itself, so it answers at
//! once) and when, its image and ports, as a table or as JSON:
//! `[{"service", "state": "running|exited|...|absent", "health": "healthy|unhealthy|starting|-",
//! "last_check": "2026-12-01T21:53:35Z"|null, "image", "ports", "note"}]`. The table ends with
//! the health supervisor's state.

use anyhow::Result;

use super::{actual, supervisor};
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::placement::{placement, Placement};
use crate::stack::{Mode, Stack};
use crate::util::json::{self, WriteOptional};
use crate::util::time::{now_unix, parse_rfc3339_utc, utc_timestamp};
use crate::util::workspace::Workspace;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub service: String,
    pub state: String,
    pub health: String,
    /// Unix time of the last health check.
    pub last_check: Option<u64>,
    pub image: String,
    pub ports: String,
    /// Why a service that is not there is left out in this mode.
    pub note: String,
}

/// One `podman ps` for all containers, one `podman inspect` for the health of those that run.
pub fn rows(runner: &Runner, podman: &Podman, stack: &Stack, mode: Mode) -> Result<Vec<Row>> {
    let containers = actual::containers(runner, podman, stack)?;
    let checked: Vec<&actual::Container> = containers
        .iter()
        .filter(|c| c.running() && stack.services.get(&c.service).is_some_and(|s| s.healthcheck.is_some()))
        .collect();
    let mut health = std::collections::BTreeMap::new();
    if !checked.is_empty() {
        let format = "{{.Name}}|{{.State.Health.Status}}|{{range .State.Health.Log}}{{.End}} {{end}}";
        let cmd = podman.cmd().args(["container", "inspect", "--format", format]);
        let out = runner.query(&cmd.args(checked.iter().map(|c| c.name.clone())))?;
        for line in out.lines() {
            let mut parts = line.splitn(3, '|');
            let (Some(name), Some(status), ends) = (parts.next(), parts.next(), parts.next()) else { continue };
            let last = ends.and_then(|e| e.split_whitespace().last()).and_then(parse_rfc3339_utc);
            health.insert(name.to_string(), (status.to_string(), last));
        }
    }
    let mut rows = Vec::new();
    for name in stack.start_order().map_err(anyhow::Error::msg)? {
        let found = containers.iter().find(|c| c.name == stack.container_name(name));
        let (state, image) = found.map_or(("absent", ""), |c| (c.state.as_str(), c.image.as_str()));
        let (status, last_check) = match found.and_then(|c| health.get(&c.name)) {
            Some((s, last)) if !s.is_empty() => (s.clone(), *last),
            _ => ("-".to_string(), None),
        };
        let note = match placement(stack, name, mode) {
            Placement::Skipped(why) if state == "absent" => why,
            _ => String::new(),
        };
        let ports: Vec<String> = stack.services[name].ports.iter().map(|p| p.get_ref().clone()).collect();
        rows.push(Row {
            service: name.to_string(),
            state: state.to_string(),
            health: status,
            last_check,
            image: image.to_string(),
            ports: ports.join(" "),
            note,
        });
    }
    Ok(rows)
}

/// The supervisor's line under the table.
pub fn supervisor_line(ws: &Workspace, stack: &Stack) -> String {
    match supervisor::running(ws, stack) {
        Some((pid, _)) => {
            format!("health supervisor: running (pid {pid}; log {})\n", supervisor::log_file(ws, stack).display())
        }
        None => {
            "health supervisor: not running (`cargo xtask deploy` starts it); health is as last checked\n".to_string()
        }
    }
}

pub fn to_json(rows: &[Row]) -> String {
    let mut out = String::new();
    {
        let mut list = json::array(&mut out);
        for r in rows {
            let mut o = list.object();
            o.string("service", &r.service).string("state", &r.state).string("health", &r.health);
            o.string_or_null("last_check", r.last_check.map(utc_timestamp).as_deref());
            o.string("image", &r.image).string("ports", &r.ports).string("note", &r.note);
        }
    }
    out
}

pub fn to_table(rows: &[Row]) -> String {
    let now = now_unix();
    let mut out = format!("{:<18} {:<9} {:<10} {:<9} {:<48} PORTS\n", "SERVICE", "STATE", "HEALTH", "CHECKED", "IMAGE");
    for r in rows {
        let note = if r.note.is_empty() { String::new() } else { format!("  ({})", r.note) };
        let checked = r.last_check.map_or("-".to_string(), |t| format!("{} s ago", now.saturating_sub(t)));
        out.push_str(&format!(
            "{:<18} {:<9} {:<10} {:<9} {:<48} {}{note}\n",
            r.service, r.state, r.health, checked, r.image, r.ports
        ));
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
                last_check: Some(1_796_162_015),
                image: "localhost/x:1".into(),
                ports: "127.0.0.1:5173:3000".into(),
                note: String::new(),
            },
            Row {
                service: "grafana".into(),
                state: "absent".into(),
                health: "-".into(),
                last_check: None,
                image: String::new(),
                ports: "127.0.0.1:3001:3000".into(),
                note: "no \"Debian\" package".into(),
            },
        ];
        let doc = json::parse(&to_json(&rows)).unwrap();
        let items = doc.items();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].field("health").and_then(Read::str), Some("healthy"));
        assert_eq!(items[0].field("last_check").and_then(Read::str), Some("2026-12-01T21:53:35Z"));
        assert_eq!(items[1].field("last_check"), Some(&json::JsonValue::Null));
        assert_eq!(items[1].field("note").and_then(Read::str), Some("no \"Debian\" package"));
        let table = to_table(&rows);
        assert!(table.contains("(no \"Debian\" package)") && table.contains(" s ago "), "{table}");
    }
}
