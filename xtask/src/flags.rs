//! Command-line flags, declared once with xflags. Every `///` line here is what `--help`
//! prints; `cargo xtask COMMAND --help` prints that command's part alone ([`help_for`]).

use std::path::PathBuf;

xflags::xflags! {
    /// V7 build automation: images, builds and the running stack, with podman.
    ///
    /// Examples:
    ///   cargo xtask doctor                 what podman needs here, proxies, mirrors
    ///   cargo xtask pull --status          which images the stack needs, and which are here
    ///   cargo xtask build --mirror default build the services through package mirrors
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
            /// Let podman talk to every registry and mirror directly, without the loopback relay
            /// that fetches ahead and retries single requests (xtask/src/images/pull/relay).
            optional --no-relay
            /// Print the result as JSON on stdout (the live display goes to stderr).
            optional --json
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Build the service images (analytics-engine, backend, web), in parallel, skipping
        /// those whose inputs have not changed. Proxy variables are checked first.
        ///
        /// Examples:
        ///   cargo xtask build
        ///   cargo xtask build --mirror default          the default preset of docker/stack.toml
        ///   cargo xtask build --mirror tuna backend
        ///   cargo xtask build --mirror npm=http://host.containers.internal:4873 --dry-run
        ///   cargo xtask build --jobs 2 --keep-going --json
        ///   cargo xtask build --registry-free           every image from Debian packages
        cmd build {
            /// Services to build (default: all three).
            repeated service: String
            /// Rewrite the Dockerfiles (out of tree) so apk, apt, npm, pip and cargo use package
            /// mirrors: a preset of docker/stack.toml, `default` (its default_preset), `auto`
            /// (the fastest, as `cargo xtask mirrors` measures), or URLs,
            /// `apk=URL,apt=URL,npm=URL,pip=URL,cargo=URL`.
            optional --mirror spec: String
            /// Registry-free mode: build every image from Debian packages, no registry needed.
            optional --registry-free
            /// With --registry-free: make the Debian base image anew (it is otherwise reused).
            optional --rebuild-base
            /// Build even when nothing changed.
            optional --force
            /// How many builds run at once (default: all). A build that fails beside another
            /// is tried once more alone.
            optional -j, --jobs n: usize
            /// One build at a time (--jobs 1).
            optional --sequential
            /// Go on with the other builds when one fails (by default they are stopped).
            optional --keep-going
            /// Print the summary as JSON on stdout (the live display goes to stderr).
            optional --json
            /// Print the podman commands (and, with --mirror, each rewrite as a diff) instead
            /// of running them.
            optional --dry-run
        }

        /// Measure every package mirror of docker/stack.toml's presets and each package
        /// manager's own registry, all at once: status and latency (a dead one costs at most
        /// the timeout). `build --mirror auto` uses the fastest reachable one of each manager.
        ///
        /// Examples:
        ///   cargo xtask mirrors
        ///   cargo xtask mirrors --timeout 2 --json
        cmd mirrors {
            /// Seconds one probe may take (default 3).
            optional --timeout secs: u64
            /// Print the measurements and what `auto` would choose as JSON on stdout.
            optional --json
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
        ///   cargo xtask deploy --profile dev
        cmd deploy {
            /// Registry-free mode (see `build --registry-free`).
            optional --registry-free
            /// Apply `[profiles.NAME]` of docker/stack.toml (e.g. `dev`, `prod`; docs/stack.md).
            /// Not remembered: the next deploy without it converges to the file as it is.
            optional --profile name: String
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
            /// The ports of `[profiles.NAME]`, as deployed with `deploy --profile NAME`.
            optional --profile name: String
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
        /// Examples:
        ///   cargo xtask verify
        ///   cargo xtask verify --compose
        ///   cargo xtask verify --kube-play
        cmd verify {
            /// The compose project (`podman-compose -p v7_compose ...`, docs/compose.md) instead
            /// of the deployed stack; runs every service's health check until it passes first.
            optional --compose
            /// What `podman kube play` runs of `export kube --target podman` (containers
            /// `<service>-<service>`) instead of the deployed stack; runs every service's
            /// health check until it passes first.
            optional --kube-play
            /// The stack file with this profile applied (`[profiles.NAME]`, docs/stack.md), as
            /// it was deployed or exported: its ports are the ones verify uses.
            optional --profile name: String
        }

        /// Report podman and how this host needs it configured, proxies and mirrors in effect.
        ///
        /// Example: cargo xtask doctor
        cmd doctor {}

        /// Publish the service images `build` made to their registry (the manifest's image
        /// names; GHCR by default), tagged latest, the git short revision and, on a release tag
        /// (v1.2.3), the version. Credentials from REGISTRY_USER and REGISTRY_TOKEN, or
        /// GITHUB_ACTOR and GITHUB_TOKEN, handed to podman on stdin; never printed.
        ///
        /// Examples:
        ///   cargo xtask push --dry-run                  every image and tag, nothing sent
        ///   REGISTRY_USER=me REGISTRY_TOKEN=... cargo xtask push backend
        ///   cargo xtask push --registry 127.0.0.1:5000/v7 --cert-dir certs.d/127.0.0.1:5000
        cmd push {
            /// Services to push (default: all three).
            repeated services: String
            /// HOST[/PREFIX] to push `<service>` under instead of the manifest's names.
            optional --registry registry: String
            /// Another tag for every image; repeat for more.
            repeated --tag tag: String
            /// podman's --cert-dir: a directory with the registry's CA certificate (*.crt).
            optional --cert-dir dir: PathBuf
            /// Attempts per image and tag, first one included (default 4).
            optional --attempts n: u32
            /// Seconds one attempt may take before it is stopped and retried (default 600).
            optional --timeout secs: u64
            /// Print the plan and the podman commands; push nothing.
            optional --dry-run
        }

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

        /// Write the stack as a compose file or Kubernetes manifests. `compose` prints
        /// compose.yaml, with --registry-free its override compose.offline.yaml.
        ///
        /// Examples:
        ///   cargo xtask export compose --write     compose.yaml, compose.offline.yaml, secret files
        ///   cargo xtask export kube > v7.yaml
        ///   cargo xtask export kube --target podman --registry-free > v7-podman.yaml
        ///   cargo xtask export compose --profile prod > compose.prod.yaml
        cmd export {
            /// `compose` or `kube`.
            required format: String
            /// Registry-free image names.
            optional --registry-free
            /// Apply `[profiles.NAME]` of docker/stack.toml (docs/stack.md); on stdout only
            /// (the checked-in compose.yaml is the file without a profile).
            optional --profile name: String
            /// compose: write compose.yaml and compose.offline.yaml (in the checkout root, or
            /// --dir) and make the compose project's secret files under .v7/ if missing.
            optional --write
            /// compose, with --write: this directory of the checkout instead of its root.
            optional --dir dir: PathBuf
            /// kube: `cluster` (default; Deployments, StatefulSets, NetworkPolicies, restricted
            /// Pod Security) or `podman` (Pods for `podman kube play` on this machine).
            optional --target target: String
            /// kube: registry prefix of the service images (default: docker/stack.toml's).
            optional --registry registry: String
            /// kube: tag of the service images (default: the git short revision, as pushed).
            optional --tag tag: String
            /// kube: storage class of the volume claims (default: the cluster's default).
            optional --storage-class class: String
            /// kube: namespace (default: the project name).
            optional --namespace namespace: String
            /// kube: reference Secrets made beforehand instead of writing placeholders.
            optional --existing-secrets
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
const RENAMED: &[(&str, &str)] = &[("--offline", "--registry-free"), ("--preset", "--mirror PRESET")];

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
            "pull", "build", "deploy", "down", "status", "logs", "verify", "doctor", "bundle", "export", "push",
            "test", "bench",
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
            build.contains("--registry-free") && build.contains("cargo xtask build --mirror tuna backend"),
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
        assert_eq!(renamed(&args("build --mirror --preset tuna")), Some(("--preset", "--mirror PRESET")));
    }
}
