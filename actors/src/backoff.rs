//! Pure reconnect policy: exponential backoff with full jitter, bounded by
//! `minDelayMs`..`maxDelayMs`. Randomness comes in as an argument so tests are exact.

use std::time::Duration;

/// The reconnect policy from the `reconnect` config object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Shortest delay before an attempt.
    pub min_delay: Duration,
    /// Longest delay before an attempt.
    pub max_delay: Duration,
    /// A connection that stayed up this long resets the attempt count.
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// Upper bound of the delay before retry number `failures` (1 = first retry):
    /// `min(max, min × 2^failures)`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u64.checked_shl(failures.min(63)).unwrap_or(u64::MAX);
        let min_ms = self.min_delay.as_millis() as u64;
        let ceiling = Duration::from_millis(min_ms.saturating_mul(factor));
        ceiling.min(self.max_delay).max(self.min_delay)
    }

    /// Delay before the next attempt after `failures` consecutive failures, with `unit` a uniform
    /// random number in `[0, 1)`: uniformly spread over `[min, ceiling(failures)]` (full jitter, so a
    /// fleet that lost the cloud together does not come back together, and never below `min`).
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let low = self.min_delay;
        let high = self.ceiling(failures);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        low + (high - low).mul_f64(unit)
    }

    /// Failure count to use after a connection that lasted `up_for` went down.
    pub fn failures_after_drop(&self, failures: u32, up_for: Duration) -> u32 {
        if up_for >= self.reset_after {
            0
        } else {
            failures
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            min_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(120_000),
            reset_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let rows = [
            (0, 1000),
            (1, 2000),
            (2, 4000),
            (3, 8000),
            (6, 64_000),
            (7, 120_000),
            (20, 120_000),
            (64, 120_000),
            (u32::MAX, 120_000),
        ];
        for (failures, ms) in rows {
            assert_eq!(
                policy().ceiling(failures),
                Duration::from_millis(ms),
                "failures={failures}"
            );
        }
    }

    #[test]
    fn delay_spans_min_to_ceiling() {
        let rows = [
            (1, 0.0, 1000),
            (1, 0.5, 1500),
            (1, 0.999_999, 1999),
            (3, 0.0, 1000),
            (3, 0.25, 2750),
            (10, 1.0, 120_000),
            (10, 0.5, 60_500),
            (2, f64::NAN, 1000),
            (2, -3.0, 1000),
            (2, 7.0, 4000),
        ];
        for (failures, unit, ms) in rows {
            let got = policy().delay(failures, unit).as_millis();
            assert_eq!(got, ms, "failures={failures} unit={unit}");
        }
    }

    #[test]
    fn min_equal_max_is_constant() {
        let p = BackoffPolicy {
            max_delay: Duration::from_millis(1000),
            ..policy()
        };
        for (failures, unit) in [(0, 0.0), (1, 0.5), (5, 0.9), (63, 1.0), (u32::MAX, 0.3)] {
            assert_eq!(
                p.delay(failures, unit),
                Duration::from_millis(1000),
                "failures={failures} unit={unit}"
            );
        }
    }

    #[test]
    fn stable_connection_resets_failures() {
        // (failures before the drop, how long the connection was up, failures after)
        let rows = [
            (5, Duration::from_secs(31), 0),
            (5, Duration::from_secs(30), 0),
            (5, Duration::from_millis(29_999), 5),
            (5, Duration::ZERO, 5),
            (0, Duration::from_secs(1), 0),
            (u32::MAX, Duration::from_secs(3600), 0),
            (u32::MAX, Duration::from_secs(1), u32::MAX),
        ];
        for (failures, up_for, expected) in rows {
            assert_eq!(
                policy().failures_after_drop(failures, up_for),
                expected,
                "failures={failures} up_for={up_for:?}"
            );
        }
    }
}
