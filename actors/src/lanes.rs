//! Priority lanes: which of the journal's FIFOs a message goes to, and each lane's drain settings.
//! Pure: the [`Lane`] names, the default classification of local and cloud topics, the
//! operator's filters that move local topics to another lane ([`LaneRules`]) and the per-lane
//! settings (minimum share of the publish quota, maximum age).
//!
//! Each message goes to exactly one lane, so the order per source topic is kept; order across
//! lanes is not a promise. Lanes drain by strict priority ([`Lane::ALL`] is highest first), each
//! lower lane with a guaranteed minimum share of the publishes while it has a backlog.

use crate::routes::{filter_matches, BASIC_INGEST_PREFIX};

/// One FIFO of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Command responses, Device Shadow requests (from Ditto twin commands), Jobs requests.
    Control,
    /// Hono events (`event`, `e`, `event/…`, `e/…`).
    Events,
    /// Hono telemetry (`telemetry`, `t`, `telemetry/…`, `t/…`) and anything else.
    Telemetry,
}

impl Lane {
    /// Every lane, highest priority first.
    pub const ALL: [Lane; 3] = [Lane::Control, Lane::Events, Lane::Telemetry];

    /// The lane's name in the configuration, the metrics and `buffer inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Control => "control",
            Lane::Events => "events",
            Lane::Telemetry => "telemetry",
        }
    }

    /// The lane called `name` (as in [`Lane::name`]).
    pub fn from_name(name: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Position in [`Lane::ALL`] (0 = control), for per-lane arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lane a local topic goes to without any operator filter.
    pub fn of_local_topic(local: &str) -> Lane {
        match local.split('/').next().unwrap_or("") {
            "command" | "c" | "aws" => Lane::Control,
            "event" | "e" => Lane::Events,
            _ => Lane::Telemetry,
        }
    }

    /// The lane a cloud topic (as journaled) goes to by default: for a journal written before
    /// lanes existed, whose entries carry only their cloud topic. A Basic Ingest prefix
    /// (`$aws/rules/{rule}/`) is looked through.
    pub fn of_cloud_topic(cloud: &str) -> Lane {
        let topic = match cloud.strip_prefix(BASIC_INGEST_PREFIX) {
            Some(rest) => rest.split_once('/').map_or("", |(_, t)| t),
            None => cloud,
        };
        if topic.starts_with("$aws/") {
            // Device Shadow and Jobs requests.
            return Lane::Control;
        }
        match topic.split('/').next().unwrap_or("") {
            "command" => Lane::Control,
            "event" => Lane::Events,
            _ => Lane::Telemetry,
        }
    }
}

/// Drain settings of one lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneSettings {
    /// Fraction (0..1) of the publish quota this lane gets while it has a backlog, whatever the
    /// higher lanes hold (0 for control, which is never behind anything).
    pub min_share: f64,
    /// A message older than this (seconds since it was journaled) when its turn comes is not
    /// sent but counted as expired; `None`: nothing expires.
    pub max_age_secs: Option<u64>,
}

impl LaneSettings {
    /// The defaults of `lane`: events 20 %, telemetry 10 % of the quota; nothing expires.
    pub fn default_for(lane: Lane) -> LaneSettings {
        let min_share = match lane {
            Lane::Control => 0.0,
            Lane::Events => 0.2,
            Lane::Telemetry => 0.1,
        };
        LaneSettings {
            min_share,
            max_age_secs: None,
        }
    }
}

/// The configured lanes: the operator's filters (local topic filters that move matching topics
/// into a lane, checked before the default classification) and each lane's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneRules {
    /// (filter, lane) in configuration order: control's first, then events', then telemetry's.
    filters: Vec<(String, Lane)>,
    settings: [LaneSettings; 3],
}

impl Default for LaneRules {
    fn default() -> Self {
        LaneRules {
            filters: Vec::new(),
            settings: Lane::ALL.map(LaneSettings::default_for),
        }
    }
}

impl LaneRules {
    /// Rules with these operator filters (already validated with
    /// [`check_filter`](crate::routes::check_filter)) and settings, indexed by [`Lane::index`].
    pub fn new(filters: Vec<(String, Lane)>, settings: [LaneSettings; 3]) -> Self {
        LaneRules { filters, settings }
    }

    /// The lane of a message published locally on `local`: the first operator filter that
    /// matches, else [`Lane::of_local_topic`].
    pub fn lane_of(&self, local: &str) -> Lane {
        self.filters
            .iter()
            .find(|(filter, _)| filter_matches(filter, local))
            .map_or_else(|| Lane::of_local_topic(local), |(_, lane)| *lane)
    }

    /// The settings of `lane`.
    pub fn settings(&self, lane: Lane) -> LaneSettings {
        self.settings[lane.index()]
    }

    /// The operator's filters and the lane each one moves topics to.
    pub fn filters(&self) -> &[(String, Lane)] {
        &self.filters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lanes_of_local_topics() {
        let rows = [
            ("telemetry", Lane::Telemetry),
            ("t/ten/dev", Lane::Telemetry),
            ("telemetry///temp", Lane::Telemetry),
            ("event", Lane::Events),
            ("e//dev/alarm", Lane::Events),
            ("command///res/42/200", Lane::Control),
            ("c///s/7/204", Lane::Control),
            ("aws/jobs/get", Lane::Control),
            ("other/topic", Lane::Telemetry),
        ];
        for (topic, lane) in rows {
            assert_eq!(Lane::of_local_topic(topic), lane, "{topic}");
        }
    }

    #[test]
    fn default_lanes_of_cloud_topics() {
        let rows = [
            ("telemetry/ten/dev", Lane::Telemetry),
            ("event/ten/dev", Lane::Events),
            ("command//dev/res/42/200", Lane::Control),
            ("$aws/things/dev/jobs/get", Lane::Control),
            ("$aws/things/dev/shadow/update", Lane::Control),
            ("$aws/rules/ingest/telemetry/ten/dev", Lane::Telemetry),
            ("$aws/rules/ingest/event/ten/dev", Lane::Events),
            ("$aws/rules/ingest", Lane::Telemetry),
        ];
        for (topic, lane) in rows {
            assert_eq!(Lane::of_cloud_topic(topic), lane, "{topic}");
        }
    }

    #[test]
    fn operator_filters_come_before_the_defaults_first_match_wins() {
        let rules = LaneRules::new(
            vec![
                ("event/+/+/alarm".into(), Lane::Control),
                ("event/+/+/heartbeat".into(), Lane::Telemetry),
                ("event/#".into(), Lane::Telemetry),
            ],
            Lane::ALL.map(LaneSettings::default_for),
        );
        let rows = [
            ("event/ten/dev/alarm", Lane::Control),
            ("event/ten/dev/heartbeat", Lane::Telemetry),
            ("event/ten/dev", Lane::Telemetry),
            ("e/ten/dev", Lane::Events),
            ("command///res/1/200", Lane::Control),
        ];
        for (topic, lane) in rows {
            assert_eq!(rules.lane_of(topic), lane, "{topic}");
        }
    }

    #[test]
    fn names_round_trip_and_index_follows_priority() {
        for (i, lane) in Lane::ALL.into_iter().enumerate() {
            assert_eq!(Lane::from_name(lane.name()), Some(lane));
            assert_eq!(lane.index(), i);
        }
        assert_eq!(Lane::from_name("bulk"), None);
        let defaults = LaneRules::default();
        assert_eq!(defaults.settings(Lane::Events).min_share, 0.2);
        assert_eq!(defaults.settings(Lane::Telemetry).min_share, 0.1);
        assert_eq!(defaults.settings(Lane::Control).max_age_secs, None);
    }
}
