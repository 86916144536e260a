//! Small things every layer uses: where the xtask works, files, dates, text, JSON, hashes,
//! the live display and GitHub Actions' workflow commands.
//! Nothing here uses another module of the crate.

pub mod fs;
pub mod github;
pub mod hash;
pub mod json;
pub mod live;
pub mod text;
pub mod time;
pub mod workspace;
