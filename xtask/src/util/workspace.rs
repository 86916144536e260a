//! Where the xtask works: the checkout it belongs to, the stack file it reads and the directory
//! it keeps what it generates in. Read from the environment once, in `main`, and passed down as
//! `ws`, so no other module reads `V7_STATE_DIR` or `V7_STACK_FILE`.

use std::path::{Path, PathBuf};

/// The stack file, relative to the repository root.
pub const STACK_FILE: &str = "docker/stack.toml";

#[derive(Clone, Debug)]
pub struct Workspace {
    /// The repository root: the parent of the xtask crate.
    pub root: PathBuf,
    /// What the xtask generates (podman configuration, rewritten Dockerfiles, build logs,
    /// host-fetched dependencies): `.v7/`, or `V7_STATE_DIR`. Ignored by git; safe to delete.
    /// The end-to-end tests and benchmarks move it to start cold without touching a developer's.
    pub state: PathBuf,
    /// The stack file as given: `docker/stack.toml`, or `V7_STACK_FILE` (relative to the root or
    /// absolute). The end-to-end tests use it to run a stack under their own project name.
    pub stack_file: String,
}

impl Workspace {
    pub fn from_env() -> Workspace {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ sits in the workspace").to_path_buf();
        let state = std::env::var_os("V7_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".v7"));
        let stack_file = std::env::var("V7_STACK_FILE").unwrap_or_else(|_| STACK_FILE.to_string());
        Workspace { root, state, stack_file }
    }

    /// For unit tests: this checkout and its stack file, with a state directory of the test's
    /// own (under the system's temporary directory), whatever the environment says.
    #[cfg(test)]
    pub fn for_tests(test: &str) -> Workspace {
        let mut ws = Workspace::from_env();
        ws.state = std::env::temp_dir().join(format!("v7-xtask-unit-{test}-{}", std::process::id()));
        ws.stack_file = STACK_FILE.to_string();
        ws
    }

    /// What the xtask keeps about one deployed stack (its remembered mode, generated secrets,
    /// health supervisor): `.v7/stacks/<project>/`.
    pub fn stack_state(&self, project: &str) -> PathBuf {
        self.state.join("stacks").join(project)
    }

    /// A path of the checkout.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}
