//! The network as the xtask sees it: a small HTTP/1.1 client, retry timing (backoff, jitter,
//! Retry-After), proxy settings, and reachability probes. Uses only `util`.

pub mod backoff;
pub mod http;
pub mod proxy;
pub mod reachable;
