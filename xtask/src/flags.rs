//! Command-line flags. Every `///` line here is what `cargo xtask --help` prints.

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
            /// that fetches ahead and retries single requests (xtask/src/pull_relay.rs).
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
        ///   cargo xtask build --mirror                  mirrors from docker/stack.toml
        ///   cargo xtask build --mirror --preset tuna backend
        ///   cargo xtask build --offline                 registry-free: Debian-based images
        cmd build {
            /// Services to build (default: all three).
            repeated service: String
            /// Rewrite the Dockerfiles (out of tree) so apk, apt, npm, pip and cargo use mirrors.
            optional --mirror
            /// Which mirror preset of docker/stack.toml `--mirror` uses.
            optional --preset name: String
            /// Registry-free mode: build every image from Debian packages, no registry needed.
            optional --offline
            /// With --offline: make the Debian base image anew (it is otherwise reused).
            optional --rebuild-base
            /// Build even when nothing changed.
            optional --force
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Start the whole stack in dependency order, each service behind its health check.
        ///
        /// Examples:
        ///   cargo xtask deploy
        ///   cargo xtask deploy --offline
        ///   cargo xtask deploy --dry-run
        cmd deploy {
            /// Registry-free mode (see `build --offline`).
            optional --offline
            /// Use the images that are here; do not build.
            optional --no-build
            /// Seconds each service may take to become healthy (default 120).
            optional --timeout secs: u64
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Stop and remove the stack's containers and networks (volumes with --volumes).
        cmd down {
            /// Also remove the named volumes (their data is lost).
            optional --volumes
            /// Print the podman commands instead of running them.
            optional --dry-run
        }

        /// Show each service of the stack: state, health, image, ports.
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
        cmd verify {}

        /// Report podman and how this host needs it configured, proxies and mirrors in effect.
        cmd doctor {}

        /// Air-gapped machines: every image of the stack in one verified archive.
        cmd bundle {
            /// Write every image the stack needs into FILE, with a manifest and checksums.
            cmd save {
                required file: PathBuf
                /// Registry-free images (the default when no registry is reachable).
                optional --offline
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
            optional --offline
        }

        /// Run every test suite: Rust, Python, web, and the podman end-to-end tests.
        /// Installs missing prerequisites first (apt-get, npm, pip) and says what it did.
        cmd test {
            /// Only these suites: rust, python, web, podman (default: all).
            repeated suite: String
        }

        /// Benchmarks. `cold-build`: cold `cargo build -p xtask` and warm `cargo xtask --help`.
        cmd bench {
            required name: String
            /// Repetitions (default 3).
            optional --runs n: usize
        }
    }
}
