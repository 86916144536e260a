//! One pull run: the registries.conf of every source written, mirrors probed, relays started,
//! Ctrl-C caught, `--jobs` workers pulling (`retry.rs`) while the display follows their events,
//! then the sizes of what landed, the report, and an error naming every image that is not here.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::display::{render, RowState};
use super::plan::{relay_upstream, Item, Source};
use super::relay::Relay;
use super::report::{self, Report};
use super::retry::{pull_one, Ctx, Event, Outcome, RelayUse};
use super::{Options, Setup};
use crate::net::http;
use crate::podman::errors::explain_failure;
use crate::podman::images::presence;
use crate::podman::registries_conf::{single_source_conf, RegistryMirror};
use crate::process::Runner;
use crate::util::fs::write_if_changed;
use crate::util::live::Live;
use crate::util::workspace::Workspace;

/// Is the mirror answering as a registry? Any HTTP answer to `/v2/` counts (401 included); an
/// HTTPS mirror is checked by a TCP connection (no TLS here: see relay/mod.rs).
fn probe_mirror(m: &RegistryMirror) -> Result<(), String> {
    let (host, port) = m.host_port();
    let (connect, read) = (Duration::from_secs(2), Duration::from_secs(3));
    if !m.insecure {
        return http::connect(&host, port, connect).map(|_| ()).map_err(|e| format!("{e:#}"));
    }
    // Registries serve /v2/ at the root, even with a namespace in `location`.
    http::request_to(&host, port, "GET", "/v2/", &[], None, connect, read).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// Probes the mirrors some image to pull would use, all at once: URL -> why it is dead.
fn probe_used_mirrors(setup: &Setup, items: &[Item], todo: &[usize]) -> HashMap<String, String> {
    let used: Vec<&RegistryMirror> = setup
        .mirrors
        .iter()
        .filter(|m| todo.iter().any(|&i| items[i].sources.iter().any(|s| *s == Source::Mirror((*m).clone()))))
        .collect();
    let probes: Vec<(String, std::thread::JoinHandle<Result<(), String>>)> = used
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
    dead
}

/// One relay per plain-HTTP source some image to pull uses.
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
            let relay =
                Relay::start(upstream, &ws.state.join("pull-relay").join(format!("{pid}-{n}")), Arc::clone(stop))?;
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

pub fn run(ws: &Workspace, setup: &Setup, items: Vec<Item>, opts: &Options) -> Result<()> {
    let todo: Vec<usize> = (0..items.len()).filter(|&i| items[i].to_pull(opts.policy)).collect();
    for m in &setup.mirrors {
        write_if_changed(&setup.mirror_confs[&m.url], &single_source_conf(m))?;
    }
    let dead = probe_used_mirrors(setup, &items, &todo);
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
