//! `cargo xtask push` against a real registry that speaks TLS and wants a login: Debian's
//! docker-registry with a certificate from a CA this test makes with openssl (trusted through
//! `--cert-dir`, never the system's store) and an htpasswd file (bcrypt, apache2-utils).
//!
//! - a wrong password fails with one line naming the login, exits non-zero, pushes nothing;
//! - no credentials fail with the hint to set them;
//! - the right password pushes every service image under every tag (latest, the revision,
//!   `--tag`), and the registry serves each tag with the digest push reported;
//! - the password appears in no output, the temporary auth file is gone afterwards, and no
//!   local tag was added for a target.
//!
//! The service images are three tiny images this test imports under `localhost/v7test-push-*`
//! names, given to the xtask in a copy of docker/stack.toml (V7_STACK_FILE): a developer's
//! real images are never touched. Run by `cargo test -p xtask --features e2e --test push_e2e`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::registry::{Proxy, Registry};
use support::tls::TestCa;
use support::{podman, unique, Images, TempDir};

const USER: &str = "v7test-pusher";
const PASSWORD: &str = "v7test-correct-horse-battery";
const SERVICES: [&str; 3] = ["analytics-engine", "backend", "web"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// docker-registry over TLS (a certificate of a CA made for the test, `support/tls.rs`) with
/// htpasswd auth (`support/registry.rs`); the CA's certificate in a certs.d-style
/// `certs.d/<host:port>/ca.crt`.
struct TlsRegistry {
    registry: Registry,
    dir: TempDir,
}

impl TlsRegistry {
    fn start() -> TlsRegistry {
        let ca = std::sync::Arc::new(TestCa::new("push"));
        let registry = Registry::start_with_login(Some(ca.clone()), Some((USER, PASSWORD)));
        let dir = TempDir::new("push-certs");
        ca.certs_d(&dir.path().join("certs.d"), &[registry.addr()]);
        TlsRegistry { registry, dir }
    }

    fn addr(&self) -> String {
        self.registry.addr()
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs.d").join(self.addr())
    }

    /// What the registry serves for `reference` (`HOST/REPO:TAG`): its manifest digest.
    fn digest(&self, reference: &str) -> String {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}", "--cert-dir"])
            .arg(self.certs())
            .args(["--creds", &format!("{USER}:{PASSWORD}"), &format!("docker://{reference}")]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The xtask with a private state dir, a stack copy naming the test images, and none of the
/// caller's registry credentials.
struct Xtask {
    state: TempDir,
    stack: PathBuf,
}

impl Xtask {
    fn run(&self, args: &[&str], creds: Option<(&str, &str)>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(args)
            .env("V7_STATE_DIR", self.state.path().join("v7"))
            .env("V7_STACK_FILE", &self.stack)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for k in
            ["REGISTRY_USER", "REGISTRY_TOKEN", "GITHUB_ACTOR", "GITHUB_TOKEN", "GITHUB_REF_TYPE", "GITHUB_REF_NAME"]
        {
            c.env_remove(k);
        }
        if let Some((u, p)) = creds {
            c.env("REGISTRY_USER", u).env("REGISTRY_TOKEN", p);
        }
        let out = c.output().unwrap();
        eprintln!("--- xtask {args:?} ({})\n{}", out.status, text(&out));
        out
    }

    fn auth_dirs_left(&self) -> Vec<String> {
        match std::fs::read_dir(self.state.path().join("v7")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("push-auth"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Three tiny images named like the services, under a test-only prefix, and a stack copy that
/// names them.
fn test_images(images: &mut Images, state: &TempDir) -> PathBuf {
    let prefix = unique("push");
    let mut stack = std::fs::read_to_string(root().join("docker/stack.toml")).unwrap();
    for svc in SERVICES {
        let dir = state.path().join(format!("img-{svc}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello"), format!("{svc} {prefix}\n")).unwrap();
        let tar = state.path().join(format!("{svc}.tar"));
        run(Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&tar).arg("."));
        let local = format!("localhost/{prefix}/{svc}:latest");
        let out = podman(&["import", "-q", tar.to_str().unwrap(), &local]);
        assert!(out.status.success(), "podman import: {}", text(&out));
        images.add(&local);
        let manifest = format!("image = \"ghcr.io/hellocplusplus0/v7/{svc}:latest\"");
        assert!(stack.contains(&manifest), "docker/stack.toml no longer has {manifest}");
        stack = stack.replace(&manifest, &format!("image = \"{local}\""));
    }
    let file = state.path().join("stack.toml");
    std::fs::write(&file, stack).unwrap();
    file
}

fn git_short_rev() -> String {
    let out = run(Command::new("git").arg("-C").arg(root()).args(["rev-parse", "--short", "HEAD"]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn push_publishes_every_image_and_tag_over_tls_with_a_login_that_stays_secret() {
    let registry = TlsRegistry::start();
    let state = TempDir::new("push-state");
    let mut images = Images::default();
    let stack = test_images(&mut images, &state);
    let x = Xtask { state, stack };
    let prefix = format!("{}/v7test", registry.addr());
    let certs = registry.certs();
    let certs = certs.to_str().unwrap();
    let base = ["push", "--registry", &prefix, "--cert-dir", certs, "--tag", "e2e", "--attempts", "2"];

    // A wrong password: one clear line, non-zero, nothing pushed, no auth file left.
    let out = x.run(&base, Some((USER, "v7test-wrong-password")));
    assert!(!out.status.success(), "a wrong password must fail");
    let all = text(&out);
    let error: Vec<&str> = all.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error.len(), 1, "one error line:\n{all}");
    assert!(error[0].contains(&format!("login to {} as {USER} failed", registry.addr())), "{}", error[0]);
    assert!(error[0].contains("REGISTRY_USER/REGISTRY_TOKEN"), "names where the credentials came from: {}", error[0]);
    assert!(!all.contains("v7test-wrong-password"), "the password was printed:\n{all}");
    assert!(!all.contains("pushed "), "nothing may be pushed:\n{all}");
    assert_eq!(x.auth_dirs_left(), Vec::<String>::new(), "the auth file must be removed");

    // No credentials at all: the registry's 401 with the hint to set them.
    let out = x.run(&base, None);
    assert!(!out.status.success(), "an anonymous push to an htpasswd registry must fail");
    let all = text(&out);
    assert!(all.contains("set REGISTRY_USER and REGISTRY_TOKEN"), "hint missing:\n{all}");

    // The dry run: every image and tag, no credentials, nothing sent.
    let out = x.run(&[&base[..], &["--dry-run"]].concat(), Some((USER, PASSWORD)));
    assert!(out.status.success());
    let all = text(&out);
    assert!(!all.contains(PASSWORD), "the dry run printed the password:\n{all}");
    let rev = git_short_rev();
    for svc in SERVICES {
        for tag in ["latest", "e2e"] {
            assert!(all.contains(&format!("-> {prefix}/{svc}:{tag}")), "dry run lacks {svc}:{tag}:\n{all}");
        }
        assert!(all.contains(&format!("-> {prefix}/{svc}:{rev}")), "dry run lacks {svc}:{rev}[-dirty]:\n{all}");
    }

    // The right password: every image under every tag, the registry serving the pushed digest.
    let out = x.run(&base, Some((USER, PASSWORD)));
    let all = text(&out);
    assert!(out.status.success(), "push failed:\n{all}");
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
    assert_eq!(x.auth_dirs_left(), Vec::<String>::new(), "the auth file must be removed");
    let pushed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("pushed "))
        .filter_map(|l| l.split_once(" ("))
        .map(|(r, d)| (r.to_string(), d.trim_end_matches(')').to_string()))
        .collect();
    assert_eq!(pushed.len(), 9, "3 images x (latest, revision, e2e):\n{all}");
    for (reference, digest) in &pushed {
        assert!(digest.starts_with("sha256:"), "{reference}: no digest reported ({digest:?})");
        assert_eq!(&registry.digest(reference), digest, "{reference}: the registry serves another manifest");
        assert!(
            !podman(&["image", "exists", reference]).status.success(),
            "{reference}: push must not tag the local image"
        );
    }
    for svc in SERVICES {
        let d: Vec<&String> =
            pushed.iter().filter(|(r, _)| r.starts_with(&format!("{prefix}/{svc}:"))).map(|(_, d)| d).collect();
        assert_eq!(d.len(), 3, "{svc}: {pushed:?}");
        assert!(d.iter().all(|x| *x == d[0]), "{svc}: every tag is the same image: {d:?}");
    }
    images.remove_now();
}

/// Push through the fault proxy (TLS on both sides) in front of the same registry: a registry
/// that answers 503 to two manifest uploads and resets one blob upload gets the image anyway,
/// after the xtask's own retries with backoff; one that keeps answering 503 is given up after
/// `--attempts`, with the hint that it kept failing.
#[test]
fn push_retries_a_registry_having_bad_moments_and_gives_up_on_one_that_keeps_failing() {
    let registry = TlsRegistry::start();
    let proxy = Proxy::start(&registry.registry);
    let ca = registry.registry.tls.clone().expect("a TLS registry");
    ca.certs_d(&registry.dir.path().join("certs.d"), &[proxy.addr()]);
    let certs = registry.dir.path().join("certs.d").join(proxy.addr());
    let certs = certs.to_str().unwrap();
    let state = TempDir::new("push-state");
    let mut images = Images::default();
    let stack = test_images(&mut images, &state);
    let x = Xtask { state, stack };
    let prefix = format!("{}/v7test", proxy.addr());

    proxy.faults(
        r#"{"rules": [
            {"path": "/manifests/", "method": "PUT", "times": 2, "action": "status", "status": 503},
            {"path": "/blobs/uploads/", "method": "POST", "times": 1, "action": "reset"}
        ]}"#,
    );
    let args = ["push", "backend", "--registry", &prefix, "--cert-dir", certs, "--tag", "e2e-retry", "--attempts", "3"];
    let out = x.run(&args, Some((USER, PASSWORD)));
    let all = text(&out);
    assert!(out.status.success(), "three attempts must outlast two 503s and a reset:\n{all}");
    assert_eq!(proxy.count("method=PUT&path=/manifests/&status=503"), 2, "{}", proxy.log());
    assert_eq!(proxy.count("method=POST&path=/blobs/uploads/&fault=reset"), 1, "{}", proxy.log());
    assert!(all.contains("attempt 2 of 3") && all.contains("attempt 3 of 3"), "the retries are reported:\n{all}");
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
    let pushed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("pushed "))
        .filter_map(|l| l.split_once(" ("))
        .map(|(r, d)| (r.to_string(), d.trim_end_matches(')').to_string()))
        .collect();
    assert!(pushed.len() >= 2, "latest and e2e-retry at least:\n{all}");
    for (reference, digest) in &pushed {
        let direct = reference.replacen(&proxy.addr(), &registry.addr(), 1);
        assert_eq!(&registry.digest(&direct), digest, "{reference}: the registry serves another manifest");
    }

    // A registry that keeps failing: given up after --attempts, saying so.
    proxy.faults(
        r#"{"rules": [{"path": "/manifests/", "method": "PUT", "times": -1, "action": "status", "status": 503}]}"#,
    );
    proxy.clear_log();
    let args = ["push", "backend", "--registry", &prefix, "--cert-dir", certs, "--tag", "e2e-down", "--attempts", "2"];
    let out = x.run(&args, Some((USER, PASSWORD)));
    let all = text(&out);
    assert!(!out.status.success(), "a registry that keeps answering 503 must fail the push:\n{all}");
    assert!(all.contains("failed after 2 attempt(s)") && all.contains("the registry kept failing"), "{all}");
    assert_eq!(proxy.count("method=PUT&path=/manifests/&status=503"), 2, "one manifest upload per attempt");
    assert_eq!(x.auth_dirs_left(), Vec::<String>::new(), "the auth file must be removed");
    images.remove_now();
}
