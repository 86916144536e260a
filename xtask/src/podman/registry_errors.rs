//! What a failed `podman pull`, `push` or `login` means, read from podman 4.3's stderr: permanent
//! (unknown tag or repository, denied, unauthorized, TLS and configuration problems: the same
//! answer again, so move on to the next source or fail at once), rate-limited (HTTP 429: wait
//! for Retry-After or back off) or transient (network trouble, HTTP 5xx: retry). One word list
//! for both directions; only what an unrecognised error means differs ([`Operation`]). The
//! texts are podman's own, observed against docker-registry 2.8 behind the fault proxy.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Will not change by retrying: unknown image or tag, denied, bad configuration.
    Permanent,
    /// HTTP 429: wait for the registry's Retry-After (or back off).
    RateLimited,
    /// Network trouble or HTTP 5xx.
    Transient,
}

/// What failed, which decides what an error nobody recognised is taken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Unrecognised is transient: a pull only reads, and another attempt costs little (and
    /// fetches nothing twice: podman keeps the layers it already has).
    Pull,
    /// Unrecognised is permanent: a push or login that failed for a reason we cannot name is
    /// more likely our setup than a bad moment of the registry, and each attempt re-sends layers.
    Push,
}

/// podman's stderr for a failed operation -> what to do.
pub fn classify(stderr: &str, op: Operation) -> Class {
    let e = stderr.to_ascii_lowercase();
    const RATE: &[&str] = &["toomanyrequests", "too many requests", "status: 429", "registry 429"];
    const PERMANENT: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "name invalid",
        "manifest invalid",
        "repository name not known",
        "not found: manifest",
        ": denied",
        "denied:",
        "requested access to the resource is denied",
        "forbidden",
        "unauthorized",
        "authentication required",
        "invalid reference",
        "no such image",
        "image not known",
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
        // A proxy that refuses our credentials (HTTPS_PROXY's user or password) says the same
        // every time: Go's "proxyconnect tcp: ... 407 Proxy Authentication Required".
        "proxy authentication required",
    ];
    const TRANSIENT: &[&str] = &[
        "status: 5",
        "registry 5",
        "502",
        "503",
        "504",
        "500 internal server error",
        "connection reset",
        "connection refused",
        "broken pipe",
        "timeout",
        "timed out",
        "eof",
        "temporary failure",
        "tls handshake",
    ];
    if RATE.iter().any(|n| e.contains(n)) {
        return Class::RateLimited;
    }
    // Before the transient words: a 401 mentioned beside a reset is still a 401.
    if PERMANENT.iter().any(|n| e.contains(n)) {
        return Class::Permanent;
    }
    if TRANSIENT.iter().any(|n| e.contains(n)) {
        return Class::Transient;
    }
    match op {
        Operation::Pull => Class::Transient,
        Operation::Push => Class::Permanent,
    }
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
            assert_eq!(classify(e, Operation::Pull), Class::Transient, "{e}");
        }
        for e in [E_TAG, E_DENIED, E_UNAUTH, E_HUB_DENIED, E_DNS] {
            assert_eq!(classify(e, Operation::Pull), Class::Permanent, "{e}");
        }
        assert_eq!(classify(E_429, Operation::Pull), Class::RateLimited);
        assert_eq!(classify("something new", Operation::Pull), Class::Transient);
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

    #[test]
    fn push_failures_are_permanent_unless_the_registry_had_a_bad_moment() {
        let push = |e: &str| classify(e, Operation::Push);
        assert_eq!(
            push("Error: writing blob: received unexpected HTTP status: 503 Service Unavailable"),
            Class::Transient
        );
        assert_eq!(push("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"), Class::Transient);
        assert_eq!(push("Error: authenticating creds: unauthorized: authentication required"), Class::Permanent);
        assert_eq!(push("x509: certificate signed by unknown authority"), Class::Permanent);
        assert_eq!(push("unauthorized; then a connection reset"), Class::Permanent, "permanent wins");
        assert_eq!(push("Error: trying to reuse blob: toomanyrequests"), Class::RateLimited);
        assert_eq!(push("something nobody anticipated"), Class::Permanent, "unrecognised: do not loop");
        let proxy =
            "Error: pinging container registry 0.0.0.0:5000: Get \"https://0.0.0.0:5000/v2/\": proxyconnect tcp: \
                     407 Proxy Authentication Required";
        assert_eq!(classify(proxy, Operation::Pull), Class::Permanent, "a refused proxy login is not asked again");
    }

    #[test]
    fn only_unrecognised_errors_depend_on_the_operation() {
        for e in [E_503_MANIFEST, E_RESET, E_REFUSED, E_TIMEOUT, E_TAG, E_UNAUTH, E_DNS, E_429] {
            assert_eq!(classify(e, Operation::Pull), classify(e, Operation::Push), "{e}");
        }
    }
}
