use super::*;
use crate::topics::{self, Identity};

fn id() -> Identity {
    Identity {
        tenant_id: "ten".into(),
        device_id: "dev".into(),
    }
}

fn table() -> Routes {
    Routes::new(vec![
        Route {
            filter: "telemetry///hot/#".into(),
            rule: "hot_path".into(),
        },
        Route {
            filter: "t/+/+/hot/#".into(),
            rule: "hot_path".into(),
        },
        Route {
            filter: "telemetry/#".into(),
            rule: "telemetry_all".into(),
        },
        Route {
            filter: "event/+/+/alarm".into(),
            rule: "alarms".into(),
        },
        Route {
            filter: "aws/jobs/#".into(),
            rule: "jobs".into(),
        },
    ])
}

/// The whole path a local message takes: the uplink mapping, then the route.
fn published(routes: &Routes, local: &str) -> Option<String> {
    let cloud = topics::uplink(local, &id()).unwrap()?;
    Some(routes.cloud_topic(local, cloud))
}

#[test]
fn route_mapping_table() {
    let rows: &[(&str, Option<&str>)] = &[
        // first match wins: the hot route before telemetry/#
        (
            "telemetry///hot/room1",
            Some("$aws/rules/hot_path/telemetry/ten/dev/hot/room1"),
        ),
        ("t///hot", Some("$aws/rules/hot_path/telemetry/ten/dev/hot")),
        (
            "telemetry",
            Some("$aws/rules/telemetry_all/telemetry/ten/dev"),
        ),
        (
            "telemetry/other/dev2/x",
            Some("$aws/rules/telemetry_all/telemetry/other/dev2/x"),
        ),
        // the filter is over the local topic: `t` is not `telemetry`
        ("t", Some("telemetry/ten/dev")),
        (
            "event///alarm",
            Some("$aws/rules/alarms/event/ten/dev/alarm"),
        ),
        ("e///alarm", Some("event/ten/dev/alarm")),
        ("event///alarm/x", Some("event/ten/dev/alarm/x")),
        ("event", Some("event/ten/dev")),
        ("command///res/42/200", Some("command//dev/res/42/200")),
        // Jobs requests must reach the Jobs service: never routed
        ("aws/jobs/get", Some("$aws/things/dev/jobs/get")),
        ("other/topic", None),
    ];
    let routes = table();
    for (local, want) in rows {
        assert_eq!(
            published(&routes, local).as_deref(),
            *want,
            "local topic {local:?}"
        );
    }
}

#[test]
fn no_routes_change_nothing() {
    let none = Routes::default();
    assert!(none.is_empty());
    assert_eq!(
        none.cloud_topic("telemetry", "telemetry/ten/dev".into()),
        "telemetry/ten/dev"
    );
    assert_eq!(none.rules(), Vec::<&str>::new());
}

#[test]
fn rules_are_listed_once_in_order() {
    assert_eq!(
        table().rules(),
        vec!["hot_path", "telemetry_all", "alarms", "jobs"]
    );
}

#[test]
fn the_limits_apply_to_the_topic_after_the_prefix() {
    // 8 levels and 256 bytes after the prefix are allowed; uplink checks them before routing.
    let routes = table();
    let deep = "telemetry///a/b/c/d/e";
    let topic = published(&routes, deep).unwrap();
    assert_eq!(
        topic,
        "$aws/rules/telemetry_all/telemetry/ten/dev/a/b/c/d/e"
    );
    assert_eq!(topic.split('/').count(), 11);
    let long = format!(
        "telemetry///{}",
        "x".repeat(256 - "telemetry/ten/dev/".len())
    );
    let topic = published(&routes, &long).unwrap();
    assert_eq!(topic.len(), "$aws/rules/telemetry_all/".len() + 256);
    // one level or one byte more is refused, routed or not
    assert!(topics::uplink("telemetry///a/b/c/d/e/f", &id()).is_err());
    assert!(topics::uplink(&format!("{long}x"), &id()).is_err());
}

#[test]
fn filter_matching_table() {
    let rows: &[(&str, &str, bool)] = &[
        ("telemetry/#", "telemetry", true),
        ("telemetry/#", "telemetry/a/b", true),
        ("telemetry/#", "telemetryx", false),
        ("#", "anything/at/all", true),
        ("t/+/+/temp", "t///temp", true),
        ("t/+/+/temp", "t/a/b/temp", true),
        ("t/+/+/temp", "t/a/b/temp/x", false),
        ("t/+/+/temp", "t/a/temp", false),
        ("a/b", "a/b", true),
        ("a/b", "a/b/", false),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("+", "", true),
    ];
    for (filter, topic, want) in rows {
        assert_eq!(
            filter_matches(filter, topic),
            *want,
            "{filter} vs {topic:?}"
        );
    }
}

#[test]
fn filter_syntax_table() {
    let rows: &[(&str, bool)] = &[
        ("telemetry/#", true),
        ("#", true),
        ("t/+/+/temp", true),
        ("+", true),
        ("a//b", true),
        ("", false),
        ("telemetry/#/x", false),
        ("telemetry#", false),
        ("a/b+", false),
        ("a/+b/c", false),
        ("a\0b", false),
    ];
    for (filter, ok) in rows {
        assert_eq!(check_filter(filter).is_ok(), *ok, "{filter:?}");
    }
}

#[test]
fn rule_name_table() {
    let max = "r".repeat(MAX_RULE_NAME);
    let too_long = "r".repeat(MAX_RULE_NAME + 1);
    let rows: &[(&str, bool)] = &[
        ("telemetry_all", true),
        ("Rule9", true),
        ("_", true),
        (&max, true),
        (&too_long, false),
        ("", false),
        ("my-rule", false),
        ("my rule", false),
        ("rule/x", false),
        ("régle", false),
    ];
    for (name, ok) in rows {
        assert_eq!(check_rule_name(name).is_ok(), *ok, "{name:?}");
    }
}

#[test]
fn sample_topic_table() {
    let rows: &[(&str, &str)] = &[
        ("telemetry/#", "telemetry"),
        ("#", ""),
        ("t/+/+/temp", "t///temp"),
        ("event/+/+/alarm/#", "event///alarm"),
        ("telemetry/ten/dev/x", "telemetry/ten/dev/x"),
    ];
    for (filter, want) in rows {
        assert_eq!(sample_topic(filter), *want, "{filter}");
    }
}
