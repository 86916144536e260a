//! `cargo xtask bundle save|load FILE`: every image of the stack in one verified archive
//! (`images/bundle`).

use anyhow::Result;

use crate::flags;
use crate::images::bundle::index::short_id;
use crate::images::bundle::{self, stack_images};
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::{mode, Stack};
use crate::util::text::human_size;
use crate::util::workspace::Workspace;

impl flags::Bundle {
    pub fn run(self, ws: &Workspace) -> Result<()> {
        let runner = Runner::new(false);
        match self.subcommand {
            flags::BundleCmd::Save(cmd) => {
                let stack = Stack::load(ws)?;
                let mode = mode::decide(ws, &stack, cmd.registry_free);
                let list = stack_images(&stack, mode)?;
                for (service, why) in &list.skipped {
                    eprintln!("{service}: not bundled: {why}");
                }
                let podman = Podman::prepare(ws)?;
                let index = bundle::save(&podman, &runner, &list.images, mode, &cmd.file)?;
                let size = std::fs::metadata(&cmd.file).map(|m| m.len()).unwrap_or(0);
                println!(
                    "wrote {} ({}, {} images, {} mode); load it with `cargo xtask bundle load {}`",
                    cmd.file.display(),
                    human_size(size),
                    index.images.len(),
                    index.mode,
                    cmd.file.display()
                );
                for e in &index.images {
                    println!("  {:<50} {}  {:>9}", e.name, short_id(&e.id), human_size(e.size));
                }
                Ok(())
            }
            flags::BundleCmd::Load(cmd) => {
                let podman = Podman::prepare(ws)?;
                let (index, loaded) = bundle::load(ws, &podman, &runner, &cmd.file)?;
                println!(
                    "loaded {} images from {} (made {}, {} mode):",
                    loaded.len(),
                    cmd.file.display(),
                    index.created,
                    index.mode
                );
                for l in &loaded {
                    println!("  {:<50} {}  {}", l.name, short_id(&l.id), l.outcome);
                }
                Ok(())
            }
        }
    }
}
