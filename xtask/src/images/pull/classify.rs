//! What a failed `podman pull` means: podman 4.3's stderr classified as permanent (unknown
//! tag or repository, denied, unauthorized, TLS and configuration problems: move on to the next
//! source, or fail at once on the origin), rate-limited (HTTP 429: wait for Retry-After) or
//! transient (network trouble, HTTP 5xx, anything unrecognised: retrying costs little). The
//! texts are podman's own, observed against docker-registry 2.8 behind the fault proxy.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Will not change by retrying: unknown image or tag, denied, bad configuration.
    Permanent,
    /// HTTP 429: wait for the registry's Retry-After.
    RateLimited,
    /// Network trouble or HTTP 5xx; also anything unrecognised (retrying costs little).
    Transient,
}

/// podman 4.3's stderr for a failed pull -> what to do. Texts observed against
/// docker-registry 2.8 behind the fault proxy (see the tests below).
pub fn classify(stderr: &str) -> Class {
    let e = stderr.to_ascii_lowercase();
    const PERMANENT: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "repository name not known",
        "not found: manifest",
        ": denied",
        "requested access to the resource is denied",
        "unauthorized",
        "authentication required",
        "invalid reference format",
        "no such host",
        "x509:",
        "certificate",
        "server gave http response to https client",
        "short-name",
        "unsupported",
        "invalid status code from registry 404",
        "invalid status code from registry 403",
        "invalid status code from registry 401",
        "status: 404",
        "blocked",
    ];
    const RATE: &[&str] = &["toomanyrequests", "too many requests", "status: 429", "registry 429"];
    if RATE.iter().any(|n| e.contains(n)) {
        return Class::RateLimited;
    }
    if PERMANENT.iter().any(|n| e.contains(n)) {
        return Class::Permanent;
    }
    Class::Transient
}

/// The line that says what went wrong: podman's last `Error: ...`, else the last line.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.iter().rev().find_map(|l| l.strip_prefix("Error: ")) {
        Some(e) => e.to_string(),
        None => lines.last().copied().unwrap_or("no error output").to_string(),
    }
}

/// podman's words for a registry that wants credentials.
pub fn is_auth_error(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        ": denied",
        "requested access to the resource is denied",
        "registry 401",
        "registry 403",
    ]
    .iter()
    .any(|n| e.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real stderr of podman 4.3.1 against docker-registry 2.8 behind tests/support/faultproxy.py.
    const E_503_MANIFEST: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:1...\nError: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: received unexpected HTTP status: 503 Service Unavailable\n";
    const E_503_BLOB: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:1...\nError: parsing image configuration: Error fetching blob: invalid status code from registry 503 (Service Unavailable)\n";
    const E_502_BLOB: &str = "Error: parsing image configuration: Error fetching blob: invalid status code from registry 502 (Bad Gateway)\n";
    const E_500: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: received unexpected HTTP status: 500 Internal Server Error";
    const E_RESET: &str = "time=\"2026-11-22T02:18:58Z\" level=warning msg=\"Failed, retrying in 1s ... (1/3). Error: parsing image configuration: Get \\\"http://127.0.0.1:43959/v2/v7test-pull/probe/blobs/sha256:30\\\": read tcp 127.0.0.1:55758->127.0.0.1:43959: read: connection reset by peer\"\nError: parsing image configuration: Get \"http://127.0.0.1:43959/v2/v7test-pull/probe/blobs/sha256:30\": read tcp 127.0.0.1:44640->127.0.0.1:43959: read: connection reset by peer\n";
    const E_CUT: &str = "Copying blob sha256:7eba6c37e354\nError: writing blob: storing blob to file \"/var/tmp/storage3491527645/1\": happened during read: read tcp 127.0.0.1:57090->127.0.0.1:43959: read: connection reset by peer\n";
    const E_REFUSED: &str = "Error: initializing source docker://127.0.0.1:1/v7test-pull/probe:1: pinging container registry 127.0.0.1:1: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused\n";
    const E_TAG: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:nope...\nError: initializing source docker://127.0.0.1:43959/v7test-pull/probe:nope: reading manifest nope in 127.0.0.1:43959/v7test-pull/probe: manifest unknown: manifest unknown\n";
    const E_DENIED: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: denied";
    const E_UNAUTH: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: unauthorized";
    const E_429: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: toomanyrequests";
    const E_HUB_DENIED: &str = "Error: initializing source docker://docker.io/library/nosuch:1: reading manifest 1 in docker.io/library/nosuch: requested access to the resource is denied";
    const E_DNS: &str = "Error: initializing source docker://nope.invalid/x:1: pinging container registry nope.invalid: Get \"https://nope.invalid/v2/\": dial tcp: lookup nope.invalid: no such host";
    const E_TIMEOUT: &str = "Error: initializing source docker://10.255.255.1/x:1: pinging container registry 10.255.255.1: Get \"https://10.255.255.1/v2/\": dial tcp 10.255.255.1:443: i/o timeout";

    #[test]
    fn podman_errors_are_classified() {
        for e in [E_503_MANIFEST, E_503_BLOB, E_502_BLOB, E_500, E_RESET, E_CUT, E_REFUSED, E_TIMEOUT] {
            assert_eq!(classify(e), Class::Transient, "{e}");
        }
        for e in [E_TAG, E_DENIED, E_UNAUTH, E_HUB_DENIED, E_DNS] {
            assert_eq!(classify(e), Class::Permanent, "{e}");
        }
        assert_eq!(classify(E_429), Class::RateLimited);
        assert_eq!(classify("something new"), Class::Transient);
    }

    #[test]
    fn credentials_errors_are_told_apart() {
        assert!(is_auth_error(E_UNAUTH) && is_auth_error(E_DENIED) && is_auth_error(E_HUB_DENIED));
        assert!(!is_auth_error(E_TAG) && !is_auth_error(E_503_BLOB));
    }

    #[test]
    fn the_error_line_is_podmans_last_error() {
        assert!(error_line(E_RESET).starts_with("parsing image configuration: Get"));
        assert!(error_line(E_TAG).ends_with("manifest unknown: manifest unknown"));
        assert_eq!(error_line("plain failure\n\n"), "plain failure");
        assert_eq!(error_line(""), "no error output");
    }
}
