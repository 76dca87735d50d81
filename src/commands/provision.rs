//! `awslink provision`: fleet provisioning by claim through AWS IoT's MQTT API.
//!
//! A new device key and a CSR are made locally; with the fleet's claim certificate the gateway
//! connects (paho, TLS verified, SNI), subscribes to the reply topics *before* publishing, calls
//! `CreateCertificateFromCsr` and then `RegisterThing` with the ownership token and the template
//! parameters. The issued certificate is written next to the key as `{thing}.pem` /
//! `{thing}.key` (0600). The private key never leaves the gateway.
//!
//! Exit codes: 0 provisioned, 1 AWS IoT rejected a request or the network failed, 2 the
//! arguments or files are unusable.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use awslink_actors::cloud::tls_probe::{self, ProbeTarget};
use awslink_actors::tls::{SettingNames, TlsIdentity, AWS_ALPN_CERT};
use awslink_actors::topics::{provision_topic, CREATE_FROM_CSR_TOPIC};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use paho_mqtt as mqtt;
use serde_json::{json, Value};

use crate::cli::ProvisionArgs;
use crate::commands::cert::{self, new_key, pem_pair, signing_request};
use crate::commands::output::{ensure_dir, refuse_existing, write_new};
use crate::commands::{random_hex, tpm_key};
use crate::config::{self, Endpoint};
use crate::failure::Failure;

/// What the command line asks for, checked before anything is created or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    endpoint: Endpoint,
    params: BTreeMap<String, String>,
    device_id: String,
}

fn plan(args: &ProvisionArgs) -> Result<Plan, Failure> {
    let endpoint = config::parse_endpoint(&args.address)
        .map_err(|e| Failure::usage(format!("--address {e}")))?;
    check_template_name(&args.template)?;
    let params = parse_params(&args.params)?;
    let Some(device_id) = params.get(&args.device_id_param).cloned() else {
        return Err(Failure::usage(format!(
            "--param {0}=VALUE is missing: it names the device (the CSR's CN and the thing name); give it, or name another parameter with --device-id-param",
            args.device_id_param
        )));
    };
    config::check_thing_name(&device_id)
        .map_err(|e| Failure::usage(format!("--param {}: {e}", args.device_id_param)))?;
    check_readable("--claim-cert", &args.claim_cert, false)?;
    check_readable("--claim-key", &args.claim_key, true)?;
    if let Some(ca) = &args.ca_cert {
        check_readable("--ca-cert", ca, false)?;
    }
    Ok(Plan {
        endpoint,
        params,
        device_id,
    })
}

/// `KEY=VALUE` pairs; a key given twice is an error.
fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut params = BTreeMap::new();
    for p in raw {
        let Some((k, v)) = p.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::usage(format!(
                "--param {p:?} is not KEY=VALUE, e.g. --param SerialNumber=0042"
            )));
        };
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::usage(format!(
                "--param {k} is given twice; give it once"
            )));
        }
    }
    Ok(params)
}

/// AWS template names: `[a-zA-Z0-9_-]{1,36}`.
fn check_template_name(name: &str) -> Result<(), Failure> {
    let valid = !name.is_empty()
        && name.len() <= 36
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if valid {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--template {name:?} is not a provisioning template name (1 to 36 characters a-z A-Z 0-9 _ -); list them with: aws iot list-provisioning-templates"
    )))
}

fn check_readable(flag: &str, path: &Path, private: bool) -> Result<(), Failure> {
    let meta = fs::metadata(path)
        .map_err(|e| Failure::usage(format!("{flag} {}: cannot read it: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "{flag} {} is not a file",
            path.display()
        )));
    }
    fs::File::open(path)
        .map_err(|e| Failure::usage(format!("{flag} {}: cannot read it: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if private && mode & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "{flag}: private key {} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// `awslink provision`.
pub fn run(args: &ProvisionArgs) -> Result<(), Failure> {
    let plan = plan(args)?;
    let key_path = args.out_dir.join(format!("{}.key", plan.device_id));
    let cert_path = args.out_dir.join(format!("{}.pem", plan.device_id));
    if !args.force {
        refuse_existing(&key_path)?;
        refuse_existing(&cert_path)?;
    }
    ensure_dir(&args.out_dir)?;
    // A TPM key is written at once (it is wrapped by the TPM) under a temporary name: the file is
    // what opens it; it gets the thing's name when AWS answers and is removed when it does not.
    let tpm_file = args
        .tpm
        .then(|| args.out_dir.join(format!(".{}.key.new", plan.device_id)));
    let key = match &tpm_file {
        Some(file) => tpm_key::create(&args.tpm_device, args.key_type, file, true)?,
        None => new_key(args.key_type)?,
    };
    let mut issued = false;
    let provisioned = provision_with(args, &plan, &key, tpm_file.as_deref(), &mut issued);
    if let (Err(_), Some(file), false) = (&provisioned, &tpm_file, issued) {
        let _ = fs::remove_file(file);
    }
    provisioned
}

/// Everything after the key exists: CSR, the exchange with AWS IoT, the files.
fn provision_with(
    args: &ProvisionArgs,
    plan: &Plan,
    key: &PKey<Private>,
    tpm_file: Option<&Path>,
    issued_flag: &mut bool,
) -> Result<(), Failure> {
    let csr = String::from_utf8_lossy(&signing_request(&plan.device_id, key)?).into_owned();
    let client_id = format!("provision-{}", random_hex(4));
    println!(
        "provisioning {:?} through {}:{} with claim certificate {} as client id {client_id:?}, template {}",
        plan.device_id,
        plan.endpoint.host,
        plan.endpoint.port,
        args.claim_cert.display(),
        args.template
    );
    let timeout = Duration::from_secs(args.timeout);
    let (client, rx) = connect(args, &plan.endpoint, &client_id, timeout)?;
    let result = exchange(&client, &rx, args, plan, &csr, timeout);
    let _ = client.disconnect(None);
    let issued = result?;
    // From here on the thing exists in AWS IoT: a TPM key file is kept whatever happens.
    *issued_flag = true;
    let cert = X509::from_pem(issued.certificate_pem.as_bytes()).map_err(|_| {
        Failure::runtime(
            "CreateCertificateFromCsr answered with a certificatePem that is not a PEM certificate",
        )
    })?;
    let matches = cert.public_key().map(|k| k.public_eq(key)).unwrap_or(false);
    if !matches {
        return Err(Failure::runtime(
            "the issued certificate is not for the key this command made; run awslink provision again",
        ));
    }
    write_files(args, &issued, key, &cert, tpm_file)
}

/// The TPM key file made before the exchange, under its final name.
fn place_tpm_key(file: &Path, key_path: &Path, replace: bool) -> Result<(), Failure> {
    if !replace {
        refuse_existing(key_path)?;
    }
    fs::rename(file, key_path)
        .map_err(|e| Failure::usage(format!("cannot write {}: {e}", key_path.display())))
}

/// What AWS IoT answered: certificate and thing.
#[derive(Debug, Clone, PartialEq)]
struct Issued {
    certificate_id: String,
    certificate_pem: String,
    thing_name: String,
    device_configuration: Value,
}

fn write_files(
    args: &ProvisionArgs,
    issued: &Issued,
    key: &PKey<Private>,
    cert: &X509,
    tpm_file: Option<&Path>,
) -> Result<(), Failure> {
    config::check_thing_name(&issued.thing_name).map_err(|e| {
        Failure::runtime(format!(
            "RegisterThing answered with thing name {e}; check the template"
        ))
    })?;
    let key_path = args.out_dir.join(format!("{}.key", issued.thing_name));
    let cert_path = args.out_dir.join(format!("{}.pem", issued.thing_name));
    let written = match tpm_file {
        Some(file) => cert
            .to_pem()
            .map_err(Failure::crypto("certificate to PEM"))
            .and_then(|pem| place_tpm_key(file, &key_path, args.force).map(|()| pem))
            .and_then(|pem| write_new(&cert_path, &pem, 0o644, args.force)),
        None => pem_pair(key, cert).and_then(|(key_pem, cert_pem)| {
            write_new(&key_path, &key_pem, 0o600, args.force)
                .and_then(|()| write_new(&cert_path, &cert_pem, 0o644, args.force))
        }),
    };
    if let Err(e) = written {
        let kept = tpm_file
            .filter(|f| f.exists())
            .map(|f| format!(" (the TPM key is kept in {})", f.display()))
            .unwrap_or_default();
        return Err(Failure::runtime(format!(
            "thing {:?} is provisioned (certificate id {}) but its files could not be written: {e}{kept}",
            issued.thing_name, issued.certificate_id
        )));
    }
    println!(
        "provisioned thing {:?} (certificate id {})",
        issued.thing_name, issued.certificate_id
    );
    println!("wrote {} (mode 0600)", key_path.display());
    println!("wrote {}", cert_path.display());
    if issued
        .device_configuration
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        println!("device configuration: {}", issued.device_configuration);
    }
    let absolute = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    println!("set in the awslink config:");
    println!("  \"deviceId\": {:?},", issued.thing_name);
    println!(
        "  \"cert\": {:?},",
        absolute(&cert_path).display().to_string()
    );
    println!("  \"key\": {:?}", absolute(&key_path).display().to_string());
    println!("then run: awslink check --config FILE");
    Ok(())
}

/// Subscribes to all reply topics, then CreateCertificateFromCsr, then RegisterThing.
fn exchange(
    client: &mqtt::Client,
    rx: &mqtt::Receiver<Option<mqtt::Message>>,
    args: &ProvisionArgs,
    plan: &Plan,
    csr: &str,
    timeout: Duration,
) -> Result<Issued, Failure> {
    let provision = provision_topic(&args.template);
    let replies = [
        format!("{CREATE_FROM_CSR_TOPIC}/accepted"),
        format!("{CREATE_FROM_CSR_TOPIC}/rejected"),
        format!("{provision}/accepted"),
        format!("{provision}/rejected"),
    ];
    subscribe(client, &replies)?;
    let request = json!({ "certificateSigningRequest": csr });
    publish(client, CREATE_FROM_CSR_TOPIC, &request)?;
    let created = await_reply(
        rx,
        "CreateCertificateFromCsr",
        CREATE_FROM_CSR_TOPIC,
        timeout,
    )
    .map_err(|e| e.into_failure(&args.template))?;
    let field = |name: &str| {
        created
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                Failure::runtime(format!("CreateCertificateFromCsr answered without {name}"))
            })
    };
    let certificate_id = field("certificateId")?;
    let certificate_pem = field("certificatePem")?;
    let token = field("certificateOwnershipToken")?;
    println!("  ok    CreateCertificateFromCsr  certificate id {certificate_id}");
    let request = json!({ "certificateOwnershipToken": token, "parameters": plan.params });
    publish(client, &provision, &request)?;
    let registered = await_reply(rx, "RegisterThing", &provision, timeout)
        .map_err(|e| e.into_failure(&args.template))?;
    let thing_name = registered
        .get("thingName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Failure::runtime("RegisterThing answered without thingName"))?;
    println!(
        "  ok    RegisterThing             thing {thing_name:?} (template {})",
        args.template
    );
    Ok(Issued {
        certificate_id,
        certificate_pem,
        thing_name,
        device_configuration: registered
            .get("deviceConfiguration")
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// Why a request did not get an accepted answer.
#[derive(Debug, Clone, PartialEq)]
enum ReplyError {
    /// The `/rejected` body.
    Rejected { step: &'static str, body: Value },
    /// The connection closed (AWS closes it for a request the policy denies).
    Closed { step: &'static str, topic: String },
    /// No answer in time.
    Timeout {
        step: &'static str,
        topic: String,
        secs: u64,
    },
}

impl ReplyError {
    fn into_failure(self, template: &str) -> Failure {
        match self {
            ReplyError::Rejected { step, body } => Failure::runtime(rejection_message(step, template, &body)),
            ReplyError::Closed { step, topic } => Failure::runtime(format!(
                "AWS IoT closed the connection at {step}: the claim certificate's policy must allow iot:Publish on topic/{topic}, iot:Subscribe on topicfilter/{topic}/* and iot:Receive on topic/{topic}/*"
            )),
            ReplyError::Timeout { step, topic, secs } => Failure::runtime(format!(
                "no answer to {step} within {secs} s on {topic}/accepted or /rejected: the claim certificate's policy must allow iot:Receive on topic/{topic}/*; or raise --timeout"
            )),
        }
    }
}

/// One line for a `/rejected` answer: the AWS error code and message, and what to do.
fn rejection_message(step: &str, template: &str, body: &Value) -> String {
    let code = body
        .get("errorCode")
        .and_then(Value::as_str)
        .unwrap_or("(no errorCode)");
    let status = body
        .get("statusCode")
        .and_then(Value::as_u64)
        .map_or_else(|| "?".to_string(), |s| s.to_string());
    let message = body
        .get("errorMessage")
        .and_then(Value::as_str)
        .unwrap_or("(no errorMessage)");
    let fix = match code {
        "ResourceNotFoundException" => format!(
            "the template {template:?} does not exist in this account and region: check --template (aws iot list-provisioning-templates)"
        ),
        "InvalidCSR" => "AWS IoT refused the CSR: use --key-type ec-p256 or rsa-2048".to_string(),
        "InvalidCertificateOwnershipToken" => {
            "the ownership token was refused (used or expired): run awslink provision again".to_string()
        }
        "InvalidParameters" | "InvalidParameter" => format!(
            "the template {template:?} needs other parameters: check the --param values against it (aws iot describe-provisioning-template --template-name {template})"
        ),
        _ if status.starts_with('4') && status != "429" => format!(
            "check the template {template:?} (its pre-provisioning hook, parameters and enabled state) and the claim certificate's policy"
        ),
        _ => "try again later".to_string(),
    };
    format!("provisioning rejected at {step}: {code} ({status}): {message}; {fix}")
}

/// The next answer on `{topic}/accepted` or `{topic}/rejected`.
fn await_reply(
    rx: &mqtt::Receiver<Option<mqtt::Message>>,
    step: &'static str,
    topic: &str,
    timeout: Duration,
) -> Result<Value, ReplyError> {
    let accepted = format!("{topic}/accepted");
    let rejected = format!("{topic}/rejected");
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(msg)) if msg.topic() == accepted || msg.topic() == rejected => {
                let body: Value =
                    serde_json::from_slice(msg.payload()).unwrap_or_else(|_| json!({}));
                if msg.topic() == accepted {
                    return Ok(body);
                }
                return Err(ReplyError::Rejected { step, body });
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ReplyError::Closed {
                    step,
                    topic: topic.to_string(),
                })
            }
            Err(_) => {
                return Err(ReplyError::Timeout {
                    step,
                    topic: topic.to_string(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }
}

fn subscribe(client: &mqtt::Client, topics: &[String]) -> Result<(), Failure> {
    let qos = vec![1; topics.len()];
    let refused = |detail: String| {
        Failure::runtime(format!(
            "subscribe to the reply topics refused ({detail}): the claim certificate's policy must allow iot:Subscribe on topicfilter/$aws/certificates/create-from-csr/json/* and topicfilter/$aws/provisioning-templates/TEMPLATE/provision/json/*"
        ))
    };
    let response = client
        .subscribe_many(topics, &qos)
        .map_err(|e| refused(e.to_string()))?;
    if let Some(codes) = response.subscribe_many_response() {
        if let Some(code) = codes.iter().find(|c| **c >= 0x80) {
            return Err(refused(format!("SUBACK return code 0x{code:02X}")));
        }
    }
    println!(
        "  ok    SUBSCRIBE                 {} reply topics",
        topics.len()
    );
    Ok(())
}

fn publish(client: &mqtt::Client, topic: &str, payload: &Value) -> Result<(), Failure> {
    let message = mqtt::MessageBuilder::new()
        .topic(topic)
        .payload(payload.to_string())
        .qos(1)
        .finalize();
    client.publish(message).map_err(|e| {
        Failure::runtime(format!(
            "PUBLISH to {topic} failed ({e}): the claim certificate's policy must allow iot:Publish on topic/{topic}"
        ))
    })
}

/// Connects with the claim certificate: server certificate and host name verified, SNI set.
fn connect(
    args: &ProvisionArgs,
    endpoint: &Endpoint,
    client_id: &str,
    timeout: Duration,
) -> Result<(mqtt::Client, mqtt::Receiver<Option<mqtt::Message>>), Failure> {
    let uri = format!("ssl://{}:{}", endpoint.host, endpoint.port);
    let create = mqtt::CreateOptionsBuilder::new()
        .server_uri(uri)
        .client_id(client_id)
        .persistence(None)
        .finalize();
    let mut client = mqtt::Client::new(create)
        .map_err(|e| Failure::runtime(format!("cannot create the MQTT client: {e}")))?;
    client.set_timeout(timeout + Duration::from_secs(1));
    let rx = client.start_consuming();
    let alpn: Vec<String> = if endpoint.port == 443 {
        vec![AWS_ALPN_CERT.to_string()]
    } else {
        Vec::new()
    };
    let options = paho_connect_options(args, &alpn, timeout)?;
    match client.connect(options) {
        Ok(_) => {
            println!("  ok    CONNECT                   claim certificate accepted");
            Ok((client, rx))
        }
        Err(mqtt::Error::ConnectReturn(code)) => Err(Failure::runtime(format!(
            "CONNACK refused ({code}): the claim certificate's policy must allow iot:Connect on client/{client_id} (claim policies often allow only client ids the template expects)"
        ))),
        Err(e) => Err(connect_failure(args, endpoint, client_id, alpn, &e.to_string())),
    }
}

/// The paho options for the claim connection: server certificate and host name verified, the
/// claim certificate and key, ALPN on port 443, a clean session.
fn paho_connect_options(
    args: &ProvisionArgs,
    alpn: &[String],
    timeout: Duration,
) -> Result<mqtt::ConnectOptions, Failure> {
    let ssl = claim_tls(args, alpn)
        .paho_ssl_options()
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(
        mqtt::ConnectOptionsBuilder::with_mqtt_version(mqtt::MqttVersion::V3_1_1)
            .ssl_options(ssl)
            .keep_alive_interval(Duration::from_secs(30))
            .connect_timeout(timeout)
            .clean_session(true)
            .finalize(),
    )
}

/// The claim connection's TLS identity: the claim certificate and key, named by their flags.
fn claim_tls(args: &ProvisionArgs, alpn: &[String]) -> TlsIdentity {
    TlsIdentity {
        ca: args.ca_cert.clone(),
        cert: Some(args.claim_cert.clone()),
        key: Some(args.claim_key.clone().into()),
        alpn: alpn.to_vec(),
        settings: SettingNames {
            ca: "--ca-cert",
            cert: "--claim-cert",
            key: "--claim-key",
        },
    }
}

/// Paho says only that the connect failed: repeat the TLS handshake to name the reason.
fn connect_failure(
    args: &ProvisionArgs,
    endpoint: &Endpoint,
    client_id: &str,
    alpn: Vec<String>,
    paho_error: &str,
) -> Failure {
    let target = ProbeTarget {
        host: endpoint.host.clone(),
        port: endpoint.port,
        tls: claim_tls(args, &alpn),
        timeout: Duration::from_secs(3),
    };
    match tls_probe::probe(&target) {
        Err(reason) if reason.detail.contains("client certificate rejected") => {
            let id = cert::aws_certificate_id_of(&args.claim_cert).unwrap_or_else(|| "?".into());
            Failure::runtime(format!(
                "claim certificate rejected by the server: {} is not registered or not ACTIVE in AWS IoT (certificate id {id}); register the claim certificate and attach the claim policy",
                args.claim_cert.display()
            ))
        }
        Err(reason) => Failure::runtime(format!(
            "cannot connect to {}:{}: {} (run awslink check with the claim certificate for a step-by-step diagnosis)",
            endpoint.host, endpoint.port, reason.detail
        )),
        Ok(()) => Failure::runtime(format!(
            "the server closed the connection after CONNECT ({paho_error}): the claim certificate's policy must allow iot:Connect for client id {client_id:?}"
        )),
    }
}

#[cfg(test)]
mod tests;
