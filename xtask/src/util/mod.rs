//! Small things every layer uses: where the xtask works, files, dates, text, JSON and hashes.
//! Nothing here uses another module of the crate.

pub mod fs;
pub mod hash;
pub mod json;
pub mod text;
pub mod time;
pub mod workspace;
