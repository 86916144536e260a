//! Small things every layer uses: where the xtask works, files, dates, text, JSON, hashes
//! and the live display.
//! Nothing here uses another module of the crate.

pub mod fs;
pub mod hash;
pub mod json;
pub mod live;
pub mod text;
pub mod time;
pub mod workspace;
