//! A certificate authority made for one test with openssl, and a server certificate it signed
//! for 127.0.0.1, for the TLS registries and fault proxies of the pull and push tests. The CA is
//! handed to podman and the xtask through a certs.d-style directory (`certs_d`), never the
//! system's store.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

/// `ca.crt`, `server.crt` and `server.key` in a temporary directory. The server certificate
/// names 127.0.0.1 and 0.0.0.0 (which Linux connects to 127.0.0.1, and which neither podman nor
/// curl exempts from a proxy as they do loopback: the proxy tests name a server so).
pub struct TestCa {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    pub fn new(tag: &str) -> TestCa {
        let dir = TempDir::new(&format!("{tag}-ca"));
        let d = dir.path();
        let subject = format!("/CN=v7test {tag} CA");
        let rsa = ["-newkey", "rsa:2048", "-nodes"];
        openssl(
            d,
            &[&["req", "-x509"][..], &rsa, &["-days", "1", "-subj", &subject, "-keyout", "ca.key", "-out", "ca.crt"]]
                .concat(),
        );
        openssl(
            d,
            &[&["req"][..], &rsa, &["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]].concat(),
        );
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1,IP:0.0.0.0\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
        );
        TestCa { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A certs.d directory (containers-certs.d(5)) under `root` trusting this CA for each of
    /// `hosts` (`host:port`, as image references name them): `root/<host:port>/ca.crt`.
    pub fn certs_d(&self, root: &Path, hosts: &[String]) {
        for h in hosts {
            std::fs::create_dir_all(root.join(h)).unwrap();
            std::fs::copy(self.ca(), root.join(h).join("ca.crt")).unwrap();
        }
    }
}
