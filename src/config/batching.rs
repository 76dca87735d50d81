//! The `batching` key: a list of `{"filter": LOCAL_TOPIC_FILTER, "maxBytes": 5120,
//! "maxDelayMs": 1000}` (opt-in, first match wins): consecutive messages of one cloud topic from
//! matching local topics are sent as one publish (the envelope is in `awslink_actors::batching`).

use awslink_actors::batching::{BatchRule, Batching, DEFAULT_MAX_BYTES, DEFAULT_MAX_DELAY_MS};
use awslink_actors::routes::check_filter;

use super::reader::Reader;
use super::ConfigError;

/// Most rules (the journal keeps a message's rule in one byte).
const MAX_RULES: usize = 255;

/// Reads and validates `batching`; `max_payload_bytes` (`quota.maxPayloadBytes`) bounds
/// `maxBytes`.
pub fn read(r: &mut Reader<'_>, max_payload_bytes: u64) -> Result<Batching, ConfigError> {
    let rules = r.objects("batching", |rule| {
        let filter = rule.string("filter")?;
        let max_bytes = rule.integer(
            "maxBytes",
            DEFAULT_MAX_BYTES.min(max_payload_bytes as usize) as u64,
            256.min(max_payload_bytes),
            max_payload_bytes,
        )?;
        let max_delay_ms = rule.integer("maxDelayMs", DEFAULT_MAX_DELAY_MS, 0, 60_000)?;
        rule.finish()?;
        let filter = filter.ok_or_else(|| {
            rule.error(
                "filter",
                "is required: the local topic filter whose messages are batched, e.g. \"telemetry/#\"",
            )
        })?;
        check_filter(&filter).map_err(|e| rule.error("filter", e))?;
        Ok(BatchRule {
            filter,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            max_delay_ms,
        })
    })?;
    if rules.len() > MAX_RULES {
        return Err(r.error(
            "batching",
            format!(
                "has {} rules; at most {MAX_RULES}: merge filters with + or #",
                rules.len()
            ),
        ));
    }
    Ok(Batching::new(rules))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Config, ConfigError, Overrides};
    use awslink_actors::batching::BatchRule;
    use serde_json::json;

    fn parse_with(batching: serde_json::Value) -> Result<Config, ConfigError> {
        let v = json!({"address": "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883",
            "cert": "/c.pem", "key": "/k.pem", "batching": batching,
            "quota": {"maxPayloadBytes": 65536}});
        parse(&v.to_string(), &Overrides::default())
    }

    #[test]
    fn batching_rules_are_read_in_order_with_defaults() {
        let c = parse_with(json!([
            {"filter": "t/+/+/fast", "maxBytes": 2048, "maxDelayMs": 0},
            {"filter": "telemetry/#"},
        ]))
        .unwrap();
        assert_eq!(
            c.batching.rules(),
            &[
                BatchRule {
                    filter: "t/+/+/fast".into(),
                    max_bytes: 2048,
                    max_delay_ms: 0
                },
                BatchRule {
                    filter: "telemetry/#".into(),
                    max_bytes: 5120,
                    max_delay_ms: 1000
                },
            ]
        );
        assert!(parse_with(json!([])).unwrap().batching.is_empty());
    }

    #[test]
    fn batching_mistakes_name_the_key_and_the_fix() {
        let rows: Vec<(serde_json::Value, &str)> = vec![
            (
                json!([{}]),
                "config key \"batching[0].filter\": is required",
            ),
            (
                json!([{"filter": "t/#/x"}]),
                "config key \"batching[0].filter\": \"t/#/x\" is not an MQTT topic filter",
            ),
            (
                json!([{"filter": "t/#", "maxBytes": 100}]),
                "config key \"batching[0].maxBytes\": 100 is not an integer from 256 to 65536",
            ),
            (
                json!([{"filter": "t/#", "maxBytes": 131072}]),
                "config key \"batching[0].maxBytes\": 131072 is not an integer from 256 to 65536",
            ),
            (
                json!([{"filter": "t/#", "maxDelayMs": 600000}]),
                "config key \"batching[0].maxDelayMs\": 600000 is not an integer from 0 to 60000",
            ),
            (
                json!([{"filter": "t/#", "maxDelay": 5}]),
                "config key \"batching[0].maxDelay\" is unknown",
            ),
            (
                json!({"filter": "t/#"}),
                "config key \"batching\": {\"filter\":\"t/#\"} is not a list of objects",
            ),
        ];
        for (batching, want) in rows {
            let err = parse_with(batching.clone()).expect_err(&format!("must fail: {batching}"));
            assert!(
                err.to_string().contains(want),
                "batching {batching}\n got: {err}\nwant: {want}"
            );
        }
    }
}
