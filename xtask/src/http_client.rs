//! A small HTTP/1.1 client over std's TcpStream, for health probes, `verify` and registry
//! reachability checks (plain http only: everything it talks to is on this host or a mirror
//! probe). Its head parsing ([`read_head`], [`status_of`]) is also what the pull relay
//! (`pull_relay.rs`) reads podman's requests and the registry's streamed answers with. Avoid
//! adding dependencies: an HTTP crate would cost more compile time than the whole of this file
//! is worth.

use std::io::{BufRead, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Splits `http://host:port/path?q` into (host, port, path).
pub fn split_url(url: &str) -> Result<(String, u16, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("{url}: only http:// URLs are supported here"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("{url}: bad port"))?),
        None => (authority.to_string(), 80),
    };
    Ok((host, port, path.to_string()))
}

pub fn request(method: &str, url: &str, body: Option<(&str, &str)>, timeout: Duration) -> Result<Response> {
    let (host, port, path) = split_url(url)?;
    request_to(&host, port, method, &path, &[], body, timeout, timeout).with_context(|| format!("{method} {url}"))
}

/// One request with extra headers and separate connect and read timeouts (the registry probes
/// of `pull` need both short).
#[allow(clippy::too_many_arguments)]
pub fn request_to(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
    connect: Duration,
    read: Duration,
) -> Result<Response> {
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, connect).with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_read_timeout(Some(read))?;
    stream.set_write_timeout(Some(read))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: v7-xtask\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((content_type, data)) = body {
        req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", data.len()));
    }
    req.push_str("\r\n");
    if let Some((_, data)) = body {
        req.push_str(data);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the answer")?;
    parse_response(&raw).context("bad HTTP answer")
}

pub fn get(url: &str, timeout: Duration) -> Result<Response> {
    request("GET", url, None, timeout)
}

pub fn parse_response(raw: &[u8]) -> Result<Response> {
    let mut cursor = std::io::Cursor::new(raw);
    let (status_line, headers) = read_head(&mut cursor).context("no end of headers")?;
    let (status, _) = status_of(&status_line).ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let body = String::from_utf8_lossy(&raw[cursor.position() as usize..]);
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&body)? } else { body.into_owned() };
    Ok(Response { status, headers, body })
}

/// `HTTP/1.1 503 Service Unavailable` -> (503, "Service Unavailable").
pub fn status_of(line: &str) -> Option<(u16, String)> {
    let mut parts = line.splitn(3, ' ');
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    let status = parts.next()?.trim().parse().ok()?;
    Some((status, parts.next().unwrap_or("").trim().to_string()))
}

/// The request or status line and the headers, up to the empty line. Bytes that are not text
/// (a TLS alert where HTTP was expected) come back as a first line that does not say `HTTP/`.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut raw = Vec::new();
    if reader.read_until(b'\n', &mut raw)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before an answer"));
    }
    let first = String::from_utf8_lossy(&raw).into_owned();
    if !first.is_ascii() || !first.ends_with('\n') {
        return Ok((first, Vec::new()));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed in the headers"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n").ok_or_else(|| anyhow!("truncated chunk"))?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("truncated chunk");
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        assert_eq!(split_url("http://127.0.0.1:3000/readyz").unwrap(), ("127.0.0.1".into(), 3000, "/readyz".into()));
        assert_eq!(split_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
        assert!(split_url("https://h").is_err());
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 4\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((r.status, r.header("retry-after"), r.body.as_str()), (503, Some("4"), "{\"x\":1}"));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "abcde");
        assert_eq!(status_of("HTTP/1.0 429 Too Many Requests"), Some((429, "Too Many Requests".into())));
        assert_eq!(status_of("HTTP/1.1 200"), Some((200, String::new())));
        assert_eq!(status_of("\u{15}\u{3}"), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nX: 1\r\n").is_err(), "no end of headers");
    }

    #[test]
    fn heads_are_read_up_to_the_empty_line() {
        let mut r = std::io::Cursor::new(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nX: a:b\r\n\r\nbody".to_vec());
        let (line, headers) = read_head(&mut r).unwrap();
        assert_eq!(line, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(headers, vec![("Retry-After".into(), "2".into()), ("X".into(), "a:b".into())]);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
        assert!(read_head(&mut std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nX: 1\r\n".to_vec())).is_err());
        // A TLS alert where an HTTP answer was expected.
        let (line, _) = read_head(&mut std::io::Cursor::new(b"\x15\x03\x03\x00\x02\x02\x46".to_vec())).unwrap();
        assert!(!line.starts_with("HTTP/"));
    }

}
