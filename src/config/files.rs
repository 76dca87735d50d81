//! Checks on the files the configuration names, and the device id taken from the certificate.

use std::path::Path;

use openssl::nid::Nid;
use openssl::x509::X509;

use awslink_actors::tpm::TpmKeySource;

use super::{check_thing_name, Config, ConfigError, PrivateKey};

/// Checks that every certificate and key file exists and is readable, and that private keys are
/// not readable by group or others. A TPM key is opened and signs a test digest, so that a
/// missing device, a wrong handle, a foreign key blob or a locked-out TPM is reported here.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let key_file = config
        .key
        .as_ref()
        .and_then(PrivateKey::file)
        .map(Path::to_path_buf);
    let files = [
        ("caCert", &config.ca_cert, false),
        ("cert", &config.cert, false),
        ("key", &key_file, true),
        ("localCACert", &config.local.ca_cert, false),
        ("localCert", &config.local.cert, false),
        ("localKey", &config.local.key, true),
    ];
    for (key, path, private) in files {
        if let Some(path) = path {
            check_file(key, path, private)?;
        }
    }
    if let Some(PrivateKey::Tpm(tpm)) = &config.key {
        // The TPM key's files hold only blobs wrapped by the TPM: readable, any mode.
        match &tpm.source {
            TpmKeySource::Tss2File(path) => check_file("key", path, false)?,
            TpmKeySource::KantoBlobs {
                private, public, ..
            } => {
                check_file("tpmKey", private, false)?;
                check_file("tpmKeyPub", public, false)?;
            }
            TpmKeySource::Persistent(_) => {}
        }
        tpm.open().map_err(|e| ConfigError::new(e.to_string()))?;
    }
    if let Some(PrivateKey::Pkcs11(p11)) = &config.key {
        check_file("pkcs11Module", &p11.module, false)?;
        p11.open().map_err(|e| ConfigError::new(e.to_string()))?;
    }
    Ok(())
}

fn check_file(key: &str, path: &Path, private: bool) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError::new(format!(
            "config key \"{key}\": cannot read {}: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(ConfigError::new(format!(
            "config key \"{key}\": {} is not a file",
            path.display()
        )));
    }
    if let Err(e) = std::fs::File::open(path) {
        return Err(ConfigError::new(format!(
            "config key \"{key}\": cannot read {}: {e}",
            path.display()
        )));
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::new(format!(
                "config key \"{key}\": private key {} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// The certificate's subject common name and the whole subject as `CN=…,O=…`.
pub fn certificate_subject(path: &Path) -> Result<(Option<String>, String), ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::new(format!(
            "config key \"cert\": cannot read {}: {e}",
            path.display()
        ))
    })?;
    let cert = X509::from_pem(&pem).map_err(|_| {
        ConfigError::new(format!(
            "config key \"cert\": {} is not a PEM certificate",
            path.display()
        ))
    })?;
    let mut cn = None;
    let mut dn = Vec::new();
    for entry in cert.subject_name().entries() {
        let value = String::from_utf8_lossy(entry.data().as_slice()).into_owned();
        let name = entry.object().nid().short_name().unwrap_or("?");
        if entry.object().nid() == Nid::COMMONNAME {
            cn = Some(value.clone());
        }
        dn.push(format!("{name}={value}"));
    }
    Ok((cn, dn.join(",")))
}

/// The device id: `deviceId`, else `deviceIdPattern` filled from the certificate, else the
/// certificate's subject CN (as Kanto does).
pub fn resolve_device_id(config: &Config) -> Result<String, ConfigError> {
    if let Some(id) = &config.device_id {
        return Ok(id.clone());
    }
    let Some(cert) = &config.cert else {
        return Err(ConfigError::new(
            "config key \"deviceId\": is required when no client certificate is configured",
        ));
    };
    let (cn, dn) = certificate_subject(cert)?;
    let id = match &config.device_id_pattern {
        Some(pattern) => pattern
            .replace("{{subject-cn}}", cn.as_deref().unwrap_or_default())
            .replace("{{subject-dn}}", &dn),
        None => cn.ok_or_else(|| {
            ConfigError::new(format!(
                "config key \"deviceId\": not set and certificate {} has no subject CN to take it from",
                cert.display()
            ))
        })?,
    };
    check_thing_name(&id).map_err(|e| {
        ConfigError::new(format!(
            "config key \"deviceId\": taken from the certificate: {e}; set \"deviceId\""
        ))
    })?;
    Ok(id)
}
