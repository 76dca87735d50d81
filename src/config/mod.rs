//! awslink's configuration: a Kanto aws-connector `config.json` loads unchanged, awslink's own
//! settings live in nested objects. Parsing and validation are pure; file checks
//! (certificates readable, key permissions) are in [`files`].

mod batching;
pub mod files;
mod lanes;
mod reader;
mod routes;
mod tpm;

use std::path::PathBuf;
use std::time::Duration;

pub use awslink_actors::batching::Batching;
pub use awslink_actors::lanes::LaneRules;
pub use awslink_actors::routes::Routes;
use awslink_actors::shadow::convert::Filters;
pub use awslink_actors::tls::PrivateKey;
use serde_json::Value;

use reader::Reader;

/// A configuration mistake: one line that names the key or file and the fix. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

/// The cloud endpoint from `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name (SNI, hostname verification).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

pub use awslink_actors::store::{OnDamage, WhenFull, QUARANTINE_MAX_MESSAGES};

/// `buffer` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferSettings {
    /// Journal directory.
    pub path: PathBuf,
    /// Most messages held.
    pub max_messages: u64,
    /// Most bytes held.
    pub max_bytes: u64,
    /// Policy when full.
    pub when_full: WhenFull,
    /// True for `fsync` (flush before PUBACK), false for `batched`.
    pub fsync: bool,
    /// Group-commit interval in `batched` mode.
    pub flush_every_ms: u64,
    /// sled page cache.
    pub cache_bytes: u64,
    /// Commands from the cloud not yet delivered locally are kept this long across restarts.
    pub downlink_ttl: Duration,
    /// Free disk space the journal leaves; below it the local intake pauses.
    pub min_free_bytes: u64,
    /// Most messages kept in the quarantine (`quarantineMaxMessages`).
    pub quarantine_max_messages: u64,
    /// What to do with a journal that lost committed messages (`onDamage`).
    pub on_damage: OnDamage,
}

/// `reconnect` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectSettings {
    /// Shortest delay between attempts.
    pub min_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// A connection up this long resets the backoff.
    pub reset_after: Duration,
}

/// `quota` settings (AWS IoT per-connection limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Publishes per second.
    pub publish_per_second: u64,
    /// Bytes per second.
    pub bytes_per_second: u64,
    /// Largest payload accepted.
    pub max_payload_bytes: u64,
}

use awslink_actors::address::{split_host_port, LocalAddress};
/// Local broker connection (the LocalBroker's own settings type).
pub use awslink_actors::local::LocalConnection as LocalSettings;
use awslink_actors::tls::{TlsIdentity, AWS_ALPN_CERT, CLOUD_SETTINGS};
use awslink_actors::topics;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// AWS IoT endpoint.
    pub endpoint: Endpoint,
    /// MQTT client id; `None` = the device id.
    pub client_id: Option<String>,
    /// Hono tenant id.
    pub tenant_id: String,
    /// Device id = thing name; `None` = from the certificate.
    pub device_id: Option<String>,
    /// Kanto's `deviceIdPattern` (`{{subject-cn}}`, `{{subject-dn}}`).
    pub device_id_pattern: Option<String>,
    /// CA file; `None` = system trust store.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key: a file or a TPM key.
    pub key: Option<PrivateKey>,
    /// ALPN protocols.
    pub alpn: Vec<String>,
    /// Custom authorizer username.
    pub username: Option<String>,
    /// Custom authorizer password.
    pub password: Option<String>,
    /// Local broker.
    pub local: LocalSettings,
    /// `logLevel` as an env_logger filter.
    pub log_level: String,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// Kanto's `topicFilter` (used by the shadow mapper).
    pub topic_filter: Option<String>,
    /// Kanto's `payloadFilters` (used by the shadow mapper).
    pub payload_filters: Vec<String>,
    /// MQTT keep-alive to the cloud.
    pub keep_alive: Duration,
    /// Journal.
    pub buffer: BufferSettings,
    /// Backoff.
    pub reconnect: ReconnectSettings,
    /// AWS limits.
    pub quota: QuotaSettings,
    /// Ditto ⇄ shadow conversion on.
    pub shadow_enabled: bool,
    /// Retained status topic.
    pub status_topic: String,
    /// Metrics log interval (0 = off).
    pub metrics_interval: Duration,
    /// Basic Ingest routes (`routes`), first match wins.
    pub routes: Routes,
    /// Priority lanes (`lanes`): operator filters and per-lane drain settings.
    pub lanes: LaneRules,
    /// Opt-in batching rules (`batching`), first match wins; empty: nothing is batched.
    pub batching: Batching,
}

/// Values given on the command line; they replace the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--address`.
    pub address: Option<String>,
    /// `--device-id`.
    pub device_id: Option<String>,
    /// `--local-address`.
    pub local_address: Option<String>,
    /// `--buffer-path`.
    pub buffer_path: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

impl Config {
    /// The cloud connection's TLS identity (CA, certificate, key, ALPN), for every client that
    /// talks to the endpoint: the link, `check`, the diagnosis probe.
    pub fn cloud_tls(&self) -> TlsIdentity {
        TlsIdentity {
            ca: self.ca_cert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            alpn: self.alpn.clone(),
            settings: CLOUD_SETTINGS,
        }
    }
}

impl Overrides {
    fn apply(&self, root: &mut serde_json::Map<String, Value>) {
        let mut set = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                root.insert(key.to_string(), Value::String(v.clone()));
            }
        };
        set("address", &self.address);
        set("deviceId", &self.device_id);
        set("localAddress", &self.local_address);
        set("logLevel", &self.log_level);
        if let Some(path) = &self.buffer_path {
            let buffer = root
                .entry("buffer")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(b) = buffer {
                b.insert("path".into(), Value::String(path.clone()));
            }
        }
    }
}

/// Parses and validates a configuration file's text.
pub fn parse(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ConfigError::new(format!(
            "config is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(mut root) = value else {
        return Err(ConfigError::new(
            "config must be a JSON object ({ \"address\": ... })",
        ));
    };
    overrides.apply(&mut root);
    let mut r = Reader::new(&root);
    let config = read_root(&mut r)?;
    r.finish()?;
    Ok(config)
}

fn read_root(r: &mut Reader<'_>) -> Result<Config, ConfigError> {
    let address = r.required_string(
        "address",
        "the AWS IoT endpoint, e.g. \"mqtts://xxxx-ats.iot.eu-west-1.amazonaws.com:8883\"",
    )?;
    let endpoint = parse_endpoint(&address).map_err(|e| r.error("address", e))?;
    let client_id = r.string("clientId")?;
    if let Some(id) = &client_id {
        if id.len() > 128 {
            return Err(r.error(
                "clientId",
                format!("is {} bytes; AWS IoT allows 128", id.len()),
            ));
        }
    }
    let tenant_id = r
        .string("tenantId")?
        .unwrap_or_else(|| "default-tenant-id".into());
    let device_id = r.string("deviceId")?;
    if let Some(id) = &device_id {
        check_thing_name(id).map_err(|e| r.error("deviceId", e))?;
    }
    let device_id_pattern = r.string("deviceIdPattern")?;
    let ca_cert = r.string("caCert")?.map(PathBuf::from);
    let cert = r.string("cert")?.map(PathBuf::from);
    let key = tpm::read_key(r)?;
    let mut alpn = r.string_list("alpn")?;
    let username = r.string("username")?;
    let password = r.string("password")?;
    let _auth_id = r.string("authId")?;
    match (&cert, &key, &username) {
        (Some(_), None, _) => return Err(r.error("key", "is required when \"cert\" is set: the client certificate's private key file (or \"keyTpmHandle\" for a key in a TPM)")),
        (None, Some(_), _) => return Err(r.error("cert", "is required when \"key\" is set: the client certificate file")),
        (None, None, None) => return Err(r.error("cert", "is required: the device certificate file (with \"key\"), or set \"username\"/\"password\" for a custom authorizer")),
        _ => {}
    }
    if endpoint.port == 443 && alpn.is_empty() {
        alpn.push(if username.is_some() {
            "mqtt".into()
        } else {
            AWS_ALPN_CERT.into()
        });
    }
    let local_address = r
        .string("localAddress")?
        .unwrap_or_else(|| "tcp://localhost:1883".into());
    let local_uri = LocalAddress::parse(&local_address)
        .map(|a| a.uri())
        .map_err(|e| r.error("localAddress", e))?;
    let local = LocalSettings {
        uri: local_uri,
        username: r.string("localUsername")?,
        password: r.string("localPassword")?,
        ca_cert: r.string("localCACert")?.map(PathBuf::from),
        cert: r.string("localCert")?.map(PathBuf::from),
        key: r.string("localKey")?.map(PathBuf::from),
        client_id: r
            .string("localClientId")?
            .unwrap_or_else(|| "awslink".into()),
    };
    if local.ca_cert.is_none() {
        for (key, set) in [
            ("localCert", local.cert.is_some()),
            ("localKey", local.key.is_some()),
        ] {
            if set {
                return Err(r.error(
                    key,
                    "a local client certificate needs \"localCACert\" too (the intake presents it only with an explicit CA); set \"localCACert\" to the CA of the local broker's certificate",
                ));
            }
        }
    }
    let log_level = r.one_of(
        "logLevel",
        &[
            "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "error", "warn", "info", "debug", "trace",
        ],
        "INFO",
    )?;
    let log_file = r.string("logFile")?.map(PathBuf::from);
    for kanto_rotation in ["logFileSize", "logFileCount", "logFileMaxAge"] {
        r.integer(kanto_rotation, 0, 0, u64::MAX)?;
    }
    let topic_filter = r.string("topicFilter")?;
    Filters::compile(topic_filter.as_deref(), &[]).map_err(|e| r.error("topicFilter", e))?;
    let payload_filters = r.string_list("payloadFilters")?;
    Filters::compile(None, &payload_filters).map_err(|e| r.error("payloadFilters", e))?;
    let keep_alive = Duration::from_secs(r.integer("keepAliveSecs", 60, 5, 1200)?);
    let buffer = r.object("buffer", read_buffer)?;
    let reconnect = r.object("reconnect", read_reconnect)?;
    let quota = r.object("quota", |q| {
        Ok(QuotaSettings {
            publish_per_second: q.integer("publishPerSecond", 100, 1, 100_000)?,
            bytes_per_second: q.integer("bytesPerSecond", 524_288, 1024, 1 << 40)?,
            max_payload_bytes: q.integer("maxPayloadBytes", 131_072, 1, 131_072)?,
        })
    })?;
    let shadow_enabled = r.object("shadow", |s| s.boolean("enabled", true))?;
    let status_topic = r
        .string("statusTopic")?
        .unwrap_or_else(|| topics::DEFAULT_STATUS_TOPIC.into());
    if status_topic.contains(['+', '#']) {
        return Err(r.error("statusTopic", "must not contain MQTT wildcards + or #"));
    }
    let metrics_interval = Duration::from_secs(r.integer("metricsIntervalSecs", 60, 0, 86_400)?);
    let routes = routes::read(r)?;
    let lanes = lanes::read(r)?;
    let batching = batching::read(r, quota.max_payload_bytes)?;
    Ok(Config {
        endpoint,
        client_id,
        tenant_id,
        device_id,
        device_id_pattern,
        ca_cert,
        cert,
        key,
        alpn,
        username,
        password,
        local,
        log_level: log_level.to_lowercase(),
        log_file,
        topic_filter,
        payload_filters,
        keep_alive,
        buffer,
        reconnect,
        quota,
        shadow_enabled,
        status_topic,
        metrics_interval,
        routes,
        lanes,
        batching,
    })
}

fn read_buffer(b: &mut Reader<'_>) -> Result<BufferSettings, ConfigError> {
    let when_full = match b.one_of("whenFull", &["dropOldest", "rejectNew"], "dropOldest")? {
        "rejectNew" => WhenFull::RejectNew,
        _ => WhenFull::DropOldest,
    };
    Ok(BufferSettings {
        path: PathBuf::from(
            b.string("path")?
                .unwrap_or_else(|| "/var/lib/awslink".into()),
        ),
        max_messages: b.integer("maxMessages", 1_000_000, 1, u64::MAX)?,
        max_bytes: b.integer("maxBytes", 536_870_912, 1024, u64::MAX)?,
        when_full,
        fsync: b.one_of("durability", &["fsync", "batched"], "fsync")? == "fsync",
        flush_every_ms: b.integer("flushEveryMs", 10, 1, 10_000)?,
        cache_bytes: b.integer("cacheBytes", 8_388_608, 65_536, 1 << 34)?,
        downlink_ttl: Duration::from_secs(b.integer("downlinkTtlSecs", 3600, 0, 30 * 86_400)?),
        min_free_bytes: b.integer("minFreeBytes", 67_108_864, 1_048_576, 1 << 40)?,
        quarantine_max_messages: b.integer(
            "quarantineMaxMessages",
            QUARANTINE_MAX_MESSAGES,
            1,
            100_000_000,
        )?,
        on_damage: match b.one_of("onDamage", &["refuse", "startWithSurvivors"], "refuse")? {
            "startWithSurvivors" => OnDamage::StartWithSurvivors,
            _ => OnDamage::Refuse,
        },
    })
}

fn read_reconnect(r: &mut Reader<'_>) -> Result<ReconnectSettings, ConfigError> {
    let min = r.integer("minDelayMs", 1000, 1, 3_600_000)?;
    let max = r.integer("maxDelayMs", 120_000, 1, 86_400_000)?;
    if max < min {
        return Err(r.error(
            "maxDelayMs",
            format!("{max} is smaller than reconnect.minDelayMs ({min})"),
        ));
    }
    let reset = r.integer("resetAfterMs", 30_000, 0, 86_400_000)?;
    Ok(ReconnectSettings {
        min_delay: Duration::from_millis(min),
        max_delay: Duration::from_millis(max),
        reset_after: Duration::from_millis(reset),
    })
}

/// `scheme://host[:port]` for the cloud: TLS schemes only, port 8883 by default.
pub fn parse_endpoint(address: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("{address:?} is not scheme://host:port, e.g. \"mqtts://xxxx-ats.iot.eu-west-1.amazonaws.com:8883\""))?;
    match scheme {
        "mqtts" | "ssl" | "tls" => {}
        "tcp" | "mqtt" => {
            return Err(format!(
                "{address:?} is plain MQTT; AWS IoT needs TLS: use mqtts://{rest}"
            ))
        }
        other => return Err(format!("scheme {other:?} is not supported; use mqtts://")),
    }
    let (host, port) = split_host_port(rest, 8883)?;
    Ok(Endpoint { host, port })
}

/// AWS thing names: `[a-zA-Z0-9:_-]{1,128}`.
pub fn check_thing_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "{name:?} must be 1 to 128 characters (an AWS thing name)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; an AWS thing name allows only a-z A-Z 0-9 : _ -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
