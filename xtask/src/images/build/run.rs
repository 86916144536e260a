//! Running the builds that are not skipped: started in the background (`Runner::start_logged`,
//! each with its own log) as `schedule.rs` decides, polled, shown one live line per service
//! (`util/live.rs`), and tagged only once a build succeeded: `podman build --iidfile`, then
//! `podman tag ID IMAGE`, so a build that is stopped tags nothing. A failure prints its failing
//! step's last lines and the log's path. SIGINT or SIGTERM to the xtask (`interrupt.rs`) stops
//! every running build at once (`Running::interrupt`: the podman process and what it started)
//! and removes the working containers they leave (`working.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::report::{self, BuildResult, Outcome};
use super::schedule::{self, AfterFailure, Controls, Slot, State};
use super::{interrupt, tag_command, with_labels, working, ImageBuild, TRANSIENT_STORE_ERRORS};
use crate::net::proxy::Proxies;
use crate::oci::ImageRef;
use crate::podman::errors::explain_failure;
use crate::podman::images::{podman_reference, presence};
use crate::podman::Podman;
use crate::process::{Cmd, Runner};
use crate::stack::names::INPUTS_LABEL;
use crate::util::live::Live;

/// One build to run.
pub struct Job {
    pub build: ImageBuild,
    pub cmd: Cmd,
    pub log: PathBuf,
    pub iidfile: PathBuf,
    /// Images it stands on (bases, as podman names them), for the working-container cleanup.
    pub images: Vec<String>,
}

/// How long a stopped build may take to end after SIGINT before it and its processes are killed.
const GRACE: Duration = Duration::from_secs(3);

/// Builds what changed, each skipped when its fingerprint matches the image here, as
/// `controls` say; output of each build goes to `<log_dir>/<service>.log`. Prints a live line
/// per build, then the summary table (or, with `--json`, the JSON document on stdout); fails
/// when a build failed or was stopped.
#[allow(clippy::too_many_arguments)]
pub fn run_builds(
    runner: &Runner,
    podman: &Podman,
    proxies: &Proxies,
    project: &str,
    log_dir: &Path,
    builds: Vec<ImageBuild>,
    force: bool,
    controls: &Controls,
) -> Result<()> {
    let started = Instant::now();
    let mut to_run = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let images: Vec<String> = builds.iter().map(|b| b.image.clone()).collect();
    let labels = crate::podman::images::labels(runner, podman, &images, INPUTS_LABEL);
    for (b, current) in builds.into_iter().zip(labels) {
        let fp = b.fingerprint()?;
        let current = current.unwrap_or_default();
        let mut outcome = Outcome {
            service: b.service.clone(),
            image: b.image.clone(),
            result: BuildResult::Skipped,
            seconds: None,
            size: None,
            attempts: 0,
            log: None,
            error: None,
        };
        if !force && current == fp.label {
            eprintln!(
                "{}: unchanged since {} was built (inputs {}, {} files); skipped (--force rebuilds)",
                b.service, b.image, fp.label, fp.files
            );
            outcomes.push(outcome);
            continue;
        }
        outcome.result = BuildResult::NotStarted;
        outcomes.push(outcome);
        to_run.push(with_labels(b, project, fp.label));
    }
    if to_run.is_empty() && !controls.json {
        return Ok(());
    }
    let jobs: Vec<Job> = to_run
        .into_iter()
        .map(|b| {
            let log = log_dir.join(format!("{}.log", b.service));
            let iidfile = log_dir.join(format!("{}.iid", b.service));
            let images = b.base_images().unwrap_or_default().iter().map(podman_reference).collect();
            Job { cmd: b.command(podman, proxies, &iidfile), build: b, log, iidfile, images }
        })
        .collect();
    if runner.dry_run {
        for j in &jobs {
            runner.run(&j.cmd)?;
            let id = format!("<ID from {}>", j.iidfile.display());
            runner.run(&tag_command(podman, &id, &j.build.image))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let ran = if jobs.is_empty() {
        Ran { outcomes: Vec::new(), interrupted: None }
    } else {
        execute(runner, podman, &jobs, controls)?
    };
    for o in ran.outcomes {
        if let Some(slot) = outcomes.iter_mut().find(|x| x.service == o.service) {
            *slot = o;
        }
    }
    let refs: Vec<ImageRef> = outcomes
        .iter()
        .filter(|o| matches!(o.result, BuildResult::Built | BuildResult::Skipped))
        .filter_map(|o| ImageRef::parse(&o.image).ok())
        .collect();
    let sizes = presence(runner, podman, &refs).unwrap_or_default();
    let mut k = 0;
    for o in outcomes.iter_mut().filter(|o| matches!(o.result, BuildResult::Built | BuildResult::Skipped)) {
        if ImageRef::parse(&o.image).is_ok() {
            o.size = sizes.get(k).and_then(Option::as_ref).map(|l| l.size);
            k += 1;
        }
    }
    if controls.json {
        print!("{}", report::to_json(&outcomes, ran.interrupted, started.elapsed().as_secs_f64()));
    } else {
        eprint!("\n{}", report::summary_table(&outcomes));
    }
    report::append_step_summary(&outcomes, ran.interrupted);
    let bad: Vec<&Outcome> =
        outcomes.iter().filter(|o| !matches!(o.result, BuildResult::Built | BuildResult::Skipped)).collect();
    if let Some(sig) = ran.interrupted {
        let names: Vec<&str> = bad.iter().map(|o| o.service.as_str()).collect();
        bail!("interrupted by {sig}: stopped the builds of {}; nothing was tagged for them", names.join(", "));
    }
    if !bad.is_empty() {
        let list: Vec<String> = bad.iter().map(|o| format!("{} ({})", o.service, o.result.word())).collect();
        let logs: Vec<String> = bad.iter().filter_map(|o| o.log.as_ref()).map(|l| l.display().to_string()).collect();
        bail!(
            "build failed for {}; nothing was tagged for them; logs: {}",
            list.join(", "),
            if logs.is_empty() { "-".to_string() } else { logs.join(" ") }
        );
    }
    Ok(())
}

/// What happened, in the order of `jobs`, and the signal that stopped them, if one did.
pub struct Ran {
    pub outcomes: Vec<Outcome>,
    pub interrupted: Option<&'static str>,
}

fn tail_of(log: &Path, bytes: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn word(slot: &Slot) -> &'static str {
    match slot.state {
        State::Queued if slot.after.is_some() => "waits for the build it copies from",
        State::Queued => "queued",
        State::Running if slot.attempts > 1 => "building again, alone",
        State::Running => "building",
        State::RetryQueued => "failed; waits to be tried once more, alone",
        State::Built => "built",
        State::Failed => "FAILED",
        State::Stopped => "stopped (nothing tagged)",
        State::NotStarted => "not started",
    }
}

/// Runs `jobs` as `controls` say.
fn execute(runner: &Runner, podman: &Podman, jobs: &[Job], controls: &Controls) -> Result<Ran> {
    let watch = interrupt::watch()?;
    // `podman ps` fails now and then while another process removes a container: asked again.
    let list_working = || {
        let cmd = podman.cmd().args(["ps", "-a", "--external", "--format", "json"]);
        for attempt in 1..=5 {
            match runner.query(&cmd) {
                Ok(text) => return working::parse(&text),
                Err(e) if attempt == 5 => eprintln!("cannot list the working containers: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
        Vec::new()
    };
    let before: Vec<String> = list_working().into_iter().map(|c| c.id).collect();
    let n = jobs.len();
    let width = jobs.iter().map(|j| j.build.service.len()).max().unwrap_or(0);
    // A build waits for the one named in its `after` when that one runs in this batch too; one
    // skipped as unchanged is already there.
    let mut slots: Vec<Slot> = jobs
        .iter()
        .map(|j| {
            let after = j.build.after.as_ref().and_then(|a| jobs.iter().position(|k| &k.build.service == a));
            Slot::queued_after(after)
        })
        .collect();
    let mut procs: Vec<Option<crate::process::Running>> = (0..n).map(|_| None).collect();
    let mut first_start: Vec<Option<Instant>> = vec![None; n];
    let mut ended: Vec<Option<f64>> = vec![None; n];
    let mut errors: Vec<Option<String>> = vec![None; n];
    let mut shown: Vec<Option<State>> = vec![None; n];
    let mut stopping: Option<String> = None;
    let mut live = Live::new();
    loop {
        if let (Some(sig), None) = (watch.caught(), &stopping) {
            stopping = Some(format!("interrupted by {sig}"));
        }
        if let Some(why) = &stopping {
            let running: Vec<usize> = (0..n).filter(|&i| slots[i].state == State::Running).collect();
            std::thread::scope(|s| {
                for &i in &running {
                    if let Some(p) = &procs[i] {
                        s.spawn(move || p.interrupt(GRACE));
                    }
                }
            });
            for i in running {
                procs[i] = None;
                slots[i].state = State::Stopped;
                errors[i] = Some(why.clone());
                ended[i] = first_start[i].map(|t| t.elapsed().as_secs_f64());
            }
            for i in 0..n {
                if matches!(slots[i].state, State::Queued | State::RetryQueued) {
                    errors[i] = Some(why.clone());
                }
            }
            schedule::abandon_queued(&mut slots);
        }
        for i in schedule::abandon_orphans(&mut slots) {
            let after = slots[i].after.map(|a| jobs[a].build.service.as_str()).unwrap_or("?");
            errors[i] = Some(format!("not started: {after}, which it copies from, was not built"));
        }
        for i in schedule::to_start(&slots, controls.jobs, stopping.is_some()) {
            let j = &jobs[i];
            let _ = std::fs::remove_file(&j.iidfile);
            schedule::start(&mut slots, i);
            first_start[i].get_or_insert_with(Instant::now);
            if slots[i].attempts == 1 {
                let (b, log) = (&j.build, j.log.display());
                live.message(&format!("{}: building {} (log: {log})\n  $ {}", b.service, b.image, j.cmd));
            }
            match runner.start_logged(&j.cmd, &j.log) {
                Ok(p) => procs[i] = Some(p),
                Err(e) => {
                    slots[i].state = State::Failed;
                    errors[i] = Some(format!("{e:#}"));
                }
            }
        }
        for i in 0..n {
            let Some(p) = &procs[i] else { continue };
            let status = match p.try_wait() {
                Ok(Some(out)) => out.status,
                Ok(None) => continue,
                Err(e) => {
                    errors[i] = Some(format!("{e:#}"));
                    std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
                }
            };
            procs[i] = None;
            let j = &jobs[i];
            let secs = first_start[i].map(|t| t.elapsed().as_secs_f64());
            if status.success() && watch.caught().is_none() {
                match tag(runner, podman, j) {
                    Ok(()) => {
                        slots[i].state = State::Built;
                        ended[i] = secs;
                    }
                    Err(e) => {
                        slots[i].state = State::Failed;
                        errors[i] = Some(format!("{e:#}"));
                        ended[i] = secs;
                    }
                }
                continue;
            }
            if status.success() {
                slots[i].state = State::Stopped;
                ended[i] = secs;
                continue;
            }
            let text = tail_of(&j.log, 256 * 1024);
            let transient = TRANSIENT_STORE_ERRORS.iter().any(|e| text.contains(e));
            if schedule::after_failure(&slots[i], transient) == AfterFailure::RetryAlone {
                slots[i].state = State::RetryQueued;
                let why =
                    if transient { "podman's image store changed under it" } else { "it ran beside another build" };
                live.message(&format!("{}: failed ({why}); trying once more alone", j.build.service));
                continue;
            }
            slots[i].state = State::Failed;
            ended[i] = secs;
            let tail = report::failing_step(&text, 20);
            let last = tail.last().cloned().unwrap_or_default();
            errors[i] = Some(last);
            let mut msg = format!(
                "{}: FAILED after {:.0} s; the failing step, from {}:\n  {}",
                j.build.service,
                secs.unwrap_or(0.0),
                j.log.display(),
                tail.join("\n  ")
            );
            if let Some(hint) = explain_failure(&text) {
                msg.push_str(&format!("\n  hint: {hint}"));
            }
            live.message(&msg);
            if schedule::stops_the_rest(controls) && stopping.is_none() {
                stopping = Some(format!("stopped: {} failed (--keep-going builds the others anyway)", j.build.service));
            }
        }
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let running = slots[i].state == State::Running;
                let secs = if running { first_start[i].map(|t| t.elapsed().as_secs_f64()) } else { ended[i] };
                let step = if running { report::current_step(&tail_of(&jobs[i].log, 16 * 1024), 70) } else { None };
                report::live_line(&jobs[i].build.service, width, word(&slots[i]), secs, step.as_deref())
            })
            .collect();
        for i in 0..n {
            if shown[i] != Some(slots[i].state) {
                shown[i] = Some(slots[i].state);
                live.line(&lines[i]);
            }
        }
        live.redraw(&lines);
        if schedule::done(&slots, controls.jobs, stopping.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let interrupted = watch.caught();
    let stopped: Vec<&Job> =
        (0..n).filter(|&i| matches!(slots[i].state, State::Stopped | State::Failed)).map(|i| &jobs[i]).collect();
    if !stopped.is_empty() {
        remove_working_containers(runner, podman, &before, &stopped, &list_working());
    }
    let outcomes = (0..n)
        .map(|i| Outcome {
            service: jobs[i].build.service.clone(),
            image: jobs[i].build.image.clone(),
            result: match slots[i].state {
                State::Built => BuildResult::Built,
                State::Failed => BuildResult::Failed,
                State::Stopped => BuildResult::Stopped,
                _ => BuildResult::NotStarted,
            },
            seconds: ended[i],
            size: None,
            attempts: slots[i].attempts,
            log: (slots[i].attempts > 0).then(|| jobs[i].log.clone()),
            error: errors[i].clone(),
        })
        .collect();
    Ok(Ran { outcomes, interrupted })
}

/// `podman tag ID IMAGE` with the ID the build wrote to its `--iidfile`.
fn tag(runner: &Runner, podman: &Podman, j: &Job) -> Result<()> {
    let id = std::fs::read_to_string(&j.iidfile)
        .map_err(|e| anyhow::anyhow!("podman build succeeded but wrote no image ID to {}: {e}", j.iidfile.display()))?;
    runner.run_checked(&tag_command(podman, id.trim(), &j.build.image))?;
    Ok(())
}

/// Removes the working containers the stopped or failed builds left (never one that was there
/// before, nor one on another image).
fn remove_working_containers(
    runner: &Runner,
    podman: &Podman,
    before: &[String],
    stopped: &[&Job],
    now: &[working::Container],
) {
    let mut images: Vec<String> = stopped.iter().flat_map(|j| j.images.iter().cloned()).collect();
    let project = stopped.iter().flat_map(|j| &j.build.labels).find(|(k, _)| k == crate::stack::names::PROJECT_LABEL);
    if let Some((k, v)) = project {
        let cmd = podman.cmd().args(["images", "-a", "-q", "--no-trunc", "--filter"]).arg(format!("label={k}={v}"));
        images.extend(runner.query(&cmd).unwrap_or_default().lines().map(|l| l.trim().to_string()));
    }
    let ids = working::leftovers(before, now, &images);
    if ids.is_empty() {
        return;
    }
    let cmd = podman.cmd().args(["rm", "--force"]).args(ids.iter().cloned());
    match runner.run_checked(&cmd) {
        Ok(_) => eprintln!("removed {} working container(s) of the stopped builds: {}", ids.len(), ids.join(" ")),
        Err(e) => eprintln!("could not remove the stopped builds' working containers: {e:#}"),
    }
}
