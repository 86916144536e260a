//! What `build` shows and reports, as pure functions tested on inline values: the live line of
//! each build (with the step it is at, read from its log), the failing step's last lines, the
//! summary table (service, image, size, seconds, result), in Markdown for GitHub's job summary,
//! and the `--json` document.

use std::path::PathBuf;

use crate::util::text::{human_size, table};
use crate::util::{github, json};

/// How one build ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildResult {
    Built,
    /// Unchanged since the image here was built.
    Skipped,
    Failed,
    /// Stopped while it ran (another build failed, or SIGINT/SIGTERM): nothing tagged.
    Stopped,
    /// Never started.
    NotStarted,
}

impl BuildResult {
    pub fn word(self) -> &'static str {
        match self {
            BuildResult::Built => "built",
            BuildResult::Skipped => "skipped",
            BuildResult::Failed => "failed",
            BuildResult::Stopped => "stopped",
            BuildResult::NotStarted => "not started",
        }
    }
}

/// One row of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub service: String,
    pub image: String,
    pub result: BuildResult,
    pub seconds: Option<f64>,
    pub size: Option<u64>,
    pub attempts: u32,
    pub log: Option<PathBuf>,
    /// Why it failed or was stopped, in one line.
    pub error: Option<String>,
}

/// The step a build is at: the last `STEP n/m: ...` line of its log (podman prints one per
/// instruction), shortened to `width` characters.
pub fn current_step(log_tail: &str, width: usize) -> Option<String> {
    let line = log_tail.lines().rev().find(|l| l.starts_with("STEP "))?;
    Some(shorten(line, width))
}

fn shorten(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars().take(width.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// The failing step's lines: from the last `STEP` line to the end of the log, at most `max`
/// (the last ones, the step's line kept on top).
pub fn failing_step(log: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let from = lines.iter().rposition(|l| l.starts_with("STEP ")).unwrap_or(0);
    let step = &lines[from..];
    if step.len() <= max || max < 2 {
        return step[step.len().saturating_sub(max)..].iter().map(|l| l.to_string()).collect();
    }
    let mut out = vec![step[0].to_string(), format!("  ... ({} lines)", step.len() - max)];
    out.extend(step[step.len() - (max - 1)..].iter().map(|l| l.to_string()));
    out
}

/// A build's live line.
pub fn live_line(service: &str, width: usize, state: &str, seconds: Option<f64>, step: Option<&str>) -> String {
    let mut line = format!("{service:<width$}  {state}");
    if let Some(s) = seconds {
        line.push_str(&format!(" {s:.0} s"));
    }
    if let Some(step) = step {
        line.push_str(&format!("  {step}"));
    }
    line
}

/// The table after the builds.
pub fn summary_table(outcomes: &[Outcome]) -> String {
    table(&["SERVICE", "IMAGE", "SIZE", "SECONDS", "RESULT"], &summary_rows(outcomes))
}

/// The same table in Markdown for the GitHub job's summary, under a heading that says how the
/// builds ended (`util/github.rs` redacts it when it is written).
pub fn markdown_summary(outcomes: &[Outcome], interrupted: Option<&str>) -> String {
    let failed = outcomes.iter().filter(|o| !matches!(o.result, BuildResult::Built | BuildResult::Skipped)).count();
    let head = match (interrupted, failed) {
        (Some(signal), _) => format!("### build: interrupted by {signal}"),
        (None, 0) => format!("### build: {} images ready", outcomes.len()),
        (None, n) => format!("### build: {n} of {} did not build", outcomes.len()),
    };
    format!(
        "{head}\n\n{}",
        github::markdown_table(&["service", "image", "size", "seconds", "result"], &summary_rows(outcomes))
    )
}

/// Appends [`markdown_summary`] to `$GITHUB_STEP_SUMMARY` in GitHub Actions; `run.rs` calls it
/// once the builds ended, `--json` or not.
pub fn append_step_summary(outcomes: &[Outcome], interrupted: Option<&str>) {
    github::append_summary(&markdown_summary(outcomes, interrupted));
}

fn summary_rows(outcomes: &[Outcome]) -> Vec<Vec<String>> {
    outcomes
        .iter()
        .map(|o| {
            let result = match (o.result, o.attempts) {
                (r @ (BuildResult::Built | BuildResult::Failed), n) if n > 1 => format!("{} ({n} attempts)", r.word()),
                (r, _) => r.word().to_string(),
            };
            vec![
                o.service.clone(),
                o.image.clone(),
                o.size.map(human_size).unwrap_or_else(|| "-".into()),
                o.seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
                result,
            ]
        })
        .collect()
}

/// The `--json` document, with a newline.
pub fn to_json(outcomes: &[Outcome], interrupted: Option<&str>, seconds: f64) -> String {
    let ok =
        interrupted.is_none() && outcomes.iter().all(|o| matches!(o.result, BuildResult::Built | BuildResult::Skipped));
    let mut out = String::new();
    {
        let mut o = json::object(&mut out);
        o.bool("ok", ok);
        json::WriteOptional::string_or_null(&mut o, "interrupted", interrupted);
        o.number("seconds", json::seconds(seconds));
        let mut list = o.array("builds");
        for b in outcomes {
            let mut e = list.object();
            e.string("service", &b.service).string("image", &b.image).string("result", b.result.word());
            json::WriteOptional::number_or_null(&mut e, "seconds", b.seconds.map(json::seconds));
            json::WriteOptional::number_or_null(&mut e, "size_bytes", b.size.map(|s| s as f64));
            e.number("attempts", b.attempts.into());
            let log = b.log.as_ref().map(|l| l.display().to_string());
            json::WriteOptional::string_or_null(&mut e, "log", log.as_deref());
            json::WriteOptional::string_or_null(&mut e, "error", b.error.as_deref());
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::json::Read;

    const LOG: &str = "STEP 1/4: FROM alpine\nSTEP 2/4: RUN apk add x\nfetch 1\nfetch 2\nSTEP 3/4: RUN make\n\
                       cc a.c\ncc b.c\ncc c.c\nerror: c.c:3: bad\nError: building at STEP \"RUN make\": exit status 2\n";

    #[test]
    fn the_step_is_the_last_step_line() {
        assert_eq!(current_step(LOG, 80).as_deref(), Some("STEP 3/4: RUN make"));
        assert_eq!(current_step(LOG, 10).as_deref(), Some("STEP 3/4:…"), "shortened to the width");
        assert_eq!(current_step("no steps yet\n", 80), None);
    }

    #[test]
    fn the_failing_step_is_shown_from_its_step_line() {
        let all = failing_step(LOG, 20);
        assert_eq!(all.first().map(String::as_str), Some("STEP 3/4: RUN make"), "line 1: the step\n{all:?}");
        assert_eq!(all.len(), 6, "{all:?}");
        assert_eq!(all[5], "Error: building at STEP \"RUN make\": exit status 2");
        let short = failing_step(LOG, 4);
        assert_eq!(
            short,
            [
                "STEP 3/4: RUN make",
                "  ... (2 lines)",
                "cc c.c",
                "error: c.c:3: bad",
                "Error: building at STEP \"RUN make\": exit status 2"
            ],
            "the step's line, then its last lines"
        );
        assert_eq!(failing_step("Error: no such file\n", 5), ["Error: no such file"], "no step: the end of the log");
    }

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome {
                service: "backend".into(),
                image: "ghcr.io/x/backend:latest".into(),
                result: BuildResult::Built,
                seconds: Some(12.345),
                size: Some(90_000_000),
                attempts: 2,
                log: Some("/s/backend.log".into()),
                error: None,
            },
            Outcome {
                service: "web".into(),
                image: "ghcr.io/x/web:latest".into(),
                result: BuildResult::Skipped,
                seconds: None,
                size: Some(98_700_000),
                attempts: 0,
                log: None,
                error: None,
            },
            Outcome {
                service: "analytics-engine".into(),
                image: "ghcr.io/x/analytics-engine:latest".into(),
                result: BuildResult::NotStarted,
                seconds: None,
                size: None,
                attempts: 0,
                log: None,
                error: Some("stopped: backend failed".into()),
            },
        ]
    }

    #[test]
    fn the_summary_has_a_row_per_service() {
        let t = summary_table(&outcomes());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["SERVICE", "IMAGE", "SIZE", "SECONDS", "RESULT"]);
        assert!(
            lines[1].starts_with("backend           ghcr.io/x/backend:latest")
                && lines[1].ends_with("90.0 MB  12.3     built (2 attempts)"),
            "line 2: {t}"
        );
        assert!(lines[2].ends_with("98.7 MB  -        skipped"), "line 3: {t}");
        assert!(lines[3].ends_with("-        -        not started"), "line 4: {t}");
        assert_eq!(
            live_line("web", 16, "building", Some(3.4), Some("STEP 2/5: RUN npm ci")),
            "web               building 3 s  STEP 2/5: RUN npm ci"
        );
    }

    #[test]
    fn the_job_summary_is_a_markdown_table() {
        assert_eq!(
            markdown_summary(&outcomes()[..2], None),
            "### build: 2 images ready\n\n| service | image | size | seconds | result |\n|---|---|---|---|---|\n\
             | backend | ghcr.io/x/backend:latest | 90.0 MB | 12.3 | built (2 attempts) |\n\
             | web | ghcr.io/x/web:latest | 98.7 MB | - | skipped |\n"
        );
        assert!(markdown_summary(&outcomes(), None).starts_with("### build: 1 of 3 did not build\n"));
        assert!(markdown_summary(&outcomes(), Some("SIGTERM")).starts_with("### build: interrupted by SIGTERM\n"));
    }

    #[test]
    fn json_reads_back() {
        let text = to_json(&outcomes(), None, 20.0);
        let v = json::parse(&text).unwrap();
        assert_eq!(v.field("ok"), Some(&json::JsonValue::Boolean(false)), "one was not started");
        let b = v.field("builds").unwrap().items();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].field("result").and_then(Read::str), Some("built"));
        assert_eq!(b[0].field("seconds").and_then(Read::number), Some(12.345));
        assert_eq!(b[0].field("log").and_then(Read::str), Some("/s/backend.log"));
        assert_eq!(b[2].field("error").and_then(Read::str), Some("stopped: backend failed"));
        assert_eq!(b[1].field("seconds"), Some(&json::JsonValue::Null));
        let v = json::parse(&to_json(&outcomes()[..2], Some("SIGTERM"), 1.0)).unwrap();
        assert_eq!(v.field("interrupted").and_then(Read::str), Some("SIGTERM"));
        assert_eq!(v.field("ok"), Some(&json::JsonValue::Boolean(false)));
    }
}
