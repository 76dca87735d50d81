//! What the publishes awslink sends cost on AWS IoT: the messaging charge is per PUBLISH in
//! units of 5 KB of payload + topic; Basic Ingest publishes (`$aws/rules/…`) incur none and are
//! counted apart, per rule (`docs/aws-iot.md`, "Billing"). Pure counting, done by the drain for
//! every publish it sends.

use crate::routes::BASIC_INGEST_PREFIX;

/// AWS IoT meters messages in 5 KB steps (payload + topic).
pub const BILLING_UNIT_BYTES: usize = 5120;

/// Billed messaging units of one publish: ⌈(topic + payload bytes) / 5,120⌉.
pub fn billed_units(topic_bytes: usize, payload_bytes: usize) -> u64 {
    (topic_bytes + payload_bytes).div_ceil(BILLING_UNIT_BYTES) as u64
}

/// One Basic Ingest rule's counter.
#[derive(Debug)]
struct RuleCounter {
    /// `$aws/rules/{rule}/`.
    prefix: String,
    /// `route_{rule}_sent`.
    metric: &'static str,
    sent: u64,
}

/// Counters of publishes sent: billed units, Basic Ingest publishes, and publishes per rule.
/// Counting allocates nothing; the per-rule names are made once, when the meter is built.
#[derive(Debug, Default)]
pub struct Meter {
    billed_units: u64,
    basic_ingest: u64,
    rules: Vec<RuleCounter>,
}

impl Meter {
    /// A meter with one counter per rule in `rules` (validated rule names). The metric names
    /// are made here once and live as long as the process (one per configured rule).
    pub fn new(rules: &[&str]) -> Self {
        let rules = rules
            .iter()
            .map(|rule| RuleCounter {
                prefix: format!("{BASIC_INGEST_PREFIX}{rule}/"),
                metric: Box::leak(format!("route_{rule}_sent").into_boxed_str()),
                sent: 0,
            })
            .collect();
        Meter {
            rules,
            ..Meter::default()
        }
    }

    /// Counts one publish of `payload_bytes` to `topic`; returns the billed units it added (0
    /// for Basic Ingest).
    pub fn count(&mut self, topic: &str, payload_bytes: usize) -> u64 {
        if !topic.starts_with(BASIC_INGEST_PREFIX) {
            let units = billed_units(topic.len(), payload_bytes);
            self.billed_units += units;
            return units;
        }
        self.basic_ingest += 1;
        if let Some(rule) = self.rules.iter_mut().find(|r| topic.starts_with(&r.prefix)) {
            rule.sent += 1;
        }
        0
    }

    /// `billed_units`, `basic_ingest_publishes`, then `route_{rule}_sent` per rule.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("billed_units", self.billed_units),
            ("basic_ingest_publishes", self.basic_ingest),
        ]
        .into_iter()
        .chain(self.rules.iter().map(|r| (r.metric, r.sent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billed_units_table() {
        let rows: &[(usize, usize, u64)] = &[
            (17, 0, 1),
            (17, 200, 1),
            (20, 5100, 1),
            (20, 5101, 2),
            (0, 5120, 1),
            (0, 5121, 2),
            (256, 131_072, 26),
        ];
        for &(topic, payload, want) in rows {
            assert_eq!(billed_units(topic, payload), want, "{topic} + {payload}");
        }
    }

    #[test]
    fn basic_ingest_is_counted_apart_and_per_rule() {
        let mut m = Meter::new(&["hot", "hot_2"]);
        m.count("telemetry/t/d", 200); // 1 unit
        m.count("telemetry/t/d", 6000); // 2 units
        m.count("$aws/rules/hot/telemetry/t/d", 200);
        m.count("$aws/rules/hot_2/telemetry/t/d", 9000);
        m.count("$aws/rules/hot_2/x", 1);
        m.count("$aws/rules/gone/telemetry/t/d", 1); // a rule no longer configured
        m.count("$aws/things/d/jobs/get", 2); // reserved but billed
        let got: Vec<(&str, u64)> = m.counters().collect();
        assert_eq!(
            got,
            vec![
                ("billed_units", 4),
                ("basic_ingest_publishes", 4),
                ("route_hot_sent", 1),
                ("route_hot_2_sent", 2),
            ]
        );
    }

    #[test]
    fn a_meter_without_rules_has_only_the_totals() {
        let names: Vec<&str> = Meter::new(&[]).counters().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["billed_units", "basic_ingest_publishes"]);
    }
}
