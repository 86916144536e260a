//! What the builds do next, as pure functions over their states (tested without podman): how
//! many run at once (`--jobs`, `--sequential`), which start now, whether a failed build is tried
//! once more alone, and whether the rest are stopped (unless `--keep-going`).
//!
//! The rules, as the seed's pull-and-deploy script had them: builds run in parallel; one that
//! fails while another build ran beside it is tried once more ALONE (its failure may be the
//! other's doing: memory, disk, podman's store changing under it), after the running ones
//! finished and before anything else starts; one that fails alone, or a second time, has
//! failed, and then the running builds are stopped and the queued ones not started, unless
//! `--keep-going`. A failure on podman's store changing under the build ("layer not known") is
//! tried again even when the build ran alone.
//!
//! A build may wait for another (`Slot::after`: registry-free mode's Rust runtime images copy
//! their binary from the workspace builder's image): it starts only once that one is built, and
//! is not started at all when that one failed or was stopped (`abandon_orphans`). A build that
//! waits is not counted against `--jobs` and does not make the one it waits for "overlapped".

use anyhow::{bail, Result};

/// How the builds are run (`build --jobs/--sequential/--keep-going/--json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// At most this many builds at once; all of them when `None`.
    pub jobs: Option<usize>,
    /// Go on with the other builds after one failed.
    pub keep_going: bool,
    /// The summary as JSON on stdout.
    pub json: bool,
}

/// `--jobs N` and `--sequential`, checked: `None` for "all at once".
pub fn jobs(jobs: Option<usize>, sequential: bool) -> Result<Option<usize>> {
    match (jobs, sequential) {
        (Some(0), _) => bail!("--jobs 0: no build could run; hint: --jobs 1 (or --sequential) runs one at a time"),
        (Some(n), true) if n != 1 => {
            bail!("--sequential is --jobs 1, and --jobs {n} was given too; hint: give one of them")
        }
        (_, true) => Ok(Some(1)),
        (n, false) => Ok(n),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    /// Failed beside another build; waits to be tried once more, alone.
    RetryQueued,
    Built,
    Failed,
    /// Stopped while running (another build failed, or SIGINT/SIGTERM).
    Stopped,
    /// Never started (stopped before its turn).
    NotStarted,
}

/// One build's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub state: State,
    /// Attempts started.
    pub attempts: u32,
    /// Whether another build ran at the same time as its current attempt.
    pub overlapped: bool,
    /// The build (index) that must be built before this one starts.
    pub after: Option<usize>,
}

impl Slot {
    pub fn queued() -> Slot {
        Slot { state: State::Queued, attempts: 0, overlapped: false, after: None }
    }

    /// Queued behind build `after`.
    pub fn queued_after(after: Option<usize>) -> Slot {
        Slot { after, ..Slot::queued() }
    }
}

/// Whether the build `slot` waits for is built (or it waits for none).
fn ready(slots: &[Slot], slot: &Slot) -> bool {
    slot.after.is_none_or(|a| slots.get(a).is_some_and(|s| s.state == State::Built))
}

/// Which builds start now: nothing while stopping or while a retry runs (it runs alone); a
/// build waiting for its retry starts once nothing runs, and nothing else starts before it;
/// otherwise queued ones, in order, up to
/// `jobs` running at once.
pub fn to_start(slots: &[Slot], jobs: Option<usize>, stopping: bool) -> Vec<usize> {
    if stopping {
        return Vec::new();
    }
    let running = slots.iter().filter(|s| s.state == State::Running).count();
    if slots.iter().any(|s| s.state == State::Running && s.attempts > 1) {
        return Vec::new();
    }
    if let Some(retry) = slots.iter().position(|s| s.state == State::RetryQueued) {
        return if running == 0 { vec![retry] } else { Vec::new() };
    }
    let room = jobs.unwrap_or(usize::MAX).saturating_sub(running);
    (0..slots.len()).filter(|&i| slots[i].state == State::Queued && ready(slots, &slots[i])).take(room).collect()
}

/// Builds queued behind one that failed, was stopped or will not start are `NotStarted`
/// (repeated, so a chain of waits is followed); returns them, in order.
pub fn abandon_orphans(slots: &mut [Slot]) -> Vec<usize> {
    let mut out = Vec::new();
    loop {
        let orphan = (0..slots.len()).find(|&i| {
            slots[i].state == State::Queued
                && slots[i].after.is_some_and(|a| {
                    slots.get(a).is_none_or(|s| matches!(s.state, State::Failed | State::Stopped | State::NotStarted))
                })
        });
        match orphan {
            Some(i) => {
                slots[i].state = State::NotStarted;
                out.push(i);
            }
            None => return out,
        }
    }
}

/// Marks build `i` started; it and every build running beside it overlap.
pub fn start(slots: &mut [Slot], i: usize) {
    let others = slots.iter().enumerate().any(|(k, s)| k != i && s.state == State::Running);
    for s in slots.iter_mut().filter(|s| s.state == State::Running) {
        s.overlapped = true;
    }
    let s = &mut slots[i];
    s.state = State::Running;
    s.attempts += 1;
    s.overlapped = others;
}

/// What a failed attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAlone,
    GiveUp,
}

/// A first attempt that overlapped another build, or failed on podman's store changing under
/// it (`transient`), is tried once more alone; anything else has failed.
pub fn after_failure(slot: &Slot, transient: bool) -> AfterFailure {
    if slot.attempts == 1 && (slot.overlapped || transient) {
        AfterFailure::RetryAlone
    } else {
        AfterFailure::GiveUp
    }
}

/// Whether a build that has failed for good stops the rest.
pub fn stops_the_rest(controls: &Controls) -> bool {
    !controls.keep_going
}

/// Once stopping: builds that had not run are `NotStarted`.
pub fn abandon_queued(slots: &mut [Slot]) {
    for s in slots.iter_mut().filter(|s| matches!(s.state, State::Queued | State::RetryQueued)) {
        s.state = State::NotStarted;
    }
}

/// Whether there is nothing left to do: nothing runs and nothing can start.
pub fn done(slots: &[Slot], jobs: Option<usize>, stopping: bool) -> bool {
    !slots.iter().any(|s| s.state == State::Running) && to_start(slots, jobs, stopping).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(slots: &[Slot]) -> Vec<State> {
        slots.iter().map(|s| s.state).collect()
    }

    #[test]
    fn jobs_zero_is_refused_and_sequential_is_one() {
        let e = jobs(Some(0), false).unwrap_err().to_string();
        assert!(e.starts_with("--jobs 0: no build could run; hint: --jobs 1"), "{e}");
        assert_eq!(jobs(None, true).unwrap(), Some(1));
        assert_eq!(jobs(Some(1), true).unwrap(), Some(1));
        assert!(jobs(Some(3), true).unwrap_err().to_string().starts_with("--sequential is --jobs 1, and --jobs 3"));
        assert_eq!(jobs(None, false).unwrap(), None, "all at once by default");
        assert_eq!(jobs(Some(2), false).unwrap(), Some(2));
    }

    #[test]
    fn queued_builds_start_up_to_jobs() {
        let mut slots = vec![Slot::queued(); 3];
        assert_eq!(to_start(&slots, None, false), [0, 1, 2], "all at once");
        assert_eq!(to_start(&slots, Some(2), false), [0, 1]);
        start(&mut slots, 0);
        assert!(!slots[0].overlapped, "alone so far");
        start(&mut slots, 1);
        assert!(slots[0].overlapped && slots[1].overlapped, "0 and 1 ran together");
        assert_eq!(to_start(&slots, Some(2), false), Vec::<usize>::new(), "two running, no room");
        slots[0].state = State::Built;
        assert_eq!(to_start(&slots, Some(2), false), [2]);
        assert_eq!(to_start(&slots, Some(2), true), Vec::<usize>::new(), "nothing starts while stopping");
    }

    #[test]
    fn a_parallel_failure_is_retried_alone_once() {
        let mut slots = vec![Slot::queued(); 3];
        for i in 0..3 {
            start(&mut slots, i);
        }
        assert_eq!(after_failure(&slots[1], false), AfterFailure::RetryAlone, "it ran beside others");
        slots[1].state = State::RetryQueued;
        assert!(to_start(&slots, None, false).is_empty(), "the retry waits until nothing runs");
        slots[0].state = State::Built;
        slots[2].state = State::Built;
        assert_eq!(to_start(&slots, None, false), [1], "then runs alone");
        start(&mut slots, 1);
        assert_eq!(slots[1].attempts, 2);
        assert!(!slots[1].overlapped, "alone this time");
        assert_eq!(after_failure(&slots[1], false), AfterFailure::GiveUp, "a second failure is final");
        assert_eq!(after_failure(&slots[1], true), AfterFailure::GiveUp, "even on a store error");
    }

    #[test]
    fn a_retry_goes_before_queued_builds() {
        let mut slots = vec![Slot::queued(); 4];
        start(&mut slots, 0);
        start(&mut slots, 1);
        slots[0].state = State::RetryQueued;
        slots[1].state = State::Built;
        assert_eq!(to_start(&slots, Some(2), false), [0], "the retry, alone, before 2 and 3");
        start(&mut slots, 0);
        assert!(to_start(&slots, Some(2), false).is_empty(), "nothing beside a retry");
    }

    #[test]
    fn a_failure_alone_gives_up_and_stops_the_rest_unless_keep_going() {
        let mut slots = vec![Slot::queued(); 3];
        start(&mut slots, 0);
        assert_eq!(after_failure(&slots[0], false), AfterFailure::GiveUp, "sequential: nothing to blame");
        assert_eq!(after_failure(&slots[0], true), AfterFailure::RetryAlone, "a store error is retried");
        assert!(stops_the_rest(&Controls::default()));
        assert!(!stops_the_rest(&Controls { keep_going: true, ..Controls::default() }));
        slots[0].state = State::Failed;
        abandon_queued(&mut slots);
        assert_eq!(states(&slots), [State::Failed, State::NotStarted, State::NotStarted]);
        assert!(done(&slots, None, true));
    }

    #[test]
    fn a_build_waits_for_the_one_it_copies_from() {
        // 0: the workspace builder; 1 and 2: the runtimes that copy from it; 3: unrelated.
        let mut slots = vec![Slot::queued(), Slot::queued_after(Some(0)), Slot::queued_after(Some(0)), Slot::queued()];
        assert_eq!(to_start(&slots, None, false), [0, 3], "the builder first, beside what does not wait");
        start(&mut slots, 0);
        start(&mut slots, 3);
        assert!(to_start(&slots, None, false).is_empty(), "the runtimes wait while the builder runs");
        assert!(!done(&slots, None, false));
        slots[3].state = State::Built;
        assert!(to_start(&slots, Some(1), false).is_empty(), "still waiting");
        slots[0].state = State::Built;
        assert_eq!(to_start(&slots, None, false), [1, 2], "then both, in parallel");
        assert_eq!(to_start(&slots, Some(1), false), [1], "as --jobs allows");
        assert!(abandon_orphans(&mut slots).is_empty());
    }

    #[test]
    fn a_failed_builder_leaves_its_runtimes_not_started() {
        let mut slots = vec![Slot::queued(), Slot::queued_after(Some(0)), Slot::queued_after(Some(1)), Slot::queued()];
        start(&mut slots, 0);
        slots[0].state = State::RetryQueued;
        assert!(abandon_orphans(&mut slots).is_empty(), "a retry may still build it");
        start(&mut slots, 0);
        slots[0].state = State::Failed;
        assert_eq!(abandon_orphans(&mut slots), [1, 2], "and what waits on those, in turn");
        assert_eq!(states(&slots), [State::Failed, State::NotStarted, State::NotStarted, State::Queued]);
        assert_eq!(to_start(&slots, None, false), [3], "--keep-going: the unrelated one still builds");
        let mut skipped = vec![Slot::queued_after(None)];
        assert_eq!(to_start(&skipped, None, false), [0], "a skipped builder is no build to wait for");
        assert!(abandon_orphans(&mut skipped).is_empty());
    }

    #[test]
    fn done_when_nothing_runs_or_can_start() {
        let mut slots = vec![Slot::queued(); 2];
        assert!(!done(&slots, Some(1), false));
        start(&mut slots, 0);
        assert!(!done(&slots, Some(1), true), "one still runs");
        slots[0].state = State::Stopped;
        assert!(done(&slots, Some(1), true), "stopping: the queued one will not start");
        assert!(!done(&slots, Some(1), false));
    }
}
