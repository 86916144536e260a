//! What `pull` reports when it is done (and `pull --status` at once): a table for people and,
//! with `--json`, one JSON document on stdout (the table then goes to stderr). The document:
//!
//! ```text
//! {"ok": bool, "interrupted": bool, "seconds": number, "xtask_peak_rss_kib": number|null,
//!  "mirrors": [{"registry", "url", "alive": bool, "error": string|null}],
//!  "images": [{"image", "status": "present|pulled|missing|failed|skipped", "size_bytes": number|null,
//!              "attempts", "request_retries", "seconds", "source": string|null,
//!              "sources": [string], "used_by": [string], "error": string|null}]}
//! ```

use super::plan::{Item, Source};
use super::retry::Outcome;
use crate::podman::registries_conf::RegistryMirror;
use crate::util::json::{self, WriteOptional};
use crate::util::text::{human_size, table};

/// One image in the report.
#[derive(Clone, Debug)]
pub struct Report {
    pub image: String,
    pub used_by: Vec<String>,
    /// present | pulled | missing | failed | skipped
    pub status: &'static str,
    pub size: Option<u64>,
    pub sources: Vec<String>,
    pub outcome: Option<Outcome>,
}

impl Report {
    /// What `--status` says of a planned image.
    pub fn of_plan(item: &Item) -> Report {
        Report {
            image: item.needed.image.to_string(),
            used_by: item.needed.used_by.clone(),
            status: if item.present.is_some() { "present" } else { "missing" },
            size: item.present.as_ref().map(|l| l.size),
            sources: item.sources.iter().map(Source::label).collect(),
            outcome: None,
        }
    }

    /// What a pull made of a planned image (`None`: it was not pulled).
    pub fn of_pull(item: &Item, outcome: Option<&Outcome>) -> Report {
        let status = match outcome {
            None if item.present.is_some() => "present",
            None => "skipped",
            Some(o) if o.ok => "pulled",
            Some(_) => "failed",
        };
        let here = || Outcome { ok: true, source: Some("local".into()), ..Outcome::default() };
        Report {
            status,
            size: outcome.and_then(|o| o.size).or(item.present.as_ref().map(|l| l.size)),
            outcome: outcome.cloned().or_else(|| item.present.as_ref().map(|_| here())),
            ..Report::of_plan(item)
        }
    }

    pub fn is_here(&self) -> bool {
        self.status == "present" || self.status == "pulled"
    }
}

/// The `--json` document, with a newline.
pub fn to_json(
    reports: &[Report],
    mirrors: &[(RegistryMirror, Option<String>)],
    ok: bool,
    interrupted: bool,
    seconds: f64,
    peak_rss_kib: Option<u64>,
) -> String {
    let mut out = String::new();
    {
        let mut o = json::object(&mut out);
        o.bool("ok", ok).bool("interrupted", interrupted).number("seconds", json::seconds(seconds));
        o.number_or_null("xtask_peak_rss_kib", peak_rss_kib.map(|k| k as f64));
        {
            let mut list = o.array("mirrors");
            for (m, dead) in mirrors {
                let mut e = list.object();
                e.string("registry", &m.registry).string("url", &m.url).bool("alive", dead.is_none());
                e.string_or_null("error", dead.as_deref());
            }
        }
        let mut list = o.array("images");
        for r in reports {
            let oc = r.outcome.clone().unwrap_or_default();
            let mut e = list.object();
            e.string("image", &r.image)
                .string("status", r.status)
                .number_or_null("size_bytes", r.size.map(|s| s as f64));
            e.number("attempts", oc.attempts.into()).number("request_retries", oc.request_retries.into());
            e.number("seconds", json::seconds(oc.seconds)).string_or_null("source", oc.source.as_deref());
            {
                let mut s = e.array("sources");
                for x in &r.sources {
                    s.string(x);
                }
            }
            {
                let mut u = e.array("used_by");
                for x in &r.used_by {
                    u.string(x);
                }
            }
            e.string_or_null("error", oc.error.as_deref());
        }
    }
    out.push('\n');
    out
}

const SUMMARY_HEADER: [&str; 7] = ["IMAGE", "STATUS", "SIZE", "ATTEMPTS", "REQUESTS RETRIED", "SECONDS", "SOURCE"];

/// The table after a pull.
pub fn summary_table(reports: &[Report]) -> String {
    table(&SUMMARY_HEADER, &summary_rows(reports))
}

/// The same table in Markdown, for GitHub's job summary.
pub fn markdown_summary(reports: &[Report], ok: bool, elapsed: f64) -> String {
    let here = reports.iter().filter(|r| r.is_here()).count();
    let head = if ok { "ready" } else { "NOT all here" };
    format!(
        "### pull: {here} of {} images {head}, {elapsed:.1} s\n\n{}",
        reports.len(),
        crate::util::github::markdown_table(&SUMMARY_HEADER, &summary_rows(reports))
    )
}

fn summary_rows(reports: &[Report]) -> Vec<Vec<String>> {
    reports
        .iter()
        .map(|r| {
            let oc = r.outcome.clone().unwrap_or_default();
            vec![
                r.image.clone(),
                r.status.to_string(),
                r.size.map(human_size).unwrap_or_else(|| "-".into()),
                oc.attempts.to_string(),
                oc.request_retries.to_string(),
                format!("{:.1}", oc.seconds),
                oc.source.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

/// The table of `--status`.
pub fn status_table(reports: &[Report]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.image.clone(),
                r.status.to_string(),
                r.size.map(human_size).unwrap_or_else(|| "-".into()),
                r.sources.join(" > "),
                r.used_by.join(", "),
            ]
        })
        .collect();
    table(&["IMAGE", "STATUS", "SIZE", "FROM", "USED BY"], &rows)
}

/// The xtask's own peak memory (VmHWM), for the benchmark's figures.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::json::Read;

    #[test]
    fn the_json_document_reads_back() {
        let reports = vec![
            Report {
                image: "docker.io/library/alpine:3.19".into(),
                used_by: vec!["backend/Dockerfile:37".into()],
                status: "failed",
                size: None,
                sources: vec!["mirror http://127.0.0.1:5001".into(), "docker.io".into()],
                outcome: Some(Outcome {
                    ok: false,
                    attempts: 3,
                    seconds: 1.5004,
                    source: None,
                    error: Some("x: \"quoted\"\n\u{1}".into()),
                    size: None,
                    request_retries: 2,
                }),
            },
            Report {
                image: "docker.io/library/nats:2.10-alpine".into(),
                used_by: vec!["services.nats".into()],
                status: "pulled",
                size: Some(7_800_000),
                sources: vec!["docker.io".into()],
                outcome: Some(Outcome {
                    ok: true,
                    attempts: 1,
                    source: Some("docker.io".into()),
                    ..Outcome::default()
                }),
            },
        ];
        let mirrors =
            vec![(RegistryMirror::parse("http://127.0.0.1:5001").unwrap(), Some("connection refused".into()))];
        let md = markdown_summary(&reports, false, 2.0);
        assert!(md.starts_with("### pull: 1 of 2 images NOT all here, 2.0 s\n\n| IMAGE | STATUS |"), "{md}");
        assert!(md.contains("| docker.io/library/alpine:3.19 | failed | - | 3 | 2 | 1.5 | - |"), "{md}");
        let text = to_json(&reports, &mirrors, false, false, 2.0, Some(5000));
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let doc = json::parse(&text).unwrap();
        assert!(matches!(doc.field("ok"), Some(json::JsonValue::Boolean(false))));
        assert_eq!(doc.field("xtask_peak_rss_kib").and_then(Read::number), Some(5000.0));
        let m = &doc.field("mirrors").unwrap().items()[0];
        assert!(matches!(m.field("alive"), Some(json::JsonValue::Boolean(false))));
        assert_eq!(m.field("error").and_then(Read::str), Some("connection refused"));
        let images = doc.field("images").unwrap().items();
        assert_eq!(images.len(), 2);
        let failed = &images[0];
        assert_eq!(failed.field("attempts").and_then(Read::number), Some(3.0));
        assert_eq!(failed.field("request_retries").and_then(Read::number), Some(2.0));
        assert_eq!(failed.field("seconds").and_then(Read::number), Some(1.5));
        assert!(matches!(failed.field("source"), Some(json::JsonValue::Null)));
        assert_eq!(failed.field("error").and_then(Read::str), Some("x: \"quoted\"\n\u{1}"));
        assert_eq!(failed.field("sources").unwrap().items().len(), 2);
        assert_eq!(images[1].field("size_bytes").and_then(Read::number), Some(7_800_000.0));
        assert_eq!(images[1].field("status").and_then(Read::str), Some("pulled"));
        let empty = json::parse(&to_json(&[], &[], true, false, 0.0, None)).unwrap();
        assert!(
            empty.field("mirrors").unwrap().items().is_empty() && empty.field("images").unwrap().items().is_empty()
        );
        assert!(matches!(empty.field("xtask_peak_rss_kib"), Some(json::JsonValue::Null)));
    }
}
