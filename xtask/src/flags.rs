//! Command-line flags, declared once with xflags. Every `///` line here is what `--help`
//! prints; `cargo xtask COMMAND --help` prints that command's part alone ([`help_for`]).

use std::path::PathBuf;

xflags::xflags! {
    /// V7 build automation: images, builds and the running stack, with podman.
    ///
    /// Examples:
    ///   cargo xtask doctor                 what podman needs here, proxies, mirrors
    ///   cargo xtask pull --status          which images the stack needs, and which are here
    ///   cargo xtask build --mirror         build the services through package mirrors
    ///   cargo xtask deploy                 build what is missing, start the stack, wait for health
    ///   cargo xtask verify                 prove the running stack works end to end
    ///   cargo xtask test                   every test suite (installs what it needs)
    cmd xtask {
        /// Get every base and infrastructure image the stack needs onto this machine.
        ///
        /// Examples:
        ///   cargo xtask pull
        ///   cargo xtask pull --status
        ///   cargo xtask pull --registry-mirror http://127.0.0.1:5000 --jobs 4 --json
        cmd pull {
            /// Only show each image: present or missing, size, and where it would come from.
            optional --status
            /// `missing` (default) pulls what is not here; `always` pulls everything again.
            optional --policy policy: String
            /// How many pulls run at once (default 3).
            optional -j, --jobs n: usize
            /// Seconds one attempt may take before it is stopped and retried (default 300).
            optional --timeout secs: u64
            /// Seconds the whole pull may take (default 1800).
            optional --deadline secs: u64
            /// Attempts per image and source, first one included (default 3).
            optional --attempts n: u32
            /// A registry mirror tried before the origin; repeat for more, tried in order.
            /// `URL` mirrors docker.io; `REGISTRY=URL` mirrors another registry. Replaces
            /// pull.registry_mirrors of docker/stack.toml when given.
            repeated --registry-mirror url: String
            /// Pull these images instead of the ones the stack needs; repeat for more.
            repeated --image reference: String
            /// Let podman talk to plain-HTTP registries directly, without the loopback relay
            /// that fetches ahead and retries single requests (xtask/src/images/pull/relay).
            optional --no-relay
            /// Print the result as JSON on stdout (the live display goes to stderr).
            optional --json
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Build the service images (analytics-engine, backend, web), in parallel, skipping
        /// those whose inputs have not changed.
        ///
        /// Examples:
        ///   cargo xtask build
        ///   cargo xtask build --mirror                  package mirrors from docker/stack.toml
        ///   cargo xtask build --mirror --preset tuna backend
        ///   cargo xtask build --registry-free           every image from Debian packages
        cmd build {
            /// Services to build (default: all three).
            repeated service: String
            /// Rewrite the Dockerfiles (out of tree) so apk, apt, npm, pip and cargo use package
            /// mirrors.
            optional --mirror
            /// Which package mirror preset of docker/stack.toml `--mirror` uses.
            optional --preset name: String
            /// Registry-free mode: build every image from Debian packages, no registry needed.
            optional --registry-free
            /// With --registry-free: make the Debian base image anew (it is otherwise reused).
            optional --rebuild-base
            /// Build even when nothing changed.
            optional --force
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Bring the stack to what docker/stack.toml says: unchanged containers are kept,
        /// changed ones replaced (the previous one comes back if the new one is not healthy),
        /// services started by dependency level behind their health checks; then a health
        /// supervisor keeps checking them.
        ///
        /// Examples:
        ///   cargo xtask deploy
        ///   cargo xtask deploy --registry-free
        ///   cargo xtask deploy --dry-run
        ///   cargo xtask deploy --force-recreate
        cmd deploy {
            /// Registry-free mode (see `build --registry-free`).
            optional --registry-free
            /// Use the images that are here; do not build.
            optional --no-build
            /// Seconds each service may take to become healthy (default 120).
            optional --timeout secs: u64
            /// Replace every container, changed or not.
            optional --force-recreate
            /// Print the plan (kept, replaced, created, removed, and why) and the podman
            /// commands instead of running them.
            optional --dry-run
        }

        /// The health supervisor `deploy` starts in the background (not for direct use): runs
        /// each service's health check on its interval; `down` stops it.
        cmd supervise {}

        /// Stop and remove the stack's containers and networks (volumes with --volumes).
        ///
        /// Examples:
        ///   cargo xtask down
        ///   cargo xtask down --volumes --dry-run
        cmd down {
            /// Also remove the named volumes (their data is lost).
            optional --volumes
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Show each service of the stack: state, health, image, ports.
        ///
        /// Examples:
        ///   cargo xtask status
        ///   cargo xtask status --json
        cmd status {
            /// Print JSON.
            optional --json
        }

        /// Show a service's logs.
        ///
        /// Example: cargo xtask logs backend --tail 50
        cmd logs {
            required service: String
            /// Keep following the log.
            optional -f, --follow
            /// Only the last N lines.
            optional --tail n: usize
        }

        /// Prove the running stack works: post an event through web's proxy, see it stored
        /// and counted, and check every health endpoint and Prometheus target.
        ///
        /// Example: cargo xtask verify
        cmd verify {}

        /// Report podman and how this host needs it configured, proxies and mirrors in effect.
        ///
        /// Example: cargo xtask doctor
        cmd doctor {}

        /// Air-gapped machines: every image of the stack in one verified archive.
        ///
        /// Examples:
        ///   cargo xtask bundle save v7-images.tar.gz
        ///   cargo xtask bundle load v7-images.tar.gz
        cmd bundle {
            /// Write every image the stack needs into FILE, with an index and checksums.
            cmd save {
                required file: PathBuf
                /// Registry-free images (the default when no registry is reachable).
                optional --registry-free
            }
            /// Verify FILE, then load its images; a corrupted bundle loads nothing.
            cmd load {
                required file: PathBuf
            }
        }

        /// Write the stack as a compose file or Kubernetes manifests.
        ///
        /// Examples:
        ///   cargo xtask export compose > compose.yaml
        ///   cargo xtask export kube > v7.yaml
        cmd export {
            /// `compose` or `kube`.
            required format: String
            /// Registry-free image names.
            optional --registry-free
        }

        /// Run every test suite: lint (cargo fmt --check, clippy -D warnings), Rust, Python,
        /// web, and the podman end-to-end tests. Installs missing prerequisites first (apt-get,
        /// npm, pip) and says what it did.
        ///
        /// Examples:
        ///   cargo xtask test
        ///   cargo xtask test lint rust
        cmd test {
            /// Only these suites: lint, rust, python, web, podman (default: all).
            repeated suite: String
        }

        /// Benchmarks. `cold-build`: cold `cargo build -p xtask` and warm `cargo xtask --help`;
        /// `dependencies`: each crate the xtask uses, and the alternatives weighed, built alone.
        ///
        /// Examples:
        ///   cargo xtask bench cold-build --runs 3
        ///   cargo xtask bench dependencies --runs 3
        cmd bench {
            required name: String
            /// Repetitions (default 3).
            optional --runs n: usize
        }
    }
}

/// The command named at the start of `args` (`["bundle", "save"]` for `bundle save FILE`):
/// leading arguments as long as they name a command of the help.
pub fn command_path(args: &[String]) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    for a in args {
        let mut next = path.clone();
        next.push(a.clone());
        if section(&next).is_none() {
            break;
        }
        path = next;
    }
    path
}

/// The lines of the generated help that describe `path`, with its subcommands.
fn section(path: &[String]) -> Option<Vec<&'static str>> {
    let lines: Vec<&'static str> = Xtask::HELP_.lines().collect();
    let head = format!("xtask {}", path.join(" "));
    let start = lines.iter().position(|l| *l == head)?;
    let nested = format!("{head} ");
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("xtask ") && !l.starts_with(&nested))
        .map_or(lines.len(), |i| start + 1 + i);
    Some(lines[start..end].to_vec())
}

/// `cargo xtask COMMAND --help`: that command's part of the help, with its examples; the whole
/// help for no command.
pub fn help_for(path: &[String]) -> String {
    match section(path) {
        Some(lines) if !path.is_empty() => {
            let text = lines.join("\n");
            format!("cargo {}\n\nEvery command: cargo xtask --help\n", text.trim_end())
        }
        _ => Xtask::HELP_.to_string(),
    }
}

/// Flags and values that were renamed, and their names now.
const RENAMED: &[(&str, &str)] = &[("--offline", "--registry-free")];

pub fn renamed(args: &[String]) -> Option<(&'static str, &'static str)> {
    RENAMED.iter().copied().find(|(old, _)| args.iter().any(|a| a == old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn every_command_has_help_of_its_own() {
        let commands = [
            "pull", "build", "deploy", "down", "status", "logs", "verify", "doctor", "bundle", "export", "test",
            "bench",
        ];
        for c in commands {
            let help = help_for(&args(c));
            assert!(help.starts_with(&format!("cargo xtask {c}\n")), "{c}:\n{help}");
            assert!(help.contains("Example"), "{c} has examples:\n{help}");
            for other in commands.iter().filter(|o| **o != c) {
                assert!(
                    !help.contains(&format!("\ncargo xtask {other}\n"))
                        && !help.contains(&format!("\nxtask {other}\n")),
                    "{c} shows {other}:\n{help}"
                );
            }
            assert!(help.lines().count() < 60, "{c}: {} lines", help.lines().count());
        }
        let build = help_for(&args("build"));
        assert!(
            build.contains("--registry-free") && build.contains("cargo xtask build --mirror --preset tuna backend"),
            "{build}"
        );
        let bundle = help_for(&args("bundle"));
        assert!(bundle.contains("xtask bundle save") && bundle.contains("xtask bundle load"), "{bundle}");
        let save = help_for(&args("bundle save"));
        assert!(save.contains("--registry-free") && !save.contains("bundle load"), "{save}");
        assert_eq!(help_for(&[]), Xtask::HELP_);
    }

    #[test]
    fn the_command_is_found_before_its_arguments() {
        assert_eq!(command_path(&args("bundle save x.tar --help")), ["bundle", "save"]);
        assert_eq!(command_path(&args("export compose --help")), ["export"]);
        assert_eq!(command_path(&args("logs backend")), ["logs"]);
        assert!(command_path(&args("--help")).is_empty());
        assert!(command_path(&args("nonsense build")).is_empty());
        assert_eq!(renamed(&args("build --offline")), Some(("--offline", "--registry-free")));
        assert_eq!(renamed(&args("build --registry-free")), None);
    }
}
