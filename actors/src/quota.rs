//! Pure token buckets that keep the drain under AWS IoT's per-connection limits (100 publishes/s,
//! 512 KiB/s; `docs/aws-iot.md`). The clock is an argument.
//!
//! AWS (and the emulator) count in *any* one-second window, so a bucket of capacity `C` refilled
//! at `R`/s may admit `C + R` in one second. The buckets are sized so that `C + R` is 95% of the
//! limit (5% absorbs network jitter that bunches messages at the server) and `C` is as small as
//! possible (1% of the limit, at least 2 so a late timer does not waste a token) but holds the
//! largest single unit (a whole message's bytes).

use std::time::{Duration, Instant};

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket that keeps any one-second window under `limit_per_sec`, admitting single
    /// units up to `largest_unit`. Starts full.
    pub fn for_limit(limit_per_sec: u64, largest_unit: u64, now: Instant) -> Self {
        let budget = (limit_per_sec as f64 * 0.95).max(1.0);
        let capacity = (budget / 100.0)
            .max(largest_unit as f64)
            .max(2.0)
            .min(budget);
        let rate = (budget - capacity).max(budget / 10.0).max(0.1);
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// How long until `amount` units fit (zero if they fit now). Amounts above the capacity are
    /// treated as the capacity, so a unit is never blocked forever.
    pub fn wait_for(&mut self, amount: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = (amount as f64).min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    /// Takes `amount` units (call when [`wait_for`](Self::wait_for) returned zero).
    pub fn take(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.tokens -= (amount as f64).min(self.capacity);
    }
}

/// The two AWS limits together.
#[derive(Debug, Clone)]
pub struct Quota {
    publishes: TokenBucket,
    bytes: TokenBucket,
}

impl Quota {
    /// Buckets for `publish_per_second` and `bytes_per_second`; `max_message_bytes` is the largest
    /// message that must fit in one go.
    pub fn new(
        publish_per_second: u64,
        bytes_per_second: u64,
        max_message_bytes: u64,
        now: Instant,
    ) -> Self {
        Quota {
            publishes: TokenBucket::for_limit(publish_per_second, 1, now),
            bytes: TokenBucket::for_limit(bytes_per_second, max_message_bytes, now),
        }
    }

    /// Zero when a message of `bytes` may go now, else how long to wait.
    pub fn wait_for(&mut self, bytes: u64, now: Instant) -> Duration {
        self.publishes
            .wait_for(1, now)
            .max(self.bytes.wait_for(bytes, now))
    }

    /// Records a message of `bytes` sent at `now`.
    pub fn take(&mut self, bytes: u64, now: Instant) {
        self.publishes.take(1, now);
        self.bytes.take(bytes, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends as fast as the quota allows for `secs` seconds of simulated time, stepping 1 ms, and
    /// returns the send times.
    fn simulate(quota: &mut Quota, bytes: u64, secs: u64, start: Instant) -> Vec<Instant> {
        let mut sent = Vec::new();
        for ms in 0..secs * 1000 {
            let now = start + Duration::from_millis(ms);
            while quota.wait_for(bytes, now).is_zero() {
                quota.take(bytes, now);
                sent.push(now);
            }
        }
        sent
    }

    fn max_in_any_second(times: &[Instant]) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= Duration::from_secs(1) {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn never_more_than_the_publish_limit_in_any_second() {
        let start = Instant::now();
        let rows = [
            (100, 1_000_000, 10),
            (10, 1_000_000, 5),
            (1, 1_000_000, 5),
            (1000, 100_000_000, 3),
        ];
        for (per_sec, bytes_per_sec, secs) in rows {
            let mut q = Quota::new(per_sec, bytes_per_sec, 1000, start);
            let sent = simulate(&mut q, 10, secs, start);
            let peak = max_in_any_second(&sent);
            assert!(
                peak as u64 <= per_sec,
                "limit {per_sec}: {peak} in one second"
            );
            assert!(
                peak as f64 >= per_sec as f64 * 0.9,
                "limit {per_sec}: only {peak} per second"
            );
        }
    }

    #[test]
    fn never_more_than_the_byte_limit_in_any_second() {
        let start = Instant::now();
        let limit = 524_288u64;
        for size in [1_000u64, 50_000, 131_072] {
            let mut q = Quota::new(100_000, limit, 131_072 + 512, start);
            let sent = simulate(&mut q, size, 5, start);
            let peak_bytes = max_in_any_second(&sent) as u64 * size;
            assert!(
                peak_bytes <= limit,
                "size {size}: {peak_bytes} bytes in one second"
            );
            assert!(
                peak_bytes * 2 >= limit,
                "size {size}: only {peak_bytes} bytes per second"
            );
        }
    }

    #[test]
    fn wait_time_is_exact() {
        let start = Instant::now();
        let mut b = TokenBucket::for_limit(100, 1, start);
        // capacity 2, rate 93/s
        for _ in 0..2 {
            assert_eq!(b.wait_for(1, start), Duration::ZERO);
            b.take(1, start);
        }
        let wait = b.wait_for(1, start);
        assert!(
            wait > Duration::from_millis(10) && wait < Duration::from_millis(11),
            "{wait:?}"
        );
        assert_eq!(b.wait_for(1, start + wait), Duration::ZERO);
    }

    #[test]
    fn buckets_are_sized_to_95_percent_of_the_limit() {
        let start = Instant::now();
        // (limit per second, largest unit, capacity, refill rate per second)
        let rows = [
            (100, 1, 2.0, 93.0),
            (100_000, 1, 950.0, 94_050.0),
            (524_288, 131_584, 131_584.0, 366_489.6),
            (10, 1, 2.0, 7.5),
            (1, 1, 1.0, 0.1),
            (0, 1, 1.0, 0.1),
            (1000, 5000, 950.0, 95.0),
        ];
        for (limit, largest, capacity, rate) in rows {
            let b = TokenBucket::for_limit(limit, largest, start);
            assert!(
                (b.capacity - capacity).abs() < 1e-6 && (b.rate - rate).abs() < 1e-6,
                "limit {limit} largest {largest}: capacity {} rate {}",
                b.capacity,
                b.rate
            );
            assert_eq!(b.tokens, b.capacity, "starts full");
        }
    }

    #[test]
    fn wait_for_an_empty_bucket() {
        let start = Instant::now();
        // Bucket for 100/s: capacity 2, rate 93/s, emptied at `start`.
        // (units asked for, ms after `start`, expected wait in µs)
        let rows = [
            (1, 0, 10_752),
            (2, 0, 21_505),
            (5, 0, 21_505), // more than the capacity waits for the capacity
            (1, 5, 5_752),
            (1, 11, 0),
            (2, 22, 0),
            (2, 1000, 0), // refilled, never above the capacity
        ];
        for (units, after_ms, wait_us) in rows {
            let mut b = TokenBucket::for_limit(100, 1, start);
            b.take(2, start);
            let got = b.wait_for(units, start + Duration::from_millis(after_ms));
            assert_eq!(
                got.as_micros(),
                wait_us,
                "{units} units after {after_ms} ms: {got:?}"
            );
        }
    }

    #[test]
    fn a_unit_larger_than_the_bucket_still_passes() {
        let start = Instant::now();
        let mut b = TokenBucket::for_limit(1000, 1, start);
        assert_eq!(b.wait_for(1_000_000, start), Duration::ZERO);
    }
}
