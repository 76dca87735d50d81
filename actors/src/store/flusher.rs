//! `batched` mode's flushes. sled's own periodic flusher is off in both modes: every 10 ms it
//! handed the buffer it sealed to sled's I/O pool (a thread wake-up, `pwrite`, `fdatasync`),
//! then called `fsync` and ran a segment gc loop of its own, ~15% of awslink's CPU in `batched`.
//! Instead, once the last flush began `flush_every_ms` ago:
//! - the intake's [`Journal::commit`](super::Journal::commit) flushes on its own thread, as in
//!   `fsync` mode ([`Flusher::flush_inline`]), if the last flush took at most
//!   [`INLINE_FLUSH_MAX`]: on a fast disk the short wait lets the next burst gather (fewer,
//!   larger commits, drain batches and cloud writes), while on a slow disk (an SD card's
//!   `fdatasync` takes 5–50 ms) the intake never waits for it, which is what `batched` is for;
//! - otherwise the journal's flusher thread flushes, also whatever the last flush did not cover:
//!   a lone message after a quiet spell, the drain's watermark, a stored cloud command, a
//!   quarantined message. A flush with nothing new makes no system call.
//!
//! So a write reaches the disk about `flush_every_ms` after it was made, plus the time of the
//! flushes under way (as with sled's flusher). A failed flush is fatal: sled keeps a write error
//! for every later write, so awslink ends (exit 1) and its supervisor restarts it. The thread
//! ends when the journal is dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The longest flush after which the intake still flushes inline; slower disks are left to
/// the flusher thread.
pub(super) const INLINE_FLUSH_MAX: Duration = Duration::from_millis(2);

/// The flush schedule of a `batched` journal and its thread.
pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    interval: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    /// When the last flush began (a write after it is covered by the next one).
    last_flush: Instant,
    /// How long the last finished flush took.
    last_took: Duration,
    stop: bool,
}

/// Who asks for the flush.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum By {
    /// The intake's commit, which waits for it.
    Intake,
    /// The flusher thread.
    Thread,
}

impl Flusher {
    /// Starts the thread that flushes `db` once the last flush is `interval` old.
    pub(super) fn start(db: sled::Db, interval: Duration) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            interval,
            state: Mutex::new(State {
                last_flush: Instant::now(),
                last_took: Duration::ZERO,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("awslink-flusher".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, &db)
            })?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// The committing intake's part: runs `flush` on the caller's thread if a flush is due and
    /// the last one was quick (the flush counts as begun now), and records how long it took.
    pub(super) fn flush_inline<E>(&self, flush: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let claimed = claim(
            &mut lock(&self.shared.state),
            self.shared.interval,
            Instant::now(),
            By::Intake,
        );
        if !claimed {
            return Ok(());
        }
        let started = Instant::now();
        flush()?;
        lock(&self.shared.state).last_took = started.elapsed();
        Ok(())
    }
}

/// Claims the flush in `state` for `by` if it is due at `now`.
fn claim(state: &mut State, interval: Duration, now: Instant, by: By) -> bool {
    if now.saturating_duration_since(state.last_flush) < interval {
        return false;
    }
    if by == By::Intake && state.last_took > INLINE_FLUSH_MAX {
        return false;
    }
    state.last_flush = now;
    true
}

fn run(shared: &Shared, db: &sled::Db) {
    loop {
        {
            let mut state = lock(&shared.state);
            loop {
                if state.stop {
                    return;
                }
                let now = Instant::now();
                if claim(&mut state, shared.interval, now, By::Thread) {
                    break;
                }
                let due = state.last_flush + shared.interval;
                state = match shared.wake.wait_timeout(state, due - now) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
        }
        let started = Instant::now();
        if let Err(e) = db.flush() {
            // sled keeps a write error for every later write: nothing written from now on
            // would reach the disk.
            return crate::fatal::fatal(&format!("the journal's periodic flush failed: {e}"));
        }
        lock(&shared.state).last_took = started.elapsed();
    }
}

impl Drop for Flusher {
    /// Stops the thread (it flushes nothing more: sled flushes when the database closes).
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_is_due_once_the_last_is_an_interval_old_and_is_claimed_once() {
        let start = Instant::now();
        let interval = Duration::from_millis(10);
        let ms = |n| start + Duration::from_millis(n);
        let quick = Duration::from_micros(500);
        let slow = Duration::from_millis(20);
        // (now in ms, who asks, how long the last flush took, claimed, last flush after it)
        let steps = [
            (0, By::Intake, quick, false, 0),
            (9, By::Thread, quick, false, 0),
            (10, By::Intake, quick, true, 10),
            (10, By::Thread, quick, false, 10),
            (15, By::Intake, quick, false, 10),
            (35, By::Thread, quick, true, 35),
            (44, By::Intake, quick, false, 35),
            (45, By::Intake, quick, true, 45),
            // A slow disk: the intake leaves the flush to the thread.
            (60, By::Intake, slow, false, 45),
            (60, By::Thread, slow, true, 60),
            (75, By::Intake, slow, false, 60),
            (75, By::Thread, quick, true, 75),
            // The disk is quick again: the intake flushes again.
            (85, By::Intake, quick, true, 85),
        ];
        let mut state = State {
            last_flush: start,
            last_took: Duration::ZERO,
            stop: false,
        };
        for (now, by, took, claimed, last) in steps {
            state.last_took = took;
            assert_eq!(
                claim(&mut state, interval, ms(now), by),
                claimed,
                "at {now} ms, {by:?}, last took {took:?}"
            );
            assert_eq!(state.last_flush, ms(last), "at {now} ms");
        }
    }
}
