//! The clocks the actors share: Unix time for timestamps that leave the process, a monotonic
//! clock for durations measured across threads, and [`LogLimiter`], which uses them to keep a
//! repeating log line from flooding the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Milliseconds on a monotonic clock private to this process (never 0, so 0 can mean "unset"
/// in an atomic).
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Lets a repeating log line through at most once per interval (no log floods); thread-safe.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last_ms: AtomicU64,
}

impl LogLimiter {
    /// True if the last `true` was at least `every` ago (or never).
    pub fn ready(&self, every: Duration) -> bool {
        let now = unix_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < every.as_millis() as u64 {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_lets_one_through_per_interval() {
        let l = LogLimiter::default();
        assert!(l.ready(Duration::from_secs(60)));
        assert!(!l.ready(Duration::from_secs(60)));
        assert!(l.ready(Duration::ZERO));
    }

    #[test]
    fn mono_ms_is_never_zero_and_never_goes_back() {
        let first = mono_ms();
        assert!(first >= 1);
        assert!(mono_ms() >= first);
    }

    #[test]
    fn unix_secs_is_unix_ms_in_seconds() {
        let (ms, secs) = (unix_ms(), unix_secs());
        // 2020-01-01 as a floor: the clock is a real Unix clock, not a process-relative one.
        assert!(ms > 1_577_836_800_000, "{ms}");
        assert!(secs >= ms / 1000 && secs <= ms / 1000 + 1, "{ms} {secs}");
    }
}
