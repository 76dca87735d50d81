//! Every topic awslink knows, in one place: the local ⇄ cloud mapping (Eclipse Hono topics on
//! the local broker, Kanto-compatible topics on AWS IoT), the local service topics (status,
//! gateway parameters, metrics), the AWS reserved topics it uses (Device Shadow, Jobs, fleet
//! provisioning) and AWS's topic limits (`docs/aws-iot.md`, "Topics"). Pure: no I/O here.

pub use crate::model::Identity;

/// Local subscriptions that carry uplink traffic (QoS 1).
pub const UPLINK_FILTERS: [&str; 7] = [
    "telemetry/#",
    "t/#",
    "event/#",
    "e/#",
    "command//+/res/#",
    "c//+/s/#",
    "aws/jobs/#",
];

/// Local prefix of the AWS IoT Jobs passthrough: `aws/jobs/…` ⇄ `$aws/things/{deviceId}/jobs/…`.
pub const LOCAL_JOBS_PREFIX: &str = "aws/jobs/";

/// Cloud subscription for this device's Jobs notifications and replies.
pub fn jobs_filter(device_id: &str) -> String {
    format!("$aws/things/{device_id}/jobs/#")
}

/// Cloud subscription for commands to this device and its children (filtered by [`downlink`]).
pub const COMMAND_FILTER: &str = "command//+/req/#";

/// Default local topic of the retained connection status (`statusTopic`).
pub const DEFAULT_STATUS_TOPIC: &str = "edge/connection/remote/status";
/// Local topic the gateway parameters are published on.
pub const THING_RESPONSE_TOPIC: &str = "edge/thing/response";
/// Local topic local applications ask for the gateway parameters on.
pub const THING_REQUEST_TOPIC: &str = "edge/thing/request";
/// Local topic of the periodic metrics JSON document.
pub const METRICS_TOPIC: &str = "edge/awslink/metrics";

/// Local topic a Ditto message to thing `thing_id` is delivered on: the Hono command topic
/// `command//{thing}/req//{action}` (`modify` for a delta, `response` for an answer).
pub fn ditto_command_topic(thing_id: &str, action: &str) -> String {
    format!("command//{thing_id}/req//{action}")
}

/// Cloud subscription for every Device Shadow reply of this device (classic and named).
pub fn shadow_filter(device_id: &str) -> String {
    format!("$aws/things/{device_id}/shadow/#")
}

/// Whether a cloud topic is a Device Shadow topic (`$aws/things/{thing}/shadow/…`).
pub fn is_shadow_topic(topic: &str) -> bool {
    topic.starts_with("$aws/things/") && topic.contains("/shadow/")
}

/// `$aws/things/{thing}/shadow` (classic) or `$aws/things/{thing}/shadow/name/{name}`.
pub fn shadow_prefix(thing: &str, name: Option<&str>) -> String {
    match name {
        None => format!("$aws/things/{thing}/shadow"),
        Some(n) => format!("$aws/things/{thing}/shadow/name/{n}"),
    }
}

/// Splits `$aws/things/{thing}/shadow[/name/{name}]/{rest}` into thing, name and `rest`.
pub fn parse_shadow_topic(topic: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once("/shadow/")?;
    match rest.strip_prefix("name/") {
        Some(named) => {
            let (name, tail) = named.split_once('/')?;
            Some((thing, Some(name), tail))
        }
        None => Some((thing, None, rest)),
    }
}

/// Fleet provisioning: the CreateCertificateFromCsr request topic (JSON payloads).
pub const CREATE_FROM_CSR_TOPIC: &str = "$aws/certificates/create-from-csr/json";

/// Fleet provisioning: the RegisterThing request topic of `template`.
pub fn provision_topic(template: &str) -> String {
    format!("$aws/provisioning-templates/{template}/provision/json")
}

/// AWS IoT: a topic is at most 256 bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// AWS IoT: at most 7 forward slashes (8 levels) in a topic, reserved `$aws/…` topics included
/// (only a Basic Ingest `$aws/rules/{rule}/` prefix is not counted).
pub const MAX_TOPIC_SLASHES: usize = 7;

/// Why a local topic cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    /// A command response topic without the `{reqId}/{status}` parts.
    #[error("malformed command response topic {0:?}: expected command//{{device}}/res/{{reqId}}/{{status}}")]
    MalformedResponse(String),
    /// The mapped cloud topic breaks an AWS IoT limit.
    #[error("{0}")]
    CloudLimit(String),
}

/// Maps a local topic to its cloud topic. `Ok(None)` means the topic is not uplink traffic.
pub fn uplink(local: &str, id: &Identity) -> Result<Option<String>, UplinkError> {
    let segments: Vec<&str> = local.split('/').collect();
    let mapped = match segments[0] {
        "telemetry" | "t" => Some(data_topic("telemetry", &segments[1..], id)),
        "event" | "e" => Some(data_topic("event", &segments[1..], id)),
        "command" | "c" => command_response(local, &segments, id)?,
        "aws" => jobs_request(local, id),
        _ => None,
    };
    match mapped {
        Some(topic) => {
            check_cloud_topic(&topic).map_err(UplinkError::CloudLimit)?;
            Ok(Some(topic))
        }
        None => Ok(None),
    }
}

fn data_topic(kind: &str, rest: &[&str], id: &Identity) -> String {
    let tenant = rest
        .first()
        .filter(|s| !s.is_empty())
        .copied()
        .unwrap_or(&id.tenant_id);
    let device = rest
        .get(1)
        .filter(|s| !s.is_empty())
        .copied()
        .unwrap_or(&id.device_id);
    let mut topic = format!("{kind}/{tenant}/{device}");
    if rest.len() > 2 {
        topic.push('/');
        topic.push_str(&rest[2..].join("/"));
    }
    topic
}

fn command_response(
    local: &str,
    segments: &[&str],
    id: &Identity,
) -> Result<Option<String>, UplinkError> {
    let response_marker = if segments[0] == "command" { "res" } else { "s" };
    if segments.get(3) != Some(&response_marker) {
        // Not a response (e.g. our own command requests echoed locally): not uplink traffic.
        return Ok(None);
    }
    if segments.len() < 6 || segments[4].is_empty() || segments[5].is_empty() {
        return Err(UplinkError::MalformedResponse(local.to_string()));
    }
    let device = if segments[2].is_empty() {
        id.device_id.as_str()
    } else {
        segments[2]
    };
    Ok(Some(format!(
        "command//{device}/res/{}",
        segments[4..].join("/")
    )))
}

/// Jobs requests a local agent makes (`get`, `start-next`, `{jobId}/get`, `{jobId}/update`);
/// replies and notifications under `aws/jobs/` are downlink traffic and are not sent back up.
fn jobs_request(local: &str, id: &Identity) -> Option<String> {
    let rest = local.strip_prefix(LOCAL_JOBS_PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let is_request = match parts.as_slice() {
        ["get"] | ["start-next"] => true,
        [job, "get"] | [job, "update"] => {
            !job.is_empty() && *job != "notify" && *job != "notify-next"
        }
        _ => false,
    };
    is_request.then(|| format!("$aws/things/{}/jobs/{rest}", id.device_id))
}

/// Checks the AWS IoT topic limits: ≤ 256 bytes and ≤ 7 slashes.
pub fn check_cloud_topic(topic: &str) -> Result<(), String> {
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "topic is {} bytes, AWS IoT allows {MAX_TOPIC_BYTES}",
            topic.len()
        ));
    }
    let slashes = topic.matches('/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(format!(
            "topic {topic:?} has {} levels, AWS IoT allows {}",
            slashes + 1,
            MAX_TOPIC_SLASHES + 1
        ));
    }
    Ok(())
}

/// What to do with a message from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downlink {
    /// Publish on these local topics (the Hono long form and its short copy).
    Command(Vec<String>),
    /// A command for a device that is neither this gateway nor one of its children.
    NotForUs(String),
    /// A Jobs reply or notification: publish on this local topic.
    Jobs(String),
    /// A topic awslink does not route.
    Unknown,
}

/// Maps a cloud topic to the local topics it is delivered on.
pub fn downlink(cloud: &str, id: &Identity) -> Downlink {
    let jobs_prefix = format!("$aws/things/{}/jobs/", id.device_id);
    if let Some(rest) = cloud.strip_prefix(&jobs_prefix) {
        // Only replies and notifications: a request (ours, echoed by the broker) sent down would
        // come straight back up through the local subscription.
        let reply = rest.ends_with("/accepted") || rest.ends_with("/rejected");
        return match reply || rest == "notify" || rest == "notify-next" {
            true => Downlink::Jobs(format!("{LOCAL_JOBS_PREFIX}{rest}")),
            false => Downlink::Unknown,
        };
    }
    let segments: Vec<&str> = cloud.split('/').collect();
    if segments.len() < 6
        || segments[0] != "command"
        || !segments[1].is_empty()
        || segments[3] != "req"
    {
        return Downlink::Unknown;
    }
    let device = segments[2];
    let child_prefix = format!("{}:", id.device_id);
    if device != id.device_id && !device.starts_with(&child_prefix) {
        return Downlink::NotForUs(device.to_string());
    }
    let tail = segments[4..].join("/");
    Downlink::Command(vec![
        format!("command//{device}/req/{tail}"),
        format!("c//{device}/q/{tail}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            tenant_id: "ten".into(),
            device_id: "dev".into(),
        }
    }

    #[test]
    fn uplink_table() {
        let rows: &[(&str, Option<&str>)] = &[
            ("telemetry", Some("telemetry/ten/dev")),
            ("t", Some("telemetry/ten/dev")),
            ("telemetry/", Some("telemetry/ten/dev")),
            ("telemetry//", Some("telemetry/ten/dev")),
            ("telemetry/other/dev2", Some("telemetry/other/dev2")),
            ("t//dev:child", Some("telemetry/ten/dev:child")),
            (
                "telemetry///temp/room1",
                Some("telemetry/ten/dev/temp/room1"),
            ),
            ("event", Some("event/ten/dev")),
            ("e", Some("event/ten/dev")),
            ("e/x/y/z", Some("event/x/y/z")),
            ("command///res/42/200", Some("command//dev/res/42/200")),
            (
                "command//dev:c1/res/42/500",
                Some("command//dev:c1/res/42/500"),
            ),
            ("c///s/7/204", Some("command//dev/res/7/204")),
            ("command//dev/req/1/reboot", None),
            ("c///q/1/reboot", None),
            ("other/topic", None),
            ("aws/jobs/get", Some("$aws/things/dev/jobs/get")),
            (
                "aws/jobs/start-next",
                Some("$aws/things/dev/jobs/start-next"),
            ),
            ("aws/jobs/job-7/get", Some("$aws/things/dev/jobs/job-7/get")),
            (
                "aws/jobs/job-7/update",
                Some("$aws/things/dev/jobs/job-7/update"),
            ),
            ("aws/jobs/notify-next", None),
            ("aws/jobs/notify", None),
            ("aws/jobs/get/accepted", None),
            ("aws/jobs/job-7/update/rejected", None),
            ("aws/other", None),
            ("telemetryx", None),
            ("edge/thing/request", None),
        ];
        for (local, want) in rows {
            let got = uplink(local, &id()).unwrap_or_else(|e| panic!("{local}: {e}"));
            assert_eq!(got.as_deref(), *want, "local topic {local:?}");
        }
    }

    #[test]
    fn uplink_rejects_malformed_responses_and_aws_limits() {
        assert!(matches!(
            uplink("command///res/42", &id()),
            Err(UplinkError::MalformedResponse(_))
        ));
        assert!(matches!(
            uplink("c///s//200", &id()),
            Err(UplinkError::MalformedResponse(_))
        ));
        // telemetry/ten/dev + 6 more levels = 9 levels
        assert!(matches!(
            uplink("telemetry///a/b/c/d/e/f", &id()),
            Err(UplinkError::CloudLimit(_))
        ));
        assert_eq!(
            uplink("telemetry///a/b/c/d/e", &id())
                .ok()
                .flatten()
                .as_deref(),
            Some("telemetry/ten/dev/a/b/c/d/e")
        );
        let long = format!("telemetry///{}", "x".repeat(300));
        assert!(matches!(
            uplink(&long, &id()),
            Err(UplinkError::CloudLimit(_))
        ));
    }

    #[test]
    fn cloud_topic_limits() {
        assert!(check_cloud_topic("a/b/c/d/e/f/g/h").is_ok());
        assert!(check_cloud_topic("a/b/c/d/e/f/g/h/i").is_err());
        // The deepest reserved topic awslink uses has 8 levels; AWS counts reserved ones too.
        assert!(check_cloud_topic("$aws/things/dev/shadow/name/x/update/accepted").is_ok());
        assert!(check_cloud_topic("$aws/things/dev/shadow/name/x/update/accepted/more").is_err());
        assert!(check_cloud_topic(&"a".repeat(256)).is_ok());
        assert!(check_cloud_topic(&"a".repeat(257)).is_err());
    }

    #[test]
    fn shadow_topics_by_table() {
        type Parsed = Option<(&'static str, Option<&'static str>, &'static str)>;
        let rows: &[(&str, Parsed)] = &[
            ("$aws/things/gw/shadow/update", Some(("gw", None, "update"))),
            (
                "$aws/things/gw/shadow/name/lamp/update/accepted",
                Some(("gw", Some("lamp"), "update/accepted")),
            ),
            ("$aws/things/gw/jobs/notify", None),
            ("telemetry/x", None),
        ];
        for (topic, parsed) in rows {
            assert_eq!(parse_shadow_topic(topic), *parsed, "{topic}");
            assert_eq!(is_shadow_topic(topic), parsed.is_some(), "{topic}");
            if let Some((thing, name, rest)) = parsed {
                assert_eq!(format!("{}/{rest}", shadow_prefix(thing, *name)), *topic);
            }
        }
        assert_eq!(shadow_filter("gw"), "$aws/things/gw/shadow/#");
        assert_eq!(
            ditto_command_topic("t:1", "modify"),
            "command//t:1/req//modify"
        );
        assert_eq!(
            provision_topic("fleet"),
            "$aws/provisioning-templates/fleet/provision/json"
        );
    }

    #[test]
    fn downlink_table() {
        let rows: &[(&str, Downlink)] = &[
            (
                "command//dev/req/1/reboot",
                Downlink::Command(vec![
                    "command//dev/req/1/reboot".into(),
                    "c//dev/q/1/reboot".into(),
                ]),
            ),
            (
                "command//dev:child/req/r-9/set/x",
                Downlink::Command(vec![
                    "command//dev:child/req/r-9/set/x".into(),
                    "c//dev:child/q/r-9/set/x".into(),
                ]),
            ),
            (
                "command//other/req/1/reboot",
                Downlink::NotForUs("other".into()),
            ),
            (
                "command//devx/req/1/reboot",
                Downlink::NotForUs("devx".into()),
            ),
            ("command//dev/res/1/200", Downlink::Unknown),
            ("command//dev/req/1", Downlink::Unknown),
            ("telemetry/ten/dev", Downlink::Unknown),
            (
                "$aws/things/dev/jobs/notify-next",
                Downlink::Jobs("aws/jobs/notify-next".into()),
            ),
            (
                "$aws/things/dev/jobs/j1/update/accepted",
                Downlink::Jobs("aws/jobs/j1/update/accepted".into()),
            ),
            ("$aws/things/other/jobs/notify", Downlink::Unknown),
            ("$aws/things/dev/jobs/get", Downlink::Unknown),
            ("$aws/things/dev/jobs/j1/update", Downlink::Unknown),
        ];
        for (cloud, want) in rows {
            assert_eq!(&downlink(cloud, &id()), want, "cloud topic {cloud:?}");
        }
    }
}
