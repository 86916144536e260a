//! One pull run: the registries.conf of every source written, mirrors probed, relays started,
//! Ctrl-C caught, `--jobs` workers pulling (`retry.rs`) while the display follows their events,
//! then the sizes of what landed, the report, and an error naming every image that is not here.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::display::{render, RowState};
use super::plan::{relay_upstream, Item, Source};
use super::relay::curl::{self, trust_for, Trust};
use super::relay::Relay;
use super::report::{self, Report};
use super::retry::{pull_one, Ctx, Event, Outcome, RelayUse};
use super::{Options, Setup};
use crate::net::http;
use crate::podman::errors::explain_failure;
use crate::podman::images::presence;
use crate::podman::registries_conf::{is_loopback_registry, single_source_conf, RegistryMirror};
use crate::process::Runner;
use crate::util::fs::write_if_changed;
use crate::util::live::Live;
use crate::util::workspace::Workspace;

/// What one probe of a mirror says.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// It answered as a registry (any status below 500: 401 and 404 included).
    Alive,
    /// Asking again cannot help soon: nothing listens, or it did not answer in time.
    Dead(String),
    /// A bad moment (a reset, a cut answer, a 5xx): ask again.
    Again(String),
}

/// How many times a mirror is probed before one that keeps failing is skipped: 5, 0.4 to 3.2 s
/// apart (6 s in all). With 30 % of requests failing at random, 3 probes lost the mirror in 2.7 %
/// of pulls (0.3^3), about one run in two of 20; 5 probes in 0.24 % (docs/benchmarks.md, "pull").
const PROBE_ATTEMPTS: u32 = 5;

fn judge_probe(result: Result<u16, String>) -> Probe {
    match result {
        Ok(status) if status < 500 => Probe::Alive,
        Ok(status) => Probe::Again(format!("/v2/ answered {status}")),
        Err(e) => {
            let l = e.to_ascii_lowercase();
            // The proxy said no to the tunnel (curl: "CONNECT tunnel failed, response 407"; tinyproxy
            // answers 401): the same answer every time, and a cause the user must fix.
            if l.contains("connect tunnel failed") {
                let what = if l.contains("response 401") || l.contains("response 407") {
                    "the proxy refused the credentials in HTTPS_PROXY: fix its user or password"
                } else {
                    "the proxy refused the tunnel: check HTTPS_PROXY"
                };
                return Probe::Dead(format!("{e}; {what}, or name the mirror in NO_PROXY"));
            }
            // A read timeout shows as EAGAIN ("resource temporarily unavailable") on Linux.
            let dead = ["refused", "timed out", "timeout", "temporarily unavailable", "would block", "resolve"];
            if dead.iter().any(|d| l.contains(d)) {
                Probe::Dead(e)
            } else {
                Probe::Again(e)
            }
        }
    }
}

/// Is the mirror answering as a registry? `GET /v2/` (over TLS by curl, trusting what podman
/// trusts for it), asked up to [`PROBE_ATTEMPTS`] times: one bad answer does not make a mirror
/// dead; refusing connections, not answering in time, a proxy refusing the tunnel (its 401/407
/// to our CONNECT) or failing every time does.
fn probe_mirror(m: &RegistryMirror, trust: Option<&Trust>, work: &Path) -> Result<(), String> {
    let (host, port) = m.host_port();
    let (connect, read) = (Duration::from_secs(2), Duration::from_secs(3));
    let runner = Runner::new(false);
    let mut last = String::new();
    for attempt in 1..=PROBE_ATTEMPTS {
        // Registries serve /v2/ at the root, even with a namespace in `location`.
        let result = match trust {
            None => http::request_to(&host, port, "GET", "/v2/", &[], None, connect, read)
                .map(|r| r.status)
                .map_err(|e| format!("{e:#}")),
            Some(trust) => {
                let url = format!("https://{}/v2/", http::authority(&host, port));
                let no_proxy = is_loopback_registry(&http::authority(&host, port));
                curl::small(&runner, work, "GET", url, trust, no_proxy, (2, 5)).map(|(status, _)| status)
            }
        };
        match judge_probe(result) {
            Probe::Alive => return Ok(()),
            Probe::Dead(why) => return Err(why),
            Probe::Again(why) => last = why,
        }
        if attempt < PROBE_ATTEMPTS {
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
    }
    Err(format!("{last} ({PROBE_ATTEMPTS} probes)"))
}

/// Probes the mirrors some image to pull would use, all at once: URL -> why it is dead.
fn probe_used_mirrors(setup: &Setup, items: &[Item], todo: &[usize], work: &Path) -> HashMap<String, String> {
    let used: Vec<&RegistryMirror> = setup
        .mirrors
        .iter()
        .filter(|m| todo.iter().any(|&i| items[i].sources.iter().any(|s| *s == Source::Mirror((*m).clone()))))
        .collect();
    let probes: Vec<(String, std::thread::JoinHandle<Result<(), String>>)> = used
        .iter()
        .map(|m| {
            let m2 = (*m).clone();
            let trust = if m.insecure {
                Ok(None)
            } else {
                trust_for(work, &setup.podman, &Source::Mirror(m2.clone()).host_port()).map(Some)
            };
            let work = work.to_path_buf();
            let probe = move || match trust {
                Ok(trust) => probe_mirror(&m2, trust.as_ref(), &work),
                Err(e) => Err(format!("{e:#}")),
            };
            (m.url.clone(), std::thread::spawn(probe))
        })
        .collect();
    let mut dead = HashMap::new();
    for (url, h) in probes {
        if let Err(why) = h.join().unwrap_or_else(|_| Err("probe panicked".into())) {
            eprintln!("mirror {url} is not answering ({why}): skipped");
            dead.insert(url, why);
        }
    }
    dead
}

/// One relay per source some image to pull uses (a mirror, or the registry itself); none for a
/// mirror that is dead.
fn start_relays(
    ws: &Workspace,
    setup: &Setup,
    items: &[Item],
    todo: &[usize],
    dead: &HashMap<String, String>,
    stop: &Arc<AtomicBool>,
) -> Result<HashMap<String, RelayUse>> {
    let mut relays: HashMap<String, RelayUse> = HashMap::new();
    for &i in todo {
        for source in &items[i].sources {
            let key = source.label();
            if relays.contains_key(&key) {
                continue;
            }
            let Some((registry, upstream)) = relay_upstream(source, dead) else { continue };
            let n = relays.len();
            let pid = std::process::id();
            let cert_dir = setup.podman.cert_dir(&source.host_port());
            let dir = ws.state.join("pull-relay").join(format!("{pid}-{n}"));
            let relay = Relay::start(upstream, &dir, Arc::clone(stop), cert_dir.as_deref())?;
            let via = RegistryMirror {
                registry,
                url: format!("http://{}", relay.location()),
                location: relay.location(),
                insecure: true,
            };
            let conf = setup.podman_dir.join("pull-sources").join(format!("relay-{pid}-{n}.conf"));
            write_if_changed(&conf, &single_source_conf(&via))?;
            relays.insert(key, RelayUse { relay, conf });
        }
    }
    Ok(relays)
}

/// A directory removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(ws: &Workspace, setup: &Setup, items: Vec<Item>, opts: &Options) -> Result<()> {
    let todo: Vec<usize> = (0..items.len()).filter(|&i| items[i].to_pull(opts.policy)).collect();
    for m in &setup.mirrors {
        write_if_changed(&setup.mirror_confs[&m.url], &single_source_conf(m))?;
    }
    // Probes' and Retry-After's files (CA bundles, curl's answers); removed when the run ends.
    let work = WorkDir(ws.state.join("pull-relay").join(format!("{}-work", std::process::id())));
    std::fs::create_dir_all(&work.0).with_context(|| format!("cannot create {}", work.0.display()))?;
    let dead = probe_used_mirrors(setup, &items, &todo, &work.0);
    let mirror_report: Vec<(RegistryMirror, Option<String>)> =
        setup.mirrors.iter().map(|m| (m.clone(), dead.get(&m.url).cloned())).collect();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot handle Ctrl-C")?;
    }
    let relays = if opts.no_relay { HashMap::new() } else { start_relays(ws, setup, &items, &todo, &dead, &stop)? };
    let runner = Runner::new(false);
    let ctx = Arc::new(Ctx {
        podman: setup.podman.clone(),
        runner,
        attempts: setup.attempts,
        timeout: setup.timeout,
        deadline: setup.started + setup.deadline,
        stop: Arc::clone(&stop),
        mirror_confs: setup.mirror_confs.clone(),
        dead,
        origin_conf: setup.origin_conf.clone(),
        relays,
        work: work.0.clone(),
    });

    let mut rows: Vec<(String, RowState)> = items
        .iter()
        .map(|it| {
            (it.needed.image.to_string(), if it.to_pull(opts.policy) { RowState::Waiting } else { RowState::Present })
        })
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let mut live = Live::new();
    live.redraw(&rows.iter().map(|(image, state)| render(image, state, Instant::now())).collect::<Vec<_>>());
    for (image, state) in &rows {
        live.line(&render(image, state, Instant::now()));
    }

    let queue = Arc::new(Mutex::new(todo.iter().copied().collect::<VecDeque<usize>>()));
    let items = Arc::new(items);
    let (tx, rx) = mpsc::channel::<Event>();
    let mut workers = Vec::new();
    for _ in 0..setup.jobs.min(todo.len()) {
        let (queue, items, ctx, tx) = (Arc::clone(&queue), Arc::clone(&items), Arc::clone(&ctx), tx.clone());
        workers.push(std::thread::spawn(move || loop {
            let next = queue.lock().unwrap().pop_front();
            let Some(idx) = next else { break };
            if ctx.stop.load(Ordering::SeqCst) {
                let _ =
                    tx.send(Event::Finished(idx, Outcome { error: Some("interrupted".into()), ..Outcome::default() }));
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
                live.line(&render(&rows[i].0, &rows[i].1, Instant::now()));
            }
            Ok(Event::Finished(i, oc)) => {
                finished += 1;
                rows[i].1 = if oc.ok { RowState::Done } else { RowState::Failed };
                let extra = oc.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                live.line(&format!("{}{extra}", render(&rows[i].0, &rows[i].1, Instant::now())));
                outcomes[i] = Some(oc);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        live.redraw(&rows.iter().map(|(image, state)| render(image, state, Instant::now())).collect::<Vec<_>>());
    }
    for w in workers {
        let _ = w.join();
    }
    let interrupted = stop.load(Ordering::SeqCst);
    // Sizes of what was pulled: one `podman image inspect` once all pulls are done (0.04 s),
    // rather than a podman process per image competing with the pulls still committing.
    let pulled: Vec<usize> = (0..items.len()).filter(|&i| outcomes[i].as_ref().is_some_and(|o| o.ok)).collect();
    if !pulled.is_empty() {
        let images: Vec<_> = pulled.iter().map(|&i| items[i].needed.image.clone()).collect();
        if let Ok(found) = presence(&runner, &setup.podman, &images) {
            for (&i, f) in pulled.iter().zip(found) {
                if let Some(o) = outcomes[i].as_mut() {
                    o.size = f.map(|l| l.size);
                }
            }
        }
    }
    finish(setup, &items, &outcomes, &mirror_report, interrupted, opts.json)
}

/// The summary, the `--json` document, and the error for every image that is not here.
fn finish(
    setup: &Setup,
    items: &[Item],
    outcomes: &[Option<Outcome>],
    mirrors: &[(RegistryMirror, Option<String>)],
    interrupted: bool,
    json: bool,
) -> Result<()> {
    let reports: Vec<Report> = items.iter().zip(outcomes).map(|(it, oc)| Report::of_pull(it, oc.as_ref())).collect();
    let ok = !interrupted && reports.iter().all(Report::is_here);
    let elapsed = setup.started.elapsed().as_secs_f64();
    let summary = report::summary_table(&reports);
    crate::util::github::append_summary(&report::markdown_summary(&reports, ok, elapsed));
    if json {
        eprint!("{summary}");
        print!("{}", report::to_json(&reports, mirrors, ok, interrupted, elapsed, report::peak_rss_kib()));
    } else {
        print!("{summary}");
        println!("{} images, {elapsed:.1} s, jobs {}", reports.len(), setup.jobs);
    }
    if interrupted {
        bail!(
            "interrupted: running pulls were stopped; podman stores an image only when its pull completes, so nothing \
             half-pulled is tagged"
        );
    }
    if !ok {
        let mut msg = String::from("these images are not here:");
        for r in reports.iter().filter(|r| !r.is_here()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_answer_does_not_make_a_mirror_dead() {
        assert_eq!(judge_probe(Ok(200)), Probe::Alive);
        assert_eq!(judge_probe(Ok(401)), Probe::Alive, "a registry that wants a login answered");
        assert_eq!(judge_probe(Ok(503)), Probe::Again("/v2/ answered 503".into()));
        let reset = "reading the answer: Connection reset by peer (os error 104)".to_string();
        assert_eq!(judge_probe(Err(reset.clone())), Probe::Again(reset));
        let refused = "cannot connect to 127.0.0.1:9: Connection refused (os error 111)".to_string();
        assert_eq!(judge_probe(Err(refused.clone())), Probe::Dead(refused));
        let silent = "reading the answer: Resource temporarily unavailable (os error 11)".to_string();
        assert_eq!(judge_probe(Err(silent.clone())), Probe::Dead(silent));
        let refused_login = "curl: (56) CONNECT tunnel failed, response 407".to_string();
        match judge_probe(Err(refused_login)) {
            Probe::Dead(why) => {
                assert!(why.ends_with("fix its user or password, or name the mirror in NO_PROXY"), "{why}")
            }
            other => panic!("a proxy that refuses our login is not asked again: {other:?}"),
        }
    }
}
