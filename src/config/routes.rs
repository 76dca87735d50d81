//! The `routes` key: a list of `{"filter": LOCAL_TOPIC_FILTER, "basicIngestRule": RULE_NAME}`
//! that sends matching local topics to an AWS IoT rule through Basic Ingest (first match wins).

use awslink_actors::routes::{check_filter, check_rule_name, Route, Routes};

use super::reader::Reader;
use super::ConfigError;

/// Reads and validates `routes` (filter syntax, AWS rule names).
pub fn read(r: &mut Reader<'_>) -> Result<Routes, ConfigError> {
    let routes = r.objects("routes", |route| {
        // Both keys read first, so that a misspelt one is reported as unknown ("did you mean").
        let filter = route.string("filter")?;
        let rule = route.string("basicIngestRule")?;
        route.finish()?;
        let filter = filter.ok_or_else(|| {
            route.error(
                "filter",
                "is required: the local topic filter this route takes, e.g. \"telemetry/#\"",
            )
        })?;
        check_filter(&filter).map_err(|e| route.error("filter", e))?;
        let rule = rule.ok_or_else(|| {
            route.error(
                "basicIngestRule",
                "is required: the name of the AWS IoT rule that receives these messages",
            )
        })?;
        check_rule_name(&rule).map_err(|e| {
            route.error(
                "basicIngestRule",
                format!(
                    "{e}; use the rule's name exactly as in AWS IoT (aws iot list-topic-rules)"
                ),
            )
        })?;
        Ok(Route { filter, rule })
    })?;
    Ok(Routes::new(routes))
}
