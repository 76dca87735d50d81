//! Formatting of the per-actor metrics lines and the clock helpers the actors share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::messages::ActorMetrics;

/// Log target of the periodic metrics lines.
pub const TARGET: &str = "awslink::metrics";

/// `buffer queued=120 bytes=24000 delivered=5123`.
pub fn format_line(m: &ActorMetrics) -> String {
    let mut line = m.actor.to_string();
    for (name, value) in &m.counters {
        line.push_str(&format!(" {name}={value}"));
    }
    line
}

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
    fn line_lists_counters_in_order() {
        let m = ActorMetrics {
            actor: "buffer",
            counters: vec![("queued", 3), ("bytes", 120)],
        };
        assert_eq!(format_line(&m), "buffer queued=3 bytes=120");
    }
}
