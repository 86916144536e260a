//! SIGINT and SIGTERM while builds run: caught (so the xtask can stop its podman builds and
//! remove what they leave) instead of ending the xtask, which would leave `podman build`
//! running on its own. Outside a [`watch`] the signals keep their default action (the xtask
//! ends), so later phases of a command are not made deaf to them: signal-hook cannot restore a
//! default handler once its own is installed, so its `register_conditional_default` runs the
//! default action whenever no build phase is active.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

struct Flags {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    /// True while no build phase watches: the signals then do what they do by default.
    outside: Arc<AtomicBool>,
}

fn flags() -> Result<&'static Flags> {
    static FLAGS: OnceLock<std::result::Result<Flags, String>> = OnceLock::new();
    let f = FLAGS.get_or_init(|| {
        let f = Flags {
            int: Arc::new(AtomicBool::new(false)),
            term: Arc::new(AtomicBool::new(false)),
            outside: Arc::new(AtomicBool::new(true)),
        };
        for (sig, flag) in [(SIGINT, &f.int), (SIGTERM, &f.term)] {
            signal_hook::flag::register_conditional_default(sig, Arc::clone(&f.outside)).map_err(|e| e.to_string())?;
            signal_hook::flag::register(sig, Arc::clone(flag)).map_err(|e| e.to_string())?;
        }
        Ok(f)
    });
    f.as_ref().map_err(|e| anyhow!("cannot handle SIGINT/SIGTERM: {e}"))
}

/// While it lives, SIGINT and SIGTERM are caught and reported by [`Watch::caught`].
pub struct Watch {
    flags: &'static Flags,
}

/// Starts catching SIGINT and SIGTERM (what was caught before is forgotten).
pub fn watch() -> Result<Watch> {
    let flags = flags()?;
    flags.int.store(false, Ordering::SeqCst);
    flags.term.store(false, Ordering::SeqCst);
    flags.outside.store(false, Ordering::SeqCst);
    Ok(Watch { flags })
}

impl Watch {
    /// The signal caught since [`watch`], if any.
    pub fn caught(&self) -> Option<&'static str> {
        if self.flags.term.load(Ordering::SeqCst) {
            Some("SIGTERM")
        } else if self.flags.int.load(Ordering::SeqCst) {
            Some("SIGINT")
        } else {
            None
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.flags.outside.store(true, Ordering::SeqCst);
    }
}
