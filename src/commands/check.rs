//! `awslink check`: one connection to the cloud endpoint, step by step — DNS resolve, TCP
//! connect, TLS handshake (openssl crate, so each failure is named precisely), MQTT CONNECT,
//! SUBSCRIBE and a PUBLISH that must come back (paho, with CloudLink's options), a probe per
//! Basic Ingest route ([`routes`]) — each printed with its duration. A failed step ends the check with one line saying what to fix.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use awslink_actors::cloud::tls_probe::{self, alert_name, is_alert_about_us, ProbeTarget};
use awslink_actors::tls::{TlsClient, TlsError, TlsFile};
use openssl::ssl::{HandshakeError, MidHandshakeSslStream, SslStream, SslVerifyMode, SslVersion};
use paho_mqtt as mqtt;

use crate::cli::CheckArgs;
use crate::commands::{cert, random_hex};
use crate::config::{Config, PrivateKey};
use crate::failure::Failure;

mod routes;

/// OpenSSL verify results (`X509_V_ERR_*`) that get their own diagnosis.
const V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const V_ERR_CERT_HAS_EXPIRED: i32 = 10;
const V_ERR_HOSTNAME_MISMATCH: i32 = 62;
const V_ERR_IP_ADDRESS_MISMATCH: i32 = 64;

/// Why a step failed: what was observed (printed on the step's line) and what to do (the error).
struct Diagnosis {
    /// The configuration is unusable (exit 2), not a failed step (exit 1).
    config: bool,
    observed: String,
    advice: String,
}

impl Diagnosis {
    fn new(observed: impl Into<String>, advice: impl Into<String>) -> Self {
        Diagnosis {
            config: false,
            observed: observed.into(),
            advice: advice.into(),
        }
    }

    fn config(observed: impl Into<String>, advice: impl Into<String>) -> Self {
        Diagnosis {
            config: true,
            ..Diagnosis::new(observed, advice)
        }
    }
}

type StepResult<T> = Result<(T, String), Diagnosis>;

/// `awslink check`: loads the configuration and checks the connection it describes.
pub fn run(args: &CheckArgs) -> Result<(), Failure> {
    let (config, device_id) = super::load(&args.config)?;
    diagnose(&config, &device_id, Duration::from_secs(args.timeout))
}

/// Runs the check against the configured endpoint; `Ok` only when the probe came back.
/// `timeout` bounds each network step and the wait for the echo.
fn diagnose(config: &Config, device_id: &str, timeout: Duration) -> Result<(), Failure> {
    let client_id = config.client_id.as_deref().unwrap_or(device_id);
    let host = &config.endpoint.host;
    let port = config.endpoint.port;
    println!("checking {host}:{port} as client id {client_id:?} (device {device_id:?})");
    println!("note: AWS IoT closes any other connection with this client id; a running awslink reconnects by itself");
    if let Some(held) = config.key.as_ref().filter(|k| k.file().is_none()) {
        println!(
            "device key {} (it signs the handshake there)",
            held.describe()
        );
    }
    let addrs = step("DNS resolve", || resolve(host, port, timeout))?;
    let tcp = step("TCP connect", || connect_tcp(&addrs, host, port, timeout))?;
    step("TLS handshake", || handshake(config, tcp, timeout))?;
    let topic = format!("{device_id}/awslink/check");
    let (client, rx) = step("MQTT CONNECT", || mqtt_connect(config, client_id, timeout))?;
    let result = round_trip(&client, &rx, &topic, timeout)
        .and_then(|()| routes::probe_all(config, device_id, &client));
    let _ = client.disconnect(None);
    result?;
    println!("check passed: awslink can connect, subscribe, publish and receive as {client_id:?}");
    Ok(())
}

/// SUBSCRIBE, PUBLISH and the echo, on an open connection.
fn round_trip(
    client: &mqtt::Client,
    rx: &mqtt::Receiver<Option<mqtt::Message>>,
    topic: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    step("SUBSCRIBE", || subscribe(client, topic))?;
    let token = step("PUBLISH", || publish(client, topic))?;
    step("echo", || wait_for_echo(rx, topic, &token, timeout))?;
    Ok(())
}

/// Runs one step, prints its line with the duration, and turns a diagnosis into the failure.
fn step<T>(name: &str, run: impl FnOnce() -> StepResult<T>) -> Result<T, Failure> {
    let started = Instant::now();
    let result = run();
    let ms = started.elapsed().as_millis();
    match result {
        Ok((value, detail)) => {
            println!("  ok    {name:<14} {ms:>6} ms  {detail}");
            Ok(value)
        }
        Err(d) => {
            println!("  FAIL  {name:<14} {ms:>6} ms  {}", d.observed);
            let message = format!("check failed at {name}: {}", d.advice);
            Err(if d.config {
                Failure::usage(message)
            } else {
                Failure::runtime(message)
            })
        }
    }
}

fn resolve(host: &str, port: u16, timeout: Duration) -> StepResult<Vec<SocketAddr>> {
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    });
    let fix = "check the host in \"address\" (your endpoint: aws iot describe-endpoint --endpoint-type iot:Data-ATS) and the gateway's DNS settings";
    let addrs = match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
        Ok(Ok(_)) => return Err(dns_failure(host, "no address", fix)),
        Ok(Err(e)) => return Err(dns_failure(host, &e.to_string(), fix)),
        Err(_) => {
            return Err(dns_failure(
                host,
                &format!("timed out after {} s", timeout.as_secs()),
                fix,
            ))
        }
    };
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    Ok((addrs, format!("{host} -> {}", list.join(", "))))
}

fn dns_failure(host: &str, error: &str, fix: &str) -> Diagnosis {
    Diagnosis::new(
        format!("cannot resolve {host}: {error}"),
        format!("DNS failure: {host} does not resolve; {fix}"),
    )
}

fn connect_tcp(
    addrs: &[SocketAddr],
    host: &str,
    port: u16,
    timeout: Duration,
) -> StepResult<TcpStream> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok((stream, format!("connected to {addr}"))),
            Err(e) => errors.push((*addr, e)),
        }
    }
    let observed: Vec<String> = errors.iter().map(|(a, e)| format!("{a}: {e}")).collect();
    let observed = observed.join("; ");
    let kind = |k: std::io::ErrorKind| errors.iter().any(|(_, e)| e.kind() == k);
    let advice = if kind(std::io::ErrorKind::TimedOut) {
        format!("TCP connect to {host}:{port} timed out after {} s: a firewall drops the traffic; allow outbound TCP port {port} to {host}", timeout.as_secs())
    } else if kind(std::io::ErrorKind::ConnectionRefused) {
        format!("TCP connection refused by {host}:{port}: nothing listens on that port; check the port in \"address\" (AWS IoT: 8883, or 443 with ALPN) and the host")
    } else {
        format!("TCP connect to {host}:{port} failed: check the gateway's network connection and routes")
    };
    Err(Diagnosis::new(observed, advice))
}

fn handshake(config: &Config, tcp: TcpStream, timeout: Duration) -> StepResult<()> {
    let host = &config.endpoint.host;
    let client = openssl_client(config)?;
    let mut tls = client
        .ssl_for(host)
        .map_err(|e| Diagnosis::new(format!("tls setup: {e}"), "OpenSSL could not be set up"))?;
    let server_names = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&server_names);
    tls.set_verify_callback(SslVerifyMode::PEER, move |ok, store| {
        if store.error_depth() == 0 {
            if let (Some(cert), Ok(mut slot)) = (store.current_cert(), seen.lock()) {
                *slot = Some(cert::certificate_names(cert));
            }
        }
        ok
    });
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let started = Instant::now();
    match tls.connect(tcp) {
        Ok(stream) => accepted(config, stream, started.elapsed()),
        Err(HandshakeError::Failure(mid)) => {
            let names = server_names.lock().ok().and_then(|mut n| n.take());
            Err(handshake_failure(config, &mid, names))
        }
        Err(HandshakeError::SetupFailure(e)) => Err(Diagnosis::new(
            format!("tls setup: {e}"),
            "OpenSSL could not start the handshake",
        )),
        Err(HandshakeError::WouldBlock(_)) => Err(Diagnosis::new(
            format!("no answer within {} s", timeout.as_secs()),
            format!("TLS handshake with {host} timed out: the endpoint (or a proxy) does not answer TLS on this port"),
        )),
    }
}

/// TLS 1.2 minimum, CA file or system store, client certificate and key, ALPN — the link's own
/// identity ([`Config::cloud_tls`]); the key must belong to the certificate.
fn openssl_client(config: &Config) -> Result<TlsClient, Diagnosis> {
    let tls = config.cloud_tls();
    let diagnose = |e| tls_diagnosis(e, tls.key.as_ref());
    let client = tls.openssl_client().map_err(diagnose)?;
    if !tls.key_matches_cert().map_err(diagnose)? {
        if let Some(key) = &tls.key {
            return Err(Diagnosis::config(
                format!("the key {} does not belong to the certificate", key.describe()),
                format!("config key \"{}\": the private key does not match \"cert\"; use the key the certificate was made for", key.setting()),
            ));
        }
    }
    Ok(client)
}

/// A TLS file (or TPM key) that cannot be used, as a diagnosis naming its setting.
fn tls_diagnosis(e: TlsError, key: Option<&PrivateKey>) -> Diagnosis {
    if let (TlsFile::Key, Some(held)) = (e.file, key) {
        if held.file().is_none() {
            return Diagnosis::config(format!("cannot use the key {}", held.describe()), e.problem);
        }
    }
    let what = match e.file {
        _ if e.setting.is_empty() => {
            return Diagnosis::new(
                format!("tls setup: {}", e.problem),
                "OpenSSL could not be set up",
            )
        }
        TlsFile::Ca => "a PEM CA certificate (Amazon Root CA 1)",
        TlsFile::Cert => "a PEM certificate",
        TlsFile::Key => "a PEM private key",
    };
    bad_file(e.setting, &e.path, what)
}

fn bad_file(key: &str, path: &Path, what: &str) -> Diagnosis {
    Diagnosis::config(
        format!("cannot load {}", path.display()),
        format!("config key \"{key}\": {} is not {what}", path.display()),
    )
}

/// The handshake completed: describe it, after the server's verdict on our certificate.
fn accepted(config: &Config, mut stream: SslStream<TcpStream>, took: Duration) -> StepResult<()> {
    let version = stream.ssl().version_str();
    let cipher = stream
        .ssl()
        .current_cipher()
        .map_or("?", |c| c.name())
        .to_string();
    let server = stream
        .ssl()
        .peer_certificate()
        .map_or_else(|| "?".into(), |c| cert::subject_cn(&c));
    let waited = server_verdict(config, &mut stream, took)?;
    let _ = stream.shutdown();
    let trust = match &config.ca_cert {
        Some(ca) => format!("caCert {}", ca.display()),
        None => "the system trust store".into(),
    };
    let client = match (&config.cert, waited) {
        (None, _) => "no client certificate".to_string(),
        (Some(_), None) => "client certificate accepted".to_string(),
        (Some(_), Some(w)) => format!(
            "client certificate accepted (no alert within {} ms)",
            w.as_millis()
        ),
    };
    Ok((
        (),
        format!(
            "{version} {cipher} in {} ms, server {server} verified against {trust} for {}, {client}",
            took.as_millis(),
            config.endpoint.host
        ),
    ))
}

/// With TLS 1.3 the server judges our certificate after the handshake: wait briefly for its
/// verdict (an alert, or silence while it waits for CONNECT). Returns how long it waited.
fn server_verdict(
    config: &Config,
    stream: &mut SslStream<TcpStream>,
    took: Duration,
) -> Result<Option<Duration>, Diagnosis> {
    if stream.ssl().version2() != Some(SslVersion::TLS1_3) || config.cert.is_none() {
        return Ok(None);
    }
    let wait = (took * 4).clamp(Duration::from_millis(250), Duration::from_secs(2));
    let _ = stream.get_ref().set_read_timeout(Some(wait));
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(client_rejected(config, &e.to_string()))
        }
        _ => Ok(Some(wait)),
    }
}

fn handshake_failure(
    config: &Config,
    mid: &MidHandshakeSslStream<TcpStream>,
    server_names: Option<String>,
) -> Diagnosis {
    let verify = mid.ssl().verify_result();
    if verify.as_raw() != 0 {
        let names = server_names.unwrap_or_else(|| "?".into());
        return server_rejected(config, &names, verify.as_raw(), verify.error_string());
    }
    let text = mid.error().to_string();
    if is_alert_about_us(&text) {
        return client_rejected(config, &text);
    }
    Diagnosis::new(
        format!("tls handshake failed: {text}"),
        format!(
            "TLS handshake with {} failed: is this an AWS IoT endpoint speaking TLS on port {}?",
            config.endpoint.host, config.endpoint.port
        ),
    )
}

/// We refused the server's certificate.
fn server_rejected(config: &Config, names: &str, code: i32, reason: &str) -> Diagnosis {
    let host = &config.endpoint.host;
    let observed = format!("server certificate refused: {reason}");
    let advice = match code {
        V_ERR_HOSTNAME_MISMATCH | V_ERR_IP_ADDRESS_MISMATCH => {
            format!("hostname mismatch: the server certificate is for {names}, not {host}; check the host in \"address\" (the ATS endpoint xxxx-ats.iot.REGION.amazonaws.com from aws iot describe-endpoint --endpoint-type iot:Data-ATS)")
        }
        V_ERR_CERT_HAS_EXPIRED | V_ERR_CERT_NOT_YET_VALID => format!(
            "server certificate not valid now ({reason}): check the gateway's clock (timedatectl)"
        ),
        _ => untrusted_advice(config, reason),
    };
    Diagnosis::new(observed, advice)
}

fn untrusted_advice(config: &Config, reason: &str) -> String {
    match &config.ca_cert {
        Some(ca) => format!("server certificate not trusted: it does not chain to caCert {} ({reason}); set \"caCert\" to Amazon Root CA 1 (https://www.amazontrust.com/repository/AmazonRootCA1.pem), or remove \"caCert\" to use the system store", ca.display()),
        None => format!("server certificate not trusted: it does not chain to the system trust store ({reason}); install the CA certificates (ca-certificates) or set \"caCert\" to Amazon Root CA 1 (https://www.amazontrust.com/repository/AmazonRootCA1.pem)"),
    }
}

/// The server refused our certificate.
fn client_rejected(config: &Config, text: &str) -> Diagnosis {
    let Some(cert) = &config.cert else {
        return Diagnosis::new(
            format!("server requires a client certificate ({})", alert_name(text)),
            "client certificate required: set \"cert\" and \"key\" (create them with awslink cert create)",
        );
    };
    let id = cert::aws_certificate_id_of(cert).unwrap_or_else(|| "?".into());
    Diagnosis::new(
        format!("client certificate rejected by the server ({})", alert_name(text)),
        format!("client certificate rejected by the server: {} is not registered or not ACTIVE in AWS IoT (certificate id {id}); check with aws iot describe-certificate --certificate-id {id}, register it (awslink cert create prints how) or activate it", cert.display()),
    )
}

/// The MQTT client with CloudLink's options, connected; messages arrive on the receiver.
fn mqtt_connect(
    config: &Config,
    client_id: &str,
    timeout: Duration,
) -> StepResult<(mqtt::Client, mqtt::Receiver<Option<mqtt::Message>>)> {
    let uri = format!("ssl://{}:{}", config.endpoint.host, config.endpoint.port);
    let create = mqtt::CreateOptionsBuilder::new()
        .server_uri(uri)
        .client_id(client_id)
        .persistence(None)
        .finalize();
    let mut client = mqtt::Client::new(create).map_err(|e| {
        Diagnosis::new(
            format!("cannot create the MQTT client: {e}"),
            "paho could not be set up",
        )
    })?;
    client.set_timeout(timeout + Duration::from_secs(1));
    let rx = client.start_consuming();
    let options = paho_connect_options(config, timeout)?;
    match client.connect(options) {
        Ok(response) => {
            let present = response
                .connect_response()
                .is_some_and(|r| r.session_present);
            let detail =
                format!("CONNACK accepted (client id {client_id:?}, session present {present})");
            Ok(((client, rx), detail))
        }
        Err(mqtt::Error::ConnectReturn(code)) => Err(connack_refused(code, client_id)),
        Err(e) => Err(connect_failed(config, client_id, &e.to_string())),
    }
}

/// Connect options like CloudLink's: TLS from the same identity (server certificate and hostname
/// verified, client certificate), MQTT 3.1.1 only (AWS IoT speaks no 3.1), keep-alive, clean
/// session, credentials. Unlike CloudLink's they set no in-flight window (one probe).
fn paho_connect_options(
    config: &Config,
    timeout: Duration,
) -> Result<mqtt::ConnectOptions, Diagnosis> {
    let ssl = config
        .cloud_tls()
        .paho_ssl_options()
        .map_err(|e| bad_file(e.setting, &e.path, "a readable file"))?;
    let mut opts = mqtt::ConnectOptionsBuilder::with_mqtt_version(mqtt::MqttVersion::V3_1_1);
    opts.ssl_options(ssl)
        .keep_alive_interval(config.keep_alive)
        .connect_timeout(timeout)
        .clean_session(true);
    if let Some(user) = &config.username {
        opts.user_name(user);
    }
    if let Some(password) = &config.password {
        opts.password(password.as_str());
    }
    Ok(opts.finalize())
}

fn connack_refused(code: mqtt::ConnectReturnCode, client_id: &str) -> Diagnosis {
    use mqtt::ConnectReturnCode::*;
    let observed = format!("CONNACK refused: {code}");
    let advice = match code {
        NotAuthorized => format!("CONNACK not authorized: the AWS IoT policy attached to the certificate must allow iot:Connect on client/{client_id} (and the certificate must be attached to the thing)"),
        BadUserNameOrPassword => "bad user name or password: check \"username\"/\"password\" against the custom authorizer".into(),
        IdentifierRejected => format!("client id {client_id:?} rejected: set \"clientId\" (or \"deviceId\") to 1-128 characters the endpoint accepts"),
        _ => format!("CONNECT refused ({code}): try again later; if it persists check the endpoint"),
    };
    Diagnosis::new(observed, advice)
}

/// Paho's connect failed without a CONNACK: repeat the TLS handshake to see whether TLS is the
/// reason; if not, the server dropped us after CONNECT, which AWS IoT does for a denied iot:Connect.
fn connect_failed(config: &Config, client_id: &str, paho_error: &str) -> Diagnosis {
    let target = ProbeTarget {
        host: config.endpoint.host.clone(),
        port: config.endpoint.port,
        tls: config.cloud_tls(),
        timeout: Duration::from_secs(3),
    };
    match tls_probe::probe(&target) {
        Err(reason) if reason.detail.contains("client certificate rejected") => {
            client_rejected(config, &reason.detail)
        }
        Err(reason) => Diagnosis::new(
            format!("connect failed: {paho_error}"),
            format!("the connection failed again: {}; run awslink check again", reason.detail),
        ),
        Ok(()) => Diagnosis::new(
            format!("connect failed: {paho_error} (no CONNACK)"),
            format!("the server closed the connection after CONNECT: in AWS IoT the policy lacks iot:Connect for client id {client_id:?}, the certificate is not attached to the thing, or the certificate is not ACTIVE"),
        ),
    }
}

fn subscribe(client: &mqtt::Client, topic: &str) -> StepResult<()> {
    let advice = format!("subscribe refused: the AWS IoT policy must allow iot:Subscribe on topicfilter/{topic} (and iot:Receive on topic/{topic})");
    match client.subscribe(topic, 1) {
        Ok(response) => match response.subscribe_response() {
            Some(qos) if qos >= 0x80 => Err(Diagnosis::new(
                format!("SUBACK refused {topic} (return code 0x{qos:02X})"),
                advice,
            )),
            Some(qos) => Ok(((), format!("{topic} granted QoS {qos}"))),
            None => Ok(((), format!("{topic} subscribed"))),
        },
        Err(e) => Err(Diagnosis::new(
            format!("SUBSCRIBE {topic} failed: {e}"),
            advice,
        )),
    }
}

/// A QoS 1 probe for `topic` with a fresh token (`{"awslink":"check","token":…}`), and the token.
fn probe_message(topic: &str) -> (String, mqtt::Message) {
    let token = random_hex(12);
    let payload = format!("{{\"awslink\":\"check\",\"token\":\"{token}\"}}");
    let message = mqtt::MessageBuilder::new()
        .topic(topic)
        .payload(payload)
        .qos(1)
        .finalize();
    (token, message)
}

fn publish(client: &mqtt::Client, topic: &str) -> StepResult<String> {
    let (token, message) = probe_message(topic);
    match client.publish(message) {
        Ok(()) => Ok((
            token.clone(),
            format!("probe {token} to {topic}, PUBACK received"),
        )),
        Err(e) => Err(Diagnosis::new(
            format!("PUBLISH to {topic} failed: {e}"),
            format!("publish refused: the AWS IoT policy must allow iot:Publish on topic/{topic}"),
        )),
    }
}

fn wait_for_echo(
    rx: &mqtt::Receiver<Option<mqtt::Message>>,
    topic: &str,
    token: &str,
    timeout: Duration,
) -> StepResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(msg)) if msg.topic() == topic && msg.payload_str().contains(token) => {
                return Ok(((), format!("probe {token} came back on {topic}")))
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Diagnosis::new(
                    "the server closed the connection",
                    format!("connection closed after PUBLISH: the AWS IoT policy must allow iot:Publish and iot:Receive on topic/{topic}"),
                ))
            }
            Err(_) => {
                return Err(Diagnosis::new(
                    format!("no echo within {} s", timeout.as_secs()),
                    format!("no echo within {} s: the AWS IoT policy must allow iot:Publish and iot:Receive on topic/{topic}", timeout.as_secs()),
                ))
            }
        }
    }
}
