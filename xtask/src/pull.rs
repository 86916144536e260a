//! `cargo xtask pull`: every image the stack needs, here, fast, through bad networks.
//!
//! 1. Discovery ([`discover`]): the external images of every stage of every Dockerfile that
//!    docker/stack.toml builds (`dockerfile::external_images`, with `pull.build_args` and the
//!    service's `build.args`), plus the images of the services that are not built
//!    (infrastructure), normalised (`image_ref`), de-duplicated, digests kept. `--image REF`
//!    replaces the list.
//! 2. Presence: one `podman image inspect` call for all of them ([`parse_inspect`]; the
//!    `podman images` listing, [`parse_local_images`], when that answer cannot be read).
//! 3. Pulling: a pool of `--jobs` workers. Each image tries its sources in order: every live
//!    mirror of its registry, then the origin ([`sources_for`]). A mirror attempt runs
//!    `podman pull` with a registries.conf that remaps the registry to that one mirror
//!    (`registry_mirrors::single_source_conf`), so the image lands under its canonical name and
//!    the xtask, not podman, decides order, timeouts and retries. Each source gets `--attempts`
//!    attempts; podman's stderr is classified ([`classify`]): permanent errors (unknown
//!    tag/repository, denied, unauthorized, TLS/config problems) move on to the next source,
//!    or fail at once on the origin; transient ones (reset, refused, timeouts, EOF, HTTP 5xx)
//!    are retried after [`backoff`] (exponential with jitter); 429 waits for the registry's
//!    Retry-After. podman hides that header, so the xtask asks the registry itself with one
//!    `HEAD` of the manifest (std-only HTTP, plain-HTTP registries only; otherwise the backoff
//!    applies: podman has already honoured Retry-After inside its own attempt).
//!    Each attempt has a timeout (`--timeout`, 300 s) and all of it a deadline (`--deadline`).
//!    A plain-HTTP source (an `http://` mirror, a registry on loopback) is pulled through the
//!    loopback relay of `pull_relay.rs` unless `--no-relay`: it fetches ahead and retries single
//!    requests, so a failed request no longer costs a whole attempt. When podman's pull through
//!    the relay ends in 401/403, or the "plain-HTTP" registry turns out to speak TLS, the same
//!    attempt is made again directly ([`is_auth_error`]).
//! 4. Mirrors are probed once (`GET /v2/`, 2 s connect, 3 s answer) before any pull: a dead
//!    mirror costs seconds once, and is skipped for every image.
//! 5. Ctrl-C (SIGINT/SIGTERM): running pulls get SIGTERM (SIGKILL after 5 s); podman stores an
//!    image only when its pull completes, so nothing half-pulled is tagged.
//!
//! The decisions are pure functions, unit-tested at the bottom; `xtask/tests/pull_e2e.rs`
//! runs the real binary against a real registry behind a fault-injecting proxy.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::command::{Cmd, Runner};
use crate::dockerfile;
use crate::flags;
use crate::http_client;
use crate::image_ref::ImageRef;
use crate::manifest::Stack;
use crate::podman_host::{explain_failure, write_if_changed, Podman};
use crate::pull_relay;
use crate::registry_mirrors::{self, Mirror};
use crate::text_format::{human_size, json_str};

// ------------------------------------------------------------------------------- discovery

/// An image the stack needs, and where it is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub image: ImageRef,
    /// `backend/Dockerfile:7`, `services.nats`, `--image`.
    pub used_by: Vec<String>,
}

/// A Dockerfile to read: its path (for messages), text and build arguments.
pub struct DockerfileInput {
    pub path: String,
    pub text: String,
    pub build_args: BTreeMap<String, String>,
}

/// The images of the Dockerfiles, then the infrastructure images, de-duplicated in order.
pub fn needed_images(dockerfiles: &[DockerfileInput], infra: &[(String, String)]) -> Result<Vec<Needed>> {
    let mut out: Vec<Needed> = Vec::new();
    let mut add = |image: ImageRef, used: String| match out.iter_mut().find(|n| n.image == image) {
        Some(n) => n.used_by.push(used),
        None => out.push(Needed { image, used_by: vec![used] }),
    };
    for df in dockerfiles {
        let images = dockerfile::external_images(&df.text, &df.build_args)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", df.path, e.line, e.message))?;
        for ext in images {
            add(ext.image, format!("{}:{}", df.path, ext.line));
        }
    }
    for (service, reference) in infra {
        let image = ImageRef::parse(reference).map_err(|e| anyhow::anyhow!("services.{service}.image: {e}"))?;
        add(image, format!("services.{service}"));
    }
    Ok(out)
}

/// Every external image of the stack in `root`.
pub fn discover(root: &Path, stack: &Stack) -> Result<Vec<Needed>> {
    let mut dockerfiles = Vec::new();
    let mut infra = Vec::new();
    for (name, svc) in &stack.services {
        match &svc.build {
            Some(build) => {
                let path = root.join(&build.dockerfile);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("{}: cannot read the Dockerfile of services.{name} (build.dockerfile)", build.dockerfile)
                })?;
                let mut build_args = stack.pull.build_args.clone();
                build_args.extend(build.args.clone());
                dockerfiles.push(DockerfileInput { path: build.dockerfile.clone(), text, build_args });
            }
            None => infra.push((name.clone(), svc.image.get_ref().clone())),
        }
    }
    needed_images(&dockerfiles, &infra)
}

// ------------------------------------------------------------------------------- presence

/// One row of `podman images`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalImage {
    pub name: String,
    pub tag: Option<String>,
    pub digest: String,
    pub size: u64,
}

pub const IMAGES_FORMAT: &str = "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.VirtualSize}}";

pub fn parse_local_images(text: &str) -> Vec<LocalImage> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split('|');
            let (name, tag, digest, size) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if name == "<none>" {
                return None;
            }
            Some(LocalImage {
                name: name.to_string(),
                tag: (tag != "<none>" && !tag.is_empty()).then(|| tag.to_string()),
                digest: digest.to_string(),
                size: size.trim().parse().unwrap_or(0),
            })
        })
        .collect()
}

/// One `podman images` call for every image. podman 4.3 fails the listing when another
/// process removes an image at the same moment ("image not known"), so it is tried again.
fn list_local(runner: &Runner, podman: &Podman) -> Result<Vec<LocalImage>> {
    let cmd = podman.cmd().args(["images", "--format", IMAGES_FORMAT]);
    let mut tries = 0;
    loop {
        tries += 1;
        match runner.query(&cmd) {
            Ok(text) => return Ok(parse_local_images(&text)),
            Err(e) if tries < 5 && format!("{e:#}").contains("image not known") => {
                std::thread::sleep(Duration::from_millis(200 * tries));
            }
            Err(e) => return Err(e).context("cannot list the local images"),
        }
    }
}

/// What one `podman image inspect --format '{{.Id}}|{{.Size}}' REF...` says of `refs`: the
/// images found print a line each, in order; the missing ones are named on stderr, one line
/// each ("Error: inspecting object: REF: image not known", the earlier ones as "error
/// inspecting object: ..."). `None` when the answer is anything else.
pub fn parse_inspect(refs: &[String], stdout: &str, stderr: &str) -> Option<Vec<Option<u64>>> {
    let not_known = regex_lite::Regex::new(r"^(?:Error: |error )?inspecting object: (.+): image not known$").expect("valid regex");
    let mut missing: Vec<&str> = Vec::new();
    for line in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        missing.push(not_known.captures(line)?.get(1)?.as_str());
    }
    let mut found = stdout.lines().filter(|l| !l.trim().is_empty());
    let mut out = Vec::new();
    for r in refs {
        if missing.contains(&r.as_str()) {
            out.push(None);
        } else {
            let (_, size) = found.next()?.trim().split_once('|')?;
            out.push(Some(size.trim().parse().ok()?));
        }
    }
    found.next().is_none().then_some(out)
}

/// Which of `images` are here, with their sizes: one `podman image inspect` for all of them
/// (0.04 s), not `podman images` (0.35 s on a store of 40 images, because it sizes every image
/// in the store). An answer that cannot be read falls back to the listing.
fn check_present(runner: &Runner, podman: &Podman, images: &[ImageRef]) -> Result<Vec<Option<LocalImage>>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<String> = images.iter().map(pull_reference).collect();
    let cmd = podman.cmd().args(["image", "inspect", "--format", "{{.Id}}|{{.Size}}"]).args(refs.iter().cloned());
    let out = runner.capture(&cmd)?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if let Some(sizes) = parse_inspect(&refs, &stdout, &stderr) {
        return Ok(images
            .iter()
            .zip(sizes)
            .map(|(i, size)| {
                size.map(|size| LocalImage { name: i.name(), tag: i.tag.clone(), digest: i.digest.clone().unwrap_or_default(), size })
            })
            .collect());
    }
    let local = list_local(runner, podman)?;
    Ok(images.iter().map(|i| find_local(&local, i).cloned()).collect())
}

pub fn find_local<'a>(local: &'a [LocalImage], image: &ImageRef) -> Option<&'a LocalImage> {
    let name = image.name();
    local.iter().find(|l| {
        l.name == name
            && match &image.digest {
                Some(d) => l.digest == *d,
                None => l.tag == image.tag,
            }
    })
}

// ------------------------------------------------------------------------------- sources

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Mirror(Mirror),
    Origin(String),
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Mirror(m) => format!("mirror {}", m.url),
            Source::Origin(r) => r.clone(),
        }
    }
}

/// The mirrors of the image's registry, in order, then the registry itself.
pub fn sources_for(image: &ImageRef, mirrors: &[Mirror]) -> Vec<Source> {
    let mut out: Vec<Source> =
        mirrors.iter().filter(|m| m.registry == image.registry).cloned().map(Source::Mirror).collect();
    out.push(Source::Origin(image.registry.clone()));
    out
}

/// Mirrors from the command line when given, otherwise from docker/stack.toml.
pub fn mirror_list(cli: &[String], manifest: &[String]) -> Result<Vec<Mirror>> {
    let specs = if cli.is_empty() { manifest } else { cli };
    specs.iter().map(|s| Mirror::parse(s).map_err(anyhow::Error::msg)).collect()
}

// ------------------------------------------------------------------------------- failures

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Will not change by retrying: unknown image or tag, denied, bad configuration.
    Permanent,
    /// HTTP 429: wait for the registry's Retry-After.
    RateLimited,
    /// Network trouble or HTTP 5xx; also anything unrecognised (retrying costs little).
    Transient,
}

/// podman 4.3's stderr for a failed pull -> what to do. Texts observed against
/// docker-registry 2.8 behind the fault proxy (see the tests below).
pub fn classify(stderr: &str) -> Class {
    let e = stderr.to_ascii_lowercase();
    const PERMANENT: &[&str] = &[
        "manifest unknown",
        "name unknown",
        "repository name not known",
        "not found: manifest",
        ": denied",
        "requested access to the resource is denied",
        "unauthorized",
        "authentication required",
        "invalid reference format",
        "no such host",
        "x509:",
        "certificate",
        "server gave http response to https client",
        "short-name",
        "unsupported",
        "invalid status code from registry 404",
        "invalid status code from registry 403",
        "invalid status code from registry 401",
        "status: 404",
        "blocked",
    ];
    const RATE: &[&str] = &["toomanyrequests", "too many requests", "status: 429", "registry 429"];
    if RATE.iter().any(|n| e.contains(n)) {
        return Class::RateLimited;
    }
    if PERMANENT.iter().any(|n| e.contains(n)) {
        return Class::Permanent;
    }
    Class::Transient
}

/// The line that says what went wrong: podman's last `Error: ...`, else the last line.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.iter().rev().find_map(|l| l.strip_prefix("Error: ")) {
        Some(e) => e.to_string(),
        None => lines.last().copied().unwrap_or("no error output").to_string(),
    }
}

/// Wait before attempt `attempt + 1`: 1 s, 2 s, 4 s, ... capped at 30 s, of which the upper
/// half is jitter (`jitter` in [0, 1)), so concurrent pulls do not retry in step.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let full = (1u64 << attempt.saturating_sub(1).min(5)).min(30) as f64;
    Duration::from_secs_f64(full * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// `Retry-After`: delta-seconds or an HTTP date, relative to `now_unix`. Capped at 10 min.
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<Duration> {
    let v = value.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => parse_http_date(v)?.saturating_sub(now_unix),
    };
    Some(Duration::from_secs(secs.min(600)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` -> Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else { return None };
    // Days from civil (Howard Hinnant).
    let y2 = if month <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

// ------------------------------------------------------------------------------- tiny HTTP

/// Is the mirror answering as a registry? Any HTTP answer to `/v2/` counts (401 included).
fn probe_mirror(m: &Mirror) -> Result<(), String> {
    let (host, port) = m.host_port();
    if !m.insecure {
        // No TLS in std: a TCP connect within 2 s is the check.
        let addr = (host.as_str(), port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
        return TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(|_| ()).map_err(|e| e.to_string());
    }
    // Registries serve /v2/ at the root, even with a namespace in `location`.
    http_client::request_to(&host, port, "GET", "/v2/", &[], None, Duration::from_secs(2), Duration::from_secs(3))
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Asks a plain-HTTP registry (the ones a relay could serve) for the manifest once, to read a
/// 429's Retry-After.
fn probe_retry_after(source: &Source, image: &ImageRef) -> Option<Duration> {
    let (_, up) = relay_upstream(source, &HashMap::new())?;
    let reference = image.digest.clone().or_else(|| image.tag.clone())?;
    let accept: Vec<(&str, &str)> = pull_relay::MANIFEST_TYPES.iter().map(|t| ("Accept", *t)).collect();
    let path = up.path(&image.repository, "manifests", &reference);
    let answer =
        http_client::request_to(&up.host, up.port, "HEAD", &path, &accept, None, Duration::from_secs(2), Duration::from_secs(5)).ok()?;
    if answer.status != 429 {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    answer.header("retry-after").and_then(|v| parse_retry_after(v, now))
}

// ------------------------------------------------------------------------------- the plan

/// One image of the plan.
#[derive(Clone, Debug)]
pub struct Item {
    pub needed: Needed,
    pub present: Option<LocalImage>,
    pub sources: Vec<Source>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Missing,
    Always,
}

impl Policy {
    pub fn parse(s: Option<&str>) -> Result<Policy> {
        match s.unwrap_or("missing") {
            "missing" => Ok(Policy::Missing),
            "always" => Ok(Policy::Always),
            other => bail!("--policy {other:?}: expected `missing` or `always`"),
        }
    }
}

impl Item {
    pub fn to_pull(&self, policy: Policy) -> bool {
        policy == Policy::Always || self.present.is_none()
    }
}

/// `present`: what [`check_present`] found, one entry per needed image.
pub fn plan(needed: Vec<Needed>, present: Vec<Option<LocalImage>>, mirrors: &[Mirror]) -> Vec<Item> {
    needed
        .into_iter()
        .zip(present)
        .map(|(n, present)| Item { present, sources: sources_for(&n.image, mirrors), needed: n })
        .collect()
}

/// The reference podman pulls: by digest when there is one (podman 4.3 refuses tag+digest).
pub fn pull_reference(image: &ImageRef) -> String {
    match &image.digest {
        Some(d) => format!("{}@{d}", image.name()),
        None => image.to_string(),
    }
}

// ------------------------------------------------------------------------------- outcomes

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub ok: bool,
    pub attempts: u32,
    pub seconds: f64,
    /// The source that delivered the image.
    pub source: Option<String>,
    pub error: Option<String>,
    /// Size of the pulled image (asked for once every pull has ended).
    pub size: Option<u64>,
    /// Requests the relay asked the registry again (`pull_relay`), on top of `attempts`.
    pub request_retries: u32,
}

#[derive(Clone, Debug)]
enum RowState {
    Present,
    Waiting,
    /// `note`: what the relay is retrying, if anything.
    Pulling { source: String, attempt: u32, of: u32, note: Option<String> },
    Retry { next: u32, of: u32, until: Instant, source: String, error: String },
    Done,
    Failed,
}

enum Event {
    State(usize, RowState),
    Finished(usize, Outcome),
}



fn json_opt(s: &Option<String>) -> String {
    s.as_deref().map(json_str).unwrap_or_else(|| "null".to_string())
}

/// One image in the JSON output.
#[derive(Clone, Debug)]
pub struct Report {
    pub image: String,
    pub used_by: Vec<String>,
    /// present | pulled | missing | failed | skipped
    pub status: String,
    pub size: Option<u64>,
    pub sources: Vec<String>,
    pub outcome: Option<Outcome>,
}

pub fn to_json(reports: &[Report], mirrors: &[(Mirror, Option<String>)], ok: bool, interrupted: bool, seconds: f64, peak_rss_kib: Option<u64>) -> String {
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"ok\": {ok},\n  \"interrupted\": {interrupted},\n  \"seconds\": {seconds:.3},");
    let _ = writeln!(o, "  \"xtask_peak_rss_kib\": {},", peak_rss_kib.map(|v| v.to_string()).unwrap_or("null".into()));
    o.push_str("  \"mirrors\": [");
    for (i, (m, dead)) in mirrors.iter().enumerate() {
        let _ = write!(
            o,
            "{}\n    {{\"registry\": {}, \"url\": {}, \"alive\": {}, \"error\": {}}}",
            if i == 0 { "" } else { "," },
            json_str(&m.registry),
            json_str(&m.url),
            dead.is_none(),
            json_opt(dead)
        );
    }
    o.push_str(if mirrors.is_empty() { "],\n" } else { "\n  ],\n" });
    o.push_str("  \"images\": [");
    for (i, r) in reports.iter().enumerate() {
        let used: Vec<String> = r.used_by.iter().map(|u| json_str(u)).collect();
        let srcs: Vec<String> = r.sources.iter().map(|u| json_str(u)).collect();
        let oc = r.outcome.clone().unwrap_or_default();
        let _ = write!(
            o,
            "{}\n    {{\"image\": {}, \"status\": {}, \"size_bytes\": {}, \"attempts\": {}, \"request_retries\": {}, \"seconds\": {:.3}, \"source\": {}, \"sources\": [{}], \"used_by\": [{}], \"error\": {}}}",
            if i == 0 { "" } else { "," },
            json_str(&r.image),
            json_str(&r.status),
            r.size.map(|s| s.to_string()).unwrap_or("null".into()),
            oc.attempts,
            oc.request_retries,
            oc.seconds,
            json_opt(&oc.source),
            srcs.join(", "),
            used.join(", "),
            json_opt(&oc.error),
        );
    }
    o.push_str(if reports.is_empty() { "]\n}\n" } else { "\n  ]\n}\n" });
    o
}

/// A plain text table, columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}


// ------------------------------------------------------------------------------- running

struct Ctx {
    podman: Podman,
    attempts: u32,
    timeout: Duration,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    /// Per mirror URL: the single-source registries.conf.
    mirror_confs: HashMap<String, PathBuf>,
    /// Per mirror URL: why it is skipped.
    dead: HashMap<String, String>,
    origin_conf: Option<PathBuf>,
    /// Per source label: the loopback relay podman pulls that source through.
    relays: HashMap<String, RelayUse>,
}

/// A relay and the registries.conf that sends one source's pulls to it.
struct RelayUse {
    relay: pull_relay::Relay,
    conf: PathBuf,
}

impl Drop for RelayUse {
    fn drop(&mut self) {
        self.relay.close();
        let _ = std::fs::remove_file(&self.conf);
    }
}

enum AttemptEnd {
    Ok,
    Failed(String),
    TimedOut,
    Stopped,
}

/// SIGTERM to the child, then SIGKILL after `grace`.
fn terminate(handle: &duct::Handle, grace: Duration) {
    for pid in handle.pids() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = handle.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = handle.kill();
}

/// `tick` runs every 20 ms while podman runs (the relay's progress goes to the display).
fn run_attempt(cmd: &Cmd, timeout: Duration, ctx: &Ctx, tick: &mut dyn FnMut()) -> AttemptEnd {
    let handle = match cmd.to_expression().stdin_null().stdout_null().stderr_capture().unchecked().start() {
        Ok(h) => h,
        Err(e) => return AttemptEnd::Failed(format!("cannot start podman: {e}")),
    };
    let start = Instant::now();
    loop {
        match handle.try_wait() {
            Ok(Some(out)) => {
                return if out.status.success() {
                    AttemptEnd::Ok
                } else {
                    AttemptEnd::Failed(String::from_utf8_lossy(&out.stderr).into_owned())
                };
            }
            Ok(None) => {}
            Err(e) => return AttemptEnd::Failed(e.to_string()),
        }
        let stopping = ctx.stop.load(Ordering::SeqCst) || Instant::now() >= ctx.deadline;
        if stopping || start.elapsed() >= timeout {
            terminate(&handle, Duration::from_secs(5));
            return if stopping { AttemptEnd::Stopped } else { AttemptEnd::TimedOut };
        }
        tick();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sleeps until `until`, unless stopped. Returns false when stopped.
fn wait_until(until: Instant, ctx: &Ctx) -> bool {
    while Instant::now() < until {
        if ctx.stop.load(Ordering::SeqCst) || Instant::now() >= ctx.deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    true
}

/// Jitter for backoffs, in [0, 1): xorshift64*, seeded from the clock and a salt so that
/// concurrent workers (and the relay's requests) do not wait in step. Not for anything secret.
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded(salt: u64) -> Jitter {
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(7);
        Jitter((clock ^ salt.wrapping_mul(0x9E37_79B9)) | 1)
    }

    pub fn next(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn pull_cmd(podman: &Podman, registries_conf: Option<&Path>, image: &ImageRef) -> Cmd {
    let p = match registries_conf {
        Some(path) => podman.clone().with_registries_conf(path),
        None => podman.clone(),
    };
    p.cmd().args(["pull", &pull_reference(image)])
}

fn pull_one(ctx: &Ctx, idx: usize, item: &Item, tx: &mpsc::Sender<Event>) -> Outcome {
    let started = Instant::now();
    let mut jitter = Jitter::seeded(idx as u64 + 1);
    let mut attempts = 0;
    let mut relayed = Vec::new();
    let mut last_error = String::from("no source to pull from");
    let image = &item.needed.image;
    let end = |ok: bool, attempts: u32, source: Option<String>, error: Option<String>, relayed: &[&RelayUse]| Outcome {
        ok,
        attempts,
        seconds: started.elapsed().as_secs_f64(),
        source,
        error,
        size: None,
        request_retries: relayed.iter().map(|r| r.relay.retries(&image.repository).count).sum(),
    };
    for source in &item.sources {
        let direct_conf = match source {
            Source::Mirror(m) => {
                if let Some(why) = ctx.dead.get(&m.url) {
                    last_error = format!("{}: not answering ({why})", source.label());
                    continue;
                }
                ctx.mirror_confs.get(&m.url).map(PathBuf::as_path)
            }
            Source::Origin(_) => ctx.origin_conf.as_deref(),
        };
        let mut relay = ctx.relays.get(&source.label());
        let mut attempt = 0;
        while attempt < ctx.attempts {
            attempt += 1;
            if ctx.stop.load(Ordering::SeqCst) {
                return end(false, attempts, None, Some("interrupted".into()), &relayed);
            }
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return end(false, attempts, None, Some(format!("deadline reached; last error: {last_error}")), &relayed);
            }
            let cmd = match relay {
                Some(r) => {
                    // Layers ahead only for an image that is not here at all (pull_relay.rs).
                    let reference = image.digest.clone().or_else(|| image.tag.clone()).unwrap_or_else(|| "latest".into());
                    r.relay.expect(&image.repository, &reference, item.present.is_none());
                    if !relayed.iter().any(|x: &&RelayUse| std::ptr::eq(*x, r)) {
                        relayed.push(r);
                    }
                    pull_cmd(&ctx.podman, Some(&r.conf), image)
                }
                None => pull_cmd(&ctx.podman, direct_conf, image),
            };
            let pulling = |note: Option<String>| RowState::Pulling { source: source.label(), attempt, of: ctx.attempts, note };
            let _ = tx.send(Event::State(idx, pulling(None)));
            attempts += 1;
            let mut seen = relay.map(|r| r.relay.retries(&image.repository).count).unwrap_or(0);
            let mut tick = || {
                if let Some(r) = relay {
                    let now = r.relay.retries(&image.repository);
                    if now.count != seen {
                        seen = now.count;
                        let _ = tx.send(Event::State(idx, pulling(now.last.map(|l| format!("{} retried, last {l}", plural(now.count, "request"))))));
                    }
                }
            };
            let (class, stderr) = match run_attempt(&cmd, ctx.timeout.min(remaining), ctx, &mut tick) {
                AttemptEnd::Ok => return end(true, attempts, Some(source.label()), None, &relayed),
                AttemptEnd::Stopped => {
                    let why = if ctx.stop.load(Ordering::SeqCst) { "interrupted".to_string() } else { format!("deadline reached; last error: {last_error}") };
                    return end(false, attempts, None, Some(why), &relayed);
                }
                AttemptEnd::TimedOut => {
                    last_error = format!("{}: attempt timed out after {} s", source.label(), ctx.timeout.min(remaining).as_secs());
                    (Class::Transient, String::new())
                }
                AttemptEnd::Failed(stderr) => {
                    last_error = format!("{}: {}", source.label(), error_line(&stderr));
                    (classify(&stderr), stderr)
                }
            };
            // The relay cannot help this source: it does not speak plain HTTP, or it wants
            // credentials podman keeps for the registry's own name. Same attempt, directly.
            if let Some(r) = relay {
                let why = if r.relay.upstream_not_plain_http() {
                    Some("it does not answer plain HTTP")
                } else if class == Class::Permanent && is_auth_error(&stderr) {
                    Some("it asks for credentials")
                } else {
                    None
                };
                if let Some(why) = why {
                    let _ = tx.send(Event::State(idx, pulling(Some(format!("{why}: pulling directly")))));
                    relay = None;
                    attempt -= 1;
                    continue;
                }
            }
            if class == Class::Permanent || attempt == ctx.attempts {
                break; // next source, or fail on the origin
            }
            let wait = match class {
                Class::RateLimited => probe_retry_after(source, image).unwrap_or_else(|| backoff(attempt, jitter.next())),
                _ => backoff(attempt, jitter.next()),
            };
            let until = Instant::now() + wait;
            let _ = tx.send(Event::State(
                idx,
                RowState::Retry { next: attempt + 1, of: ctx.attempts, until, source: source.label(), error: last_error.clone() },
            ));
            if !wait_until(until, ctx) {
                let why = if ctx.stop.load(Ordering::SeqCst) { "interrupted".to_string() } else { format!("deadline reached; last error: {last_error}") };
                return end(false, attempts, None, Some(why), &relayed);
            }
        }
    }
    end(false, attempts, None, Some(last_error), &relayed)
}

fn plural(n: u32, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// Where a relay for `source` would fetch from: plain-HTTP sources only (an `http://` mirror
/// that answers, or a registry on this host), with the registry name podman pulls it as.
fn relay_upstream(source: &Source, dead: &HashMap<String, String>) -> Option<(String, pull_relay::Upstream)> {
    match source {
        Source::Mirror(m) if m.insecure && !dead.contains_key(&m.url) => {
            Some((m.registry.clone(), pull_relay::Upstream::from_location(&m.location)?))
        }
        Source::Origin(r) if registry_mirrors::is_loopback_registry(r) => Some((r.clone(), pull_relay::Upstream::from_location(r)?)),
        _ => None,
    }
}

/// podman's words for a registry that wants credentials.
pub fn is_auth_error(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    ["unauthorized", "authentication required", ": denied", "requested access to the resource is denied", "registry 401", "registry 403"]
        .iter()
        .any(|n| e.contains(n))
}

fn render(image: &str, state: &RowState, now: Instant) -> String {
    match state {
        RowState::Present => format!("{image}: present"),
        RowState::Waiting => format!("{image}: waiting"),
        RowState::Pulling { source, attempt, of, note } => {
            let mut line = format!("{image}: pulling from {source}");
            if *attempt > 1 {
                let _ = write!(line, " (attempt {attempt}/{of})");
            }
            if let Some(note) = note {
                let _ = write!(line, " [relay: {note}]");
            }
            line
        }
        RowState::Retry { next, of, until, source, error } => {
            let secs = until.saturating_duration_since(now).as_secs_f64().ceil() as u64;
            format!("{image}: retry {next}/{of} from {source} in {secs} s ({error})")
        }
        RowState::Done => format!("{image}: done"),
        RowState::Failed => format!("{image}: failed"),
    }
}

struct Live {
    tty: bool,
    drawn: usize,
}

impl Live {
    fn new() -> Live {
        let plain = std::env::var_os("NO_COLOR").is_some() || std::env::var_os("CI").is_some();
        Live { tty: std::io::stderr().is_terminal() && !plain, drawn: 0 }
    }

    fn redraw(&mut self, rows: &[(String, RowState)]) {
        let now = Instant::now();
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let width = terminal_width();
        for (image, state) in rows {
            let mut line = render(image, state, now);
            if line.chars().count() > width {
                line = line.chars().take(width.saturating_sub(1)).collect::<String>() + "…";
            }
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        self.drawn = rows.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(120)
}

// ------------------------------------------------------------------------------- command

impl flags::Pull {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let started = Instant::now();
        let root = crate::project_root();
        let policy = Policy::parse(self.policy.as_deref())?;
        // Settings from docker/stack.toml; with --image the manifest is optional.
        let stack = match Stack::load(&root) {
            Ok(s) => Some(s),
            Err(e) if !self.image.is_empty() => {
                eprintln!("note: {e:#}; using defaults");
                None
            }
            Err(e) => return Err(e),
        };
        let settings = stack.as_ref().map(|s| &s.pull);
        let jobs = self.jobs.or(settings.map(|p| p.jobs)).unwrap_or(3).max(1);
        let timeout = Duration::from_secs(self.timeout.or(settings.map(|p| p.timeout_secs)).unwrap_or(300).max(1));
        let deadline_secs = self.deadline.or(settings.map(|p| p.deadline_secs)).unwrap_or(1800);
        let attempts = self.attempts.or(settings.map(|p| p.attempts)).unwrap_or(3).max(1);
        let manifest_mirrors: Vec<String> = settings
            .map(|p| p.registry_mirrors.iter().map(|m| m.get_ref().clone()).collect())
            .unwrap_or_default();
        let mirrors = mirror_list(&self.registry_mirror, &manifest_mirrors)?;

        let needed = if self.image.is_empty() {
            discover(&root, stack.as_ref().unwrap())?
        } else {
            let mut out: Vec<Needed> = Vec::new();
            for r in &self.image {
                let image = ImageRef::parse(r).map_err(|e| anyhow::anyhow!("--image {e}"))?;
                if !out.iter().any(|n| n.image == image) {
                    out.push(Needed { image, used_by: vec!["--image".into()] });
                }
            }
            out
        };

        // The user's own registries.conf, if any, is what origin pulls use.
        let user_registries = std::env::var_os("CONTAINERS_REGISTRIES_CONF").map(PathBuf::from);
        let podman_dir = crate::state_dir().join("podman");
        let shared_conf = podman_dir.join("registries.conf");
        if !self.status && !self.dry_run {
            // Later podman calls of the xtask (builds) resolve through the same mirrors.
            if mirrors.is_empty() {
                if std::fs::read_to_string(&shared_conf).is_ok_and(|t| registry_mirrors::is_ours(&t)) {
                    std::fs::remove_file(&shared_conf).ok();
                }
            } else {
                write_if_changed(&shared_conf, &registry_mirrors::registries_conf(&mirrors))?;
            }
        }
        let mut podman = Podman::prepare()?;
        if let Some(user) = &user_registries {
            podman = podman.with_registries_conf(user);
        }
        let runner = Runner::new(self.dry_run);
        let images: Vec<ImageRef> = needed.iter().map(|n| n.image.clone()).collect();
        let present = check_present(&runner, &podman, &images)?;
        let items = plan(needed, present, &mirrors);

        if self.status {
            return status(&items, &mirrors, self.json, started);
        }

        let origin_conf = user_registries.clone().or_else(|| {
            let system = PathBuf::from("/etc/containers/registries.conf");
            system.exists().then_some(system)
        });
        let mut mirror_confs = HashMap::new();
        for (i, m) in mirrors.iter().enumerate() {
            mirror_confs.insert(m.url.clone(), podman_dir.join("pull-sources").join(format!("mirror-{i}.conf")));
        }
        let todo: Vec<usize> = (0..items.len()).filter(|&i| items[i].to_pull(policy)).collect();

        if self.dry_run {
            println!("# {} images needed, {} to pull (policy {:?}, jobs {jobs})", items.len(), todo.len(), policy);
            if !mirrors.is_empty() {
                println!("# would write {} (mirrors for later builds) and one file per mirror under {}", shared_conf.display(), podman_dir.join("pull-sources").display());
            }
            for item in &items {
                if !item.to_pull(policy) {
                    println!("# {}: present", item.needed.image);
                    continue;
                }
                let labels: Vec<String> = item.sources.iter().map(Source::label).collect();
                println!("# {}: from {}", item.needed.image, labels.join(", then "));
                for src in &item.sources {
                    if !self.no_relay && relay_upstream(src, &HashMap::new()).is_some() {
                        println!(
                            "#   {} is plain HTTP: podman pulls it through a loopback relay that fetches ahead and retries single requests (--no-relay: directly)",
                            src.label()
                        );
                    }
                }
                for s in &item.sources {
                    let conf = match s {
                        Source::Mirror(m) => mirror_confs.get(&m.url).cloned(),
                        Source::Origin(_) => origin_conf.clone(),
                    };
                    runner.run(&pull_cmd(&podman, conf.as_deref(), &item.needed.image))?;
                }
            }
            return Ok(());
        }

        for m in &mirrors {
            write_if_changed(&mirror_confs[&m.url], &registry_mirrors::single_source_conf(m))?;
        }
        // Probe each mirror once, concurrently, only if some image would use it.
        let used_mirrors: Vec<&Mirror> = mirrors
            .iter()
            .filter(|m| todo.iter().any(|&i| items[i].sources.iter().any(|s| *s == Source::Mirror((*m).clone()))))
            .collect();
        let probes: Vec<(String, std::thread::JoinHandle<Result<(), String>>)> = used_mirrors
            .iter()
            .map(|m| {
                let m2 = (*m).clone();
                (m.url.clone(), std::thread::spawn(move || probe_mirror(&m2)))
            })
            .collect();
        let mut dead = HashMap::new();
        for (url, h) in probes {
            if let Err(why) = h.join().unwrap_or_else(|_| Err("probe panicked".into())) {
                eprintln!("mirror {url} is not answering ({why}): skipped");
                dead.insert(url, why);
            }
        }
        let mirror_report: Vec<(Mirror, Option<String>)> =
            mirrors.iter().map(|m| (m.clone(), dead.get(&m.url).cloned())).collect();

        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot handle Ctrl-C")?;
        }
        // Plain-HTTP sources go through a loopback relay (pull_relay.rs), one per source.
        let mut relays: HashMap<String, RelayUse> = HashMap::new();
        if !self.no_relay {
            for &i in &todo {
                for source in &items[i].sources {
                    let key = source.label();
                    if relays.contains_key(&key) {
                        continue;
                    }
                    let Some((registry, upstream)) = relay_upstream(source, &dead) else { continue };
                    let n = relays.len();
                    let dir = crate::state_dir().join("pull-relay").join(format!("{}-{n}", std::process::id()));
                    let relay = pull_relay::Relay::start(upstream, &dir, Arc::clone(&stop))?;
                    let via = Mirror {
                        registry,
                        url: format!("http://{}", relay.location()),
                        location: relay.location(),
                        insecure: true,
                    };
                    let conf = podman_dir.join("pull-sources").join(format!("relay-{}-{n}.conf", std::process::id()));
                    write_if_changed(&conf, &registry_mirrors::single_source_conf(&via))?;
                    relays.insert(key, RelayUse { relay, conf });
                }
            }
        }
        let ctx = Arc::new(Ctx {
            podman: podman.clone(),
            attempts,
            timeout,
            deadline: started + Duration::from_secs(deadline_secs),
            stop: Arc::clone(&stop),
            mirror_confs,
            dead,
            origin_conf,
            relays,
        });

        let mut rows: Vec<(String, RowState)> = items
            .iter()
            .map(|it| (it.needed.image.to_string(), if it.to_pull(policy) { RowState::Waiting } else { RowState::Present }))
            .collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut live = Live::new();
        if live.tty {
            live.redraw(&rows);
        } else {
            for (i, (image, state)) in rows.iter().enumerate() {
                if matches!(state, RowState::Present) || todo.contains(&i) {
                    eprintln!("{}", render(image, state, Instant::now()));
                }
            }
        }

        let queue = Arc::new(Mutex::new(todo.iter().copied().collect::<VecDeque<usize>>()));
        let items_arc = Arc::new(items.clone());
        let (tx, rx) = mpsc::channel::<Event>();
        let mut workers = Vec::new();
        for _ in 0..jobs.min(todo.len()) {
            let (queue, items, ctx, tx) = (Arc::clone(&queue), Arc::clone(&items_arc), Arc::clone(&ctx), tx.clone());
            workers.push(std::thread::spawn(move || loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(idx) = next else { break };
                if ctx.stop.load(Ordering::SeqCst) {
                    let _ = tx.send(Event::Finished(idx, Outcome { error: Some("interrupted".into()), ..Outcome::default() }));
                    continue;
                }
                let outcome = pull_one(&ctx, idx, &items[idx], &tx);
                let _ = tx.send(Event::Finished(idx, outcome));
            }));
        }
        drop(tx);
        let mut finished = 0;
        while finished < todo.len() {
            match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(Event::State(i, st)) => {
                    rows[i].1 = st;
                    if !live.tty {
                        eprintln!("{}", render(&rows[i].0, &rows[i].1, Instant::now()));
                    }
                }
                Ok(Event::Finished(i, oc)) => {
                    finished += 1;
                    rows[i].1 = if oc.ok { RowState::Done } else { RowState::Failed };
                    if !live.tty {
                        let extra = oc.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                        eprintln!("{}{extra}", render(&rows[i].0, &rows[i].1, Instant::now()));
                    }
                    outcomes[i] = Some(oc);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if live.tty {
                live.redraw(&rows);
            }
        }
        for w in workers {
            let _ = w.join();
        }
        let interrupted = stop.load(Ordering::SeqCst);
        // Sizes of what was pulled: one `podman image inspect` once all pulls are done (0.04 s),
        // rather than a podman process per image competing with the pulls still committing.
        let pulled: Vec<usize> = (0..items.len()).filter(|&i| outcomes[i].as_ref().is_some_and(|o| o.ok)).collect();
        if !pulled.is_empty() {
            let images: Vec<ImageRef> = pulled.iter().map(|&i| items[i].needed.image.clone()).collect();
            if let Ok(found) = check_present(&runner, &podman, &images) {
                for (&i, f) in pulled.iter().zip(found) {
                    if let Some(o) = outcomes[i].as_mut() {
                        o.size = f.map(|l| l.size);
                    }
                }
            }
        }

        let reports: Vec<Report> = items
            .iter()
            .zip(&outcomes)
            .map(|(it, oc)| {
                let status = match oc {
                    None if it.present.is_some() => "present",
                    None => "skipped",
                    Some(o) if o.ok => "pulled",
                    Some(_) => "failed",
                };
                Report {
                    image: it.needed.image.to_string(),
                    used_by: it.needed.used_by.clone(),
                    status: status.into(),
                    size: oc.as_ref().and_then(|o| o.size).or(it.present.as_ref().map(|l| l.size)),
                    sources: it.sources.iter().map(Source::label).collect(),
                    outcome: oc.clone().or_else(|| it.present.as_ref().map(|_| Outcome { ok: true, source: Some("local".into()), ..Outcome::default() })),
                }
            })
            .collect();
        let ok = !interrupted && reports.iter().all(|r| r.status == "present" || r.status == "pulled");
        let elapsed = started.elapsed().as_secs_f64();
        let rows_out: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                let oc = r.outcome.clone().unwrap_or_default();
                vec![
                    r.image.clone(),
                    r.status.clone(),
                    r.size.map(human_size).unwrap_or_else(|| "-".into()),
                    oc.attempts.to_string(),
                    oc.request_retries.to_string(),
                    format!("{:.1}", oc.seconds),
                    oc.source.unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let summary = table(&["IMAGE", "STATUS", "SIZE", "ATTEMPTS", "REQUESTS RETRIED", "SECONDS", "SOURCE"], &rows_out);
        if self.json {
            eprint!("{summary}");
            print!("{}", to_json(&reports, &mirror_report, ok, interrupted, elapsed, peak_rss_kib()));
        } else {
            print!("{summary}");
            println!("{} images, {:.1} s, jobs {jobs}", reports.len(), elapsed);
        }
        if interrupted {
            bail!("interrupted: running pulls were stopped; podman stores an image only when its pull completes, so nothing half-pulled is tagged");
        }
        if !ok {
            let mut msg = String::from("these images are not here:");
            for r in reports.iter().filter(|r| r.status != "present" && r.status != "pulled") {
                let err = r.outcome.as_ref().and_then(|o| o.error.clone()).unwrap_or_else(|| "not pulled".into());
                let _ = write!(msg, "\n  {}: {err}", r.image);
                if let Some(hint) = explain_failure(&err) {
                    let _ = write!(msg, " (hint: {hint})");
                }
            }
            bail!(msg);
        }
        Ok(())
    }
}

fn status(items: &[Item], mirrors: &[Mirror], json: bool, started: Instant) -> Result<()> {
    let reports: Vec<Report> = items
        .iter()
        .map(|it| Report {
            image: it.needed.image.to_string(),
            used_by: it.needed.used_by.clone(),
            status: if it.present.is_some() { "present" } else { "missing" }.into(),
            size: it.present.as_ref().map(|l| l.size),
            sources: it.sources.iter().map(Source::label).collect(),
            outcome: None,
        })
        .collect();
    if json {
        let ms: Vec<(Mirror, Option<String>)> = mirrors.iter().map(|m| (m.clone(), None)).collect();
        let ok = reports.iter().all(|r| r.status == "present");
        print!("{}", to_json(&reports, &ms, ok, false, started.elapsed().as_secs_f64(), peak_rss_kib()));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.image.clone(),
                r.status.clone(),
                r.size.map(human_size).unwrap_or_else(|| "-".into()),
                r.sources.join(" > "),
                r.used_by.join(", "),
            ]
        })
        .collect();
    print!("{}", table(&["IMAGE", "STATUS", "SIZE", "FROM", "USED BY"], &rows));
    let missing = reports.iter().filter(|r| r.status == "missing").count();
    println!("{} images, {} present, {missing} missing", reports.len(), reports.len() - missing);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(path: &str, text: &str) -> DockerfileInput {
        DockerfileInput { path: path.into(), text: text.into(), build_args: BTreeMap::new() }
    }

    #[test]
    fn dockerfiles_then_infra_normalised_and_deduplicated() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let needed = needed_images(
            &[
                df("a/Dockerfile", "FROM rust:1.87-alpine AS b\nFROM alpine:3.19\nCOPY --from=b /x /x\n"),
                df("b/Dockerfile", &format!("FROM docker.io/library/alpine:3.19\nFROM busybox@{d}\n")),
            ],
            &[("nats".into(), "nats:2.10-alpine".into()), ("again".into(), "alpine:3.19".into())],
        )
        .unwrap();
        let names: Vec<String> = needed.iter().map(|n| n.image.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/rust:1.87-alpine",
                "docker.io/library/alpine:3.19",
                format!("docker.io/library/busybox@{d}").as_str(),
                "docker.io/library/nats:2.10-alpine",
            ]
        );
        assert_eq!(needed[1].used_by, ["a/Dockerfile:2", "b/Dockerfile:1", "services.again"]);
    }

    #[test]
    fn unresolvable_dockerfile_names_file_and_line() {
        let e = needed_images(&[df("web/Dockerfile", "# hi\nFROM node:${NODE_VERSION}\n")], &[]).unwrap_err();
        assert!(e.to_string().starts_with("web/Dockerfile:2: "), "{e}");
        let e = needed_images(&[df("x/Dockerfile", "FROM Alpine:3\n")], &[]).unwrap_err();
        assert!(e.to_string().starts_with("x/Dockerfile:1: "), "{e}");
    }

    #[test]
    fn the_repository_needs_the_five_base_images_and_the_infrastructure() {
        let root = crate::project_root();
        let stack = Stack::load(&root).unwrap();
        let needed = discover(&root, &stack).unwrap();
        let mut names: Vec<String> = needed.iter().map(|n| n.image.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "docker.io/clickhouse/clickhouse-server:24.8-alpine",
                "docker.io/grafana/grafana:11.1.0",
                "docker.io/library/alpine:3.19",
                "docker.io/library/nats:2.10-alpine",
                "docker.io/library/nginx:1.25-alpine",
                "docker.io/library/node:18-alpine",
                "docker.io/library/python:3.11-alpine",
                "docker.io/library/rust:1.87-alpine",
                "docker.io/prom/prometheus:v2.53.0",
            ]
        );
    }

    #[test]
    fn local_images_match_by_tag_or_digest() {
        let text = "docker.io/library/alpine|3.19|sha256:aaa|7800000\n\
                    <none>|<none>|sha256:bbb|100\n\
                    docker.io/library/busybox|<none>|sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef|4000\n";
        let local = parse_local_images(text);
        assert_eq!(local.len(), 2);
        let a = ImageRef::parse("alpine:3.19").unwrap();
        assert_eq!(find_local(&local, &a).unwrap().size, 7_800_000);
        assert!(find_local(&local, &ImageRef::parse("alpine:3.20").unwrap()).is_none());
        let b = ImageRef::parse("busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(find_local(&local, &b).unwrap().size, 4000);
        assert!(find_local(&local, &ImageRef::parse("busybox").unwrap()).is_none());
    }

    #[test]
    fn mirrors_of_the_image_registry_come_first() {
        let mirrors = mirror_list(
            &["http://127.0.0.1:5001".into(), "ghcr.io=https://ghcr-mirror.example".into(), "https://m2.example".into()],
            &["https://ignored.example".into()],
        )
        .unwrap();
        let s: Vec<String> = sources_for(&ImageRef::parse("alpine:3.19").unwrap(), &mirrors).iter().map(Source::label).collect();
        assert_eq!(s, ["mirror http://127.0.0.1:5001", "mirror https://m2.example", "docker.io"]);
        let s: Vec<String> = sources_for(&ImageRef::parse("quay.io/x/y:1").unwrap(), &mirrors).iter().map(Source::label).collect();
        assert_eq!(s, ["quay.io"]);
        // The manifest list applies when the command line gives none.
        assert_eq!(mirror_list(&[], &["https://m.example".into()]).unwrap()[0].location, "m.example");
        assert!(mirror_list(&["ftp://x".into()], &[]).is_err());
    }

    // Real stderr of podman 4.3.1 against docker-registry 2.8 behind tests/support/faultproxy.py.
    const E_503_MANIFEST: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:1...\nError: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: received unexpected HTTP status: 503 Service Unavailable\n";
    const E_503_BLOB: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:1...\nError: parsing image configuration: Error fetching blob: invalid status code from registry 503 (Service Unavailable)\n";
    const E_502_BLOB: &str = "Error: parsing image configuration: Error fetching blob: invalid status code from registry 502 (Bad Gateway)\n";
    const E_500: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: received unexpected HTTP status: 500 Internal Server Error";
    const E_RESET: &str = "time=\"2026-11-22T02:18:58Z\" level=warning msg=\"Failed, retrying in 1s ... (1/3). Error: parsing image configuration: Get \\\"http://127.0.0.1:43959/v2/v7test-pull/probe/blobs/sha256:30\\\": read tcp 127.0.0.1:55758->127.0.0.1:43959: read: connection reset by peer\"\nError: parsing image configuration: Get \"http://127.0.0.1:43959/v2/v7test-pull/probe/blobs/sha256:30\": read tcp 127.0.0.1:44640->127.0.0.1:43959: read: connection reset by peer\n";
    const E_CUT: &str = "Copying blob sha256:7eba6c37e354\nError: writing blob: storing blob to file \"/var/tmp/storage3491527645/1\": happened during read: read tcp 127.0.0.1:57090->127.0.0.1:43959: read: connection reset by peer\n";
    const E_REFUSED: &str = "Error: initializing source docker://127.0.0.1:1/v7test-pull/probe:1: pinging container registry 127.0.0.1:1: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused\n";
    const E_TAG: &str = "Trying to pull 127.0.0.1:43959/v7test-pull/probe:nope...\nError: initializing source docker://127.0.0.1:43959/v7test-pull/probe:nope: reading manifest nope in 127.0.0.1:43959/v7test-pull/probe: manifest unknown: manifest unknown\n";
    const E_DENIED: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: denied";
    const E_UNAUTH: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: unauthorized";
    const E_429: &str = "Error: initializing source docker://127.0.0.1:43959/v7test-pull/probe:1: reading manifest 1 in 127.0.0.1:43959/v7test-pull/probe: toomanyrequests";
    const E_HUB_DENIED: &str = "Error: initializing source docker://docker.io/library/nosuch:1: reading manifest 1 in docker.io/library/nosuch: requested access to the resource is denied";
    const E_DNS: &str = "Error: initializing source docker://nope.invalid/x:1: pinging container registry nope.invalid: Get \"https://nope.invalid/v2/\": dial tcp: lookup nope.invalid: no such host";
    const E_TIMEOUT: &str = "Error: initializing source docker://10.255.255.1/x:1: pinging container registry 10.255.255.1: Get \"https://10.255.255.1/v2/\": dial tcp 10.255.255.1:443: i/o timeout";

    #[test]
    fn podman_errors_are_classified() {
        for e in [E_503_MANIFEST, E_503_BLOB, E_502_BLOB, E_500, E_RESET, E_CUT, E_REFUSED, E_TIMEOUT] {
            assert_eq!(classify(e), Class::Transient, "{e}");
        }
        for e in [E_TAG, E_DENIED, E_UNAUTH, E_HUB_DENIED, E_DNS] {
            assert_eq!(classify(e), Class::Permanent, "{e}");
        }
        assert_eq!(classify(E_429), Class::RateLimited);
        assert_eq!(classify("something new"), Class::Transient);
    }

    #[test]
    fn the_error_line_is_podmans_last_error() {
        assert!(error_line(E_RESET).starts_with("parsing image configuration: Get"));
        assert!(error_line(E_TAG).ends_with("manifest unknown: manifest unknown"));
        assert_eq!(error_line("plain failure\n\n"), "plain failure");
        assert_eq!(error_line(""), "no error output");
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.999_999).as_millis(), 999);
        assert_eq!(backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(10, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(64, 0.5), Duration::from_secs_f64(22.5));
        for a in 1..8 {
            assert!(backoff(a, 0.3) <= backoff(a + 1, 0.3));
        }
    }

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after("2", 0), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 ", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("99999", 0), Some(Duration::from_secs(600)));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", 784_111_777), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_999), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn one_inspect_tells_present_from_missing() {
        let refs: Vec<String> = ["a:1", "b:2", "c@sha256:00", "d:4"].iter().map(|s| s.to_string()).collect();
        // podman 4.3.1, two of four missing: the earlier error in lower case, the last as `Error:`.
        let stderr = "error inspecting object: b:2: image not known\nError: inspecting object: c@sha256:00: image not known\n";
        let got = parse_inspect(&refs, "4d07b66541e4|95287497\ne20370aa9d9e|82261442\n", stderr).unwrap();
        assert_eq!(got, vec![Some(95_287_497), None, None, Some(82_261_442)]);
        assert_eq!(parse_inspect(&refs[..1], "x|5\n", "").unwrap(), vec![Some(5)]);
        // Anything podman did not say about a missing image, or a count that does not add up:
        // not trusted (the caller falls back to `podman images`).
        assert_eq!(parse_inspect(&refs[..1], "", "Error: database is locked\n"), None);
        assert_eq!(parse_inspect(&refs[..2], "x|5\n", ""), None);
        assert_eq!(parse_inspect(&refs[..1], "x|5\ny|6\n", ""), None);
    }

    #[test]
    fn plan_skips_present_images_unless_always() {
        let local = parse_local_images("docker.io/library/alpine|3.19|sha256:a|10\n");
        let needed = vec![
            Needed { image: ImageRef::parse("alpine:3.19").unwrap(), used_by: vec![] },
            Needed { image: ImageRef::parse("node:18-alpine").unwrap(), used_by: vec![] },
        ];
        let present = needed.iter().map(|n| find_local(&local, &n.image).cloned()).collect();
        let items = plan(needed, present, &[]);
        assert!(!items[0].to_pull(Policy::Missing) && items[1].to_pull(Policy::Missing));
        assert!(items[0].to_pull(Policy::Always));
        assert!(Policy::parse(Some("sometimes")).is_err());
    }

    #[test]
    fn pull_commands_point_at_the_source_registries_conf() {
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/s/containers.conf")]);
        let image = ImageRef::parse("alpine:3.19").unwrap();
        let cmd = pull_cmd(&podman, Some(Path::new("/s/m0.conf")), &image);
        assert_eq!(
            cmd.to_string(),
            "CONTAINERS_CONF=/s/containers.conf CONTAINERS_REGISTRIES_CONF=/s/m0.conf podman pull docker.io/library/alpine:3.19"
        );
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(pull_reference(&ImageRef::parse(&format!("alpine:3@{d}")).unwrap()), format!("docker.io/library/alpine@{d}"));
    }

    #[test]
    fn json_output() {
        let reports = vec![Report {
            image: "docker.io/library/alpine:3.19".into(),
            used_by: vec!["backend/Dockerfile:37".into()],
            status: "failed".into(),
            size: None,
            sources: vec!["mirror http://127.0.0.1:5001".into(), "docker.io".into()],
            outcome: Some(Outcome { ok: false, attempts: 3, seconds: 1.5, source: None, error: Some("x: \"quoted\"\n".into()), size: None, request_retries: 2 }),
        }];
        let mirrors = vec![(Mirror::parse("http://127.0.0.1:5001").unwrap(), Some("connection refused".into()))];
        let j = to_json(&reports, &mirrors, false, false, 2.0, Some(5000));
        assert!(j.contains("\"ok\": false"), "{j}");
        assert!(j.contains("\"xtask_peak_rss_kib\": 5000"));
        assert!(j.contains("\"alive\": false, \"error\": \"connection refused\""));
        assert!(j.contains("\"attempts\": 3, \"request_retries\": 2, \"seconds\": 1.500, \"source\": null"));
        assert!(j.contains("\"error\": \"x: \\\"quoted\\\"\\n\""));
        assert_eq!(json_str("a\u{1}"), "\"a\\u0001\"");
        let empty = to_json(&[], &[], true, false, 0.0, None);
        assert!(empty.contains("\"mirrors\": [],") && empty.ends_with("\"images\": []\n}\n"), "{empty}");
    }

    #[test]
    fn live_lines() {
        let now = Instant::now();
        let st = RowState::Retry { next: 2, of: 3, until: now + Duration::from_millis(3500), source: "docker.io".into(), error: "503".into() };
        assert_eq!(render("alpine", &st, now), "alpine: retry 2/3 from docker.io in 4 s (503)");
        assert_eq!(render("alpine", &RowState::Waiting, now), "alpine: waiting");
        assert_eq!(human_size(7_800_000), "7.8 MB");
        assert_eq!(human_size(999), "999 B");
        let t = table(&["A", "B"], &[vec!["xx".into(), "y".into()]]);
        assert_eq!(t, "A   B\nxx  y\n");
    }
}
