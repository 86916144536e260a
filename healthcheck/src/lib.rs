//! The `healthcheck` subcommand of backend and analytics-engine, the command their images'
//! HEALTHCHECK runs (the images have no curl or wget): `GET /healthz` on
//! `127.0.0.1:<port>` with a tiny std-only HTTP/1.0 client, healthy on 200. One implementation
//! for both services.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Connect, send and answer must each happen within this.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Ok when `GET /healthz` on 127.0.0.1:`port` answers 200; otherwise why not.
pub fn check(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    // Only the status line matters; read until it is complete or the server closes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match status_code(&buf) {
        Some(200) => Ok(()),
        Some(code) => Err(format!("/healthz answered {code}")),
        None => Err("no HTTP status line in the answer".to_string()),
    }
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
pub fn status_code(response: &[u8]) -> Option<u16> {
    let line_end = response.windows(2).position(|w| w == b"\r\n").unwrap_or(response.len());
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// [`check`] as a command's result: success when healthy, else failure with the reason on
/// stderr after `program` (`backend healthcheck: /healthz answered 503`).
pub fn exit_code(program: &str, port: u16) -> ExitCode {
    match check(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program} healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 200"), Some(200));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"garbage"), None);
        assert_eq!(status_code(b""), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK\r\n"), None);
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        // Bind then drop to get a port with (almost certainly) nothing listening.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(check(port).unwrap_err().starts_with("connect 127.0.0.1:"));
        assert_eq!(exit_code("test", port), ExitCode::FAILURE);
    }

    fn serve_once(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 256];
            let n = s.read(&mut b).unwrap();
            s.write_all(answer).unwrap();
            String::from_utf8_lossy(&b[..n]).into_owned()
        });
        (port, t)
    }

    #[test]
    fn only_200_is_healthy() {
        let (port, t) = serve_once(b"HTTP/1.0 500 Internal Server Error\r\n\r\n");
        assert_eq!(check(port), Err("/healthz answered 500".to_string()));
        assert!(t.join().unwrap().starts_with("GET /healthz HTTP/1.0\r\n"));
        let (port, t) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(check(port), Ok(()));
        t.join().unwrap();
    }
}
