//! What podman's errors mean: known failures on restricted hosts and registries, mapped to what to do.
//! Used wherever podman's stderr is reported, so the user sees the cause and the fix.

/// Known podman failures on restricted hosts, mapped to what to do. Used wherever podman's
/// stderr is reported, so the user sees the cause and the fix, not just the raw error.
pub fn explain_failure(stderr: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        (
            "cgroups in hybrid mode not supported",
            "crun cannot run in hybrid cgroups: the xtask uses runc via its containers.conf; install runc (apt-get install runc) and run `cargo xtask doctor`",
        ),
        (
            "setrlimit `RLIMIT_NOFILE`: Operation not permitted",
            "podman's default ulimits exceed this host's hard limits: `cargo xtask doctor` writes a containers.conf with default_ulimits at the hard limit",
        ),
        (
            "error setting rlimit type 7",
            "podman's default nofile ulimit exceeds this host's hard limit: run `cargo xtask doctor`",
        ),
        (
            "unable to get systemd connection to add healthchecks",
            "no systemd here: health checks are run by the xtask (`podman healthcheck run`), not by podman's timer",
        ),
        (
            "requested access to the resource is denied",
            "the registry refused: the image does not exist there or needs `podman login`",
        ),
        (
            "manifest unknown",
            "the tag or digest does not exist in that registry",
        ),
    ];
    KNOWN.iter().find(|(needle, _)| stderr.contains(needle)).map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::explain_failure;

    #[test]
    fn known_errors_from_restricted_hosts_are_explained() {
        let e = "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied";
        assert!(explain_failure(e).unwrap().contains("default_ulimits"));
        let e = "Error: runc create failed: unable to start container process: error setting rlimit type 7: operation not permitted";
        assert!(explain_failure(e).unwrap().contains("doctor"));
        assert!(explain_failure("crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2")
            .unwrap()
            .contains("runc"));
        assert_eq!(explain_failure("some other failure"), None);
    }
}
