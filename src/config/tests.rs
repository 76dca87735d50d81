use super::*;
use awslink_actors::lanes::Lane;
use awslink_actors::routes::Route;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({"address": "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883", "cert": "/c.pem", "key": "/k.pem"})
}

fn parse_value(v: &serde_json::Value) -> Result<Config, ConfigError> {
    parse(&v.to_string(), &Overrides::default())
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut v = base();
    v[key] = value;
    v
}

#[test]
fn defaults() {
    let c = parse_value(&base()).unwrap();
    assert_eq!(
        c.endpoint,
        Endpoint {
            host: "abc-ats.iot.eu-west-1.amazonaws.com".into(),
            port: 8883
        }
    );
    assert_eq!(c.tenant_id, "default-tenant-id");
    assert_eq!(c.local.uri, "tcp://localhost:1883");
    assert_eq!(c.local.client_id, "awslink");
    assert_eq!(c.status_topic, "edge/connection/remote/status");
    assert_eq!(c.buffer.max_messages, 1_000_000);
    assert!(c.buffer.fsync);
    assert_eq!(c.buffer.when_full, WhenFull::DropOldest);
    assert_eq!(c.buffer.on_damage, OnDamage::Refuse);
    assert_eq!(c.buffer.quarantine_max_messages, 10_000);
    assert_eq!(c.reconnect.min_delay, Duration::from_secs(1));
    assert_eq!(c.reconnect.max_delay, Duration::from_secs(120));
    assert_eq!(c.quota.publish_per_second, 100);
    assert_eq!(c.keep_alive, Duration::from_secs(60));
    assert!(c.alpn.is_empty());
}

#[test]
fn kanto_config_loads_unchanged() {
    // The keys Eclipse Kanto's aws-connector documents, with its habit of "" for unset.
    let kanto = json!({
        "address": "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883",
        "tenantId": "t1", "clientId": "", "deviceId": "", "deviceIdPattern": "{{subject-cn}}",
        "caCert": "/etc/aws/AmazonRootCA1.pem", "cert": "/c.pem", "key": "/k.pem",
        "alpn": [], "username": "", "password": "", "authId": "",
        "localAddress": "tcp://mosquitto:1883", "localUsername": "", "localPassword": "",
        "localCACert": "", "localCert": "", "localKey": "",
        "logFile": "log/aws-connector.log", "logLevel": "INFO", "logFileSize": 2,
        "logFileCount": 5, "logFileMaxAge": 28,
        "topicFilter": "", "payloadFilters": [],
        "tpmDevice": "", "tpmHandle": 0, "tpmKey": "", "tpmKeyPub": ""
    });
    let c = parse_value(&kanto).unwrap();
    assert_eq!(c.key, Some(PrivateKey::File("/k.pem".into())));
    assert_eq!(c.tenant_id, "t1");
    assert_eq!(c.device_id, None);
    assert_eq!(c.client_id, None);
    assert_eq!(c.local.uri, "tcp://mosquitto:1883");
    assert_eq!(c.device_id_pattern.as_deref(), Some("{{subject-cn}}"));
}

#[test]
fn errors_name_the_key_and_the_fix() {
    let mut no_address = base();
    no_address.as_object_mut().unwrap().remove("address");
    let rows: Vec<(serde_json::Value, &str)> = vec![
        (no_address, "config key \"address\": is required"),
        (with("adress", json!("x")), "config key \"adress\" is unknown; did you mean \"address\"?"),
        (with("address", json!("tcp://h:1883")), "plain MQTT; AWS IoT needs TLS"),
        (with("address", json!("mqtts://h:99999")), "config key \"address\": port \"99999\""),
        (with("address", json!(5)), "config key \"address\": 5 is not a string"),
        (with("localCert", json!("/c.pem")), "config key \"localCert\": a local client certificate needs \"localCACert\""),
        (with("keepAliveSecs", json!("60")), "config key \"keepAliveSecs\": \"60\" is not an integer from 5 to 1200"),
        (with("buffer", json!({"whenFull": "dropNewest"})), "config key \"buffer.whenFull\": \"dropNewest\" is not one of \"dropOldest\", \"rejectNew\""),
        (with("buffer", json!({"onDamage": "ignore"})), "config key \"buffer.onDamage\": \"ignore\" is not one of \"refuse\", \"startWithSurvivors\""),
        (with("buffer", json!({"quarantineMaxMessages": 0})), "config key \"buffer.quarantineMaxMessages\""),
        (with("buffer", json!({"maxMesages": 5})), "config key \"buffer.maxMesages\" is unknown; did you mean \"buffer.maxMessages\"?"),
        (with("buffer", json!({"durability": "never"})), "config key \"buffer.durability\""),
        (with("buffer", json!(3)), "config key \"buffer\": 3 is not an object"),
        (with("reconnect", json!({"minDelayMs": 5000, "maxDelayMs": 100})), "config key \"reconnect.maxDelayMs\": 100 is smaller"),
        (with("quota", json!({"maxPayloadBytes": 200000})), "config key \"quota.maxPayloadBytes\""),
        (with("deviceId", json!("my device")), "config key \"deviceId\": \"my device\" contains ' '"),
        (with("tpmDevice", json!("/dev/tpm0")), "config key \"tpmDevice\": is set but \"key\" (/k.pem) is not a TPM key; name the TPM key with \"keyTpmHandle\""),
        (with("logLevel", json!("LOUD")), "config key \"logLevel\""),
        (with("statusTopic", json!("a/#")), "config key \"statusTopic\""),
        (with("localAddress", json!("ws://x")), "config key \"localAddress\""),
        (with("alpn", json!([1])), "config key \"alpn\": element 1 is not a string"),
        (with("clientId", json!("x".repeat(129))), "config key \"clientId\": is 129 bytes"),
        (with("topicFilter", json!("(unclosed")), "config key \"topicFilter\": \"(unclosed\" is not a valid regular expression"),
        (with("payloadFilters", json!(["ok", "[bad"])), "config key \"payloadFilters\": \"[bad\" is not a valid"),
    ];
    for (input, want) in rows {
        let err = parse_value(&input).expect_err(&format!("must fail: {input}"));
        assert!(
            err.to_string().contains(want),
            "input {input}\n got: {err}\nwant: {want}"
        );
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

#[test]
fn key_and_cert_go_together() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("key");
    assert!(parse_value(&v)
        .unwrap_err()
        .to_string()
        .contains("config key \"key\": is required when \"cert\" is set"));
    let mut v = base();
    v.as_object_mut().unwrap().remove("key");
    v.as_object_mut().unwrap().remove("cert");
    assert!(parse_value(&v)
        .unwrap_err()
        .to_string()
        .contains("config key \"cert\": is required"));
    v["username"] = json!("u");
    v["password"] = json!("p");
    assert!(parse_value(&v).is_ok());
}

#[test]
fn not_json_says_where() {
    let err = parse("{\"address\": ", &Overrides::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("config is not valid JSON"),
        "{err}"
    );
    assert!(parse("[]", &Overrides::default()).is_err());
}

#[test]
fn port_443_gets_the_aws_alpn() {
    let c = parse_value(&with("address", json!("mqtts://h:443"))).unwrap();
    assert_eq!(c.alpn, vec!["x-amzn-mqtt-ca".to_string()]);
    let c = parse_value(&with("alpn", json!("a b"))).unwrap();
    assert_eq!(c.alpn, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn overrides_replace_file_values() {
    let o = Overrides {
        address: Some("ssl://other:8884".into()),
        device_id: Some("dev-7".into()),
        local_address: Some("tcp://127.0.0.1:2000".into()),
        buffer_path: Some("/tmp/b".into()),
        log_level: Some("debug".into()),
    };
    let c = parse(&base().to_string(), &o).unwrap();
    assert_eq!(
        c.endpoint,
        Endpoint {
            host: "other".into(),
            port: 8884
        }
    );
    assert_eq!(c.device_id.as_deref(), Some("dev-7"));
    assert_eq!(c.local.uri, "tcp://127.0.0.1:2000");
    assert_eq!(c.buffer.path, PathBuf::from("/tmp/b"));
    assert_eq!(c.log_level, "debug");
}

#[test]
fn endpoint_forms() {
    let rows = [
        ("mqtts://h", Ok(("h", 8883))),
        ("ssl://h:8884/", Ok(("h", 8884))),
        ("tls://10.0.0.1:443", Ok(("10.0.0.1", 443))),
        ("h:8883", Err("is not scheme://host:port")),
        ("mqtts://:8883", Err("is not a host name")),
        ("wss://h", Err("scheme \"wss\" is not supported")),
    ];
    for (input, want) in rows {
        match (parse_endpoint(input), want) {
            (Ok(e), Ok((h, p))) => assert_eq!((e.host.as_str(), e.port), (h, p), "{input}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = include_str!("../../config/awslink.example.json");
    let c = parse(text, &Overrides::default()).unwrap();
    assert_eq!(c.buffer.path, PathBuf::from("/var/lib/awslink"));
}

#[test]
fn tpm_key_settings_by_table() {
    use awslink_actors::tpm::{TpmKey, TpmKeySource};
    let tpm = |device: &str, source| {
        Some(PrivateKey::Tpm(TpmKey {
            device: device.into(),
            source,
        }))
    };
    let kanto = TpmKeySource::KantoBlobs {
        parent: 0x8100_0000,
        private: "/k.priv".into(),
        public: "/k.pub".into(),
    };
    let rows: Vec<(serde_json::Value, Option<PrivateKey>)> = vec![
        (
            json!({"key": "", "keyTpmHandle": "0x81000001"}),
            tpm("", TpmKeySource::Persistent(0x8100_0001)),
        ),
        (
            json!({"key": "", "keyTpmHandle": 2164260865u32, "tpmDevice": "/dev/tpmrm0"}),
            tpm("/dev/tpmrm0", TpmKeySource::Persistent(0x8100_0001)),
        ),
        // Kanto: the parent's handle as a decimal number, the blobs as files; key unset.
        (
            json!({"key": "", "tpmDevice": "/dev/tpmrm0", "tpmHandle": 2164260864u32, "tpmKey": "/k.priv", "tpmKeyPub": "/k.pub"}),
            tpm("/dev/tpmrm0", kanto.clone()),
        ),
        (
            json!({"key": "", "tpmDevice": "swtpm:host=127.0.0.1,port=2321", "tpmHandle": "0x81000000", "tpmKey": "/k.priv", "tpmKeyPub": "/k.pub"}),
            tpm("swtpm:host=127.0.0.1,port=2321", kanto),
        ),
        // Kanto's unset values: tpmHandle 0 and empty strings.
        (
            json!({"tpmDevice": "", "tpmHandle": 0, "tpmKey": "", "tpmKeyPub": ""}),
            Some(PrivateKey::File("/k.pem".into())),
        ),
    ];
    for (settings, want) in rows {
        let mut v = base();
        for (k, val) in settings.as_object().unwrap() {
            v[k] = val.clone();
        }
        let got = parse_value(&v).map(|c| c.key);
        assert_eq!(got, Ok(want), "{settings}");
    }
}

#[test]
fn tpm_key_mistakes_name_the_key() {
    let rows: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"keyTpmHandle": "0x81000001"}),
            "config key \"key\": is set together with keyTpmHandle",
        ),
        (
            json!({"key": "", "keyTpmHandle": "0x01000001"}),
            "config key \"keyTpmHandle\": 0x1000001 is not a persistent handle",
        ),
        (
            json!({"key": "", "keyTpmHandle": "eighty-one"}),
            "config key \"keyTpmHandle\": \"eighty-one\" is not a TPM handle",
        ),
        (
            json!({"key": "", "keyTpmHandle": true}),
            "config key \"keyTpmHandle\": true is not a TPM handle",
        ),
        (
            json!({"key": "", "tpmHandle": 2164260864u32, "tpmKey": "/k.priv"}),
            "config key \"tpmKeyPub\": is required",
        ),
        (
            json!({"key": "", "tpmKey": "/k.priv", "tpmKeyPub": "/k.pub"}),
            "config key \"tpmHandle\": is required",
        ),
        (
            json!({"tpmHandle": 2164260864u32, "tpmKey": "/k.priv", "tpmKeyPub": "/k.pub"}),
            "config key \"key\": is set together with tpmKey",
        ),
        (
            json!({"key": "", "keyTpmHandle": "0x81000001", "tpmHandle": 2164260864u32, "tpmKey": "/a", "tpmKeyPub": "/b"}),
            "config key \"keyTpmHandle\": is set together with Kanto's",
        ),
        (
            json!({"key": "", "keyTpmHandle": "0x81000001", "tpmDevice": "tpmrm0"}),
            "config key \"tpmDevice\": \"tpmrm0\" is neither a device path",
        ),
        (
            json!({"key": "", "tpmDevice": "/dev/tpmrm0"}),
            "config key \"tpmDevice\": is set but no TPM key is named",
        ),
    ];
    for (settings, want) in rows {
        let mut v = base();
        for (k, val) in settings.as_object().unwrap() {
            v[k] = val.clone();
        }
        let err = parse_value(&v).expect_err(&format!("must fail: {settings}"));
        assert!(
            err.to_string().contains(want),
            "{settings}\n got: {err}\nwant: {want}"
        );
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

#[test]
fn a_tss2_key_file_in_key_is_a_tpm_key() {
    let dir = tempfile::tempdir().unwrap();
    let tss2 = dir.path().join("device.tss2.pem");
    std::fs::write(
        &tss2,
        "-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n-----END TSS2 PRIVATE KEY-----\n",
    )
    .unwrap();
    let plain = dir.path().join("device.key");
    std::fs::write(
        &plain,
        "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let key_of = |path: &std::path::Path, device: serde_json::Value| {
        let mut v = with("key", json!(path));
        v["tpmDevice"] = device;
        parse_value(&v).map(|c| c.key)
    };
    assert_eq!(
        key_of(&tss2, json!("")),
        Ok(Some(PrivateKey::Tpm(awslink_actors::tpm::TpmKey {
            device: String::new(),
            source: awslink_actors::tpm::TpmKeySource::Tss2File(tss2.clone()),
        })))
    );
    assert_eq!(
        key_of(&plain, json!("")),
        Ok(Some(PrivateKey::File(plain.clone())))
    );
    assert!(key_of(&plain, json!("/dev/tpmrm0")).is_err());
}

#[test]
fn routes_are_read_in_order() {
    let c = parse_value(&with(
        "routes",
        json!([
            {"filter": "telemetry///hot/#", "basicIngestRule": "hot_path"},
            {"filter": "telemetry/#", "basicIngestRule": "telemetry_all"},
        ]),
    ))
    .unwrap();
    assert_eq!(
        c.routes.routes(),
        &[
            Route {
                filter: "telemetry///hot/#".into(),
                rule: "hot_path".into()
            },
            Route {
                filter: "telemetry/#".into(),
                rule: "telemetry_all".into()
            },
        ]
    );
    assert!(parse_value(&base()).unwrap().routes.is_empty());
    assert!(parse_value(&with("routes", json!([])))
        .unwrap()
        .routes
        .is_empty());
}

#[test]
fn route_mistakes_name_the_key_the_index_and_the_fix() {
    let ok = json!({"filter": "telemetry/#", "basicIngestRule": "r1"});
    let rows: Vec<(serde_json::Value, &str)> = vec![
        (json!({"filter": "telemetry/#"}), "config key \"routes\": {\"filter\":\"telemetry/#\"} is not a list of objects"),
        (json!(["telemetry/#"]), "config key \"routes\": element 0 (\"telemetry/#\") is not an object"),
        (json!([ok, {"basicIngestRule": "r2"}]), "config key \"routes[1].filter\": is required: the local topic filter"),
        (json!([{"filter": "telemetry/#"}]), "config key \"routes[0].basicIngestRule\": is required: the name of the AWS IoT rule"),
        (json!([ok, {"filter": "telemetry/#/x", "basicIngestRule": "r"}]), "config key \"routes[1].filter\": \"telemetry/#/x\" is not an MQTT topic filter: # must be a whole level and the last one"),
        (json!([{"filter": "t/a+", "basicIngestRule": "r"}]), "config key \"routes[0].filter\": \"t/a+\" is not an MQTT topic filter: + must be a whole level"),
        (json!([{"filter": 5, "basicIngestRule": "r"}]), "config key \"routes[0].filter\": 5 is not a string"),
        (json!([{"filter": "t/#", "basicIngestRule": "my-rule"}]), "config key \"routes[0].basicIngestRule\": \"my-rule\" contains '-'; an AWS IoT rule name allows only a-z A-Z 0-9 _; use the rule's name exactly as in AWS IoT"),
        (json!([{"filter": "t/#", "basicIngestRule": "r".repeat(129)}]), "config key \"routes[0].basicIngestRule\": \"rrrr"),
        (json!([{"filter": "t/#", "basicIngestRule": "r", "rule": "x"}]), "config key \"routes[0].rule\" is unknown"),
        (json!([{"filter": "t/#", "basicIngestRul": "r"}]), "config key \"routes[0].basicIngestRul\" is unknown; did you mean \"routes[0].basicIngestRule\"?"),
    ];
    for (routes, want) in rows {
        let err = parse_value(&with("routes", routes.clone()))
            .expect_err(&format!("must fail: {routes}"));
        assert!(
            err.to_string().contains(want),
            "routes {routes}\n got: {err}\nwant: {want}"
        );
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

#[test]
fn pkcs11_key_settings_by_table() {
    use awslink_actors::pkcs11::Pkcs11Key;
    let uri = "pkcs11:token=gw;object=device;type=private";
    let ok = json!({"key": "", "keyPkcs11": uri, "pkcs11Module": "/usr/lib/softhsm/libsofthsm2.so", "pkcs11Pin": "1234"});
    let mut v = base();
    for (k, val) in ok.as_object().unwrap() {
        v[k] = val.clone();
    }
    let key = parse_value(&v).unwrap().key;
    assert_eq!(
        key,
        Some(PrivateKey::Pkcs11(Pkcs11Key {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            uri: uri.into(),
            pin: Some("1234".into()),
        }))
    );
    assert!(
        !format!("{key:?}").contains("1234"),
        "the PIN stays out of Debug"
    );
    let rows: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"keyPkcs11": uri, "pkcs11Module": "/m.so"}),
            "config key \"key\": is set together with keyPkcs11",
        ),
        (
            json!({"key": "", "keyPkcs11": uri}),
            "config key \"pkcs11Module\": is required",
        ),
        (
            json!({"key": "", "keyPkcs11": "token=gw", "pkcs11Module": "/m.so"}),
            "config key \"keyPkcs11\": is not a PKCS #11 URI",
        ),
        (
            json!({"key": "", "keyPkcs11": format!("{uri};pin-value=1234"), "pkcs11Module": "/m.so"}),
            "config key \"keyPkcs11\": carries the PIN",
        ),
        (
            json!({"key": "", "keyPkcs11": uri, "pkcs11Module": "/m.so", "keyTpmHandle": "0x81000001"}),
            "config key \"keyPkcs11\": is set together with TPM settings",
        ),
        (
            json!({"pkcs11Pin": "1234"}),
            "config key \"pkcs11Pin\": is set but \"keyPkcs11\"",
        ),
    ];
    for (settings, want) in rows {
        let mut v = base();
        for (k, val) in settings.as_object().unwrap() {
            v[k] = val.clone();
        }
        let err = parse_value(&v).expect_err(&format!("must fail: {settings}"));
        assert!(
            err.to_string().contains(want),
            "{settings}\n got: {err}\nwant: {want}"
        );
        assert!(!err.to_string().contains("1234\""), "no PIN in: {err}");
    }
}

#[test]
fn lanes_default_and_configured() {
    assert_eq!(parse_value(&base()).unwrap().lanes, LaneRules::default());
    let c = parse_value(&with(
        "lanes",
        json!({
            "control": {"filters": ["event/+/+/alarm"], "maxAgeSecs": 30},
            "events": {"minShare": 0.3},
            "telemetry": {"filters": ["event/+/+/heartbeat", "e/#"], "minShare": 0.05, "maxAgeSecs": 86400}
        }),
    ))
    .unwrap();
    let lanes = &c.lanes;
    let rows = [
        ("event/t/d/alarm", Lane::Control),
        ("event/t/d/heartbeat", Lane::Telemetry),
        ("e/t/d", Lane::Telemetry),
        ("event/t/d", Lane::Events),
        ("command//d/res/1/200", Lane::Control),
    ];
    for (topic, lane) in rows {
        assert_eq!(lanes.lane_of(topic), lane, "{topic}");
    }
    let settings = |l| lanes.settings(l);
    assert_eq!(settings(Lane::Control).max_age_secs, Some(30));
    assert_eq!(settings(Lane::Events).min_share, 0.3);
    assert_eq!(settings(Lane::Events).max_age_secs, None);
    assert_eq!(settings(Lane::Telemetry).min_share, 0.05);
    assert_eq!(settings(Lane::Telemetry).max_age_secs, Some(86_400));
    // Control's filters first, in configuration order.
    let order: Vec<&str> = lanes.filters().iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(order, ["event/+/+/alarm", "event/+/+/heartbeat", "e/#"]);
}

#[test]
fn lane_mistakes_name_the_key_and_the_fix() {
    #[rustfmt::skip]
    let rows: Vec<(serde_json::Value, &str)> = vec![
        (json!({"bulk": {}}), "config key \"lanes.bulk\" is unknown; known keys here: control, events, telemetry"),
        (json!({"telemetri": {}}), "config key \"lanes.telemetri\" is unknown; did you mean \"lanes.telemetry\"?"),
        (json!([]), "config key \"lanes\": [] is not an object"),
        (json!({"events": {"filters": ["event/#/x"]}}), "config key \"lanes.events.filters\": \"event/#/x\" is not an MQTT topic filter: # must be a whole level and the last one"),
        (json!({"events": {"filters": [5]}}), "config key \"lanes.events.filters\": element 5 is not a string"),
        (json!({"control": {"filters": ["e/#"]}, "telemetry": {"filters": ["e/#"]}}), "config key \"lanes.telemetry.filters\": \"e/#\" is already a filter of lanes.control"),
        (json!({"events": {"minShare": 1.0}}), "config key \"lanes.events.minShare\": 1.0 is not a fraction from 0 up to 1"),
        (json!({"events": {"minShare": -0.1}}), "config key \"lanes.events.minShare\": -0.1 is not a fraction"),
        (json!({"telemetry": {"minShare": "10%"}}), "config key \"lanes.telemetry.minShare\": \"10%\" is not a fraction"),
        (json!({"events": {"minShare": 0.6}, "telemetry": {"minShare": 0.4}}), "config key \"lanes.telemetry.minShare\": events' and telemetry's minimum shares sum to 1; they must stay below 1"),
        (json!({"control": {"minShare": 0.1}}), "config key \"lanes.control.minShare\": control is never behind another lane"),
        (json!({"events": {"maxAgeSecs": 0}}), "config key \"lanes.events.maxAgeSecs\": 0 would expire every message"),
        (json!({"events": {"maxAgeSecs": -5}}), "config key \"lanes.events.maxAgeSecs\": -5 is not an integer"),
        (json!({"events": {"maxAgeSec": 5}}), "config key \"lanes.events.maxAgeSec\" is unknown; did you mean \"lanes.events.maxAgeSecs\"?"),
    ];
    for (lanes, want) in rows {
        let err =
            parse_value(&with("lanes", lanes.clone())).expect_err(&format!("must fail: {lanes}"));
        assert!(
            err.to_string().starts_with(want),
            "lanes {lanes}\n got: {err}\nwant: {want}"
        );
    }
}
