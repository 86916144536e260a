//! Where pulls are retried: one image, its sources in order, `--attempts` attempts each. Each
//! attempt is one `podman pull` with a registries.conf that sends the image's registry to that
//! one source (so the xtask, not podman, decides order, timeouts and retries, and the image
//! lands under its canonical name), run in the background so it can be timed out and stopped.
//! After a failure ([`classify`]): a permanent error moves on to the next source (or fails on
//! the origin), a transient one is retried after an exponential backoff with jitter, a 429
//! after the registry's Retry-After (podman hides that header, so the xtask asks the registry
//! itself with one `HEAD`, plain-HTTP registries only). A source served by the relay whose
//! pull ends in 401/403, or that turns out to speak TLS, is tried again directly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::display::RowState;
use super::plan::{relay_upstream, Item, Source};
use super::relay::curl::{self, trust_for};
use super::relay::Relay;
use crate::net::backoff::{exponential, parse_retry_after, Jitter};
use crate::net::http;
use crate::oci::{manifest, ImageRef};
use crate::podman::images::podman_reference;
use crate::podman::registries_conf::is_loopback_registry;
use crate::podman::registry_errors::{classify, error_line, is_auth_error, Class, Operation};
use crate::podman::Podman;
use crate::process::{Cmd, Runner};
use crate::util::text::plural;
use crate::util::time::now_unix;

/// Waits between whole attempts: 2 s, 4 s, 8 s, ... capped at 30 s, the upper half jitter. With
/// the default 4 attempts (docker/stack.toml `[pull]`) the three waits add up to 7-14 s, so a
/// pull without the relay outlasts an outage of several seconds (1 s, 2 s with 3 attempts
/// spent theirs in 1.5-3 s: issue 12); a permanent error (`podman/registry_errors.rs`) is not
/// retried at all. Measured in docs/benchmarks.md, "pull".
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A stopped podman gets this long to clean up before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What every worker shares.
pub struct Ctx {
    pub podman: Podman,
    pub runner: Runner,
    pub attempts: u32,
    pub timeout: Duration,
    pub deadline: Instant,
    pub stop: Arc<AtomicBool>,
    /// Per mirror URL: the single-source registries.conf.
    pub mirror_confs: HashMap<String, PathBuf>,
    /// Per mirror URL: why it is skipped.
    pub dead: HashMap<String, String>,
    pub origin_conf: Option<PathBuf>,
    /// Per source label: the loopback relay podman pulls that source through.
    pub relays: HashMap<String, RelayUse>,
    /// Where the xtask's own requests to a TLS registry keep their files (session.rs).
    pub work: PathBuf,
}

/// A relay and the registries.conf that sends one source's pulls to it.
pub struct RelayUse {
    pub relay: Relay,
    pub conf: PathBuf,
}

impl Drop for RelayUse {
    fn drop(&mut self) {
        self.relay.close();
        let _ = std::fs::remove_file(&self.conf);
    }
}

/// How one image's pull ended.
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
    /// Requests the relay asked the registry again, on top of `attempts`.
    pub request_retries: u32,
}

/// What a worker tells the display.
pub enum Event {
    State(usize, RowState),
    Finished(usize, Outcome),
}

enum AttemptEnd {
    Ok,
    Failed(String),
    TimedOut,
    Stopped,
}

/// One attempt. `cert_dir`: the certs.d directory of the source's host (`Podman::cert_dir`),
/// given as `--cert-dir` (why that flag: podman/certs.rs); none for the relay, which podman
/// reaches over plain HTTP on loopback.
pub fn pull_cmd(podman: &Podman, registries_conf: Option<&Path>, cert_dir: Option<&Path>, image: &ImageRef) -> Cmd {
    let p = match registries_conf {
        Some(path) => podman.clone().with_registries_conf(path),
        None => podman.clone(),
    };
    let cmd = p.cmd().arg("pull");
    let cmd = match cert_dir {
        Some(d) => cmd.arg("--cert-dir").path_arg(d),
        None => cmd,
    };
    cmd.arg(podman_reference(image))
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    /// "interrupted" or the deadline, with the last error.
    fn why_stopped(&self, last_error: &str) -> String {
        if self.stop.load(Ordering::SeqCst) {
            "interrupted".to_string()
        } else {
            format!("deadline reached; last error: {last_error}")
        }
    }

    /// `tick` runs every 20 ms while podman runs (the relay's progress goes to the display).
    fn attempt(&self, cmd: &Cmd, timeout: Duration, tick: &mut dyn FnMut()) -> AttemptEnd {
        let running = match self.runner.start(cmd) {
            Ok(r) => r,
            Err(e) => return AttemptEnd::Failed(format!("{e:#}")),
        };
        let start = Instant::now();
        loop {
            match running.try_wait() {
                Ok(Some(out)) if out.status.success() => return AttemptEnd::Ok,
                Ok(Some(out)) => return AttemptEnd::Failed(String::from_utf8_lossy(&out.stderr).into_owned()),
                Ok(None) => {}
                Err(e) => return AttemptEnd::Failed(format!("{e:#}")),
            }
            let stopping = self.stopping();
            if stopping || start.elapsed() >= timeout {
                running.terminate(STOP_GRACE);
                return if stopping { AttemptEnd::Stopped } else { AttemptEnd::TimedOut };
            }
            tick();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sleeps until `until`, unless stopped. Returns false when stopped.
    fn wait_until(&self, until: Instant) -> bool {
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        true
    }
}

/// Pulls one image: its sources in order, attempts, backoff; see the module docs.
pub fn pull_one(ctx: &Ctx, idx: usize, item: &Item, tx: &mpsc::Sender<Event>) -> Outcome {
    let started = Instant::now();
    let mut jitter = Jitter::seeded(idx as u64 + 1);
    let mut attempts = 0;
    let mut relayed: Vec<&RelayUse> = Vec::new();
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
                return end(false, attempts, None, Some(ctx.why_stopped(&last_error)), &relayed);
            }
            let cmd = match relay {
                Some(r) => {
                    // Layers ahead only for an image that is not here at all (relay/mod.rs).
                    let reference =
                        image.digest.clone().or_else(|| image.tag.clone()).unwrap_or_else(|| "latest".into());
                    r.relay.expect(&image.repository, &reference, item.present.is_none());
                    if !relayed.iter().any(|x| std::ptr::eq(*x, r)) {
                        relayed.push(r);
                    }
                    pull_cmd(&ctx.podman, Some(&r.conf), None, image)
                }
                None => pull_cmd(&ctx.podman, direct_conf, ctx.podman.cert_dir(&source.host_port()).as_deref(), image),
            };
            let pulling =
                |note: Option<String>| RowState::Pulling { source: source.label(), attempt, of: ctx.attempts, note };
            let _ = tx.send(Event::State(idx, pulling(None)));
            attempts += 1;
            let mut seen = relay.map(|r| r.relay.retries(&image.repository).count).unwrap_or(0);
            let mut tick = || {
                if let Some(r) = relay {
                    let now = r.relay.retries(&image.repository);
                    if now.count != seen {
                        seen = now.count;
                        let note = now.last.map(|l| format!("{} retried, last {l}", plural(now.count, "request")));
                        let _ = tx.send(Event::State(idx, pulling(note)));
                    }
                }
            };
            let timeout = ctx.timeout.min(remaining);
            let (class, stderr) = match ctx.attempt(&cmd, timeout, &mut tick) {
                AttemptEnd::Ok => return end(true, attempts, Some(source.label()), None, &relayed),
                AttemptEnd::Stopped => return end(false, attempts, None, Some(ctx.why_stopped(&last_error)), &relayed),
                AttemptEnd::TimedOut => {
                    last_error = format!("{}: attempt timed out after {} s", source.label(), timeout.as_secs());
                    (Class::Transient, String::new())
                }
                AttemptEnd::Failed(stderr) => {
                    last_error = format!("{}: {}", source.label(), error_line(&stderr));
                    (classify(&stderr, Operation::Pull), stderr)
                }
            };
            // The relay cannot help this source: it does not speak plain HTTP, or it wants
            // credentials podman keeps for the registry's own name. Same attempt, directly.
            if let Some(r) = relay {
                let why = if let Some(why) = r.relay.pull_directly() {
                    Some(why)
                } else if class == Class::Permanent && is_auth_error(&stderr) {
                    Some("it asks for credentials".to_string())
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
            let mut backoff = || exponential(attempt, BACKOFF_BASE, BACKOFF_CAP, jitter.next());
            let wait = match class {
                Class::RateLimited => probe_retry_after(ctx, source, image).unwrap_or_else(backoff),
                _ => backoff(),
            };
            let until = Instant::now() + wait;
            let next = RowState::Retry {
                next: attempt + 1,
                of: ctx.attempts,
                until,
                source: source.label(),
                error: last_error.clone(),
            };
            let _ = tx.send(Event::State(idx, next));
            if !ctx.wait_until(until) {
                return end(false, attempts, None, Some(ctx.why_stopped(&last_error)), &relayed);
            }
        }
    }
    end(false, attempts, None, Some(last_error), &relayed)
}

/// Asks the registry (the sources a relay could serve: mirrors and registries on this host)
/// for the manifest once, to read a 429's Retry-After: plain HTTP first, then over TLS by curl,
/// trusting what podman trusts for it.
fn probe_retry_after(ctx: &Ctx, source: &Source, image: &ImageRef) -> Option<Duration> {
    let (_, up) = relay_upstream(source, &HashMap::new())?;
    let reference = image.digest.clone().or_else(|| image.tag.clone())?;
    let accept: Vec<(&str, &str)> = manifest::MEDIA_TYPES.iter().map(|t| ("Accept", *t)).collect();
    let path = up.path(&image.repository, "manifests", &reference);
    let (connect, read) = (Duration::from_secs(2), Duration::from_secs(5));
    let plain = if up.tls {
        None
    } else {
        http::request_to(&up.host, up.port, "HEAD", &path, &accept, None, connect, read)
            .ok()
            .map(|a| (a.status, a.header("retry-after").map(str::to_string)))
            // 400: what TLS servers answer to plain HTTP.
            .filter(|(status, _)| *status != 400)
    };
    let (status, retry_after) = match plain {
        Some(answer) => answer,
        None => {
            let trust = trust_for(&ctx.work, &ctx.podman, &source.host_port()).ok()?;
            let no_proxy = is_loopback_registry(&http::authority(&up.host, up.port));
            let (status, headers) =
                curl::small(&ctx.runner, &ctx.work, "HEAD", up.https_url(&path), &trust, no_proxy, (2, 5)).ok()?;
            (status, http::header(&headers, "retry-after").map(str::to_string))
        }
    };
    if status != 429 {
        return None;
    }
    retry_after.and_then(|v| parse_retry_after(&v, now_unix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_commands_point_at_the_source_registries_conf() {
        let podman = Podman::fixed(&[("CONTAINERS_CONF", "/s/containers.conf")]);
        let image = ImageRef::parse("alpine:3.19").unwrap();
        let cmd = pull_cmd(&podman, Some(Path::new("/s/m0.conf")), None, &image);
        assert_eq!(
            cmd.to_string(),
            "CONTAINERS_CONF=/s/containers.conf CONTAINERS_REGISTRIES_CONF=/s/m0.conf podman pull docker.io/library/alpine:3.19"
        );
        assert_eq!(
            pull_cmd(&podman, None, None, &image).to_string(),
            "CONTAINERS_CONF=/s/containers.conf podman pull docker.io/library/alpine:3.19"
        );
        assert_eq!(
            pull_cmd(&podman, None, Some(Path::new("/s/certs.d/127.0.0.1:5000")), &image).to_string(),
            "CONTAINERS_CONF=/s/containers.conf podman pull --cert-dir /s/certs.d/127.0.0.1:5000 docker.io/library/alpine:3.19"
        );
    }
}
