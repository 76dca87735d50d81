//! Opens TLS connections to the cloud endpoint and says exactly why one fails: DNS, TCP and the
//! handshake with the CA, client certificate, SNI and hostname check, each failure turned into a
//! cause and a one-line detail for the status topic. The cloud link connects through [`open`];
//! `awslink check` and `provision` (whose Paho C only says "TCP/TLS connect failure") repeat the
//! handshake with [`probe`] to name the reason.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{HandshakeError, SslStream, SslVerifyMode};

use crate::model::{DownCause, DownReason};
use crate::tls::TlsIdentity;

/// How long the probe waits for the server's verdict on our certificate after a handshake.
pub const VERDICT_WAIT: Duration = Duration::from_millis(500);

/// What the probe connects to and with.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Endpoint host name (SNI and hostname check).
    pub host: String,
    /// Endpoint port.
    pub port: u16,
    /// CA, client certificate and key, ALPN — the same as the connection it diagnoses.
    pub tls: TlsIdentity,
    /// Timeout for each network step.
    pub timeout: Duration,
}

/// Result of a probe: `Ok(())` when TCP and TLS (including the server's acceptance of our
/// certificate) work, otherwise the reason.
pub fn probe(target: &ProbeTarget) -> Result<(), DownReason> {
    let mut stream = open(target)?;
    // With TLS 1.3 the server judges our certificate after the handshake: read once to see its
    // verdict. A timeout means it accepted (it waits for our CONNECT). The verdict follows our
    // last handshake flight by one round trip, so the wait is short: the whole connect timeout
    // here delayed the next connection attempt by up to 10 s when the endpoint had just come
    // back.
    let _ = stream
        .get_ref()
        .set_read_timeout(Some(VERDICT_WAIT.min(target.timeout)));
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(client_rejected(&e.to_string())),
    }
}

/// DNS, TCP and the TLS handshake (SNI, peer and host name verification) to `target`, each step
/// within `target.timeout`; a failure is turned into its cause and a one-line detail. The
/// stream is blocking with `target.timeout` as its read and write timeouts. The cloud link
/// connects through this too, so its status names the same reasons as `awslink check`.
pub fn open(target: &ProbeTarget) -> Result<SslStream<TcpStream>, DownReason> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| error(format!("dns lookup of {} failed: {e}", target.host)))?
        .collect();
    let addr = addrs
        .first()
        .ok_or_else(|| error(format!("dns lookup of {} returned no address", target.host)))?;
    let tcp = TcpStream::connect_timeout(addr, target.timeout).map_err(|e| {
        error(format!(
            "tcp connect to {}:{} failed: {e}",
            target.host, target.port
        ))
    })?;
    let _ = tcp.set_read_timeout(Some(target.timeout));
    let _ = tcp.set_write_timeout(Some(target.timeout));
    let _ = tcp.set_nodelay(true);

    let client = target
        .tls
        .openssl_client()
        .map_err(|e| error(format!("cannot load {e}")))?;
    let mut ssl = client
        .ssl_for(&target.host)
        .map_err(|e| error(format!("tls setup: {e}")))?;
    ssl.set_verify(SslVerifyMode::PEER);
    match ssl.connect(tcp) {
        Ok(stream) => Ok(stream),
        Err(HandshakeError::Failure(mid)) => {
            let verify = mid.ssl().verify_result();
            if verify.as_raw() != 0 {
                Err(error(format!(
                    "tls handshake failed: certificate verify failed: {}",
                    verify.error_string()
                )))
            } else {
                let text = mid.error().to_string();
                if is_alert_about_us(&text) {
                    Err(client_rejected(&text))
                } else {
                    Err(error(format!("tls handshake failed: {text}")))
                }
            }
        }
        Err(HandshakeError::SetupFailure(e)) => Err(error(format!("tls setup: {e}"))),
        Err(HandshakeError::WouldBlock(_)) => Err(error("tls handshake timed out".into())),
    }
}

/// A connection failure with cause `Error` and `detail`.
pub(super) fn error(detail: String) -> DownReason {
    DownReason {
        cause: DownCause::Error,
        detail,
    }
}

/// Whether an OpenSSL error text is a TLS alert about *our* certificate (the server refused it).
pub fn is_alert_about_us(text: &str) -> bool {
    [
        "unknown ca",
        "bad certificate",
        "certificate required",
        "certificate unknown",
        "unsupported certificate",
        "certificate revoked",
        "certificate expired",
        "access denied",
        "handshake failure",
    ]
    .iter()
    .any(|alert| text.contains(alert))
}

/// The reason for a server's TLS alert about our certificate (`text` names the alert).
pub fn client_rejected(text: &str) -> DownReason {
    DownReason {
        cause: DownCause::NotAuthenticated,
        detail: format!(
            "tls handshake failed: client certificate rejected by the server ({})",
            alert_name(text)
        ),
    }
}

/// The alert's name from an OpenSSL error text, e.g. `alert unknown ca`.
pub fn alert_name(text: &str) -> String {
    match text.find("alert ") {
        Some(i) => text[i..]
            .split(':')
            .next()
            .unwrap_or(text)
            .trim()
            .to_string(),
        None => text.lines().next().unwrap_or(text).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_is_shortened() {
        let text = "error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:ssl/record/rec_layer_s3.c:1605:SSL alert number 48";
        assert!(is_alert_about_us(text));
        assert_eq!(alert_name(text), "alert unknown ca");
    }

    #[test]
    fn refused_port_is_a_tcp_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = ProbeTarget {
            host: "127.0.0.1".into(),
            port,
            tls: TlsIdentity::trusting(None, crate::tls::CLOUD_SETTINGS),
            timeout: Duration::from_secs(2),
        };
        let reason = probe(&target).unwrap_err();
        assert_eq!(reason.cause, DownCause::Error);
        assert!(
            reason.detail.starts_with("tcp connect to 127.0.0.1"),
            "{}",
            reason.detail
        );
    }
}
