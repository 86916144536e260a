//! What `pull` shows while it works: one line per image, redrawn in place on a terminal, one
//! plain line per change otherwise (logs, CI, `NO_COLOR`); always on stderr, so `--json` keeps
//! stdout to itself.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
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

/// The live display: redrawn rows on a terminal, printed lines otherwise.
pub struct Live {
    pub tty: bool,
    drawn: usize,
}

impl Live {
    pub fn new() -> Live {
        let plain = std::env::var_os("NO_COLOR").is_some() || std::env::var_os("CI").is_some();
        Live { tty: std::io::stderr().is_terminal() && !plain, drawn: 0 }
    }

    /// One changed row: printed as a line unless the display is redrawn.
    pub fn line(&self, text: &str) {
        if !self.tty {
            eprintln!("{text}");
        }
    }

    pub fn redraw(&mut self, rows: &[(String, RowState)]) {
        if !self.tty {
            return;
        }
        let now = Instant::now();
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let width = terminal_width();
        for (image, state) in rows {
            let mut line = render(image, state, now);
            if line.chars().count() > width {
                line = line.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
            }
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        self.drawn = rows.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(120)
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
