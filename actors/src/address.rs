//! Broker addresses, parsed in one place: the local broker's `scheme://host:port` (the
//! configuration normalises it, the intake and the local session connect to it) and the
//! `host[:port]` split every endpoint uses.

/// The local broker: transport, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// `ssl://` / `mqtts://` / `tls://` (TLS) or `tcp://` / `mqtt://` (plain).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (default 1883 plain, 8883 TLS).
    pub port: u16,
}

impl LocalAddress {
    /// Parses `scheme://host[:port]`; the error says what is wrong and what to write.
    pub fn parse(address: &str) -> Result<LocalAddress, String> {
        let (scheme, rest) = address.split_once("://").ok_or_else(|| {
            format!("{address:?} is not scheme://host:port, e.g. \"tcp://localhost:1883\"")
        })?;
        let (tls, default_port) = match scheme {
            "tcp" | "mqtt" => (false, 1883),
            "ssl" | "mqtts" | "tls" => (true, 8883),
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported; use tcp:// or ssl://"
                ))
            }
        };
        let (host, port) = split_host_port(rest, default_port)?;
        Ok(LocalAddress { tls, host, port })
    }

    /// The normalised paho URI: `tcp://host:port` or `ssl://host:port`.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Splits `host[:port]` (IPv6 in brackets), with `default_port` when none is given.
pub fn split_host_port(rest: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?;
            (h, port)
        }
        _ => (rest, default_port),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("host {host:?} is not a host name"));
    }
    if port == 0 {
        return Err("port 0 is not allowed".into());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_by_table() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("tcp://localhost:1883", Ok("tcp://localhost:1883")),
            ("mqtt://broker", Ok("tcp://broker:1883")),
            ("mqtts://broker", Ok("ssl://broker:8883")),
            ("tls://10.0.0.1:8884/", Ok("ssl://10.0.0.1:8884")),
            ("ws://broker:80", Err("scheme \"ws\" is not supported")),
            ("localhost:1883", Err("is not scheme://host:port")),
            ("tcp://broker:0", Err("port 0")),
            ("tcp://broker:x", Err("not a number")),
        ];
        for (input, expected) in rows {
            let got = LocalAddress::parse(input).map(|a| a.uri());
            match (got, expected) {
                (Ok(uri), Ok(want)) => assert_eq!(&uri, want, "{input}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{input}: {e}"),
                (got, want) => panic!("{input}: {got:?}, expected {want:?}"),
            }
        }
    }
}
