//! A sliding one-window rate limiter with the clock passed in.
//!
//! AWS says "100 publishes per second"; the emulator reads it strictly: in *any* window of
//! one second at most `limit` units are admitted (a token bucket would let a burst of
//! `limit` through and then more as it refills within the same second).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Admits at most `limit` units within any `window`.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u64,
    window: Duration,
    admitted: VecDeque<(Instant, u64)>,
    sum: u64,
}

impl SlidingWindow {
    /// A limiter admitting `limit` units per `window`.
    pub fn new(limit: u64, window: Duration) -> Self {
        SlidingWindow {
            limit,
            window,
            admitted: VecDeque::new(),
            sum: 0,
        }
    }

    /// A limiter admitting `limit` units per second.
    pub fn per_second(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, n)) = self.admitted.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.admitted.pop_front();
                self.sum -= n;
            } else {
                break;
            }
        }
    }

    /// Whether `amount` units fit at `now`, without recording them.
    pub fn would_admit(&mut self, now: Instant, amount: u64) -> bool {
        self.expire(now);
        self.sum + amount <= self.limit
    }

    /// Records `amount` units at `now` (call after [`would_admit`](Self::would_admit)).
    pub fn record(&mut self, now: Instant, amount: u64) {
        self.admitted.push_back((now, amount));
        self.sum += amount;
    }

    /// Admits and records `amount` units if they fit; refused units are not recorded.
    pub fn try_admit(&mut self, now: Instant, amount: u64) -> bool {
        if self.would_admit(now, amount) {
            self.record(now, amount);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_limit_per_window_then_refuses_until_the_oldest_expires() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = SlidingWindow::per_second(3);
        // (time ms, amount, admitted?)
        let rows = [
            (0, 1, true),
            (100, 1, true),
            (200, 1, true),
            (300, 1, false),
            (999, 1, false),
            (1000, 1, true), // the unit from t=0 expired
            (1050, 1, false),
            (1100, 1, true),
            (1100, 1, false),
        ];
        for (t, n, expected) in rows {
            assert_eq!(w.try_admit(ms(t), n), expected, "at {t} ms");
        }
    }

    #[test]
    fn weighted_amounts_count_against_the_sum() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::per_second(1000);
        assert!(w.try_admit(t0, 600));
        assert!(!w.try_admit(t0, 401));
        assert!(w.try_admit(t0, 400));
        assert!(!w.try_admit(t0, 1));
        assert!(w.try_admit(t0 + Duration::from_secs(1), 1000));
        assert!(!w.try_admit(t0, 1001 - 1000 + 1000));
    }
}
