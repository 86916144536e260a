//! Which certificates podman trusts for a registry, so the pull relay trusts the same: the
//! system's CA bundle plus the registry's certs.d directory (containers-certs.d(5): `*.crt` are
//! CAs, a `NAME.cert` with its `NAME.key` a client certificate).
//!
//! The xtask has a certs.d of its own, `<state>/podman/certs.d/<host[:port]>/` (or `V7_CERTS_D`),
//! which podman is given per pull as `--cert-dir <certs.d>/<host[:port]>`. Chosen over the
//! other ways podman 4.3.1 can be pointed at certificates:
//! - `--cert-dir DIR` (podman pull, push, login) is the one documented flag: containers/image
//!   then reads that directory alone for every registry the command contacts, *adding* its `*.crt`
//!   to the system pool. Each pull of the xtask has one source (pull/retry.rs), so one
//!   directory per command is exactly one registry's.
//! - There is no registries.conf or containers.conf key for a certs.d root in 4.3.1 (the
//!   per-host root, `DockerPerHostCertDirPath`, is only settable from Go code).
//! - Moving `$HOME` or `$XDG_CONFIG_HOME` to make podman read `~/.config/containers/certs.d`
//!   would move every other per-user file podman reads (auth.json, containers.conf, storage).
//! - `/etc/containers/certs.d` is the machine's, and the system store is never changed.
//!
//! Without a directory of ours for a host, podman looks in its own places, and so does
//! [`cert_dir_for`]: `$HOME/.config/containers/certs.d`, `/etc/containers/certs.d`,
//! `/etc/docker/certs.d` (containers/image 5.23, which podman 4.3.1 builds on).

use std::path::{Path, PathBuf};

/// The certs.d roots podman 4.3.1 reads, ours first.
pub fn roots(ours: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut out = vec![ours.to_path_buf()];
    if let Some(h) = home {
        out.push(h.join(".config/containers/certs.d"));
    }
    out.push(PathBuf::from("/etc/containers/certs.d"));
    out.push(PathBuf::from("/etc/docker/certs.d"));
    out
}

/// The first `<root>/<host_port>` that `exists`: the directory podman uses for that registry.
/// `host_port` as image references write it (`registry.example`, `127.0.0.1:5000`): the
/// port's presence must match, as containers-certs.d(5) says.
pub fn cert_dir_for(roots: &[PathBuf], host_port: &str, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if host_port.is_empty() || host_port.contains('/') || host_port.starts_with('.') {
        return None;
    }
    roots.iter().map(|r| r.join(host_port)).find(|d| exists(d))
}

/// The system's CA bundle as Go (podman) finds it: `SSL_CERT_FILE`, else the first of Go's
/// list that exists.
pub fn system_bundle(ssl_cert_file: Option<&str>, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(f) = ssl_cert_file.filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| exists(p))
}

/// What a certs.d directory holds, from its file names (sorted).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertDir {
    pub cas: Vec<String>,
    /// `(NAME.cert, NAME.key)`: the first pair whose two halves are both there.
    pub client: Option<(String, String)>,
}

pub fn read_names(names: &[String]) -> CertDir {
    let mut names: Vec<&String> = names.iter().collect();
    names.sort();
    let cas = names.iter().filter(|n| n.ends_with(".crt")).map(|n| n.to_string()).collect();
    let client = names.iter().filter_map(|n| n.strip_suffix(".cert")).find_map(|stem| {
        let key = format!("{stem}.key");
        names.iter().any(|n| **n == key).then(|| (format!("{stem}.cert"), key))
    });
    CertDir { cas, client }
}

/// The bundle that trusts what podman trusts: the system's PEM text, then each CA of the
/// registry's certs.d directory, each ending in a newline.
pub fn bundle(system: Option<&str>, cas: &[String]) -> String {
    let mut out = String::new();
    for pem in system.into_iter().chain(cas.iter().map(String::as_str)) {
        out.push_str(pem);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_first_then_podmans_own_places() {
        let r = roots(Path::new("/s/podman/certs.d"), Some(Path::new("/root")));
        let have = |p: &Path| p == Path::new("/etc/containers/certs.d/m.example") || p.starts_with("/s/");
        assert_eq!(cert_dir_for(&r, "127.0.0.1:5000", have), Some(PathBuf::from("/s/podman/certs.d/127.0.0.1:5000")));
        let have = |p: &Path| p == Path::new("/etc/containers/certs.d/m.example");
        assert_eq!(cert_dir_for(&r, "m.example", have), Some(PathBuf::from("/etc/containers/certs.d/m.example")));
        assert_eq!(cert_dir_for(&r, "m.example:443", have), None, "the port must match as written");
        assert_eq!(cert_dir_for(&r, "../etc", |_| true), None);
        assert_eq!(r[1], PathBuf::from("/root/.config/containers/certs.d"));
    }

    #[test]
    fn the_system_bundle_as_go_finds_it() {
        assert_eq!(system_bundle(Some("/x.pem"), |_| false), Some(PathBuf::from("/x.pem")));
        let debian = |p: &Path| p == Path::new("/etc/ssl/certs/ca-certificates.crt");
        assert_eq!(system_bundle(None, debian), Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")));
        assert_eq!(
            system_bundle(Some(""), |p: &Path| p.ends_with("cert.pem")),
            Some(PathBuf::from("/etc/ssl/cert.pem"))
        );
        assert_eq!(system_bundle(None, |_| false), None);
    }

    #[test]
    fn a_cert_dir_is_read_by_file_names() {
        let names: Vec<String> =
            ["z.crt", "ca.crt", "client.cert", "client.key", "lonely.cert", "notes.txt"].map(String::from).to_vec();
        let d = read_names(&names);
        assert_eq!(d.cas, ["ca.crt", "z.crt"]);
        assert_eq!(d.client, Some(("client.cert".into(), "client.key".into())));
        assert_eq!(read_names(&["a.cert".into()]).client, None, "a certificate without its key is no pair");
        assert_eq!(bundle(Some("SYS"), &["CA1\n".into(), "CA2".into()]), "SYS\nCA1\nCA2\n");
        assert_eq!(bundle(None, &[]), "");
    }
}
