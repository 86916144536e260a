//! The live display of `pull`, `build` and `deploy`: one line per item, redrawn in place on a terminal;
//! one plain line per change otherwise (logs, CI, `NO_COLOR`). Always on stderr, so `--json`
//! keeps stdout to itself.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

pub struct Live {
    pub tty: bool,
    drawn: usize,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
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

    /// Text that stays (a failure's last lines): on a terminal printed in place of the rows,
    /// which the next redraw draws again below it; otherwise printed as it is.
    pub fn message(&mut self, text: &str) {
        if self.tty && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
        eprintln!("{}", text.trim_end());
    }

    /// Every row again, in place of the rows drawn before (on a terminal only).
    pub fn redraw(&mut self, lines: &[String]) {
        if !self.tty {
            return;
        }
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let width = terminal_width();
        for line in lines {
            let mut line = line.clone();
            if line.chars().count() > width {
                line = line.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
            }
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        self.drawn = lines.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(120)
}
