//! `batched` mode's flushes. sled's own periodic flusher is off in both modes: every 10 ms it
//! handed the buffer it sealed to sled's I/O pool (a thread wake-up, `pwrite`, `fdatasync`),
//! then called `fsync` and ran segment gc of its own, ~15% of awslink's CPU in `batched`.
//! Instead:
//! - the intake's [`Journal::commit`](super::Journal::commit) flushes on its own thread, as in
//!   `fsync` mode, when the last flush is at least `flush_every_ms` old ([`Flusher::claim_due`]);
//! - the journal's flusher thread flushes whatever the last flush did not cover once it is
//!   `flush_every_ms` old: a lone message after a quiet spell, the drain's watermark, a stored
//!   cloud command, a quarantined message. A flush with nothing new is a few atomic loads.
//!
//! So a write reaches the disk at most `flush_every_ms` (plus the time of one flush) after it
//! was made, as with sled's flusher. The thread ends when the journal is dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::error;

use crate::sync::lock;

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
    stop: bool,
}

impl Flusher {
    /// Starts the thread that flushes `db` once the last flush is `interval` old.
    pub(super) fn start(db: sled::Db, interval: Duration) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            interval,
            state: Mutex::new(State {
                last_flush: Instant::now(),
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

    /// Whether a flush is due (the last one began at least the interval ago). When it is, the
    /// flush is the caller's: it counts as begun now, and the caller makes it.
    pub(super) fn claim_due(&self) -> bool {
        claim(
            &mut lock(&self.shared.state),
            self.shared.interval,
            Instant::now(),
        )
    }
}

/// Claims the flush in `state` if it is due at `now`.
fn claim(state: &mut State, interval: Duration, now: Instant) -> bool {
    if now.saturating_duration_since(state.last_flush) < interval {
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
                if claim(&mut state, shared.interval, now) {
                    break;
                }
                let due = state.last_flush + shared.interval;
                state = match shared.wake.wait_timeout(state, due - now) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
        }
        if let Err(e) = db.flush() {
            // sled keeps a write error: every later commit or flush of the journal returns it
            // and is handled as any journal error. Said once, as sled's own flusher did.
            error!("the journal's periodic flush failed: {e}; it flushes no more");
            return;
        }
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
        // (now in ms, due, last flush after the call)
        let steps = [
            (0, false, 0),
            (9, false, 0),
            (10, true, 10),
            (10, false, 10),
            (15, false, 10),
            (35, true, 35),
            (44, false, 35),
            (45, true, 45),
        ];
        let mut state = State {
            last_flush: start,
            stop: false,
        };
        for (now, due, last) in steps {
            assert_eq!(claim(&mut state, interval, ms(now)), due, "at {now} ms");
            assert_eq!(state.last_flush, ms(last), "at {now} ms");
        }
    }
}
