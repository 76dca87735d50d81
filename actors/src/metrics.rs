//! Formatting of the per-actor metrics lines and the clock helpers the actors share.

use std::time::{SystemTime, UNIX_EPOCH};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists_counters_in_order() {
        let m = ActorMetrics {
            actor: "buffer",
            counters: vec![("queued", 3), ("bytes", 120)],
        };
        assert_eq!(format_line(&m), "buffer queued=3 bytes=120");
    }
}
