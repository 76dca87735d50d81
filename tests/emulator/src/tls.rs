//! The TLS side of the endpoint: mutual TLS with a configured CA, the server certificate,
//! SNI check and ALPN `x-amzn-mqtt-ca`.

use std::path::{Path, PathBuf};

use openssl::nid::Nid;
use openssl::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslMethod, SslRef, SslVerifyMode,
};
use openssl::x509::X509Name;

use crate::error::EmulatorError;

/// The ALPN protocol AWS IoT requires for MQTT with a client certificate on port 443.
pub const ALPN_AWS_MQTT: &str = "x-amzn-mqtt-ca";

/// What the TLS listener needs.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// CA that must have signed device certificates (PEM).
    pub ca_cert: PathBuf,
    /// Server certificate chain offered to devices (PEM).
    pub server_cert: PathBuf,
    /// Its private key (PEM).
    pub server_key: PathBuf,
    /// When set, the SNI a device sends must equal this host name.
    pub server_name: Option<String>,
    /// When true, handshakes without ALPN `x-amzn-mqtt-ca` are refused (port-443 behaviour).
    pub require_alpn: bool,
}

fn tls<T>(what: String, r: Result<T, openssl::error::ErrorStack>) -> Result<T, EmulatorError> {
    r.map_err(|e| EmulatorError::tls(what, e))
}

fn check_readable(path: &Path) -> Result<(), EmulatorError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| EmulatorError::file(path, e))
}

/// Builds the acceptor: TLS 1.2+, client certificate required and verified against the CA.
pub fn acceptor(s: &TlsSettings) -> Result<SslAcceptor, EmulatorError> {
    for p in [&s.ca_cert, &s.server_cert, &s.server_key] {
        check_readable(p)?;
    }
    let mut b = tls(
        "TLS server context".into(),
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()),
    )?;
    tls(
        format!("load server certificate {}", s.server_cert.display()),
        b.set_certificate_chain_file(&s.server_cert),
    )?;
    tls(
        format!("load server key {}", s.server_key.display()),
        b.set_private_key_file(&s.server_key, openssl::ssl::SslFiletype::PEM),
    )?;
    tls(
        "server key does not match certificate".into(),
        b.check_private_key(),
    )?;
    tls(
        format!("load CA {}", s.ca_cert.display()),
        b.set_ca_file(&s.ca_cert),
    )?;
    let names = tls(
        format!("read CA names {}", s.ca_cert.display()),
        X509Name::load_client_ca_file(&s.ca_cert),
    )?;
    b.set_client_ca_list(names);
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let require_alpn = s.require_alpn;
    b.set_alpn_select_callback(move |_, client| {
        let wire = b"\x0ex-amzn-mqtt-ca";
        select_next_proto(wire, client).ok_or(if require_alpn {
            AlpnError::ALERT_FATAL
        } else {
            AlpnError::NOACK
        })
    });
    if let Some(expected) = s.server_name.clone() {
        b.set_servername_callback(move |ssl, _| match ssl.servername(NameType::HOST_NAME) {
            Some(name) if name.eq_ignore_ascii_case(&expected) => Ok(()),
            _ => Err(SniError::ALERT_FATAL),
        });
    }
    Ok(b.build())
}

/// Checks what the callbacks cannot see (no SNI / no ALPN sent at all); `Err` says why.
pub fn check_session(ssl: &SslRef, s: &TlsSettings) -> Result<(), String> {
    if let Some(expected) = &s.server_name {
        match ssl.servername(NameType::HOST_NAME) {
            Some(name) if name.eq_ignore_ascii_case(expected) => {}
            other => return Err(format!("SNI {other:?} is not {expected:?}")),
        }
    }
    if s.require_alpn && ssl.selected_alpn_protocol().is_none() {
        return Err(format!("ALPN {ALPN_AWS_MQTT} required but not offered"));
    }
    Ok(())
}

/// Common name of the verified peer certificate.
pub fn peer_cn(ssl: &SslRef) -> Option<String> {
    let cert = ssl.peer_certificate()?;
    let entry = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
    entry.data().to_string().ok()
}

/// The negotiated ALPN protocol as text.
pub fn alpn(ssl: &SslRef) -> Option<String> {
    ssl.selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}
