//! The `lanes` key: per lane (`control`, `events`, `telemetry`) the local topic filters moved
//! into it (`filters`), its minimum share of the publishes while it has a backlog (`minShare`,
//! events and telemetry only) and the age beyond which its messages are not sent
//! (`maxAgeSecs`).

use awslink_actors::lanes::{Lane, LaneRules, LaneSettings};
use awslink_actors::routes::check_filter;

use super::reader::Reader;
use super::ConfigError;

/// Reads and validates `lanes`; absent, the default lanes (events 20 %, telemetry 10 %).
pub fn read(r: &mut Reader<'_>) -> Result<LaneRules, ConfigError> {
    r.object("lanes", |lanes| {
        let mut filters: Vec<(String, Lane)> = Vec::new();
        let mut settings = Lane::ALL.map(LaneSettings::default_for);
        for lane in Lane::ALL {
            lanes.object(lane.name(), |l| {
                for filter in l.string_list("filters")? {
                    check_filter(&filter).map_err(|e| l.error("filters", e))?;
                    if let Some((_, other)) = filters.iter().find(|(f, _)| *f == filter) {
                        return Err(l.error(
                            "filters",
                            format!(
                                "{filter:?} is already a filter of lanes.{}; a topic filter belongs to one lane",
                                other.name()
                            ),
                        ));
                    }
                    filters.push((filter, lane));
                }
                let s = &mut settings[lane.index()];
                if lane == Lane::Control {
                    if l.fraction("minShare", 0.0)? != 0.0 {
                        return Err(l.error(
                            "minShare",
                            "control is never behind another lane; minShare applies to events and telemetry",
                        ));
                    }
                } else {
                    s.min_share = l.fraction("minShare", s.min_share)?;
                }
                s.max_age_secs = l.optional_integer("maxAgeSecs", u64::MAX / 1000)?;
                if s.max_age_secs == Some(0) {
                    return Err(l.error(
                        "maxAgeSecs",
                        "0 would expire every message; leave it out for \"never expires\"",
                    ));
                }
                Ok(())
            })?;
        }
        let shares = settings[Lane::Events.index()].min_share
            + settings[Lane::Telemetry.index()].min_share;
        if shares >= 1.0 {
            return Err(lanes.error(
                "telemetry.minShare",
                format!(
                    "events' and telemetry's minimum shares sum to {shares}; they must stay below 1 so that control keeps priority"
                ),
            ));
        }
        Ok(LaneRules::new(filters, settings))
    })
}
