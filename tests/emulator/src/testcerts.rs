//! Test certificates made with the `openssl` crate: a CA, a server certificate for
//! `localhost` (SAN DNS:localhost and IP:127.0.0.1) and device certificates with a given CN.
//!
//! Keys are EC P-256 (fast to generate); AWS IoT accepts RSA and EC device keys alike.

use std::fs;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use crate::error::EmulatorError;

/// Paths written by [`generate`].
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// The CA certificate (`ca.pem`): trust store of clients, client CA of the emulator.
    pub ca_cert: PathBuf,
    /// The CA private key (`ca.key`), to issue more certificates with [`issue_client`].
    pub ca_key: PathBuf,
    /// The server certificate (`server.pem`) for `localhost` / 127.0.0.1.
    pub server_cert: PathBuf,
    /// The server private key (`server.key`).
    pub server_key: PathBuf,
    /// The device certificate (`client.pem`) with the requested CN.
    pub client_cert: PathBuf,
    /// The device private key (`client.key`, mode 0600).
    pub client_key: PathBuf,
}

/// A device certificate and key that chain to a CA the emulator does not trust.
#[derive(Debug, Clone)]
pub struct UntrustedPaths {
    /// The foreign CA's certificate (`other-ca.pem`).
    pub ca_cert: PathBuf,
    /// The device certificate issued by the foreign CA (`other-client.pem`).
    pub client_cert: PathBuf,
    /// Its private key (`other-client.key`, mode 0600).
    pub client_key: PathBuf,
}

type Result<T> = std::result::Result<T, EmulatorError>;

fn ssl<T>(what: &str, r: std::result::Result<T, openssl::error::ErrorStack>) -> Result<T> {
    r.map_err(|e| EmulatorError::tls(what, e))
}

fn new_key() -> Result<PKey<Private>> {
    let group = ssl("EC group", EcGroup::from_curve_name(Nid::X9_62_PRIME256V1))?;
    let ec = ssl("EC key", EcKey::generate(&group))?;
    ssl("EC pkey", PKey::from_ec_key(ec))
}

fn builder(cn: &str, key: &PKey<Private>, days: u32) -> Result<X509Builder> {
    let mut name = ssl("name", X509NameBuilder::new())?;
    ssl("CN", name.append_entry_by_nid(Nid::COMMONNAME, cn))?;
    let name = name.build();
    let mut b = ssl("x509", X509Builder::new())?;
    ssl("version", b.set_version(2))?;
    let mut serial = ssl("serial", BigNum::new())?;
    ssl("serial", serial.rand(127, MsbOption::MAYBE_ZERO, false))?;
    let serial = ssl("serial", serial.to_asn1_integer())?;
    ssl("serial", b.set_serial_number(&serial))?;
    ssl("subject", b.set_subject_name(&name))?;
    ssl("pubkey", b.set_pubkey(key))?;
    let not_before = ssl("time", Asn1Time::days_from_now(0))?;
    let not_after = ssl("time", Asn1Time::days_from_now(days))?;
    ssl("time", b.set_not_before(&not_before))?;
    ssl("time", b.set_not_after(&not_after))?;
    Ok(b)
}

/// A certificate authority held in memory.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
}

impl Ca {
    /// Creates a self-signed CA with the given common name.
    pub fn new(cn: &str) -> Result<Ca> {
        let key = new_key()?;
        let mut b = builder(cn, &key, 3650)?;
        let name = ssl(
            "name",
            X509NameBuilder::new().and_then(|mut n| {
                n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
                Ok(n.build())
            }),
        )?;
        ssl("issuer", b.set_issuer_name(&name))?;
        let bc = ssl("bc", BasicConstraints::new().critical().ca().build())?;
        ssl("bc", b.append_extension(bc))?;
        let ku = ssl(
            "ku",
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build(),
        )?;
        ssl("ku", b.append_extension(ku))?;
        let ski = ssl(
            "ski",
            SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)),
        )?;
        ssl("ski", b.append_extension(ski))?;
        ssl("sign", b.sign(&key, MessageDigest::sha256()))?;
        Ok(Ca {
            cert: b.build(),
            key,
        })
    }

    /// Loads a CA written earlier (`ca.pem` + `ca.key`).
    pub fn load(cert: &Path, key: &Path) -> Result<Ca> {
        let c = fs::read(cert).map_err(|e| EmulatorError::file(cert, e))?;
        let k = fs::read(key).map_err(|e| EmulatorError::file(key, e))?;
        Ok(Ca {
            cert: ssl("CA certificate", X509::from_pem(&c))?,
            key: ssl("CA key", PKey::private_key_from_pem(&k))?,
        })
    }

    /// Issues a leaf certificate; `server_host` adds a SAN and serverAuth usage.
    fn issue(&self, cn: &str, server_host: Option<&str>) -> Result<(X509, PKey<Private>)> {
        let key = new_key()?;
        let mut b = builder(cn, &key, 825)?;
        ssl("issuer", b.set_issuer_name(self.cert.subject_name()))?;
        let bc = ssl("bc", BasicConstraints::new().build())?;
        ssl("bc", b.append_extension(bc))?;
        let ku = ssl(
            "ku",
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build(),
        )?;
        ssl("ku", b.append_extension(ku))?;
        let eku = match server_host {
            Some(_) => ExtendedKeyUsage::new().server_auth().build(),
            None => ExtendedKeyUsage::new().client_auth().build(),
        };
        ssl("eku", b.append_extension(ssl("eku", eku)?))?;
        let aki = ssl(
            "aki",
            AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(&self.cert), None)),
        )?;
        ssl("aki", b.append_extension(aki))?;
        if let Some(host) = server_host {
            let mut san = SubjectAlternativeName::new();
            san.dns(host);
            if host == "localhost" {
                san.ip("127.0.0.1");
            }
            let san = ssl("san", san.build(&b.x509v3_context(Some(&self.cert), None)))?;
            ssl("san", b.append_extension(san))?;
        }
        ssl("sign", b.sign(&self.key, MessageDigest::sha256()))?;
        Ok((b.build(), key))
    }

    /// Writes `{name}.pem` and `{name}.key` (0600) for a device certificate with `cn`.
    pub fn write_client(&self, dir: &Path, cn: &str, name: &str) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = self.issue(cn, None)?;
        write_pair(dir, name, &cert, &key)
    }

    /// Writes `{name}.pem` and `{name}.key` (0600) for a server certificate for `host`.
    pub fn write_server(&self, dir: &Path, host: &str, name: &str) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = self.issue(host, Some(host))?;
        write_pair(dir, name, &cert, &key)
    }

    /// Writes `{name}.pem` and `{name}.key` (0600) for the CA itself.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        write_pair(dir, name, &self.cert, &self.key)
    }
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<()> {
    fs::write(path, data).map_err(|e| EmulatorError::file(path, e))?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| EmulatorError::file(path, e))?;
    }
    Ok(())
}

fn write_pair(
    dir: &Path,
    name: &str,
    cert: &X509,
    key: &PKey<Private>,
) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    write_file(&cert_path, &ssl("cert pem", cert.to_pem())?, false)?;
    write_file(
        &key_path,
        &ssl("key pem", key.private_key_to_pem_pkcs8())?,
        true,
    )?;
    Ok((cert_path, key_path))
}

/// Writes a CA (`ca.pem`, `ca.key`), a server certificate for `localhost` (`server.pem`,
/// `server.key`) and a device certificate with CN `device_cn` (`client.pem`, `client.key`) into `dir`.
pub fn generate(dir: &Path, device_cn: &str) -> Result<CertPaths> {
    let ca = Ca::new("awslink test CA")?;
    let (ca_cert, ca_key) = ca.write(dir, "ca")?;
    let (server_cert, server_key) = ca.write_server(dir, "localhost", "server")?;
    let (client_cert, client_key) = ca.write_client(dir, device_cn, "client")?;
    Ok(CertPaths {
        ca_cert,
        ca_key,
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// Issues one more device certificate with CN `cn` from the CA in `paths`, written as
/// `{name}.pem` / `{name}.key` next to it.
pub fn issue_client(paths: &CertPaths, cn: &str, name: &str) -> Result<(PathBuf, PathBuf)> {
    let ca = Ca::load(&paths.ca_cert, &paths.ca_key)?;
    let dir = paths.ca_cert.parent().unwrap_or(Path::new("."));
    ca.write_client(dir, cn, name)
}

/// Writes a second, unrelated CA (`other-ca.pem`) and a device certificate it signed
/// (`other-client.pem`, `other-client.key`): the emulator must refuse it.
pub fn generate_untrusted(dir: &Path, device_cn: &str) -> Result<UntrustedPaths> {
    let ca = Ca::new("untrusted test CA")?;
    let (ca_cert, _) = ca.write(dir, "other-ca")?;
    let (client_cert, client_key) = ca.write_client(dir, device_cn, "other-client")?;
    Ok(UntrustedPaths {
        ca_cert,
        client_cert,
        client_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_chain_verifies_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = generate(dir.path(), "dev-1").unwrap();
        let ca = X509::from_pem(&fs::read(&p.ca_cert).unwrap()).unwrap();
        let client = X509::from_pem(&fs::read(&p.client_cert).unwrap()).unwrap();
        assert!(client.verify(&ca.public_key().unwrap()).unwrap());
        let cn = client
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap();
        assert_eq!(cn.data().to_string().unwrap(), "dev-1");
        let mode = fs::metadata(&p.client_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = generate_untrusted(dir.path(), "dev-1").unwrap();
        let foreign = X509::from_pem(&fs::read(&other.client_cert).unwrap()).unwrap();
        assert!(!foreign.verify(&ca.public_key().unwrap()).unwrap());
        let (c2, _) = issue_client(&p, "dev-2", "client2").unwrap();
        let c2 = X509::from_pem(&fs::read(c2).unwrap()).unwrap();
        assert!(c2.verify(&ca.public_key().unwrap()).unwrap());
    }
}
