//! What a pull is asked for ([`Options`], from the flags or from `deploy` and `build`) and the
//! settings it runs with ([`Setup`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::plan::Policy;
use crate::podman::registries_conf::RegistryMirror;
use crate::podman::Podman;

/// What to pull and how; `None` settings come from the stack file's `[pull]`, then defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only report what is here.
    pub status: bool,
    pub policy: Policy,
    pub jobs: Option<usize>,
    pub timeout_secs: Option<u64>,
    pub deadline_secs: Option<u64>,
    pub attempts: Option<u32>,
    /// `--registry-mirror`: replaces `pull.registry_mirrors` when given.
    pub registry_mirrors: Vec<String>,
    /// `--image`: these instead of the stack's images.
    pub images: Vec<String>,
    pub no_relay: bool,
    pub json: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            status: false,
            policy: Policy::Missing,
            jobs: None,
            timeout_secs: None,
            deadline_secs: None,
            attempts: None,
            registry_mirrors: Vec::new(),
            images: Vec::new(),
            no_relay: false,
            json: false,
        }
    }
}

/// The settings in effect, and where every file `pull` writes goes.
pub struct Setup {
    pub jobs: usize,
    pub attempts: u32,
    pub timeout: Duration,
    pub deadline: Duration,
    pub mirrors: Vec<RegistryMirror>,
    pub podman: Podman,
    pub podman_dir: PathBuf,
    /// Per mirror URL: the registries.conf that sends its registry to that mirror alone.
    pub mirror_confs: HashMap<String, PathBuf>,
    /// The user's registries.conf (`CONTAINERS_REGISTRIES_CONF`), else the system's: what
    /// pulls from the origin use.
    pub origin_conf: Option<PathBuf>,
    pub started: Instant,
}
