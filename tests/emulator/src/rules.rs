//! Basic Ingest: PUBLISHes to `$aws/rules/{ruleName}/{topic}` go to that rule, not to the
//! message broker's subscribers.
//!
//! The emulator has no rules engine. A message for a known, enabled rule is handed to
//! Mosquitto on [`sink_topic`] (`$emulator/rules/{rule}/{topic}`), which only tests read; a
//! message for an unknown or disabled rule is dropped the way AWS drops it (AWS only logs
//! `RuleNotFound`), counted, and handed to Mosquitto on [`not_found_topic`] so that its QoS 1
//! PUBACK still comes back in order. Nothing here does I/O.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// The prefix of every Basic Ingest topic, up to the rule name.
pub const RULES_PREFIX: &str = "$aws/rules/";

/// Where the emulator puts the messages of known rules (private broker only).
pub const SINK_PREFIX: &str = "$emulator/rules/";

/// Where the emulator puts the messages of unknown or disabled rules (private broker only).
pub const NOT_FOUND_PREFIX: &str = "$emulator/rule_not_found/";

/// The emulator's own topic space on the private broker; devices may not use it.
pub const EMULATOR_PREFIX: &str = "$emulator/";

/// Longest rule name AWS allows.
pub const MAX_RULE_NAME: usize = 128;

/// Whether `name` is a valid AWS IoT rule name: `[a-zA-Z0-9_]{1,128}`.
pub fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Basic Ingest topic split into the rule name and the topic after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTopic<'a> {
    /// The rule name as sent (may be invalid: such a rule cannot exist).
    pub rule: &'a str,
    /// The topic after `$aws/rules/{rule}/`; empty for `$aws/rules/{rule}` alone.
    pub topic: &'a str,
}

/// Splits `$aws/rules/{rule}[/{topic}]`; `None` for any other topic.
pub fn parse_rule_topic(topic: &str) -> Option<RuleTopic<'_>> {
    let rest = topic.strip_prefix(RULES_PREFIX)?;
    Some(match rest.split_once('/') {
        Some((rule, topic)) => RuleTopic { rule, topic },
        None => RuleTopic {
            rule: rest,
            topic: "",
        },
    })
}

/// The part of `topic` that AWS's topic limits apply to: without the `$aws/rules/{rule}/`
/// prefix for Basic Ingest topics, the whole topic otherwise.
pub fn counted_part(topic: &str) -> &str {
    parse_rule_topic(topic).map_or(topic, |r| r.topic)
}

/// Whether a topic filter asks for Basic Ingest topics, which nothing can subscribe to.
pub fn is_rules_filter(filter: &str) -> bool {
    filter == "$aws/rules" || filter.starts_with(RULES_PREFIX)
}

/// `$emulator/rules/{rule}/{topic}` for a Basic Ingest `topic` (everything after
/// `$aws/rules/` is kept as sent); `None` for other topics.
pub fn sink_topic(topic: &str) -> Option<String> {
    topic
        .strip_prefix(RULES_PREFIX)
        .map(|rest| format!("{SINK_PREFIX}{rest}"))
}

/// `$emulator/rule_not_found/{rule}/{topic}` for a Basic Ingest `topic`; `None` for others.
pub fn not_found_topic(topic: &str) -> Option<String> {
    topic
        .strip_prefix(RULES_PREFIX)
        .map(|rest| format!("{NOT_FOUND_PREFIX}{rest}"))
}

/// The enabled rules, shared between the relay's connections and the [`crate::Emulator`]
/// handle (which can enable and disable rules while it runs).
#[derive(Debug, Clone, Default)]
pub struct RuleSet(Arc<RwLock<BTreeSet<String>>>);

impl RuleSet {
    /// A set holding `names` (the caller has checked them with [`valid_rule_name`]).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        RuleSet(Arc::new(RwLock::new(
            names.into_iter().map(Into::into).collect(),
        )))
    }

    /// Whether `rule` exists and is enabled.
    pub fn contains(&self, rule: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(rule)
    }

    /// Enables `rule`; false (and no change) when the name is not a valid rule name.
    pub fn enable(&self, rule: &str) -> bool {
        if !valid_rule_name(rule) {
            return false;
        }
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rule.to_string());
        true
    }

    /// Disables (or deletes) `rule`: its messages are dropped from now on.
    pub fn disable(&self, rule: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(rule);
    }

    /// The enabled rules, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Where one device PUBLISH goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not a Basic Ingest topic: to the broker unchanged.
    Broker,
    /// To the enabled rule `rule`, delivered on `sink` (the private broker topic).
    Rule {
        /// The rule name.
        rule: String,
        /// `$emulator/rules/{rule}/{topic}`.
        sink: String,
    },
    /// For a rule that does not exist or is disabled: dropped, counted, and put on `sink`
    /// (`$emulator/rule_not_found/…`) only so that the broker answers its PUBACK.
    RuleNotFound {
        /// The rule name as sent.
        rule: String,
        /// `$emulator/rule_not_found/{rule}/{topic}`.
        sink: String,
    },
}

/// Decides where a device's PUBLISH on `topic` goes, given the enabled `rules`.
pub fn route(topic: &str, rules: &RuleSet) -> Route {
    let Some(r) = parse_rule_topic(topic) else {
        return Route::Broker;
    };
    let rule = r.rule.to_string();
    if valid_rule_name(r.rule) && rules.contains(r.rule) {
        Route::Rule {
            rule,
            sink: sink_topic(topic).unwrap_or_default(),
        }
    } else {
        Route::RuleNotFound {
            rule,
            sink: not_found_topic(topic).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_name_table() {
        let long_ok = "r".repeat(128);
        let too_long = "r".repeat(129);
        let rows: [(&str, bool); 9] = [
            ("telemetry", true),
            ("Rule_1", true),
            ("_", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("with-dash", false),
            ("with.dot", false),
            ("spa ce", false),
        ];
        for (name, ok) in rows {
            assert_eq!(valid_rule_name(name), ok, "{name:?}");
        }
    }

    /// (topic, rule and rest, counted part)
    type TopicRow<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str);

    #[test]
    fn rule_topic_table() {
        let rows: [TopicRow<'_>; 7] = [
            ("a/b", None, "a/b"),
            ("$aws/things/t/shadow/get", None, "$aws/things/t/shadow/get"),
            ("$aws/rules", None, "$aws/rules"),
            ("$aws/rules/r1/a/b", Some(("r1", "a/b")), "a/b"),
            ("$aws/rules/r1", Some(("r1", "")), ""),
            ("$aws/rules/r1/", Some(("r1", "")), ""),
            ("$aws/rules//a", Some(("", "a")), "a"),
        ];
        for (topic, parts, counted) in rows {
            let got = parse_rule_topic(topic).map(|r| (r.rule, r.topic));
            assert_eq!(got, parts, "{topic}");
            assert_eq!(counted_part(topic), counted, "{topic}");
        }
    }

    #[test]
    fn rules_filter_table() {
        let rows = [
            ("$aws/rules/r/#", true),
            ("$aws/rules/+/x", true),
            ("$aws/rules/#", true),
            ("$aws/rules", true),
            ("$aws/rulesx/a", false),
            ("$aws/things/t/shadow/#", false),
            ("rules/#", false),
        ];
        for (filter, refused) in rows {
            assert_eq!(is_rules_filter(filter), refused, "{filter}");
        }
    }

    #[test]
    fn route_table() {
        let rules = RuleSet::new(["known"]);
        let rows = [
            ("plain/topic", Route::Broker),
            (
                "$aws/rules/known/a/b",
                Route::Rule {
                    rule: "known".into(),
                    sink: "$emulator/rules/known/a/b".into(),
                },
            ),
            (
                "$aws/rules/known/",
                Route::Rule {
                    rule: "known".into(),
                    sink: "$emulator/rules/known/".into(),
                },
            ),
            (
                "$aws/rules/known",
                Route::Rule {
                    rule: "known".into(),
                    sink: "$emulator/rules/known".into(),
                },
            ),
            (
                "$aws/rules/Known/a",
                Route::RuleNotFound {
                    rule: "Known".into(),
                    sink: "$emulator/rule_not_found/Known/a".into(),
                },
            ),
            (
                "$aws/rules/bad-name/a",
                Route::RuleNotFound {
                    rule: "bad-name".into(),
                    sink: "$emulator/rule_not_found/bad-name/a".into(),
                },
            ),
        ];
        for (topic, expected) in rows {
            assert_eq!(route(topic, &rules), expected, "{topic}");
        }
    }

    #[test]
    fn rules_can_be_enabled_and_disabled() {
        let rules = RuleSet::new(Vec::<String>::new());
        assert!(!rules.contains("r"));
        assert!(rules.enable("r"));
        assert!(!rules.enable("not-valid"));
        assert!(rules.contains("r"));
        assert_eq!(rules.names(), ["r"]);
        rules.disable("r");
        assert!(matches!(
            route("$aws/rules/r/x", &rules),
            Route::RuleNotFound { .. }
        ));
    }
}
