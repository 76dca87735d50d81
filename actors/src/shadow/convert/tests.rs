use super::*;
use serde_json::{json, Value};

const DEV: &str = "org.acme:gw1";

fn ditto(action: &str, thing: &str, path: &str, value: Option<Value>, corr: &str) -> Vec<u8> {
    let (ns, name) = thing.split_once(':').unwrap();
    let mut m = json!({
        "topic": format!("{ns}/{name}/things/twin/commands/{action}"),
        "headers": {"correlation-id": corr},
        "path": path,
    });
    if let Some(v) = value {
        m["value"] = v;
    }
    serde_json::to_vec(&m).unwrap()
}

fn command(payload: &[u8]) -> DittoCommand {
    match classify(payload) {
        Classified::Command(c) => c,
        other => panic!("not a command: {other:?}"),
    }
}

/// Converts with a reported cache of `cache` for every shadow; returns (topic, payload) pairs.
fn convert(payload: &[u8], cache: Option<Value>) -> Result<Vec<(String, Value)>, String> {
    let cmd = command(payload);
    let lookup = move |_: &ShadowId| cache.clone();
    to_shadow_requests(
        &cmd,
        DEV,
        &lookup,
        &Filters::default(),
        &ShadowRules::default(),
    )
    .map(|rs| rs.into_iter().map(|r| (r.topic(), r.payload)).collect())
    .map_err(|e| e.0)
}

const CLASSIC: &str = "$aws/things/org.acme:gw1/shadow";

fn named(n: &str) -> String {
    format!("$aws/things/org.acme:gw1/shadow/name/{n}")
}

#[test]
fn ditto_to_shadow_table() {
    let long = "c".repeat(80);
    let long_token = client_token(&long);
    #[allow(clippy::type_complexity)]
    let rows: Vec<(&str, Vec<u8>, Option<Value>, Vec<(String, Value)>)> = vec![
        (
            "attributes modify → classic reported",
            ditto(
                "modify",
                DEV,
                "/attributes",
                Some(json!({"serial": "A1"})),
                "c1",
            ),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"serial": "A1"}}, "clientToken": "c1"}),
            )],
        ),
        (
            "attribute leaf modify wraps the path",
            ditto(
                "modify",
                DEV,
                "/attributes/location/room",
                Some(json!("lab")),
                "c2",
            ),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"location": {"room": "lab"}}}, "clientToken": "c2"}),
            )],
        ),
        (
            "modify replaces: keys gone are sent as null",
            ditto("modify", DEV, "/attributes", Some(json!({"a": 1})), "c3"),
            Some(json!({"a": 0, "b": 2})),
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"a": 1, "b": null}}, "clientToken": "c3"}),
            )],
        ),
        (
            "nested replace nulls nested keys",
            ditto(
                "modify",
                DEV,
                "/attributes/cfg",
                Some(json!({"x": {"y": 1}})),
                "c4",
            ),
            Some(json!({"cfg": {"x": {"y": 0, "z": 3}, "w": 1}})),
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"cfg": {"x": {"y": 1, "z": null}, "w": null}}}, "clientToken": "c4"}),
            )],
        ),
        (
            "merge sends the patch as is (null deletes)",
            ditto(
                "merge",
                DEV,
                "/attributes",
                Some(json!({"a": 1, "b": null})),
                "c5",
            ),
            Some(json!({"a": 0, "c": 2})),
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"a": 1, "b": null}}, "clientToken": "c5"}),
            )],
        ),
        (
            "create behaves like modify",
            ditto("create", DEV, "/attributes", Some(json!({"k": true})), "c6"),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"k": true}}, "clientToken": "c6"}),
            )],
        ),
        (
            "feature → named shadow, properties flattened plus definition",
            ditto(
                "modify",
                DEV,
                "/features/temp",
                Some(json!({"definition": ["org:Temp:1"], "properties": {"value": 21}})),
                "c7",
            ),
            None,
            vec![(
                named("temp") + "/update",
                json!({"state": {"reported": {"value": 21, "definition": ["org:Temp:1"]}}, "clientToken": "c7"}),
            )],
        ),
        (
            "feature desiredProperties → state.desired",
            ditto(
                "modify",
                DEV,
                "/features/lamp",
                Some(json!({"properties": {"on": false}, "desiredProperties": {"on": true}})),
                "c8",
            ),
            None,
            vec![(
                named("lamp") + "/update",
                json!({"state": {"reported": {"on": false}, "desired": {"on": true}}, "clientToken": "c8"}),
            )],
        ),
        (
            "feature property leaf",
            ditto(
                "modify",
                DEV,
                "/features/temp/properties/value",
                Some(json!(22.5)),
                "c9",
            ),
            None,
            vec![(
                named("temp") + "/update",
                json!({"state": {"reported": {"value": 22.5}}, "clientToken": "c9"}),
            )],
        ),
        (
            "properties modify keeps definition, nulls other gone keys",
            ditto(
                "modify",
                DEV,
                "/features/temp/properties",
                Some(json!({"value": 1})),
                "c10",
            ),
            Some(json!({"value": 0, "unit": "C", "definition": ["d"]})),
            vec![(
                named("temp") + "/update",
                json!({"state": {"reported": {"value": 1, "unit": null}}, "clientToken": "c10"}),
            )],
        ),
        (
            "desired property leaf",
            ditto(
                "modify",
                DEV,
                "/features/lamp/desiredProperties/on",
                Some(json!(true)),
                "c11",
            ),
            None,
            vec![(
                named("lamp") + "/update",
                json!({"state": {"desired": {"on": true}}, "clientToken": "c11"}),
            )],
        ),
        (
            "definition alone",
            ditto(
                "modify",
                DEV,
                "/features/temp/definition",
                Some(json!(["x:y:1"])),
                "c12",
            ),
            None,
            vec![(
                named("temp") + "/update",
                json!({"state": {"reported": {"definition": ["x:y:1"]}}, "clientToken": "c12"}),
            )],
        ),
        (
            "arrays are values, replaced whole",
            ditto(
                "modify",
                DEV,
                "/features/f/properties/list",
                Some(json!([1, 2, 3])),
                "c13",
            ),
            Some(json!({"list": [9]})),
            vec![(
                named("f") + "/update",
                json!({"state": {"reported": {"list": [1, 2, 3]}}, "clientToken": "c13"}),
            )],
        ),
        (
            "child attributes → named shadow {child}",
            ditto(
                "modify",
                "org.acme:gw1:sensor7",
                "/attributes",
                Some(json!({"model": "S"})),
                "c14",
            ),
            None,
            vec![(
                named("sensor7") + "/update",
                json!({"state": {"reported": {"model": "S"}}, "clientToken": "c14"}),
            )],
        ),
        (
            "child feature → named shadow {child}:{feature}",
            ditto(
                "modify",
                "org.acme:gw1:sensor7",
                "/features/hum/properties/v",
                Some(json!(40)),
                "c15",
            ),
            None,
            vec![(
                named("sensor7:hum") + "/update",
                json!({"state": {"reported": {"v": 40}}, "clientToken": "c15"}),
            )],
        ),
        (
            "whole thing → classic + one named shadow per feature",
            ditto(
                "modify",
                DEV,
                "/",
                Some(
                    json!({"attributes": {"a": 1}, "features": {"f1": {"properties": {"x": 1}}, "f2": {"properties": {"y": 2}}}}),
                ),
                "c16",
            ),
            None,
            vec![
                (
                    format!("{CLASSIC}/update"),
                    json!({"state": {"reported": {"a": 1}}, "clientToken": "c16"}),
                ),
                (
                    named("f1") + "/update",
                    json!({"state": {"reported": {"x": 1}}, "clientToken": "c16"}),
                ),
                (
                    named("f2") + "/update",
                    json!({"state": {"reported": {"y": 2}}, "clientToken": "c16"}),
                ),
            ],
        ),
        (
            "/features → one named shadow per feature",
            ditto(
                "merge",
                DEV,
                "/features",
                Some(json!({"f1": {"properties": {"x": 5}}})),
                "c17",
            ),
            None,
            vec![(
                named("f1") + "/update",
                json!({"state": {"reported": {"x": 5}}, "clientToken": "c17"}),
            )],
        ),
        (
            "delete attributes deletes the classic shadow",
            ditto("delete", DEV, "/attributes", None, "c18"),
            None,
            vec![(format!("{CLASSIC}/delete"), json!({"clientToken": "c18"}))],
        ),
        (
            "delete a feature deletes its shadow",
            ditto("delete", DEV, "/features/temp", None, "c19"),
            None,
            vec![(named("temp") + "/delete", json!({"clientToken": "c19"}))],
        ),
        (
            "delete one attribute sends null",
            ditto("delete", DEV, "/attributes/a/b", None, "c20"),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"a": {"b": null}}}, "clientToken": "c20"}),
            )],
        ),
        (
            "delete a desired property sends desired null",
            ditto(
                "delete",
                DEV,
                "/features/lamp/desiredProperties/on",
                None,
                "c21",
            ),
            None,
            vec![(
                named("lamp") + "/update",
                json!({"state": {"desired": {"on": null}}, "clientToken": "c21"}),
            )],
        ),
        (
            "retrieve a feature → get",
            ditto("retrieve", DEV, "/features/temp", None, "c22"),
            None,
            vec![(named("temp") + "/get", json!({"clientToken": "c22"}))],
        ),
        (
            "retrieve attributes → classic get",
            ditto("retrieve", DEV, "/attributes", None, "c23"),
            None,
            vec![(format!("{CLASSIC}/get"), json!({"clientToken": "c23"}))],
        ),
        (
            "a correlation id over 64 bytes becomes a hash",
            ditto("modify", DEV, "/attributes/a", Some(json!(1)), &long),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"a": 1}}, "clientToken": long_token}),
            )],
        ),
        (
            "escaped path segments (~1 = /)",
            ditto("modify", DEV, "/attributes/a~1b", Some(json!(1)), "c25"),
            None,
            vec![(
                format!("{CLASSIC}/update"),
                json!({"state": {"reported": {"a/b": 1}}, "clientToken": "c25"}),
            )],
        ),
    ];
    assert!(rows.len() >= 25);
    for (name, payload, cache, want) in rows {
        assert_eq!(convert(&payload, cache), Ok(want), "{name}");
    }
}

#[test]
fn if_match_revision_becomes_the_expected_version() {
    let payload =
        br#"{"topic": "org.acme/gw1/things/twin/commands/modify", "path": "/attributes/a",
        "value": 1, "headers": {"correlation-id": "v1", "if-match": "\"rev:7\""}}"#;
    assert_eq!(
        convert(payload, None),
        Ok(vec![(
            format!("{CLASSIC}/update"),
            json!({"state": {"reported": {"a": 1}}, "clientToken": "v1", "version": 7})
        )])
    );
}

#[test]
fn errors_table() {
    let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}});
    let rows: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "other thing",
            ditto(
                "modify",
                "org.other:x",
                "/attributes",
                Some(json!({})),
                "e1",
            ),
            "neither this device",
        ),
        (
            "unknown root",
            ditto("modify", DEV, "/policy", Some(json!({})), "e2"),
            "is not attributes or features",
        ),
        (
            "unknown feature part",
            ditto("modify", DEV, "/features/f/bogus", Some(json!(1)), "e3"),
            "unknown feature part",
        ),
        (
            "bad shadow name",
            ditto(
                "modify",
                DEV,
                "/features/bad$name/properties/x",
                Some(json!(1)),
                "e4",
            ),
            "is not allowed by AWS",
        ),
        (
            "too deep",
            ditto("modify", DEV, "/attributes", Some(deep), "e5"),
            "nested 7 levels deep; AWS allows 6",
        ),
        (
            "too big",
            ditto(
                "modify",
                DEV,
                "/attributes/blob",
                Some(json!("x".repeat(9000))),
                "e6",
            ),
            "exceeds AWS's 8192 bytes",
        ),
        (
            "not an object",
            ditto("modify", DEV, "/attributes", Some(json!(5)), "e7"),
            "must be a JSON object",
        ),
        (
            "retrieve of the thing",
            ditto("retrieve", DEV, "/", None, "e8"),
            "not supported",
        ),
    ];
    for (name, payload, want) in rows {
        let err = convert(&payload, None).expect_err(name);
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn classify_table() {
    let rows: Vec<(&[u8], &str)> = vec![
        (b"not json", "not"),
        (br#"{"temp": 21}"#, "not"),
        (br#"{"topic": "a/b/things/twin/events/modified", "path": "/"}"#, "not"),
        (br#"[1,2]"#, "not"),
        (br#"{"topic": "a/b/things/twin/commands/modify", "path": "/attributes"}"#, "invalid"),
        (br#"{"topic": "a/b/things/twin/commands/explode", "path": "/", "headers": {"correlation-id": "x"}}"#, "invalid"),
        (br#"{"topic": "a/things/twin/commands/modify", "path": "/", "value": 1}"#, "invalid"),
        (br#"{"topic": "a/b/things/twin/commands/modify", "value": 1}"#, "invalid"),
        (br#"{"topic": "a/b/things/twin/commands/delete", "path": "/attributes"}"#, "command"),
    ];
    for (payload, want) in rows {
        let got = match classify(payload) {
            Classified::NotDitto => "not",
            Classified::Invalid(..) => "invalid",
            Classified::Command(_) => "command",
        };
        assert_eq!(got, want, "{}", String::from_utf8_lossy(payload));
    }
    match classify(br#"{"topic": "a/b/things/twin/commands/explode", "path": "/", "headers": {"correlation-id": "x"}}"#) {
        Classified::Invalid(e, Some(corr)) => {
            assert_eq!(corr, "x");
            assert!(e.0.contains("\"explode\" is not supported"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn filters_drop_topics_and_leaves() {
    let filters = Filters {
        topic: Some(regex_lite::Regex::new("private").unwrap()),
        payload: vec![regex_lite::Regex::new("^/features/meter/properties/secret").unwrap()],
    };
    let rules = ShadowRules::default();
    let none = |_: &ShadowId| None;
    let blocked = command(&ditto(
        "modify",
        "org.acme:gw1",
        "/attributes",
        Some(json!({"a": 1})),
        "f1",
    ));
    let blocked = DittoCommand {
        topic: "org.acme/private/things/twin/commands/modify".into(),
        ..blocked
    };
    assert_eq!(
        to_shadow_requests(&blocked, DEV, &none, &filters, &rules),
        Ok(vec![])
    );
    let cmd = command(&ditto(
        "modify",
        DEV,
        "/features/meter",
        Some(json!({"properties": {"kwh": 5, "secret": {"pin": 1}}})),
        "f2",
    ));
    let out = to_shadow_requests(&cmd, DEV, &none, &filters, &rules).unwrap();
    assert_eq!(
        out[0].payload["state"]["reported"],
        json!({"kwh": 5}),
        "secret removed, emptied parent pruned"
    );
}

#[test]
fn shadow_topics_parse() {
    let rows = [
        (
            "$aws/things/d/shadow/update/accepted",
            Some((None, "update/accepted")),
        ),
        (
            "$aws/things/d/shadow/name/temp/get/rejected",
            Some((Some("temp"), "get/rejected")),
        ),
        (
            "$aws/things/d/shadow/name/c:f/update/delta",
            Some((Some("c:f"), "update/delta")),
        ),
        ("command//d/req/1/x", None),
    ];
    for (topic, want) in rows {
        let got = ShadowId::parse_topic(topic);
        let got = got
            .as_ref()
            .map(|(id, rest)| (id.name.as_deref(), rest.as_str()));
        assert_eq!(got, want, "{topic}");
    }
}

#[test]
fn replies_back_to_ditto() {
    let p = Pending {
        topic: "org.acme/gw1/things/twin/commands/retrieve".into(),
        path: "/features/temp".into(),
        action: Action::Retrieve,
        correlation_id: "r1".into(),
        response_required: true,
    };
    let doc = json!({"state": {"reported": {"value": 3, "definition": ["d"]}, "desired": {"value": 4}}, "version": 7});
    assert_eq!(
        retrieve_value(&p, DEV, &doc),
        json!({"properties": {"value": 3}, "definition": ["d"], "desiredProperties": {"value": 4}})
    );
    let response = ditto_response(&p, accepted_status(p.action), Some(json!(1)));
    assert_eq!(response["status"], 200);
    assert_eq!(response["headers"]["correlation-id"], "r1");
    let err = ditto_error(
        "org.acme/gw1/things/twin/commands/modify",
        "/attributes",
        "m1",
        409,
        "Version conflict",
    );
    assert_eq!(err["topic"], "org.acme/gw1/things/twin/errors");
    assert_eq!(err["status"], 409);
    assert_eq!(err["value"]["message"], "Version conflict");

    let delta = json!({"state": {"on": true}, "version": 3});
    let named = ShadowId {
        thing: DEV.into(),
        name: Some("lamp".into()),
    };
    let (thing, cmd) = delta_to_ditto(&named, DEV, &delta).unwrap();
    assert_eq!(thing, DEV);
    assert_eq!(cmd["topic"], "org.acme/gw1/things/twin/commands/modify");
    assert_eq!(cmd["path"], "/features/lamp/desiredProperties");
    assert_eq!(cmd["value"], json!({"on": true}));
    let child = ShadowId {
        thing: DEV.into(),
        name: Some("s7:hum".into()),
    };
    let (thing, cmd) = delta_to_ditto(&child, DEV, &delta).unwrap();
    assert_eq!(thing, "org.acme:gw1:s7");
    assert_eq!(cmd["topic"], "org.acme/gw1:s7/things/twin/commands/modify");
    assert_eq!(cmd["path"], "/features/hum/desiredProperties");
}

#[test]
fn merge_and_replace_patch() {
    let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
    merge(&mut doc, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
    assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    assert_eq!(replace_patch(None, &json!({"x": 1})), json!({"x": 1}));
    assert_eq!(
        replace_patch(Some(&json!(5)), &json!({"x": 1})),
        json!({"x": 1})
    );
    assert_eq!(client_token("short"), "short");
    assert_eq!(client_token(&"z".repeat(65)).len(), 64);
    assert_eq!(
        client_token(&"z".repeat(65)),
        client_token(&"z".repeat(65)),
        "deterministic"
    );
}
