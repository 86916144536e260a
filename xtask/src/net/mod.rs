//! The network as the xtask sees it: a small HTTP/1.1 client, retry timing (backoff, jitter,
//! Retry-After), proxy settings, reachability probes, and who holds a local TCP port
//! (`listeners.rs`: can it be bound, which process listens on it). Uses only `util`.

pub mod backoff;
pub mod http;
pub mod listeners;
pub mod proxy;
pub mod reachable;
