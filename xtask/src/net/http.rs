//! HTTP/1.1 on bytes, plain `http://` only: health probes, `verify`, registry probes, and the
//! message heads the pull relay reads podman's requests and the registries' answers with.
//!
//! Heads are parsed by httparse (the parser hyper uses, no dependencies); bodies are read here,
//! on bytes, by `Content-Length` (a shorter body is an error, not a truncated success), chunked
//! (sizes parsed by httparse; a multi-byte character split between chunks stays whole because
//! text is decoded only after de-chunking), or up to the end of the connection. Hosts may be
//! names, IPv4 or bracketed IPv6 literals (`http://[::1]:8080/`); every address a name resolves
//! to is tried in turn. No input makes it panic: malformed answers are errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The largest head the xtask reads: registries and podman send a few hundred bytes.
const MAX_HEAD: usize = 64 << 10;
/// The largest body [`request_to`] reads into memory: health answers, stats, Prometheus targets.
const MAX_BODY: usize = 16 << 20;

/// `http://host[:port][/path]`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Without brackets: `127.0.0.1`, `::1`, `registry.example`.
    pub host: String,
    pub port: u16,
    /// `/` at least, query included.
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url> {
        let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("{url}: only http:// URLs are supported here"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = split_authority(authority, 80).map_err(|why| anyhow!("{url}: {why}"))?;
        Ok(Url { host, port, path })
    }
}

/// `host[:port]` or `[v6][:port]` -> (host without brackets, port).
pub fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an IPv6 address needs its closing `]`")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("expected `:port` after `]`")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err("an IPv6 address must be in brackets: [::1]:8080".into()),
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// `host:port` as a Host header or a message says it: IPv6 in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced), trimmed for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

/// The first header of that name (names compare case-insensitively).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub fn get(url: &str, timeout: Duration) -> Result<Response> {
    request("GET", url, None, timeout)
}

/// One request to `url`; `body` is (content type, bytes).
pub fn request(method: &str, url: &str, body: Option<(&str, &[u8])>, timeout: Duration) -> Result<Response> {
    let u = Url::parse(url)?;
    request_to(&u.host, u.port, method, &u.path, &[], body, timeout, timeout).with_context(|| format!("{method} {url}"))
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
    body: Option<(&str, &[u8])>,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<Response> {
    let mut stream = connect(host, port, connect_timeout)?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(read_timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: v7-xtask\r\n",
        authority(host, port)
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((content_type, data)) = body {
        req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", data.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some((_, data)) = body {
        bytes.extend_from_slice(data);
    }
    stream.write_all(&bytes).context("sending the request")?;
    read_response(&mut BufReader::new(stream), method == "HEAD")
}

/// Connects to every address `host` resolves to in turn, each within `timeout`.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().with_context(|| format!("cannot resolve {host}"))?.collect();
    connect_any(&addrs, timeout).with_context(|| format!("cannot connect to {}", authority(host, port)))
}

/// The first of `addrs` that accepts a connection; the error names the last failure.
pub fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    match last {
        Some(e) if addrs.len() > 1 => bail!("{} addresses tried, the last: {e}", addrs.len()),
        Some(e) => bail!("{e}"),
        None => bail!("the name has no address"),
    }
}

/// A whole answer: head, then the body as its head says (none for HEAD, 1xx, 204 and 304).
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Result<Response> {
    let raw = read_head(reader).context("reading the answer")?;
    let head = parse_response_head(&raw).map_err(|e| anyhow!("bad HTTP answer: {e}"))?;
    let bodyless = head_only || head.status / 100 == 1 || head.status == 204 || head.status == 304;
    let body = if bodyless { Vec::new() } else { read_body(reader, &head.headers, MAX_BODY)? };
    Ok(Response { status: head.status, reason: head.reason, headers: head.headers, body })
}

/// The bytes of a message head, up to and including the empty line. A first line that is not
/// text (a TLS record where HTTP was expected) comes back at once, for the parser to refuse.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader.by_ref().take((MAX_HEAD + 1 - head.len()) as u64).read_until(b'\n', &mut head)?;
        if n == 0 {
            return if head.is_empty() {
                Err(Error::new(ErrorKind::UnexpectedEof, "connection closed before an answer"))
            } else {
                Ok(head)
            };
        }
        if head.len() > MAX_HEAD {
            return Err(Error::new(ErrorKind::InvalidData, format!("a message head of more than {MAX_HEAD} bytes")));
        }
        let line = &head[before..];
        if before == 0 && !line.is_ascii() && !line.starts_with(b"HTTP/") {
            return Ok(head);
        }
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                head.clear(); // an empty line before the start line is ignored (RFC 9112 2.2)
                continue;
            }
            return Ok(head);
        }
    }
}

/// What a head is not.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// It does not start like HTTP at all: TLS, most likely.
    NotHttp,
    /// The connection ended inside the head.
    Incomplete,
    Malformed(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::NotHttp => f.write_str("the answer is not HTTP"),
            HeadError::Incomplete => f.write_str("the connection closed inside the head"),
            HeadError::Malformed(why) => f.write_str(why),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

fn owned_headers(headers: &[httparse::Header]) -> Vec<(String, String)> {
    headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string())).collect()
}

fn head_error(raw: &[u8], start: &[u8], e: httparse::Error) -> HeadError {
    if !raw.starts_with(start) {
        HeadError::NotHttp
    } else {
        HeadError::Malformed(format!("bad HTTP head: {e}"))
    }
}

pub fn parse_response_head(raw: &[u8]) -> Result<ResponseHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(_)) => Ok(ResponseHead {
            status: r.code.unwrap_or(0),
            reason: r.reason.unwrap_or("").to_string(),
            headers: owned_headers(r.headers),
        }),
        Ok(httparse::Status::Partial) if raw.starts_with(b"HTTP/") => Err(HeadError::Incomplete),
        Ok(httparse::Status::Partial) => Err(HeadError::NotHttp),
        Err(e) => Err(head_error(raw, b"HTTP/", e)),
    }
}

pub fn parse_request_head(raw: &[u8]) -> Result<RequestHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut r = httparse::Request::new(&mut headers);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(_)) => Ok(RequestHead {
            method: r.method.unwrap_or("").to_string(),
            path: r.path.unwrap_or("").to_string(),
            headers: owned_headers(r.headers),
        }),
        Ok(httparse::Status::Partial) => Err(HeadError::Incomplete),
        Err(e) => Err(HeadError::Malformed(format!("bad HTTP request: {e}"))),
    }
}

/// A body as `headers` frame it, at most `limit` bytes.
pub fn read_body(reader: &mut impl BufRead, headers: &[(String, String)], limit: usize) -> Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader, limit);
    }
    match header(headers, "content-length") {
        Some(v) => {
            let want: u64 = v.trim().parse().map_err(|_| anyhow!("bad Content-Length {v:?}"))?;
            if want > limit as u64 {
                bail!("an answer of {want} bytes, more than the {limit} this client reads");
            }
            let mut body = Vec::with_capacity(want as usize);
            reader.by_ref().take(want).read_to_end(&mut body).context("reading the body")?;
            if (body.len() as u64) < want {
                bail!("answer cut at {} of {want} bytes", body.len());
            }
            Ok(body)
        }
        None => {
            let mut body = Vec::new();
            reader.by_ref().take(limit as u64 + 1).read_to_end(&mut body).context("reading the body")?;
            if body.len() > limit {
                bail!("an answer of more than {limit} bytes");
            }
            Ok(body)
        }
    }
}

/// A chunked body (RFC 9112 7.1): sizes, data, CRLFs, trailers.
pub fn read_chunked(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        reader.by_ref().take(4096).read_until(b'\n', &mut line).context("reading a chunk size")?;
        if line.is_empty() {
            bail!("answer cut before its last chunk");
        }
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => bail!("bad chunk size line {:?}", String::from_utf8_lossy(&line).trim_end()),
        };
        if size == 0 {
            // Trailers, up to the empty line (or the end of the connection).
            loop {
                let mut t = Vec::new();
                let n = reader.by_ref().take(4096).read_until(b'\n', &mut t)?;
                if n == 0 || t == b"\r\n" || t == b"\n" {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > limit as u64 {
            bail!("a chunked answer of more than {limit} bytes");
        }
        let before = body.len();
        reader.by_ref().take(size).read_to_end(&mut body).context("reading a chunk")?;
        if ((body.len() - before) as u64) < size {
            bail!("answer cut inside a chunk ({} of {size} bytes)", body.len() - before);
        }
        let mut crlf = Vec::new();
        reader.by_ref().take(2).read_until(b'\n', &mut crlf)?;
        if crlf != b"\r\n" && crlf != b"\n" {
            bail!("a chunk is not followed by CRLF");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    fn answer(raw: &[u8]) -> Result<Response> {
        read_response(&mut Cursor::new(raw.to_vec()), false)
    }

    #[test]
    fn urls_with_names_ipv4_and_ipv6() {
        let u = Url::parse("http://127.0.0.1:3000/readyz").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 3000, "/readyz"));
        let u = Url::parse("http://[::1]:8080/v2/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 8080, "/v2/"));
        assert_eq!(authority(&u.host, u.port), "[::1]:8080");
        let u = Url::parse("http://[fe80::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("fe80::1", 80, "/"));
        assert_eq!(Url::parse("http://h?x=1").unwrap().path, "/?x=1");
        assert!(Url::parse("https://h").is_err());
        assert!(Url::parse("http://::1:80/").is_err(), "an IPv6 literal needs brackets");
        assert!(Url::parse("http://[::1/").is_err());
        assert!(Url::parse("http://h:port/").is_err());
        assert!(Url::parse("http://:80/").is_err());
    }

    #[test]
    fn content_length_bodies_are_read_exactly() {
        let r =
            answer(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 4\r\nContent-Length: 7\r\n\r\n{\"x\":1}extra")
                .unwrap();
        assert_eq!((r.status, r.reason.as_str(), r.header("retry-after")), (503, "Service Unavailable", Some("4")));
        assert_eq!(r.body, b"{\"x\":1}");
        let e = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").unwrap_err();
        assert_eq!(format!("{e:#}"), "answer cut at 5 of 10 bytes");
        assert!(answer(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n").is_err());
        let r = answer(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, b"to the end");
        let r =
            read_response(&mut Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()), true).unwrap();
        assert!(r.body.is_empty(), "a HEAD answer has no body");
    }

    #[test]
    fn chunked_bodies_keep_split_characters_whole() {
        // "é" is 0xC3 0xA9: the first chunk ends inside it.
        let r = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\xc3\r\n3;ext=1\r\n\xa9cd\r\n0\r\nX-Trailer: 1\r\n\r\n")
            .unwrap();
        assert_eq!(r.text(), "abécd");
        let e = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n").unwrap_err();
        assert!(format!("{e:#}").contains("bad chunk size line \"zz\""), "{e:#}");
        let e = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc").unwrap_err();
        assert!(format!("{e:#}").contains("cut inside a chunk (3 of 16 bytes)"), "{e:#}");
        let e = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc").unwrap_err();
        assert!(format!("{e:#}").contains("not followed by CRLF") || format!("{e:#}").contains("cut before"), "{e:#}");
        let e = answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n").unwrap_err();
        assert!(format!("{e:#}").contains("bad chunk size"), "{e:#}");
    }

    #[test]
    fn heads_are_read_up_to_the_empty_line() {
        let mut r =
            Cursor::new(b"\r\nHTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nX: a:b\r\n\r\nbody".to_vec());
        let raw = read_head(&mut r).unwrap();
        let head = parse_response_head(&raw).unwrap();
        assert_eq!((head.status, head.reason.as_str()), (503, "Service Unavailable"));
        assert_eq!(head.headers, vec![("Retry-After".into(), "2".into()), ("X".into(), "a:b".into())]);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
        let raw = read_head(&mut Cursor::new(b"HTTP/1.1 200 OK\r\nX: 1\r\n".to_vec())).unwrap();
        assert_eq!(parse_response_head(&raw), Err(HeadError::Incomplete));
        assert!(read_head(&mut Cursor::new(Vec::new())).is_err());
        // A TLS alert where an HTTP answer was expected, and a long binary answer.
        let raw = read_head(&mut Cursor::new(b"\x15\x03\x03\x00\x02\x02\x46".to_vec())).unwrap();
        assert_eq!(parse_response_head(&raw), Err(HeadError::NotHttp));
        assert!(read_head(&mut Cursor::new(vec![b'a'; MAX_HEAD * 2])).is_err(), "no end of the head in sight");
        assert!(matches!(parse_response_head(b"HTTP/1.1 2000 OK\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert_eq!(parse_response_head(b"HTTP/1.1 200\r\n\r\n").unwrap().reason, "");
        // A reason phrase that is not ASCII is still an answer.
        let raw = read_head(&mut Cursor::new("HTTP/1.1 200 Très bien\r\nX: 1\r\n\r\n".as_bytes().to_vec())).unwrap();
        assert_eq!(parse_response_head(&raw).unwrap().headers.len(), 1);
    }

    #[test]
    fn requests_are_parsed() {
        let head = parse_request_head(b"GET /v2/a/manifests/1 HTTP/1.1\r\nAccept: x\r\nAccept: y\r\n\r\n").unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", "/v2/a/manifests/1"));
        assert_eq!(head.headers.len(), 2);
        assert!(parse_request_head(b"\x16\x03\x01\x02").is_err());
    }

    #[test]
    fn any_input_is_an_answer_or_an_error() {
        let inputs: &[&[u8]] = &[
            b"",
            b"HTTP/1.1",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\xff\xfe",
            b"\xc3\r\n\r\n",
            b"HTTP/1.1 200 \xff\r\n\r\n",
        ];
        for raw in inputs {
            let _ = answer(raw);
        }
        for cut in 0..60 {
            let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\xc3\xa9\r\n0\r\n\r\n";
            let _ = answer(&full[..cut.min(full.len())]);
        }
    }

    #[test]
    fn every_resolved_address_is_tried() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: nothing listens
        let s = connect_any(&[closed, open], Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open);
        let e = connect_any(&[closed], Duration::from_secs(2)).unwrap_err();
        assert!(format!("{e:#}").starts_with(&closed.to_string()), "{e:#}");
        assert!(connect_any(&[], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_request_round_trip_on_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let head = parse_request_head(&read_head(&mut reader).unwrap()).unwrap();
            let body = read_body(&mut reader, &head.headers, 1000).unwrap();
            let mut s = s;
            let reply = format!("{} {} {}", head.method, head.path, String::from_utf8_lossy(&body));
            write!(s, "HTTP/1.1 202 Accepted\r\nContent-Length: {}\r\n\r\n{reply}", reply.len()).unwrap();
            header(&head.headers, "host").unwrap().to_string()
        });
        let url = format!("http://127.0.0.1:{port}/api/events");
        let r = request("POST", &url, Some(("application/json", b"{}")), Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.text()), (202, "POST /api/events {}".to_string()));
        assert_eq!(server.join().unwrap(), format!("127.0.0.1:{port}"));
    }
}
