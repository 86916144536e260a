//! The commands, one module each, each a thin `run(self, ws)` on its flags (`flags.rs`): read the
//! stack file, turn flags into a feature's options, call the feature (`images`, `deploy`,
//! `export`), print. What a command does lives in the feature modules; `test.rs` and `bench.rs`
//! are the developer commands and hold their own logic.

pub mod bench;
pub mod build;
pub mod bundle;
pub mod deploy;
pub mod doctor;
pub mod down;
pub mod export;
pub mod logs;
pub mod mirrors;
pub mod pull;
pub mod push;
pub mod status;
pub mod supervise;
pub mod test;
pub mod verify;
