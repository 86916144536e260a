//! Pulling: every image the stack needs, here, fast, through bad networks.
//!
//! 1. Discovery (`discover.rs`): the external images of every stage of every Dockerfile the
//!    stack builds, plus the images of the services that are not built (infrastructure),
//!    normalised, de-duplicated, digests kept. `--image REF` replaces the list.
//! 2. Presence: one `podman image inspect` for all of them (`podman/images.rs`).
//! 3. The plan (`plan.rs`): each image's sources in order, every registry mirror of its
//!    registry, then the registry itself; every source (mirrors, `http://` and `https://`, and
//!    registries, on loopback plain or TLS) goes through the loopback relay (`relay/`) unless `--no-relay`: it
//!    fetches ahead and retries single requests, so a failed request no longer costs a whole
//!    attempt. TLS is curl's, trusting what podman trusts (`podman/certs.rs`: the system's CAs
//!    and the registry's certs.d directory, which each direct pull gets as `--cert-dir`).
//! 4. Pulling (`session.rs`): mirrors probed before any pull (`GET /v2/`, 2 s connect, 3 s
//!    answer; a reset or a 5xx is asked again, up to 3 times, so one bad answer does not make a
//!    mirror dead; refused or silent ones cost seconds once and are skipped for every image), then a pool of `--jobs`
//!    workers, each image retried as `retry.rs` says (classifying podman's errors with
//!    `podman/registry_errors.rs`), with a timeout per attempt (`--timeout`, 300 s) and a deadline for all of
//!    it (`--deadline`); shown live (`display.rs`) and reported (`report.rs`, `--json`).
//! 5. Ctrl-C (SIGINT/SIGTERM): running pulls get SIGTERM (SIGKILL after 5 s); podman stores an
//!    image only when its pull completes, so nothing half-pulled is tagged.
//!
//! The decisions are pure functions with unit tests beside them; `xtask/tests/pull_e2e.rs` runs
//! the real binary against a real registry behind a fault-injecting proxy.

pub mod discover;
pub mod display;
mod options;
pub mod plan;
pub mod relay;
pub mod report;
pub mod retry;
mod session;

pub use options::{Options, Setup};

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::podman::images::presence;
use crate::podman::registries_conf::{self, RegistryMirror};
use crate::podman::Podman;
use crate::process::Runner;
use crate::stack::Stack;
use crate::util::fs::write_if_changed;
use crate::util::workspace::Workspace;
use plan::{mirror_list, relay_upstream, Item, Source};
use report::Report;
use retry::pull_cmd;

/// `cargo xtask pull`, and what `deploy` and `build` use to get base images.
pub fn pull(ws: &Workspace, runner: &Runner, opts: &Options) -> Result<()> {
    let started = Instant::now();
    // Settings from the stack file; with --image the stack file is optional.
    let stack = match Stack::load(ws) {
        Ok(s) => Some(s),
        Err(e) if !opts.images.is_empty() => {
            eprintln!("note: {e:#}; using defaults");
            None
        }
        Err(e) => return Err(e),
    };
    let defaults = crate::stack::PullSettings::default();
    let settings = stack.as_ref().map(|s| &s.pull).unwrap_or(&defaults);
    let stack_mirrors: Vec<String> = settings.registry_mirrors.iter().map(|m| m.get_ref().clone()).collect();
    let mirrors = mirror_list(&opts.registry_mirrors, &stack_mirrors)?;
    let needed = match &stack {
        Some(stack) if opts.images.is_empty() => discover::discover(ws, stack)?,
        _ => discover::given(&opts.images)?,
    };

    let podman_dir = ws.state.join("podman");
    let shared_conf = registries_conf::shared_path(ws);
    if !opts.status && !runner.dry_run {
        // Later podman calls of the xtask (builds) resolve through the same mirrors.
        if mirrors.is_empty() {
            if std::fs::read_to_string(&shared_conf).is_ok_and(|t| registries_conf::is_ours(&t)) {
                std::fs::remove_file(&shared_conf).ok();
            }
        } else {
            write_if_changed(&shared_conf, &registries_conf::registries_conf(&mirrors))?;
        }
    }
    // The user's own registries.conf, if any, is what origin pulls use.
    let user_registries = std::env::var_os("CONTAINERS_REGISTRIES_CONF").map(PathBuf::from);
    let mut podman = Podman::prepare(ws)?;
    if let Some(user) = &user_registries {
        podman = podman.with_registries_conf(user);
    }
    let images: Vec<_> = needed.iter().map(|n| n.image.clone()).collect();
    let present = presence(runner, &podman, &images)?;
    let items = plan::plan(needed, present, &mirrors);
    if opts.status {
        return status(&items, &mirrors, opts.json, started);
    }

    let origin_conf = user_registries.or_else(|| {
        let system = PathBuf::from("/etc/containers/registries.conf");
        system.exists().then_some(system)
    });
    let mirror_confs: HashMap<String, PathBuf> = mirrors
        .iter()
        .enumerate()
        .map(|(i, m)| (m.url.clone(), podman_dir.join("pull-sources").join(format!("mirror-{i}.conf"))))
        .collect();
    let setup = Setup {
        jobs: opts.jobs.unwrap_or(settings.jobs).max(1),
        attempts: opts.attempts.unwrap_or(settings.attempts).max(1),
        timeout: Duration::from_secs(opts.timeout_secs.unwrap_or(settings.timeout_secs).max(1)),
        deadline: Duration::from_secs(opts.deadline_secs.unwrap_or(settings.deadline_secs)),
        mirrors,
        podman,
        podman_dir,
        mirror_confs,
        origin_conf,
        started,
    };
    if runner.dry_run {
        print_plan(runner, &setup, &items, opts)?;
        return Ok(());
    }
    session::run(ws, &setup, items, opts)
}

/// `--dry-run`: what would be pulled from where, and the podman commands.
fn print_plan(runner: &Runner, setup: &Setup, items: &[Item], opts: &Options) -> Result<()> {
    let todo = items.iter().filter(|i| i.to_pull(opts.policy)).count();
    println!("# {} images needed, {todo} to pull (policy {:?}, jobs {})", items.len(), opts.policy, setup.jobs);
    if !setup.mirrors.is_empty() {
        println!(
            "# would write the registries.conf for later builds and one file per mirror under {}",
            setup.podman_dir.join("pull-sources").display()
        );
    }
    for item in items {
        if !item.to_pull(opts.policy) {
            println!("# {}: present", item.needed.image);
            continue;
        }
        let labels: Vec<String> = item.sources.iter().map(Source::label).collect();
        println!("# {}: from {}", item.needed.image, labels.join(", then "));
        for src in &item.sources {
            if !opts.no_relay && relay_upstream(src, &HashMap::new()).is_some() {
                println!(
                    "#   podman pulls {} through a loopback relay that fetches ahead and retries single requests \
                     (--no-relay: directly)",
                    src.label()
                );
            }
        }
        for s in &item.sources {
            let conf = match s {
                Source::Mirror(m) => setup.mirror_confs.get(&m.url).cloned(),
                Source::Origin(_) => setup.origin_conf.clone(),
            };
            let cert_dir = setup.podman.cert_dir(&s.host_port());
            runner.run(&pull_cmd(&setup.podman, conf.as_deref(), cert_dir.as_deref(), &item.needed.image))?;
        }
    }
    Ok(())
}

/// `--status`: each image, present or missing, and where it would come from.
fn status(items: &[Item], mirrors: &[RegistryMirror], json: bool, started: Instant) -> Result<()> {
    let reports: Vec<Report> = items.iter().map(Report::of_plan).collect();
    if json {
        let ms: Vec<(RegistryMirror, Option<String>)> = mirrors.iter().map(|m| (m.clone(), None)).collect();
        let ok = reports.iter().all(|r| r.status == "present");
        let elapsed = started.elapsed().as_secs_f64();
        print!("{}", report::to_json(&reports, &ms, ok, false, elapsed, report::peak_rss_kib()));
        return Ok(());
    }
    print!("{}", report::status_table(&reports));
    let missing = reports.iter().filter(|r| r.status == "missing").count();
    println!("{} images, {} present, {missing} missing", reports.len(), reports.len() - missing);
    Ok(())
}
