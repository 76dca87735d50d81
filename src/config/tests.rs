use super::*;
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
    let mut kanto = kanto;
    kanto.as_object_mut().unwrap().remove("tpmHandle");
    let c = parse_value(&kanto).unwrap();
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
        (with("keepAliveSecs", json!("60")), "config key \"keepAliveSecs\": \"60\" is not an integer from 5 to 1200"),
        (with("buffer", json!({"whenFull": "dropNewest"})), "config key \"buffer.whenFull\": \"dropNewest\" is not one of \"dropOldest\", \"rejectNew\""),
        (with("buffer", json!({"maxMesages": 5})), "config key \"buffer.maxMesages\" is unknown; did you mean \"buffer.maxMessages\"?"),
        (with("buffer", json!({"durability": "never"})), "config key \"buffer.durability\""),
        (with("buffer", json!(3)), "config key \"buffer\": 3 is not an object"),
        (with("reconnect", json!({"minDelayMs": 5000, "maxDelayMs": 100})), "config key \"reconnect.maxDelayMs\": 100 is smaller"),
        (with("quota", json!({"maxPayloadBytes": 200000})), "config key \"quota.maxPayloadBytes\""),
        (with("deviceId", json!("my device")), "config key \"deviceId\": \"my device\" contains ' '"),
        (with("tpmDevice", json!("/dev/tpm0")), "config key \"tpmDevice\": TPM-held keys are not supported"),
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
