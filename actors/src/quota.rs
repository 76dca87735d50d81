//! Pure pacing that keeps the drain under AWS IoT's per-connection limits (100 publishes/s,
//! 512 KiB/s; `docs/aws-iot.md`). The clock is an argument.
//!
//! AWS (and the emulator) count in *any* one-second window. Each limit is kept by two parts:
//! - a [`SlidingWindow`] of what was sent in the last second, which never lets that second hold
//!   more than 95% of the limit (5% absorbs network jitter that bunches messages at the server).
//!   It is exact, so the sustained rate is the whole 95%;
//! - a [`PacingBucket`] refilled at the same 95% with a small capacity (5% of the limit, at least
//!   2 units), so sends are spread over the second instead of leaving as one burst whenever the
//!   window opens (a burst's tail held in the socket could meet the next burst in the server's
//!   window). The capacity also absorbs late timers: the drain's timer fires up to ~1 ms late,
//!   and a bucket of 1% (one ~5 KB batch of bytes) lost that lateness on every publish, 91 instead
//!   of 95 publishes/s. A unit larger than the bucket goes once the bucket is full and leaves it in
//!   debt: a 128 KB message waits for its bytes *after* it is sent, not before.
//!
//! An earlier design used one token bucket per limit whose capacity had to hold the largest
//! message (128 KiB + topic). Keeping capacity + one second's refill under 95% then left a refill
//! of only 70% of the byte limit (366 KB/s), which capped a batched drain of ~4.7 KB publishes at
//! 79 publishes/s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// The part of a limit awslink uses: 95% of it, at least one unit.
fn budget(limit_per_sec: u64) -> f64 {
    (limit_per_sec as f64 * 0.95).max(1.0)
}

/// What was sent in the last second; admits a unit only if the second stays within the budget.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    budget: f64,
    sent: VecDeque<(Instant, f64)>,
    total: f64,
}

impl SlidingWindow {
    /// A window that keeps any one second under 95% of `limit_per_sec`.
    pub fn for_limit(limit_per_sec: u64) -> Self {
        SlidingWindow {
            budget: budget(limit_per_sec),
            sent: VecDeque::new(),
            total: 0.0,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, amount)) = self.sent.front() {
            if now.saturating_duration_since(at) < SECOND {
                break;
            }
            self.sent.pop_front();
            self.total -= amount;
        }
        if self.sent.is_empty() {
            self.total = 0.0;
        }
    }

    /// How long until `amount` fits (zero if it fits now). An amount above the budget is treated
    /// as the budget, so a unit is never blocked forever.
    pub fn wait_for(&mut self, amount: u64, now: Instant) -> Duration {
        self.expire(now);
        let need = (amount as f64).min(self.budget);
        let mut left = self.total;
        if left + need <= self.budget {
            return Duration::ZERO;
        }
        for &(at, sent) in &self.sent {
            left -= sent;
            if left + need <= self.budget {
                return (at + SECOND).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    /// Records `amount` sent at `now`.
    pub fn take(&mut self, amount: u64, now: Instant) {
        self.expire(now);
        let amount = (amount as f64).min(self.budget);
        self.sent.push_back((now, amount));
        self.total += amount;
    }
}

/// A token bucket that spreads sends evenly; a unit larger than what it holds may take it into
/// debt, by at most one second's refill.
#[derive(Debug, Clone)]
pub struct PacingBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl PacingBucket {
    /// A bucket refilled at 95% of `limit_per_sec` holding 5% of it (at least 2 units). Starts
    /// full.
    pub fn for_limit(limit_per_sec: u64, now: Instant) -> Self {
        let rate = budget(limit_per_sec);
        let capacity = (limit_per_sec as f64 / 20.0).max(2.0);
        PacingBucket {
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

    /// How long until `amount` may go (zero if now): until the bucket holds `amount`, or is full
    /// when `amount` is larger than it.
    pub fn wait_for(&mut self, amount: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = (amount as f64).min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    /// Takes `amount` units, running into debt if it is larger than what the bucket holds (by at
    /// most one second's refill, so even a unit above the budget waits no longer than that).
    pub fn take(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.tokens -= (amount as f64).min(self.rate);
    }
}

/// One limit: the exact window and the pacing bucket.
#[derive(Debug, Clone)]
struct Limit {
    window: SlidingWindow,
    pacing: PacingBucket,
}

impl Limit {
    fn new(limit_per_sec: u64, now: Instant) -> Self {
        Limit {
            window: SlidingWindow::for_limit(limit_per_sec),
            pacing: PacingBucket::for_limit(limit_per_sec, now),
        }
    }

    fn wait_for(&mut self, amount: u64, now: Instant) -> Duration {
        self.window
            .wait_for(amount, now)
            .max(self.pacing.wait_for(amount, now))
    }

    fn take(&mut self, amount: u64, now: Instant) {
        self.window.take(amount, now);
        self.pacing.take(amount, now);
    }
}

/// The two AWS limits together.
#[derive(Debug, Clone)]
pub struct Quota {
    publishes: Limit,
    bytes: Limit,
}

impl Quota {
    /// Pacing for `publish_per_second` and `bytes_per_second`. A message larger than the byte
    /// budget is counted as the budget, so it still goes (alone in its second).
    pub fn new(publish_per_second: u64, bytes_per_second: u64, now: Instant) -> Self {
        Quota {
            publishes: Limit::new(publish_per_second, now),
            bytes: Limit::new(bytes_per_second, now),
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

    /// Sends messages of `bytes` as fast as the quota allows for `secs` seconds of simulated
    /// time, stepping 1 ms, and returns the send times.
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

    /// The most sends in any window of `span`.
    fn most_in_any(times: &[Instant], span: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= span {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn publishes_stay_under_95_percent_in_any_second_and_use_all_of_it() {
        let start = Instant::now();
        // (publishes per second, seconds simulated)
        let rows = [(100, 10), (10, 10), (1, 10), (1000, 3)];
        for (per_sec, secs) in rows {
            let mut q = Quota::new(per_sec, 1_000_000_000, start);
            let sent = simulate(&mut q, 10, secs, start);
            let peak = most_in_any(&sent, SECOND) as f64;
            let budget = budget(per_sec);
            assert!(peak <= budget, "limit {per_sec}: {peak} in one second");
            let sustained = sent.len() as f64 / secs as f64;
            assert!(
                sustained >= budget.floor() * 0.97,
                "limit {per_sec}: only {sustained} per second"
            );
        }
    }

    #[test]
    fn bytes_stay_under_95_percent_in_any_second_and_use_what_whole_messages_can() {
        let start = Instant::now();
        let limit = 524_288u64;
        let budget = budget(limit);
        // (message bytes, least share of the limit sustained over 10 s). Whole messages fit the
        // 95% budget only so often: 131,584 B three times a second (0.75), 50,000 B nine (0.86).
        let rows = [
            (1_000u64, 0.93),
            (4_700, 0.93),
            (50_000, 0.85),
            (131_584, 0.75),
        ];
        for (size, share) in rows {
            let mut q = Quota::new(100_000, limit, start);
            let sent = simulate(&mut q, size, 10, start);
            let peak_bytes = (most_in_any(&sent, SECOND) as u64 * size) as f64;
            assert!(
                peak_bytes <= budget,
                "size {size}: {peak_bytes} bytes in one second"
            );
            let sustained = (sent.len() as u64 * size) as f64 / 10.0;
            assert!(
                sustained >= limit as f64 * share,
                "size {size}: {sustained} B/s is under {share} of the limit"
            );
        }
    }

    #[test]
    fn a_batched_drain_is_held_by_the_publish_limit_not_the_byte_limit() {
        // ~4.7 KB envelopes at AWS's limits: 95 publishes/s need 447 KB/s, under the 498 KB/s
        // byte budget, so the publish limit decides (the old buckets allowed 78/s).
        let start = Instant::now();
        let mut q = Quota::new(100, 524_288, start);
        let sent = simulate(&mut q, 4_700, 10, start);
        let rate = sent.len() as f64 / 10.0;
        assert!(rate >= 93.0, "{rate} publishes/s");
    }

    #[test]
    fn sends_are_spread_over_the_second_not_sent_as_bursts() {
        let start = Instant::now();
        let mut q = Quota::new(100, 524_288, start);
        let sent = simulate(&mut q, 100, 10, start);
        // capacity 5 + 100 ms at 95/s + 1 for the step
        let peak = most_in_any(&sent, Duration::from_millis(100));
        assert!(peak <= 15, "{peak} publishes in 100 ms");
        let mut q = Quota::new(100_000, 524_288, start);
        let sent = simulate(&mut q, 4_700, 10, start);
        let peak = most_in_any(&sent, Duration::from_millis(100)) as u64 * 4_700;
        assert!(
            peak <= 26_215 + 49_808 + 2 * 4_700,
            "{peak} bytes in 100 ms"
        );
    }

    #[test]
    fn late_timers_do_not_slow_a_batched_drain() {
        // The drain waits with a timer that fires at the next whole millisecond after the
        // deadline plus `late_us`, and spends 300 µs per publish; ~5 KB envelopes at AWS's limits.
        // (payload + topic bytes, µs late) — the old 1% buckets gave 77–91 publishes/s here.
        let rows = [
            (4_913u64, 200u64),
            (4_913, 1_000),
            (5_050, 1_000),
            (5_200, 3_000),
        ];
        for (bytes, late_us) in rows {
            let start = Instant::now();
            let mut q = Quota::new(100, 524_288, start);
            let (mut now, mut sent) = (start, 0u32);
            let end = start + Duration::from_secs(60);
            while now < end {
                let wait = q.wait_for(bytes, now);
                if wait.is_zero() {
                    q.take(bytes, now);
                    sent += 1;
                    now += Duration::from_micros(300);
                } else {
                    let ms = (now - start + wait).as_nanos().div_ceil(1_000_000) as u64;
                    now = start + Duration::from_millis(ms) + Duration::from_micros(late_us);
                }
            }
            let rate = f64::from(sent) / 60.0;
            assert!(
                rate >= 94.5,
                "{bytes} B, {late_us} µs late: {rate:.2} publishes/s"
            );
        }
    }

    #[test]
    fn window_waits_until_enough_of_the_last_second_has_passed() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        // (sends as (ms, amount), limit, asked amount, asked at ms, expected wait in ms)
        type Row = (&'static [(u64, u64)], u64, u64, u64, u64);
        let rows: [Row; 6] = [
            (&[], 100, 1, 0, 0),
            (&[(0, 95)], 100, 1, 0, 1000),
            (&[(0, 95)], 100, 1, 400, 600),
            (&[(0, 50), (300, 45)], 100, 10, 500, 500),
            (&[(0, 50), (300, 45)], 100, 60, 500, 800),
            (&[(0, 95)], 100, 1, 1000, 0),
        ];
        for (sends, limit, amount, at, wait) in rows {
            let mut w = SlidingWindow::for_limit(limit);
            for &(t, n) in sends {
                w.take(n, ms(t));
            }
            assert_eq!(
                w.wait_for(amount, ms(at)),
                Duration::from_millis(wait),
                "sends {sends:?}, {amount} at {at} ms"
            );
        }
    }

    #[test]
    fn pacing_bucket_waits_for_its_refill_and_carries_debt() {
        let start = Instant::now();
        // Bucket for 100/s: capacity 5, rate 95/s, emptied at `start`.
        // (units asked for, ms after `start`, expected wait in µs)
        let rows = [
            (1, 0, 10_526),
            (2, 0, 21_052),
            (7, 0, 52_631), // more than the capacity waits for a full bucket
            (1, 5, 5_526),
            (1, 11, 0),
            (2, 22, 0),
            (5, 1000, 0), // refilled, never above the capacity
            (6, 1000, 0),
        ];
        for (units, after_ms, wait_us) in rows {
            let mut b = PacingBucket::for_limit(100, start);
            b.take(5, start);
            let got = b.wait_for(units, start + Duration::from_millis(after_ms));
            assert_eq!(
                got.as_micros(),
                wait_us,
                "{units} units after {after_ms} ms: {got:?}"
            );
        }
        // A 100-unit send from a full bucket of 50 (limit 1000: rate 950/s) leaves a debt of
        // 50: the next unit waits 51 / 950 s.
        let mut b = PacingBucket::for_limit(1000, start);
        assert_eq!(b.wait_for(100, start), Duration::ZERO);
        b.take(100, start);
        assert_eq!(b.wait_for(1, start).as_micros(), 53_684);
    }

    #[test]
    fn a_unit_larger_than_the_budget_still_passes_alone() {
        let start = Instant::now();
        let mut q = Quota::new(1000, 1000, start);
        assert_eq!(q.wait_for(1_000_000, start), Duration::ZERO);
        q.take(1_000_000, start);
        assert!(q.wait_for(1, start) >= Duration::from_millis(999));
        assert_eq!(q.wait_for(1_000_000, start + SECOND), Duration::ZERO);
    }
}
