//! What `pull` shows while it works: one line per image (`util/live.rs` redraws them in place on
//! a terminal and prints one plain line per change otherwise), always on stderr, so `--json`
//! keeps stdout to itself.

use std::fmt::Write as _;
use std::time::Instant;

#[derive(Clone, Debug)]
pub enum RowState {
    Present,
    Waiting,
    /// `note`: what the relay is retrying, if anything.
    Pulling {
        source: String,
        attempt: u32,
        of: u32,
        note: Option<String>,
    },
    Retry {
        next: u32,
        of: u32,
        until: Instant,
        source: String,
        error: String,
    },
    Done,
    Failed,
}

pub fn render(image: &str, state: &RowState, now: Instant) -> String {
    match state {
        RowState::Present => format!("{image}: present"),
        RowState::Waiting => format!("{image}: waiting"),
        RowState::Pulling { source, attempt, of, note } => {
            let mut line = format!("{image}: pulling from {source}");
            if *attempt > 1 {
                let _ = write!(line, " (attempt {attempt}/{of})");
            }
            if let Some(note) = note {
                let _ = write!(line, " [relay: {note}]");
            }
            line
        }
        RowState::Retry { next, of, until, source, error } => {
            let secs = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            format!("{image}: retry {next}/{of} from {source} in {secs} s ({error})")
        }
        RowState::Done => format!("{image}: done"),
        RowState::Failed => format!("{image}: failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn live_lines() {
        let now = Instant::now();
        let st = RowState::Retry {
            next: 2,
            of: 3,
            until: now + Duration::from_millis(3500),
            source: "docker.io".into(),
            error: "503".into(),
        };
        assert_eq!(render("alpine", &st, now), "alpine: retry 2/3 from docker.io in 4 s (503)");
        assert_eq!(render("alpine", &RowState::Waiting, now), "alpine: waiting");
        let st = RowState::Pulling {
            source: "mirror http://m".into(),
            attempt: 2,
            of: 3,
            note: Some("1 request retried".into()),
        };
        assert_eq!(render("a", &st, now), "a: pulling from mirror http://m (attempt 2/3) [relay: 1 request retried]");
    }
}
