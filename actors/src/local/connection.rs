//! How awslink reaches the local Mosquitto: the [`LocalConnection`] settings both local sessions
//! share, and the paho options of the publishing session `{id}-pub` (commands, status, Ditto
//! responses, the status topic's last will). The intake's rumqttc options are built from the same
//! settings in [`intake`](super::intake).

use std::path::PathBuf;
use std::time::Duration;

use paho_mqtt as mqtt;

use crate::status::last_will_payload;
use crate::tls::{is_tls_uri, PrivateKey, TlsIdentity, LOCAL_SETTINGS};

/// How to reach the local broker (the `local*` configuration keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConnection {
    /// paho URI: `tcp://host:port` or `ssl://host:port`.
    pub uri: String,
    /// Fixed client id of the persistent session.
    pub client_id: String,
    /// Optional credentials.
    pub username: Option<String>,
    /// Never logged.
    pub password: Option<String>,
    /// CA for a TLS local broker.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate for a TLS local broker.
    pub cert: Option<PathBuf>,
    /// Client key for a TLS local broker.
    pub key: Option<PathBuf>,
}

#[cfg(test)]
impl LocalConnection {
    /// A plain connection to `uri` with client id `awslink`, no credentials, no TLS (tests).
    pub(crate) fn for_tests(uri: &str) -> Self {
        LocalConnection {
            uri: uri.into(),
            client_id: "awslink".into(),
            username: None,
            password: None,
            ca_cert: None,
            cert: None,
            key: None,
        }
    }
}

impl LocalConnection {
    /// The TLS identity of both local sessions (CA, optional client certificate, no ALPN).
    pub fn tls(&self) -> TlsIdentity {
        TlsIdentity {
            ca: self.ca_cert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone().map(PrivateKey::File),
            alpn: Vec::new(),
            settings: LOCAL_SETTINGS,
        }
    }
}

/// Client id of the publishing session: the persistent session (and its queued messages) keeps
/// the configured id, so upgrading from a single-session awslink loses nothing.
pub fn publisher_client_id(client_id: &str) -> String {
    format!("{client_id}-pub")
}

/// The publishing session's paho client: no persistence, and up to 10,000 publishes buffered
/// while Mosquitto is away. Callbacks are the caller's.
pub fn create_client(c: &LocalConnection) -> Result<mqtt::AsyncClient, String> {
    mqtt::CreateOptionsBuilder::new()
        .server_uri(&c.uri)
        .client_id(publisher_client_id(&c.client_id))
        .persistence(None)
        .send_while_disconnected(true)
        .allow_disconnected_send_at_anytime(true)
        .max_buffered_messages(10_000)
        .create_client()
        .map_err(|e| format!("cannot create the local MQTT client: {e}"))
}

/// The publishing session's connect options: a clean session that reconnects by itself and
/// leaves the retained last will on `status_topic`; TLS for `ssl://` / `mqtts://` URIs.
pub fn connect_options(
    c: &LocalConnection,
    status_topic: &str,
) -> Result<mqtt::ConnectOptions, String> {
    let will = mqtt::MessageBuilder::new()
        .topic(status_topic)
        .payload(last_will_payload())
        .qos(1)
        .retained(true)
        .finalize();
    let mut opts = mqtt::ConnectOptionsBuilder::new_v3();
    opts.clean_session(true)
        .keep_alive_interval(Duration::from_secs(30))
        .automatic_reconnect(Duration::from_millis(500), Duration::from_secs(5))
        .will_message(will);
    if let Some(user) = &c.username {
        opts.user_name(user);
    }
    if let Some(password) = &c.password {
        opts.password(password.as_str());
    }
    if is_tls_uri(&c.uri) {
        opts.ssl_options(c.tls().paho_ssl_options().map_err(|e| e.to_string())?);
    }
    Ok(opts.finalize())
}
