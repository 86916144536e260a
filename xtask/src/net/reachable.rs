//! Is anything answering? TCP reachability of several hosts at once, bounded in time: how
//! `auto` mode finds out whether a container registry can be used at all.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::http::{connect, split_authority};

/// The first of `hosts` (`name`, `name:port`, `[v6]:port`; port 443 unless given) that accepts a
/// TCP connection within `timeout`, all probed at once. `None` after at most about `timeout`.
pub fn first_reachable(hosts: &[String], timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    for h in hosts {
        let (tx, h) = (tx.clone(), h.clone());
        std::thread::spawn(move || {
            let ok = split_authority(&h, 443).is_ok_and(|(host, port)| connect(&host, port, timeout).is_ok());
            let _ = tx.send((h, ok));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout + Duration::from_millis(500);
    while let Ok((h, ok)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if ok {
            return Some(h);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_host_is_found_and_nothing_is_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let closed =
            format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let t = Duration::from_secs(2);
        assert_eq!(first_reachable(&[closed.clone(), open.clone()], t), Some(open));
        assert_eq!(first_reachable(&[closed], t), None);
        assert_eq!(first_reachable(&[], t), None);
    }
}
