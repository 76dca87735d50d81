//! The check's Basic Ingest step: one QoS 1 probe through each configured route, on the
//! topic a message matching the route's filter would use, and the reminder that a PUBACK does
//! not prove the rule exists (AWS drops messages for a missing or disabled rule silently).

use awslink_actors::routes::{routed_topic, sample_topic, Route};
use awslink_actors::topics::{self, Identity};
use paho_mqtt as mqtt;

use super::{probe_message, step, Diagnosis, StepResult};
use crate::config::Config;
use crate::failure::Failure;

/// Publishes one probe per route on the open connection; prints the reminder when there are any.
pub(super) fn probe_all(
    config: &Config,
    device_id: &str,
    client: &mqtt::Client,
) -> Result<(), Failure> {
    let routes = config.routes.routes();
    if routes.is_empty() {
        return Ok(());
    }
    let identity = Identity {
        tenant_id: config.tenant_id.clone(),
        device_id: device_id.to_string(),
    };
    for (i, route) in routes.iter().enumerate() {
        let topic = probe_topic(route, &identity);
        step(&format!("routes[{i}]"), || {
            probe(client, &route.rule, &topic)
        })?;
    }
    println!("{}", reminder(&config.routes.rules()));
    Ok(())
}

/// `$aws/rules/{rule}/…` with the cloud topic of a local topic the filter matches; a filter
/// that matches no forwarded topic gets `{device}/awslink/check` after the prefix.
fn probe_topic(route: &Route, identity: &Identity) -> String {
    let cloud = match topics::uplink(&sample_topic(&route.filter), identity) {
        Ok(Some(cloud)) if !cloud.starts_with('$') => cloud,
        _ => format!("{}/awslink/check", identity.device_id),
    };
    routed_topic(&route.rule, &cloud)
}

fn probe(client: &mqtt::Client, rule: &str, topic: &str) -> StepResult<()> {
    let (token, message) = probe_message(topic);
    match client.publish(message) {
        Ok(()) => Ok((
            (),
            format!("probe {token} to {topic}, PUBACK received (rule {rule} gets it if it exists and is enabled)"),
        )),
        Err(e) => Err(Diagnosis::new(
            format!("PUBLISH to {topic} failed: {e}"),
            format!("Basic Ingest publish refused: the AWS IoT policy must allow iot:Publish on topic/$aws/rules/{rule}/*"),
        )),
    }
}

/// What a device cannot see: whether the rules exist. Names them and the CloudWatch alarm.
fn reminder(rules: &[&str]) -> String {
    format!(
        "note: AWS IoT acknowledges and then drops Basic Ingest messages for a rule that does not exist or is disabled, without telling the device: \
         check that {} exist and are enabled (aws iot get-topic-rule --rule-name NAME), and alarm on the CloudWatch metric RuleNotFound \
         (namespace AWS/IoT, statistic Sum > 0), e.g. aws cloudwatch put-metric-alarm --alarm-name awslink-rule-not-found --namespace AWS/IoT \
         --metric-name RuleNotFound --statistic Sum --period 300 --evaluation-periods 1 --threshold 0 \
         --comparison-operator GreaterThanThreshold --treat-missing-data notBreaching --alarm-actions SNS_TOPIC_ARN",
        rules.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_topics_follow_the_route_filter() {
        let identity = Identity {
            tenant_id: "ten".into(),
            device_id: "dev".into(),
        };
        let rows: &[(&str, &str)] = &[
            ("telemetry/#", "$aws/rules/r/telemetry/ten/dev"),
            ("t/+/+/temp", "$aws/rules/r/telemetry/ten/dev/temp"),
            ("event/+/+/alarm/#", "$aws/rules/r/event/ten/dev/alarm"),
            ("sensors/#", "$aws/rules/r/dev/awslink/check"),
            ("aws/jobs/#", "$aws/rules/r/dev/awslink/check"),
        ];
        for (filter, want) in rows {
            let route = Route {
                filter: filter.to_string(),
                rule: "r".into(),
            };
            assert_eq!(probe_topic(&route, &identity), *want, "{filter}");
        }
    }

    #[test]
    fn the_reminder_names_the_rules_and_the_metric() {
        let text = reminder(&["one", "two"]);
        assert!(text.contains("one, two exist"), "{text}");
        assert!(text.contains("--metric-name RuleNotFound"), "{text}");
        assert!(text.contains("--namespace AWS/IoT"), "{text}");
    }
}
