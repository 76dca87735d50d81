//! The one place that turns a TLS identity (CA, client certificate and key, ALPN) into the
//! settings of every TLS client awslink has: an openssl [`TlsClient`] (the cloud link, the
//! diagnosis probe and `check`'s handshake), paho's `SslOptions` (the local `-pub` session,
//! `check`, `provision`, `health`) and rumqttc's `TlsConfiguration` (the local intake). Peer
//! and hostname verification are always on and cannot be turned off here. A CA file that is
//! set is the only trust, all of its certificates (rumqttc through the vendored change 2 in
//! `vendor/rumqttc`); the system store is used only without one. TLS 1.2 is the minimum: set on the
//! openssl client, and OpenSSL 3's default for paho and rumqttc (its security level 1 refuses
//! TLS 1.0/1.1).
//! A file that cannot be used is reported with the setting that names it, never its contents.
//! The client key is a file, a key held by a TPM 2.0 or a key in a PKCS #11 token
//! ([`PrivateKey`]); a held key is opened through [`crate::tpm`] or [`crate::pkcs11`] and handed
//! to paho and openssl as a stand-in whose signatures the TPM or the token makes.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions, SslVerifyMode,
    SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509CheckFlags;
use paho_mqtt as mqtt;

use crate::pkcs11::Pkcs11Key;
use crate::tpm::{TpmError, TpmIdentity, TpmKey};

/// The ALPN protocol AWS IoT expects for MQTT with a client certificate on port 443.
pub const AWS_ALPN_CERT: &str = "x-amzn-mqtt-ca";

/// An openssl client context: the trust, client identity, ALPN and TLS versions of one
/// [`TlsIdentity`] ([`TlsIdentity::openssl_client`]), peer verification on.
#[derive(Clone)]
pub struct TlsClient {
    context: SslContext,
}

impl TlsClient {
    /// One connection's TLS session to `host`: SNI (for a name) and the check that the server
    /// certificate is for `host` (name or IP address, no partial wildcards). `connect(stream)`
    /// on it makes the handshake.
    pub fn ssl_for(&self, host: &str) -> Result<Ssl, ErrorStack> {
        let mut ssl = Ssl::new(&self.context)?;
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() {
            ssl.set_hostname(host)?;
        }
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip)?,
            None => param.set_host(host)?,
        }
        Ok(ssl)
    }
}

/// A client context with the hardening of openssl's `SslConnector` (the options, modes,
/// cipher list and peer verification of `SslConnector::builder`), without its system trust
/// store: [`TlsIdentity::openssl_client`] chooses the trust.
fn client_context() -> Result<SslContextBuilder, ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    let mut options = SslOptions::ALL
        | SslOptions::NO_COMPRESSION
        | SslOptions::NO_SSLV2
        | SslOptions::NO_SSLV3
        | SslOptions::SINGLE_DH_USE
        | SslOptions::SINGLE_ECDH_USE;
    options &= !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
    b.set_options(options);
    b.set_mode(
        SslMode::AUTO_RETRY
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::RELEASE_BUFFERS,
    );
    b.set_cipher_list("DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK")?;
    b.set_verify(SslVerifyMode::PEER);
    Ok(b)
}

/// The names of the settings a [`TlsIdentity`]'s files came from, so that every error names the
/// key an operator has to fix (`caCert`, `localKey`, `--claim-cert`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingNames {
    /// The CA file's setting.
    pub ca: &'static str,
    /// The client certificate's setting.
    pub cert: &'static str,
    /// The private key's setting.
    pub key: &'static str,
}

/// The cloud connection's configuration keys.
pub const CLOUD_SETTINGS: SettingNames = SettingNames {
    ca: "caCert",
    cert: "cert",
    key: "key",
};

/// The local broker connection's configuration keys.
pub const LOCAL_SETTINGS: SettingNames = SettingNames {
    ca: "localCACert",
    cert: "localCert",
    key: "localKey",
};

/// Which file of an identity a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The CA (trust store).
    Ca,
    /// The client certificate.
    Cert,
    /// The client private key.
    Key,
}

/// A TLS setting that cannot be used: the setting's name, the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// Which file.
    pub file: TlsFile,
    /// The setting that names it (e.g. `caCert`); empty for a problem with no file.
    pub setting: &'static str,
    /// The file's path (empty for a problem with no file).
    pub path: PathBuf,
    /// What is wrong, in words (OpenSSL's or the file system's reason; never key material).
    pub problem: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.setting.is_empty() {
            write!(f, "tls setup: {}", self.problem)
        } else if self.path.as_os_str().is_empty() {
            write!(f, "{}: {}", self.setting, self.problem)
        } else {
            write!(
                f,
                "{} {}: {}",
                self.setting,
                self.path.display(),
                self.problem
            )
        }
    }
}

impl std::error::Error for TlsError {}

/// The client's private key: a PEM file, or a key held by a TPM 2.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKey {
    /// A PEM private key file (PKCS #8, SEC 1 or PKCS #1).
    File(PathBuf),
    /// A key in a TPM; it never leaves the TPM, which signs the handshake.
    Tpm(TpmKey),
    /// A key in a PKCS #11 token, which signs the handshake.
    Pkcs11(Pkcs11Key),
}

impl From<PathBuf> for PrivateKey {
    fn from(path: PathBuf) -> Self {
        PrivateKey::File(path)
    }
}

impl PrivateKey {
    /// The key file, if the key is a plain file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PrivateKey::File(p) => Some(p),
            PrivateKey::Tpm(_) | PrivateKey::Pkcs11(_) => None,
        }
    }

    /// A key held by hardware (TPM, PKCS #11 token), opened for OpenSSL and Paho; `None` for a
    /// key file.
    pub fn open_held(&self) -> Option<Result<TpmIdentity, TpmError>> {
        match self {
            PrivateKey::File(_) => None,
            PrivateKey::Tpm(t) => Some(t.open()),
            PrivateKey::Pkcs11(p) => Some(p.open()),
        }
    }

    /// The setting that names the key (`key`, `keyTpmHandle`, `tpmKey`, `keyPkcs11`).
    pub fn setting(&self) -> &'static str {
        match self {
            PrivateKey::File(_) => "key",
            PrivateKey::Tpm(t) => t.key_setting(),
            PrivateKey::Pkcs11(_) => "keyPkcs11",
        }
    }

    /// Where the key lives, in words (`file /etc/awslink/device.key`, `in the TPM on …`).
    pub fn describe(&self) -> String {
        match self {
            PrivateKey::File(p) => format!("file {}", p.display()),
            PrivateKey::Tpm(t) => t.describe(),
            PrivateKey::Pkcs11(p) => p.describe(),
        }
    }
}

/// Everything a TLS client of awslink presents and trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// CA file (PEM); `None` = the system trust store.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM chain); `None` = no client certificate.
    pub cert: Option<PathBuf>,
    /// Client private key; `None` = no client certificate.
    pub key: Option<PrivateKey>,
    /// ALPN protocols to offer, in order; empty = none.
    pub alpn: Vec<String>,
    /// The settings these came from (for error messages).
    pub settings: SettingNames,
}

impl TlsIdentity {
    /// An identity with no client certificate and no ALPN that trusts `ca` (or the system store).
    pub fn trusting(ca: Option<PathBuf>, settings: SettingNames) -> Self {
        TlsIdentity {
            ca,
            cert: None,
            key: None,
            alpn: Vec::new(),
            settings,
        }
    }

    fn error(&self, file: TlsFile, path: &Path, problem: impl Into<String>) -> TlsError {
        let setting = match file {
            TlsFile::Ca => self.settings.ca,
            TlsFile::Cert => self.settings.cert,
            TlsFile::Key => self.settings.key,
        };
        TlsError {
            file,
            setting,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    fn tpm_error(&self, e: TpmError) -> TlsError {
        TlsError {
            file: TlsFile::Key,
            setting: e.setting,
            path: PathBuf::new(),
            problem: e.problem,
        }
    }

    /// The client key in an openssl builder: the file, or the TPM key's stand-in.
    fn use_key(&self, b: &mut SslContextBuilder) -> Result<(), TlsError> {
        match &self.key {
            None => Ok(()),
            // The reason OpenSSL gives can quote the file's first bytes: say only that it failed.
            Some(PrivateKey::File(key)) => b
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|_| self.error(TlsFile::Key, key, "not a readable PEM private key")),
            Some(held) => {
                let id = self.open_held(held)?;
                b.set_private_key(&id.pkey).map_err(|e| {
                    self.tpm_error(TpmError {
                        setting: held.setting(),
                        problem: format!("OpenSSL refused the key: {e}"),
                    })
                })
            }
        }
    }

    /// A TPM or PKCS #11 key, opened.
    fn open_held(&self, key: &PrivateKey) -> Result<TpmIdentity, TlsError> {
        match key.open_held() {
            Some(opened) => opened.map_err(|e| self.tpm_error(e)),
            None => Err(self.setup_error("a key file is not a held key")),
        }
    }

    fn setup_error(&self, problem: impl Into<String>) -> TlsError {
        TlsError {
            file: TlsFile::Ca,
            setting: "",
            path: PathBuf::new(),
            problem: problem.into(),
        }
    }

    /// paho's SSL options: server certificate and host name verified, the client certificate
    /// and key when set, ALPN when set. Each file must be readable now (Paho C would otherwise
    /// report only "TCP/TLS connect failure" at connect time).
    pub fn paho_ssl_options(&self) -> Result<mqtt::SslOptions, TlsError> {
        let key_file = self
            .key
            .as_ref()
            .and_then(PrivateKey::file)
            .map(Path::to_path_buf);
        for (file, path) in [
            (TlsFile::Ca, &self.ca),
            (TlsFile::Cert, &self.cert),
            (TlsFile::Key, &key_file),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|e| self.error(file, path, e.to_string()))?;
            }
        }
        let mut ssl = mqtt::SslOptionsBuilder::new();
        ssl.enable_server_cert_auth(true).verify(true);
        if let Some(ca) = &self.ca {
            ssl.trust_store(ca)
                .map_err(|e| self.error(TlsFile::Ca, ca, e.to_string()))?;
        }
        if let Some(cert) = &self.cert {
            ssl.key_store(cert)
                .map_err(|e| self.error(TlsFile::Cert, cert, e.to_string()))?;
        }
        match &self.key {
            None => {}
            Some(PrivateKey::File(key)) => {
                ssl.private_key(key)
                    .map_err(|e| self.error(TlsFile::Key, key, e.to_string()))?;
            }
            Some(held) => {
                // Paho's patched TLS setup asks the TPM module for the key by this name.
                let id = self.open_held(held)?;
                ssl.private_key(&id.paho_name)
                    .map_err(|e| self.error(TlsFile::Key, Path::new(""), e.to_string()))?;
            }
        }
        if !self.alpn.is_empty() {
            let protos: Vec<&str> = self.alpn.iter().map(String::as_str).collect();
            ssl.alpn_protos(&protos);
        }
        Ok(ssl.finalize())
    }

    /// An openssl client with the same trust, client certificate and ALPN as
    /// [`Self::paho_ssl_options`], TLS 1.2 minimum; [`TlsClient::ssl_for`] sets SNI and the
    /// host name check of each connection.
    pub fn openssl_client(&self) -> Result<TlsClient, TlsError> {
        let setup = |e: openssl::error::ErrorStack| self.setup_error(e.to_string());
        let mut b = client_context().map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(setup)?;
        match &self.ca {
            // Only the CA that is set, as with paho (Paho C loads the system store only
            // without one). Loading the system store as well would trust every public CA and
            // parse all of them (~140 certificates, ~0.8 MB of heap) at each connect.
            Some(ca) => self.trust_only(&mut b, ca)?,
            None => b.set_default_verify_paths().map_err(setup)?,
        }
        if let Some(cert) = &self.cert {
            b.set_certificate_chain_file(cert)
                .map_err(|_| self.error(TlsFile::Cert, cert, "not a readable PEM certificate"))?;
        }
        self.use_key(&mut b)?;
        if !self.alpn.is_empty() {
            b.set_alpn_protos(&alpn_wire(&self.alpn)).map_err(setup)?;
        }
        // One socket read takes in every TLS record that has arrived (a burst of PUBACKs is
        // many small records), instead of a read for each record's header and one for its body.
        b.set_read_ahead(true);
        Ok(TlsClient { context: b.build() })
    }

    /// Makes the certificates of the CA file at `ca` the only trust of `b`: an empty store,
    /// then OpenSSL's own reading of the file (every `CERTIFICATE` and `TRUSTED CERTIFICATE`
    /// of it, as paho's `SSL_CTX_load_verify_locations`); a file without one is refused.
    fn trust_only(&self, b: &mut SslContextBuilder, ca: &Path) -> Result<(), TlsError> {
        std::fs::File::open(ca).map_err(|e| self.error(TlsFile::Ca, ca, e.to_string()))?;
        let empty = X509StoreBuilder::new().map_err(|e| self.setup_error(e.to_string()))?;
        b.set_cert_store(empty.build());
        b.set_ca_file(ca)
            .map_err(|_| self.error(TlsFile::Ca, ca, "not a readable PEM CA certificate"))
    }

    /// Whether the private key belongs to the client certificate (both must be set and load).
    pub fn key_matches_cert(&self) -> Result<bool, TlsError> {
        let (Some(cert), Some(_)) = (&self.cert, &self.key) else {
            return Ok(true);
        };
        let setup = |e: openssl::error::ErrorStack| self.setup_error(e.to_string());
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(setup)?;
        b.set_certificate_chain_file(cert)
            .map_err(|_| self.error(TlsFile::Cert, cert, "not a readable PEM certificate"))?;
        self.use_key(&mut b)?;
        Ok(b.check_private_key().is_ok())
    }

    /// rumqttc's TLS settings (native-tls over the system OpenSSL): the CA file's certificates
    /// alone when it is set, else the system's; the client certificate and key when both are set.
    pub fn rumqttc_tls(&self) -> Result<rumqttc::TlsConfiguration, TlsError> {
        let read = |file: TlsFile, path: &Path| {
            std::fs::read(path).map_err(|e| self.error(file, path, e.to_string()))
        };
        let Some(ca_path) = &self.ca else {
            return Ok(rumqttc::TlsConfiguration::Native);
        };
        let ca = read(TlsFile::Ca, ca_path)?;
        // The vendored rumqttc trusts every certificate of it and nothing else: none is an error
        // now, not a refused broker at every connect.
        if openssl::x509::X509::stack_from_pem(&ca).map_or(true, |certs| certs.is_empty()) {
            return Err(self.error(TlsFile::Ca, ca_path, "not a readable PEM CA certificate"));
        }
        let client_auth = match (&self.cert, &self.key) {
            (Some(_), Some(held @ (PrivateKey::Tpm(_) | PrivateKey::Pkcs11(_)))) => {
                return Err(self.tpm_error(TpmError {
                    setting: held.setting(),
                    problem: "a TPM or PKCS #11 key can be used for the cloud connection only"
                        .into(),
                }))
            }
            (Some(cert_path), Some(PrivateKey::File(key_path))) => {
                let cert_pem = read(TlsFile::Cert, cert_path)?;
                let key_pem = read(TlsFile::Key, key_path)?;
                let cert = openssl::x509::X509::from_pem(&cert_pem)
                    .map_err(|e| self.error(TlsFile::Cert, cert_path, e.to_string()))?;
                let key = openssl::pkey::PKey::private_key_from_pem(&key_pem)
                    .map_err(|_| self.error(TlsFile::Key, key_path, "not a PEM private key"))?;
                let p12 = openssl::pkcs12::Pkcs12::builder()
                    .name("awslink")
                    .pkey(&key)
                    .cert(&cert)
                    .build2("")
                    .and_then(|p| p.to_der())
                    .map_err(|e| {
                        self.setup_error(format!(
                            "cannot use {}/{} together: {e}",
                            self.settings.cert, self.settings.key
                        ))
                    })?;
                Some((p12, String::new()))
            }
            _ => None,
        };
        Ok(rumqttc::TlsConfiguration::SimpleNative { ca, client_auth })
    }
}

/// ALPN protocol names in TLS wire format (each prefixed by its length; names longer than 255
/// bytes are cut, which no real protocol name is).
pub fn alpn_wire(protocols: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in protocols {
        let bytes = &p.as_bytes()[..p.len().min(255)];
        wire.push(bytes.len() as u8);
        wire.extend_from_slice(bytes);
    }
    wire
}

/// Whether a URI names a TLS transport (`ssl://` or `mqtts://`).
pub fn is_tls_uri(uri: &str) -> bool {
    uri.starts_with("ssl://") || uri.starts_with("mqtts://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_wire_format_by_table() {
        let rows: &[(&[&str], &[u8])] = &[
            (&[], b""),
            (&["x-amzn-mqtt-ca"], b"\x0ex-amzn-mqtt-ca"),
            (&["a", "bc"], b"\x01a\x02bc"),
        ];
        for (protocols, wire) in rows {
            let protocols: Vec<String> = protocols.iter().map(|s| s.to_string()).collect();
            assert_eq!(alpn_wire(&protocols), wire.to_vec(), "{protocols:?}");
        }
    }

    #[test]
    fn tls_uris_by_table() {
        for (uri, tls) in [
            ("ssl://h:8883", true),
            ("mqtts://h:8883", true),
            ("tcp://h:1883", false),
            ("ws://h:80", false),
        ] {
            assert_eq!(is_tls_uri(uri), tls, "{uri}");
        }
    }

    fn missing(file: TlsFile) -> TlsIdentity {
        let p = Some(PathBuf::from("/nonexistent/awslink-test.pem"));
        TlsIdentity {
            ca: if file == TlsFile::Ca { p.clone() } else { None },
            cert: if file == TlsFile::Cert {
                p.clone()
            } else {
                None
            },
            key: if file == TlsFile::Key {
                p.map(PrivateKey::File)
            } else {
                None
            },
            alpn: vec![],
            settings: LOCAL_SETTINGS,
        }
    }

    #[test]
    fn every_client_names_the_setting_of_a_missing_file() {
        for (file, setting) in [
            (TlsFile::Ca, "localCACert"),
            (TlsFile::Cert, "localCert"),
            (TlsFile::Key, "localKey"),
        ] {
            let id = missing(file);
            let paho = id.paho_ssl_options().err();
            let openssl = id.openssl_client().err();
            for (client, err) in [("paho", paho), ("openssl", openssl)] {
                let err = err.unwrap_or_else(|| panic!("{client} accepted a missing {setting}"));
                assert_eq!(err.file, file, "{client}");
                assert_eq!(err.setting, setting, "{client}");
                assert!(err.to_string().starts_with(setting), "{client}: {err}");
                assert!(err.to_string().contains("/nonexistent/awslink-test.pem"));
            }
        }
        let err = missing(TlsFile::Ca).rumqttc_tls().err();
        assert_eq!(err.map(|e| e.setting), Some("localCACert"));
    }

    #[test]
    fn a_ca_file_is_trusted_with_all_its_certificates_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let pem = |name: &str| {
            let (cert, _) = aws_iot_emulator::testcerts::Ca::new(name)
                .unwrap()
                .write(dir.path(), name)
                .unwrap();
            std::fs::read_to_string(cert).unwrap()
        };
        let (one, two) = (pem("ca-one"), pem("ca-two"));
        let key = "-----BEGIN PRIVATE KEY-----\nSECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n";
        // (case, file contents (None: no file), certificates trusted or the error's problem)
        let cases: [(&str, Option<String>, Result<usize, &str>); 7] = [
            ("one CA", Some(one.clone()), Ok(1)),
            ("a bundle", Some(format!("{one}{two}")), Ok(2)),
            ("the same CA twice", Some(format!("{one}{one}")), Ok(1)),
            (
                "a key only",
                Some(key.into()),
                Err("not a readable PEM CA certificate"),
            ),
            (
                "garbage",
                Some("SECRET-KEY-MATERIAL\n".into()),
                Err("not a readable PEM CA certificate"),
            ),
            (
                "an empty file",
                Some(String::new()),
                Err("not a readable PEM CA certificate"),
            ),
            ("no file", None, Err("No such file")),
        ];
        for (i, (case, contents, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("case-{i}.pem"));
            if let Some(contents) = contents {
                std::fs::write(&path, contents).unwrap();
            }
            let id = TlsIdentity::trusting(Some(path.clone()), CLOUD_SETTINGS);
            let rumqttc = id.rumqttc_tls().map(|_| ()).map_err(|e| e.setting);
            assert_eq!(
                rumqttc.is_ok(),
                expected.is_ok(),
                "{case}: rumqttc {rumqttc:?}"
            );
            match (id.openssl_client(), expected) {
                (Ok(client), Ok(n)) => {
                    let store = client.context.cert_store();
                    assert_eq!(store.all_certificates().len(), n, "{case}");
                }
                (Err(e), Err(problem)) => {
                    assert_eq!((e.file, e.setting), (TlsFile::Ca, "caCert"), "{case}");
                    assert_eq!(e.path, path, "{case}");
                    assert!(e.problem.contains(problem), "{case}: {}", e.problem);
                    assert!(!e.to_string().contains("SECRET"), "{case}: {e}");
                }
                (Ok(_), Err(_)) => panic!("{case}: accepted"),
                (Err(e), Ok(_)) => panic!("{case}: refused: {e}"),
            }
        }
    }

    #[test]
    fn a_private_key_error_never_quotes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "SECRET-KEY-MATERIAL-1234\n").unwrap();
        let id = TlsIdentity {
            ca: None,
            cert: None,
            key: Some(PrivateKey::File(key)),
            alpn: vec![],
            settings: CLOUD_SETTINGS,
        };
        let err = id.openssl_client().err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.starts_with("key "), "{err}");
        assert!(!err.contains("SECRET-KEY-MATERIAL"), "{err}");
    }

    #[test]
    fn without_a_ca_rumqttc_uses_the_system_store() {
        let id = TlsIdentity::trusting(None, LOCAL_SETTINGS);
        assert!(matches!(
            id.rumqttc_tls(),
            Ok(rumqttc::TlsConfiguration::Native)
        ));
    }
}
