//! Who holds a TCP port: whether a host address can be bound, and which process listens on a
//! port. Deploy's preflight asks before it starts anything, so a taken port is reported up front
//! with the process to stop, instead of podman failing half way with "address already in use".
//!
//! Linux only by design (the stack runs on Linux): the listener is found through `/proc`, which
//! needs no extra tool (`ss`, `lsof`) and no crate.

use std::fmt;

/// Whether `host_ip:port` can be bound now. The listener is dropped at once. std sets
/// SO_REUSEADDR on Unix, so a port left in TIME_WAIT by a closed connection counts as free, as it
/// does for podman (which binds the same way); only a live listener makes it taken.
pub fn can_bind(host_ip: &str, port: u16) -> bool {
    std::net::TcpListener::bind((host_ip, port)).is_ok()
}

/// A process listening on a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, spaces between the arguments, cut to about 80 characters.
    pub command: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// Longest command shown: enough to tell nginx from a dev server, short enough for one line.
const COMMAND_MAX: usize = 80;

/// LISTEN in the `st` column of `/proc/net/tcp` (the kernel's TCP_LISTEN, in hex).
const LISTEN: &str = "0A";

/// The process listening on TCP `port` on any address (IPv4 or IPv6), or `None` when there is
/// none or it cannot be seen: another user's process shows its socket in `/proc/net/tcp` but not
/// its file descriptors (unless we are root), and unreadable entries are skipped, not errors.
/// When several processes share the socket (forked workers), the lowest pid — usually the
/// parent that opened it — is named.
pub fn holder(port: u16) -> Option<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids: Vec<u32> =
        std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    let pid = pids.into_iter().find(|pid| holds(*pid, &wanted))?;
    Some(Holder { pid, command: command(pid) })
}

/// Whether one of `pid`'s file descriptors is one of the `wanted` sockets (`socket:[inode]`).
fn holds(pid: u32, wanted: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|target| target.to_str().is_some_and(|t| wanted.iter().any(|w| w == t)))
}

/// `pid`'s command line (NUL-separated in `/proc`), or its short name when the command line is
/// empty (kernel threads, zombies) or unreadable; `?` when neither can be read (it just exited).
fn command(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
    if text.is_empty() {
        text = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
    }
    if text.is_empty() {
        return "?".to_string();
    }
    if text.chars().count() > COMMAND_MAX {
        text = text.chars().take(COMMAND_MAX - 3).collect::<String>() + "...";
    }
    text
}

/// The inodes of the sockets in `table` (the text of `/proc/net/tcp` or `/proc/net/tcp6`) that
/// listen on `port`. Rows are `sl local_address rem_address st ... uid timeout inode ...`, the
/// local address `HEXIP:HEXPORT`; the header and rows that do not read so are skipped.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (_, hex_port) = local.rsplit_once(':')?;
            let listens = *state == LISTEN && u16::from_str_radix(hex_port, 16).ok()? == port;
            // Inode 0 is a socket no process owns any more (being torn down): nothing to name.
            inode.parse().ok().filter(|i| listens && *i != 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41001 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0BB8 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 41003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41004 1 0000000000000000 100 0 0 10 0
   4: 0100007F:0BB8 0100007F:D2F2 06 00000000:00000000 03:00000F2C 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52001 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_inodes_are_the_listen_rows_on_the_port() {
        assert_eq!(
            listening_inodes(TCP, 3000),
            vec![41001],
            "row 0 listens on 127.0.0.1:3000; row 2 is an established connection and row 4 TIME_WAIT on it"
        );
        assert_eq!(listening_inodes(TCP, 80), vec![41002], "row 1 listens on 0.0.0.0:80");
        assert_eq!(listening_inodes(TCP, 3001), vec![41004], "row 3 listens on 127.0.0.1:3001");
        assert_eq!(listening_inodes(TCP, 8080), Vec::<u64>::new(), "no row is on 8080");
        assert_eq!(listening_inodes(TCP6, 3000), vec![52001], "tcp6 row 0 listens on [::]:3000");
        assert_eq!(listening_inodes("", 3000), Vec::<u64>::new(), "an empty table");
        assert_eq!(listening_inodes("   0: garbage\n", 3000), Vec::<u64>::new(), "a short row is skipped");
    }

    #[test]
    fn holder_reads_as_pid_and_command() {
        let h = Holder { pid: 1234, command: "nginx: master process /usr/sbin/nginx".into() };
        assert_eq!(h.to_string(), "pid 1234 (nginx: master process /usr/sbin/nginx)");
    }

    #[test]
    fn a_port_this_process_listens_on_is_taken_and_held_by_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!can_bind("127.0.0.1", port), "127.0.0.1:{port} is listened on");
        let h = holder(port).expect("this process holds the port");
        assert_eq!(h.pid, std::process::id(), "{h}");
        assert!(!h.command.is_empty() && h.command.chars().count() <= COMMAND_MAX, "{h}");
        drop(listener);
        // Other tests fork children: between fork and exec a child holds a copy of every
        // descriptor, close-on-exec or not, so the socket may outlive the drop for a moment.
        let start = std::time::Instant::now();
        while !can_bind("127.0.0.1", port) && start.elapsed() < std::time::Duration::from_secs(2) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(can_bind("127.0.0.1", port), "127.0.0.1:{port} is free once the listener is dropped");
    }
}
