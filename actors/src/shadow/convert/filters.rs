//! Kanto's `topicFilter` and `payloadFilters`: which twin commands, and which leaves of their
//! values, never reach the shadow service.

use serde_json::{Map, Value};

/// Kanto's filters: `topicFilter` drops whole messages by Ditto topic, `payloadFilters` drop
/// leaves whose path (e.g. `/features/meter/properties/secret`) matches.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Regex on the Ditto topic.
    pub topic: Option<regex_lite::Regex>,
    /// Regexes on leaf paths.
    pub payload: Vec<regex_lite::Regex>,
}

impl Filters {
    /// Compiles Kanto's `topicFilter` and `payloadFilters`; the error names the bad expression.
    pub fn compile(topic: Option<&str>, payload: &[String]) -> Result<Filters, String> {
        let compile = |r: &str| {
            regex_lite::Regex::new(r).map_err(|e| {
                // regex's message spans lines (pattern, caret, error); keep the last one.
                let text = e.to_string();
                let why = text
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                format!("{r:?} is not a valid regular expression: {why}")
            })
        };
        Ok(Filters {
            topic: topic.map(compile).transpose()?,
            payload: payload
                .iter()
                .map(|r| compile(r))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Drops the leaves whose Ditto path matches a payload filter, then prunes emptied objects.
pub(super) fn apply_payload_filters(base: &str, value: Value, filters: &Filters) -> Option<Value> {
    if filters.payload.is_empty() {
        return Some(value);
    }
    match value {
        Value::Object(map) => {
            let was_empty = map.is_empty();
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(v) = apply_payload_filters(&format!("{base}/{k}"), v, filters) {
                    out.insert(k, v);
                }
            }
            (was_empty || !out.is_empty()).then_some(Value::Object(out))
        }
        leaf => (!filters.payload.iter().any(|r| r.is_match(base))).then_some(leaf),
    }
}
