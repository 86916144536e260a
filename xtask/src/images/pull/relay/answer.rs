//! An answer the relay gives podman: status, the headers podman needs, and a body in memory
//! (manifests, errors) or in a file (blobs).

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;

use crate::net::http::header;
use crate::util::json;

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A blob on disk, and its size.
    File(PathBuf, u64),
}

impl Answer {
    /// A registry error podman shows as it is: `pull relay: <why>`.
    pub fn failure(why: &str) -> Answer {
        Answer::error(502, "Bad Gateway", "UNAVAILABLE", &format!("pull relay: {why}"))
    }

    /// An answer in the registry API's error format.
    pub fn error(status: u16, reason: &str, code: &str, message: &str) -> Answer {
        let mut body = String::new();
        {
            let mut o = json::object(&mut body);
            let mut errors = o.array("errors");
            errors.object().string("code", code).string("message", message);
        }
        Answer {
            status,
            reason: reason.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(body.into_bytes()),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Writes it to podman and closes (no keep-alive: one request per connection).
    pub fn write(&self, mut conn: TcpStream, head_only: bool) -> std::io::Result<()> {
        let length = match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, n) => *n,
        };
        let mut head =
            format!("HTTP/1.1 {} {}\r\nContent-Length: {length}\r\nConnection: close\r\n", self.status, self.reason);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        if !head_only {
            match &self.body {
                Body::Bytes(b) => conn.write_all(b)?,
                Body::File(path, _) => {
                    std::io::copy(&mut std::fs::File::open(path)?, &mut conn)?;
                }
            }
        }
        conn.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::json::Read;

    #[test]
    fn failures_are_registry_errors() {
        let a = Answer::failure("manifest 1: \"connect\" refused");
        assert_eq!((a.status, a.header("content-type")), (502, Some("application/json")));
        let Body::Bytes(body) = &a.body else { panic!("in memory") };
        let doc = json::parse(&String::from_utf8_lossy(body)).unwrap();
        let e = &doc.field("errors").unwrap().items()[0];
        assert_eq!(e.field("code").and_then(Read::str), Some("UNAVAILABLE"));
        assert_eq!(e.field("message").and_then(Read::str), Some("pull relay: manifest 1: \"connect\" refused"));
    }
}
