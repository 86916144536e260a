//! `cargo xtask export compose|kube`: the stack as a compose file or Kubernetes manifests, on
//! stdout (`export`).

use std::io::Write;

use anyhow::{bail, Context, Result};

use crate::export::{compose::compose, kube::kube};
use crate::flags;
use crate::stack::{mode, Mode, Stack};
use crate::util::workspace::Workspace;

const FORMATS: &str = "`compose`, `kube`";

impl flags::Export {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let render: fn(&Stack, &std::path::Path, Mode) -> String = match self.format.as_str() {
            "compose" => compose,
            "kube" | "kubernetes" => kube,
            other => bail!("unknown export format {other:?}; formats: {FORMATS} (e.g. `cargo xtask export compose > compose.yaml`)"),
        };
        let stack = Stack::load(ws)?;
        let text = render(&stack, &ws.root, mode::without_probing(&stack, self.registry_free));
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
            _ => Ok(()),
        }
    }
}
