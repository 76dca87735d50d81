//! Fleet provisioning by claim: the MQTT API of AWS IoT's fleet provisioning service
//! (`CreateCertificateFromCsr`, `CreateKeysAndCertificate`, `RegisterThing`, JSON payloads).
//!
//! [`Provisioner`] is the pure part: it turns a request topic and payload into the replies,
//! issuing certificates from the emulator's CA. [`ProvisioningService`] runs it as a client of
//! the private broker, like the shadow service.
//!
//! | request topic | accepted reply | rejected reply |
//! |---|---|---|
//! | `$aws/certificates/create-from-csr/json` `{"certificateSigningRequest"}` | `{"certificateId","certificatePem","certificateOwnershipToken"}` | 400 `InvalidCSR` / `InvalidPayload` |
//! | `$aws/certificates/create/json` `{}` | `{"certificateId","certificatePem","privateKey","certificateOwnershipToken"}` | 400 `InvalidPayload` |
//! | `$aws/provisioning-templates/{t}/provision/json` `{"certificateOwnershipToken","parameters"}` | `{"deviceConfiguration":{},"thingName"}` | 404 `ResourceNotFoundException`, 400 `InvalidCertificateOwnershipToken` / `InvalidParameters` / `InvalidPayload` |
//!
//! Replies go to the request topic + `/accepted` or `/rejected`, QoS 1, with the AWS error body
//! `{"statusCode","errorCode","errorMessage"}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use log::debug;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509NameRef, X509Req, X509};
use serde_json::{json, Map, Value};

use crate::error::EmulatorError;
use crate::service_client::Service;
use crate::shadow::Reply;
use crate::stats::StatsHandle;

/// The provisioning service's MQTT client id on the private broker.
pub const CLIENT_ID: &str = "aws-iot-emulator-provisioning-service";

/// The template the emulator knows when none is configured.
pub const DEFAULT_TEMPLATE: &str = "awslink-demo";

/// The parameter a template takes the thing name from.
pub const SERIAL_PARAMETER: &str = "SerialNumber";

/// The subscriptions that receive every provisioning request (never the replies).
pub const REQUEST_FILTERS: [&str; 3] = [
    "$aws/certificates/create-from-csr/json",
    "$aws/certificates/create/json",
    "$aws/provisioning-templates/+/provision/json",
];

/// How long an ownership token may be used (AWS: one hour).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Validity of issued certificates, in days.
pub const CERTIFICATE_DAYS: u32 = 365;

/// A provisioning template: RegisterThing names the thing `thing_name_prefix` +
/// `parameters.SerialNumber`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The template name in the topic.
    pub name: String,
    /// Prepended to the serial number to make the thing name (may be empty).
    pub thing_name_prefix: String,
}

impl Template {
    /// A template without prefix: the thing name is the serial number.
    pub fn new(name: impl Into<String>) -> Self {
        Template {
            name: name.into(),
            thing_name_prefix: String::new(),
        }
    }

    /// Parses `NAME` or `NAME=PREFIX` (the `--provisioning-template` flag). Template names are
    /// `[a-zA-Z0-9_-]{1,36}` as in AWS.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, prefix) = spec.split_once('=').unwrap_or((spec, ""));
        let valid = !name.is_empty()
            && name.len() <= 36
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !valid {
            return Err(format!(
                "provisioning template {name:?}: a name is 1 to 36 characters a-z A-Z 0-9 _ - (write NAME or NAME=THING_NAME_PREFIX)"
            ));
        }
        Ok(Template {
            name: name.to_string(),
            thing_name_prefix: prefix.to_string(),
        })
    }
}

/// The AWS error body of a `/rejected` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP-like status code (400, 404, ...).
    pub status_code: u16,
    /// AWS error code, e.g. `InvalidCSR`.
    pub error_code: &'static str,
    /// Human-readable message.
    pub error_message: String,
}

impl Rejection {
    fn new(status_code: u16, error_code: &'static str, error_message: impl Into<String>) -> Self {
        Rejection {
            status_code,
            error_code,
            error_message: error_message.into(),
        }
    }

    /// `{"statusCode","errorCode","errorMessage"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "statusCode": self.status_code,
            "errorCode": self.error_code,
            "errorMessage": self.error_message,
        })
    }
}

/// A parsed request topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `$aws/certificates/create-from-csr/json`
    CreateFromCsr,
    /// `$aws/certificates/create/json`
    CreateKeysAndCertificate,
    /// `$aws/provisioning-templates/{template}/provision/json`
    RegisterThing {
        /// The template name from the topic.
        template: String,
    },
}

impl Request {
    /// Parses a request topic; `None` for anything else (e.g. the service's own replies).
    pub fn parse(topic: &str) -> Option<Request> {
        match topic.split('/').collect::<Vec<_>>().as_slice() {
            ["$aws", "certificates", "create-from-csr", "json"] => Some(Request::CreateFromCsr),
            ["$aws", "certificates", "create", "json"] => Some(Request::CreateKeysAndCertificate),
            ["$aws", "provisioning-templates", t, "provision", "json"] => {
                Some(Request::RegisterThing {
                    template: t.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The outcome name prefix in the stats.
    fn name(&self) -> &'static str {
        match self {
            Request::CreateFromCsr => "create_from_csr",
            Request::CreateKeysAndCertificate => "create",
            Request::RegisterThing { .. } => "provision",
        }
    }
}

/// What handling one request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The reply to publish.
    pub reply: Reply,
    /// Outcome for the stats, e.g. `create_from_csr_accepted`, `provision_rejected_404`.
    pub outcome: String,
}

/// An ownership token handed out with a certificate.
#[derive(Debug, Clone)]
struct Token {
    certificate_id: String,
    issued: Instant,
    used: bool,
}

/// The fleet provisioning state: CA, templates, ownership tokens and provisioned things.
pub struct Provisioner {
    ca_cert: X509,
    ca_key: PKey<Private>,
    templates: Vec<Template>,
    tokens: HashMap<String, Token>,
    things: BTreeMap<String, String>,
}

impl Provisioner {
    /// A provisioner issuing from `ca_cert` / `ca_key` and knowing `templates`.
    pub fn new(ca_cert: X509, ca_key: PKey<Private>, templates: Vec<Template>) -> Self {
        Provisioner {
            ca_cert,
            ca_key,
            templates,
            tokens: HashMap::new(),
            things: BTreeMap::new(),
        }
    }

    /// Loads the CA certificate and key (PEM) and checks that they belong together.
    pub fn load(
        ca_cert: &Path,
        ca_key: &Path,
        templates: Vec<Template>,
    ) -> Result<Self, EmulatorError> {
        let cert_pem = std::fs::read(ca_cert).map_err(|e| EmulatorError::file(ca_cert, e))?;
        let key_pem = std::fs::read(ca_key).map_err(|e| EmulatorError::file(ca_key, e))?;
        let cert = X509::from_pem(&cert_pem).map_err(|e| {
            EmulatorError::tls(
                format!("--ca-cert {} is not a PEM certificate", ca_cert.display()),
                e,
            )
        })?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|e| {
            EmulatorError::tls(
                format!("--ca-key {} is not a PEM private key", ca_key.display()),
                e,
            )
        })?;
        let matches = cert
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(EmulatorError::Config(format!(
                "--ca-key {} is not the key of --ca-cert {}; give the CA's own key (ca.key next to ca.pem)",
                ca_key.display(),
                ca_cert.display()
            )));
        }
        Ok(Self::new(cert, key, templates))
    }

    /// Things provisioned so far: thing name → certificate id.
    pub fn things(&self) -> &BTreeMap<String, String> {
        &self.things
    }

    /// Handles one request; `None` when `topic` is not a provisioning request.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: Instant) -> Option<Handled> {
        let request = Request::parse(topic)?;
        let result = match &request {
            Request::CreateFromCsr => self.create_from_csr(payload, now),
            Request::CreateKeysAndCertificate => self.create_keys(payload, now),
            Request::RegisterThing { template } => self.register_thing(template, payload, now),
        };
        let (suffix, body, outcome) = match result {
            Ok(body) => ("accepted", body, format!("{}_accepted", request.name())),
            Err(r) => (
                "rejected",
                r.to_json(),
                format!("{}_rejected_{}", request.name(), r.status_code),
            ),
        };
        Some(Handled {
            reply: Reply {
                topic: format!("{topic}/{suffix}"),
                payload: body,
            },
            outcome,
        })
    }

    fn create_from_csr(&mut self, payload: &[u8], now: Instant) -> Result<Value, Rejection> {
        let request = json_object(payload)?;
        let Some(pem) = request
            .get("certificateSigningRequest")
            .and_then(Value::as_str)
        else {
            return Err(Rejection::new(
                400,
                "InvalidPayload",
                "certificateSigningRequest is missing or not a string",
            ));
        };
        let csr = X509Req::from_pem(pem.as_bytes()).map_err(|_| {
            Rejection::new(
                400,
                "InvalidCSR",
                "the CSR is not a PEM certificate request",
            )
        })?;
        let public = csr
            .public_key()
            .map_err(|_| Rejection::new(400, "InvalidCSR", "the CSR has no usable public key"))?;
        if !csr.verify(&public).unwrap_or(false) {
            return Err(Rejection::new(
                400,
                "InvalidCSR",
                "the CSR signature does not verify with its public key",
            ));
        }
        check_key(&public)?;
        let cert = self.issue(csr.subject_name(), &public).map_err(internal)?;
        self.accept_certificate(&cert, None, now)
    }

    fn create_keys(&mut self, payload: &[u8], now: Instant) -> Result<Value, Rejection> {
        if !payload.is_empty() {
            json_object(payload)?;
        }
        let key = new_ec_key().map_err(internal)?;
        let subject = X509NameBuilder::new()
            .and_then(|mut n| {
                n.append_entry_by_nid(Nid::COMMONNAME, "AWS IoT Certificate")?;
                Ok(n.build())
            })
            .map_err(internal)?;
        let public_der = key.public_key_to_der().map_err(internal)?;
        let public = PKey::public_key_from_der(&public_der).map_err(internal)?;
        let cert = self.issue(&subject, &public).map_err(internal)?;
        let key_pem = key.private_key_to_pem_pkcs8().map_err(internal)?;
        let key_pem = String::from_utf8_lossy(&key_pem).into_owned();
        self.accept_certificate(&cert, Some(key_pem), now)
    }

    /// The accepted body for a new certificate, with a fresh ownership token.
    fn accept_certificate(
        &mut self,
        cert: &X509,
        private_key: Option<String>,
        now: Instant,
    ) -> Result<Value, Rejection> {
        let certificate_id = certificate_id(cert).map_err(internal)?;
        let pem = cert.to_pem().map_err(internal)?;
        let token = random_token().map_err(internal)?;
        self.tokens
            .retain(|_, t| now.duration_since(t.issued) < TOKEN_LIFETIME);
        self.tokens.insert(
            token.clone(),
            Token {
                certificate_id: certificate_id.clone(),
                issued: now,
                used: false,
            },
        );
        let mut body = json!({
            "certificateId": certificate_id,
            "certificatePem": String::from_utf8_lossy(&pem),
            "certificateOwnershipToken": token,
        });
        if let (Some(key), Some(map)) = (private_key, body.as_object_mut()) {
            map.insert("privateKey".into(), Value::String(key));
        }
        Ok(body)
    }

    fn register_thing(
        &mut self,
        template: &str,
        payload: &[u8],
        now: Instant,
    ) -> Result<Value, Rejection> {
        let Some(t) = self.templates.iter().find(|t| t.name == template) else {
            return Err(Rejection::new(
                404,
                "ResourceNotFoundException",
                format!("The provisioning template {template} does not exist"),
            ));
        };
        let request = json_object(payload)?;
        let Some(token) = request
            .get("certificateOwnershipToken")
            .and_then(Value::as_str)
        else {
            return Err(Rejection::new(
                400,
                "InvalidPayload",
                "certificateOwnershipToken is missing or not a string",
            ));
        };
        let parameters = match request.get("parameters") {
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => {
                return Err(Rejection::new(
                    400,
                    "InvalidPayload",
                    "parameters must be an object of strings",
                ))
            }
        };
        if let Some((k, _)) = parameters.iter().find(|(_, v)| !v.is_string()) {
            return Err(Rejection::new(
                400,
                "InvalidParameters",
                format!("parameter {k} must be a string"),
            ));
        }
        let Some(serial) = parameters.get(SERIAL_PARAMETER).and_then(Value::as_str) else {
            return Err(Rejection::new(
                400,
                "InvalidParameters",
                format!("template {template} requires the parameter {SERIAL_PARAMETER}"),
            ));
        };
        let thing_name = format!("{}{serial}", t.thing_name_prefix);
        if !valid_thing_name(&thing_name) {
            return Err(Rejection::new(
                400,
                "InvalidParameters",
                format!("thing name {thing_name:?} is not 1 to 128 characters a-z A-Z 0-9 : _ -"),
            ));
        }
        let certificate_id = match self.tokens.get_mut(token) {
            Some(t) if !t.used && now.duration_since(t.issued) < TOKEN_LIFETIME => {
                t.used = true;
                t.certificate_id.clone()
            }
            Some(t) if t.used => {
                return Err(Rejection::new(
                    400,
                    "InvalidCertificateOwnershipToken",
                    "the certificate ownership token has already been used",
                ))
            }
            _ => {
                return Err(Rejection::new(
                    400,
                    "InvalidCertificateOwnershipToken",
                    "the certificate ownership token is invalid or expired",
                ))
            }
        };
        self.things.insert(thing_name.clone(), certificate_id);
        Ok(json!({"deviceConfiguration": {}, "thingName": thing_name}))
    }

    /// Signs a client certificate for `subject` / `public` with the CA.
    fn issue(&self, subject: &X509NameRef, public: &PKeyRef<Public>) -> Result<X509, ErrorStack> {
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        b.set_serial_number(&*serial.to_asn1_integer()?)?;
        b.set_subject_name(subject)?;
        b.set_issuer_name(self.ca_cert.subject_name())?;
        b.set_pubkey(public)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(CERTIFICATE_DAYS)?)?;
        b.append_extension(BasicConstraints::new().build()?)?;
        let mut usage = KeyUsage::new();
        usage.critical().digital_signature();
        if public.id() == Id::RSA {
            usage.key_encipherment();
        }
        b.append_extension(usage.build()?)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        let ski =
            SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.ca_cert), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(&self.ca_cert), None))?;
        b.append_extension(aki)?;
        b.sign(&self.ca_key, MessageDigest::sha256())?;
        Ok(b.build())
    }
}

fn internal(e: ErrorStack) -> Rejection {
    Rejection::new(500, "InternalFailure", format!("emulator: {e}"))
}

fn json_object(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::new(
            400,
            "InvalidPayload",
            "the payload is not a JSON object",
        )),
    }
}

/// AWS IoT accepts RSA keys of 2048 bits or more and EC keys on P-256, P-384, P-521.
fn check_key(key: &PKeyRef<Public>) -> Result<(), Rejection> {
    let ok = match key.id() {
        Id::RSA => key.bits() >= 2048,
        Id::EC => key
            .ec_key()
            .ok()
            .and_then(|ec| ec.group().curve_name())
            .is_some_and(|c| matches!(c, Nid::X9_62_PRIME256V1 | Nid::SECP384R1 | Nid::SECP521R1)),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Rejection::new(
        400,
        "InvalidCSR",
        format!(
            "unsupported key in the CSR ({} bits, type {}): use RSA 2048+ or EC P-256/P-384/P-521",
            key.bits(),
            key.id().as_raw()
        ),
    ))
}

fn valid_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

fn new_ec_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// AWS IoT's certificate id: SHA-256 of the DER certificate, lowercase hex.
pub fn certificate_id(cert: &X509) -> Result<String, ErrorStack> {
    Ok(hex(&cert.digest(MessageDigest::sha256())?))
}

fn random_token() -> Result<String, ErrorStack> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running service; stopped on drop.
pub struct ProvisioningService(Service);

impl ProvisioningService {
    /// Connects to the broker at `broker`, subscribes to the request topics and serves until
    /// stopped.
    pub fn start(
        broker: SocketAddr,
        mut provisioner: Provisioner,
        stats: StatsHandle,
    ) -> Result<ProvisioningService, EmulatorError> {
        let service = Service::start(
            "provisioning service",
            "emu-provisioning",
            broker,
            CLIENT_ID,
            &REQUEST_FILTERS,
            move |topic, payload| {
                let Some(handled) = provisioner.handle(topic, payload, Instant::now()) else {
                    return Vec::new();
                };
                debug!("provisioning {topic} -> {}", handled.outcome);
                stats.provisioning(&handled.outcome);
                vec![handled.reply]
            },
        )?;
        Ok(ProvisioningService(service))
    }

    /// Disconnects from the broker and waits for the service thread.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testcerts::Ca;
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509ReqBuilder, X509StoreContext};

    const CSR_TOPIC: &str = "$aws/certificates/create-from-csr/json";

    fn provisioner(templates: Vec<Template>) -> (Provisioner, X509, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA").unwrap();
        let (cert, key) = ca.write(dir.path(), "ca").unwrap();
        let p = Provisioner::load(&cert, &key, templates).unwrap();
        let ca_cert = X509::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
        (p, ca_cert, dir)
    }

    fn csr(cn: &str, key: &PKey<Private>) -> String {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    fn request(p: &mut Provisioner, topic: &str, body: &Value) -> Handled {
        p.handle(topic, body.to_string().as_bytes(), Instant::now())
            .unwrap()
    }

    fn verifies(ca: &X509, cert: &X509) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.clone()).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, cert, &Stack::new().unwrap(), |c| c.verify_cert())
            .unwrap()
    }

    #[test]
    fn topics_are_parsed_and_replies_ignored() {
        assert_eq!(Request::parse(CSR_TOPIC), Some(Request::CreateFromCsr));
        assert_eq!(
            Request::parse("$aws/certificates/create/json"),
            Some(Request::CreateKeysAndCertificate)
        );
        assert_eq!(
            Request::parse("$aws/provisioning-templates/t-1/provision/json"),
            Some(Request::RegisterThing {
                template: "t-1".into()
            })
        );
        for t in [
            "$aws/certificates/create-from-csr/json/accepted",
            "$aws/provisioning-templates/t-1/provision/json/rejected",
            "$aws/certificates/create-from-csr/cbor",
            "$aws/things/x/shadow/get",
        ] {
            assert_eq!(Request::parse(t), None, "{t}");
        }
    }

    #[test]
    fn template_flags_parse() {
        assert_eq!(Template::parse("fleet").unwrap(), Template::new("fleet"));
        let t = Template::parse("fleet_2=gw-").unwrap();
        assert_eq!(
            (t.name.as_str(), t.thing_name_prefix.as_str()),
            ("fleet_2", "gw-")
        );
        assert!(Template::parse("").is_err());
        assert!(Template::parse("a b").is_err());
        assert!(Template::parse(&"x".repeat(37)).is_err());
    }

    #[test]
    fn csr_then_provision_issues_a_verifying_certificate_and_names_the_thing() {
        let (mut p, ca, _dir) = provisioner(vec![Template::new(DEFAULT_TEMPLATE)]);
        let key = new_ec_key().unwrap();
        let h = request(
            &mut p,
            CSR_TOPIC,
            &json!({"certificateSigningRequest": csr("sn-42", &key)}),
        );
        assert_eq!(h.outcome, "create_from_csr_accepted");
        assert_eq!(h.reply.topic, format!("{CSR_TOPIC}/accepted"));
        let body = h.reply.payload;
        let pem = body["certificatePem"].as_str().unwrap();
        let cert = X509::from_pem(pem.as_bytes()).unwrap();
        assert!(verifies(&ca, &cert));
        assert!(cert.public_key().unwrap().public_eq(&key));
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        assert_eq!(cn.data().as_slice(), b"sn-42");
        assert_eq!(body["certificateId"], certificate_id(&cert).unwrap());
        assert!(body.get("privateKey").is_none());
        let token = body["certificateOwnershipToken"]
            .as_str()
            .unwrap()
            .to_string();

        let topic = "$aws/provisioning-templates/awslink-demo/provision/json";
        let provision = json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "sn-42", "Other": "x"}});
        let h = request(&mut p, topic, &provision);
        assert_eq!(h.outcome, "provision_accepted");
        assert_eq!(h.reply.topic, format!("{topic}/accepted"));
        assert_eq!(
            h.reply.payload,
            json!({"deviceConfiguration": {}, "thingName": "sn-42"})
        );
        assert_eq!(
            p.things().get("sn-42"),
            Some(&certificate_id(&cert).unwrap())
        );

        let again = request(&mut p, topic, &provision);
        assert_eq!(again.outcome, "provision_rejected_400");
        assert_eq!(again.reply.topic, format!("{topic}/rejected"));
        assert_eq!(
            again.reply.payload["errorCode"],
            "InvalidCertificateOwnershipToken"
        );
        assert!(again.reply.payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("already been used"));
    }

    #[test]
    fn template_prefix_and_rsa_keys() {
        let (mut p, ca, _dir) = provisioner(vec![Template::parse("fleet=gw-").unwrap()]);
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let h = request(
            &mut p,
            CSR_TOPIC,
            &json!({"certificateSigningRequest": csr("0042", &key)}),
        );
        let cert = X509::from_pem(
            h.reply.payload["certificatePem"]
                .as_str()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert!(verifies(&ca, &cert));
        let token = h.reply.payload["certificateOwnershipToken"].clone();
        let h = request(
            &mut p,
            "$aws/provisioning-templates/fleet/provision/json",
            &json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "0042"}}),
        );
        assert_eq!(h.reply.payload["thingName"], "gw-0042");
    }

    #[test]
    fn invalid_csrs_are_rejected_with_invalid_csr() {
        let (mut p, _ca, _dir) = provisioner(vec![Template::new(DEFAULT_TEMPLATE)]);
        let reject = |p: &mut Provisioner, body: Value| {
            let h = request(p, CSR_TOPIC, &body);
            assert_eq!(h.reply.topic, format!("{CSR_TOPIC}/rejected"));
            assert_eq!(h.outcome, "create_from_csr_rejected_400");
            assert_eq!(h.reply.payload["statusCode"], 400);
            h.reply.payload
        };
        let body = reject(&mut p, json!({"certificateSigningRequest": "not a csr"}));
        assert_eq!(body["errorCode"], "InvalidCSR");
        assert!(body["errorMessage"].is_string());

        // A CSR signed by another key than the one it carries.
        let key = new_ec_key().unwrap();
        let other = new_ec_key().unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "x").unwrap();
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&other, MessageDigest::sha256()).unwrap();
        let forged = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        let body = reject(&mut p, json!({"certificateSigningRequest": forged}));
        assert_eq!(body["errorCode"], "InvalidCSR");

        // RSA 1024 is too weak for AWS IoT.
        let weak = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let body = reject(
            &mut p,
            json!({"certificateSigningRequest": csr("x", &weak)}),
        );
        assert_eq!(body["errorCode"], "InvalidCSR");

        let body = reject(&mut p, json!({"csr": "x"}));
        assert_eq!(body["errorCode"], "InvalidPayload");
        let h = p.handle(CSR_TOPIC, b"{not json", Instant::now()).unwrap();
        assert_eq!(h.reply.payload["errorCode"], "InvalidPayload");
    }

    #[test]
    fn register_thing_rejections() {
        let (mut p, _ca, _dir) = provisioner(vec![Template::new(DEFAULT_TEMPLATE)]);
        let h = request(
            &mut p,
            "$aws/provisioning-templates/nope/provision/json",
            &json!({"certificateOwnershipToken": "t", "parameters": {"SerialNumber": "a"}}),
        );
        assert_eq!(h.outcome, "provision_rejected_404");
        assert_eq!(
            h.reply.payload,
            json!({"statusCode": 404, "errorCode": "ResourceNotFoundException",
                   "errorMessage": "The provisioning template nope does not exist"})
        );
        let topic = "$aws/provisioning-templates/awslink-demo/provision/json";
        let code = |p: &mut Provisioner, body: Value| {
            let h = request(p, topic, &body);
            assert_eq!(h.reply.topic, format!("{topic}/rejected"));
            h.reply.payload["errorCode"].as_str().unwrap().to_string()
        };
        assert_eq!(
            code(
                &mut p,
                json!({"certificateOwnershipToken": "unknown", "parameters": {"SerialNumber": "a"}})
            ),
            "InvalidCertificateOwnershipToken"
        );
        assert_eq!(code(&mut p, json!({"parameters": {}})), "InvalidPayload");
        assert_eq!(
            code(
                &mut p,
                json!({"certificateOwnershipToken": "t", "parameters": {}})
            ),
            "InvalidParameters"
        );
        assert_eq!(
            code(
                &mut p,
                json!({"certificateOwnershipToken": "t", "parameters": {"SerialNumber": 5}})
            ),
            "InvalidParameters"
        );
        assert_eq!(
            code(
                &mut p,
                json!({"certificateOwnershipToken": "t", "parameters": {"SerialNumber": "a/b"}})
            ),
            "InvalidParameters"
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (mut p, _ca, _dir) = provisioner(vec![Template::new(DEFAULT_TEMPLATE)]);
        let key = new_ec_key().unwrap();
        let issued = Instant::now();
        let h = p
            .handle(
                CSR_TOPIC,
                json!({"certificateSigningRequest": csr("a", &key)})
                    .to_string()
                    .as_bytes(),
                issued,
            )
            .unwrap();
        let token = h.reply.payload["certificateOwnershipToken"].clone();
        let later = issued + TOKEN_LIFETIME + Duration::from_secs(1);
        let h = p
            .handle(
                "$aws/provisioning-templates/awslink-demo/provision/json",
                json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "a"}})
                    .to_string()
                    .as_bytes(),
                later,
            )
            .unwrap();
        assert_eq!(h.outcome, "provision_rejected_400");
        assert!(h.reply.payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("expired"));
    }

    #[test]
    fn create_keys_and_certificate_returns_a_matching_private_key() {
        let (mut p, ca, _dir) = provisioner(vec![Template::new(DEFAULT_TEMPLATE)]);
        let h = request(&mut p, "$aws/certificates/create/json", &json!({}));
        assert_eq!(h.outcome, "create_accepted");
        let body = h.reply.payload;
        let cert = X509::from_pem(body["certificatePem"].as_str().unwrap().as_bytes()).unwrap();
        let key =
            PKey::private_key_from_pem(body["privateKey"].as_str().unwrap().as_bytes()).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert!(verifies(&ca, &cert));
        assert!(body["certificateOwnershipToken"].is_string());
        assert!(p
            .handle("$aws/certificates/create/json", b"", Instant::now())
            .is_some());
    }

    #[test]
    fn a_key_of_another_ca_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ca::new("a").unwrap();
        let b = Ca::new("b").unwrap();
        let (a_cert, _) = a.write(dir.path(), "a").unwrap();
        let (_, b_key) = b.write(dir.path(), "b").unwrap();
        let e = Provisioner::load(&a_cert, &b_key, vec![])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("is not the key of --ca-cert"), "{e}");
    }
}
