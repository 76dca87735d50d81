//! The actors' counters as operators see them: one `awslink::metrics` log line per actor, and
//! one JSON document with every actor's counters.

use serde_json::json;

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

/// `{"timestamp":…, "buffer":{"queued":…}, "local":{…}, …}`.
pub fn metrics_document(all: &[ActorMetrics], timestamp: u64) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("timestamp".into(), json!(timestamp));
    for m in all {
        let counters: serde_json::Map<String, serde_json::Value> = m
            .counters
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        doc.insert(m.actor.to_string(), serde_json::Value::Object(counters));
    }
    serde_json::Value::Object(doc).to_string()
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

    #[test]
    fn document_has_the_timestamp_and_one_object_per_actor() {
        let all = [
            ActorMetrics {
                actor: "status",
                counters: vec![("connected", 1), ("published", 4)],
            },
            ActorMetrics {
                actor: "buffer",
                counters: vec![("queued", 3)],
            },
            ActorMetrics {
                actor: "local",
                counters: vec![],
            },
        ];
        let doc: serde_json::Value = serde_json::from_str(&metrics_document(&all, 42)).unwrap();
        assert_eq!(
            doc,
            json!({"timestamp": 42, "status": {"connected": 1, "published": 4},
                   "buffer": {"queued": 3}, "local": {}})
        );
    }
}
