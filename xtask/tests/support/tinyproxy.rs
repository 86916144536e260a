//! An authenticated CONNECT proxy for the tests: Debian's tinyproxy (the `tinyproxy-bin`
//! binary alone; the `tinyproxy` package would start a daemon) on 127.0.0.1 with BasicAuth, run
//! in the foreground with its own config and log, ended on drop.

use std::time::Duration;

use super::{free_port, wait_for_port, Proc, TempDir};

/// tinyproxy (Debian's `tinyproxy-bin`) on 127.0.0.1 with BasicAuth, logging every CONNECT.
pub struct ConnectProxy {
    pub port: u16,
    pub log: std::path::PathBuf,
    _dir: TempDir,
    _proc: Proc,
}

impl ConnectProxy {
    pub fn start(user: &str, password: &str) -> ConnectProxy {
        let dir = TempDir::new("pull-tinyproxy");
        let (port, log, conf) = (free_port(), dir.path().join("tinyproxy.log"), dir.path().join("tinyproxy.conf"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogFile \"{}\"\nLogLevel Info\n\
                 BasicAuth {user} {password}\n",
                log.display()
            ),
        )
        .unwrap();
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("tinyproxy is needed for this test: apt-get install -y tinyproxy-bin");
        let child = std::process::Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        wait_for_port(port, Duration::from_secs(10));
        ConnectProxy { port, log, _dir: dir, _proc: proc }
    }

    /// CONNECT requests to `authority` the proxy has logged so far.
    pub fn connects_to(&self, authority: &str) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains(&format!("CONNECT {authority} "))).count()
    }
}
