//! The cloud connection's private key setting: a PEM file (`key`), a TSS2 key file in `key`
//! (recognised by its armour), a persistent TPM key (`keyTpmHandle`), or Kanto's four TPM keys
//! (`tpmDevice`, `tpmHandle`, `tpmKey`, `tpmKeyPub`, with Kanto's meaning: the device, the
//! parent key's persistent handle, and the private and public blobs of `tpm2_create`), or a key
//! in a PKCS #11 token (`keyPkcs11`, `pkcs11Module`, `pkcs11Pin`).

use std::path::{Path, PathBuf};

use awslink_actors::pkcs11::Pkcs11Key;
use awslink_actors::tls::PrivateKey;
use awslink_actors::tpm::{keyfile, TpmKey, TpmKeySource};

use super::reader::Reader;
use super::ConfigError;

/// Reads the key settings; `None` when no key is configured.
pub(super) fn read_key(r: &mut Reader<'_>) -> Result<Option<PrivateKey>, ConfigError> {
    let key = r.string("key")?.map(PathBuf::from);
    let key_handle = r.tpm_handle("keyTpmHandle")?;
    let device = r.string("tpmDevice")?;
    let parent = r.tpm_handle("tpmHandle")?;
    let private = r.string("tpmKey")?.map(PathBuf::from);
    let public = r.string("tpmKeyPub")?.map(PathBuf::from);
    let p11_uri = r.string("keyPkcs11")?;
    let p11_module = r.string("pkcs11Module")?.map(PathBuf::from);
    let p11_pin = r.string("pkcs11Pin")?;
    if let Some(uri) = p11_uri {
        if key.is_some() {
            return Err(r.error(
                "key",
                "is set together with keyPkcs11; the token's key is the device key: remove \"key\"",
            ));
        }
        if key_handle.is_some() || device.is_some() || private.is_some() || public.is_some() {
            return Err(r.error(
                "keyPkcs11",
                "is set together with TPM settings; keep one device key",
            ));
        }
        if !uri.starts_with("pkcs11:") {
            return Err(r.error("keyPkcs11", "is not a PKCS #11 URI; write it as \"pkcs11:token=LABEL;object=LABEL;type=private\""));
        }
        if uri.contains("pin-value=") {
            return Err(r.error("keyPkcs11", "carries the PIN (pin-value=); put the PIN in \"pkcs11Pin\" instead, so that it is never shown"));
        }
        let module = p11_module.ok_or_else(|| r.error("pkcs11Module", "is required with keyPkcs11: the token's PKCS #11 library, e.g. /usr/lib/softhsm/libsofthsm2.so"))?;
        return Ok(Some(PrivateKey::Pkcs11(Pkcs11Key {
            module,
            uri,
            pin: p11_pin,
        })));
    }
    if p11_module.is_some() || p11_pin.is_some() {
        let which = if p11_module.is_some() {
            "pkcs11Module"
        } else {
            "pkcs11Pin"
        };
        return Err(r.error(
            which,
            "is set but \"keyPkcs11\" (the key's PKCS #11 URI) is not",
        ));
    }
    if let Some(d) = &device {
        keyfile::tcti_for_device(d).map_err(|e| r.error("tpmDevice", e))?;
    }
    let tpm = |source| {
        Some(PrivateKey::Tpm(TpmKey {
            device: device.clone().unwrap_or_default(),
            source,
        }))
    };
    if parent.is_some() || private.is_some() || public.is_some() {
        if key_handle.is_some() {
            return Err(r.error("keyTpmHandle", "is set together with Kanto's tpmHandle/tpmKey/tpmKeyPub; keep one way of naming the TPM key"));
        }
        if key.is_some() {
            return Err(r.error(
                "key",
                "is set together with tpmKey; the TPM key is the device key: remove \"key\"",
            ));
        }
        let parent = parent.ok_or_else(|| r.error("tpmHandle", "is required with tpmKey/tpmKeyPub: the persistent handle of the parent key they were created under (e.g. 2164260864 = 0x81000000)"))?;
        let private = private.ok_or_else(|| {
            r.error(
                "tpmKey",
                "is required with tpmHandle: the private blob file of the key (tpm2_create -r)",
            )
        })?;
        let public = public.ok_or_else(|| {
            r.error(
                "tpmKeyPub",
                "is required with tpmHandle: the public blob file of the key (tpm2_create -u)",
            )
        })?;
        return Ok(tpm(TpmKeySource::KantoBlobs {
            parent,
            private,
            public,
        }));
    }
    if let Some(handle) = key_handle {
        if key.is_some() {
            return Err(r.error(
                "key",
                "is set together with keyTpmHandle; the TPM key is the device key: remove \"key\"",
            ));
        }
        return Ok(tpm(TpmKeySource::Persistent(handle)));
    }
    match key {
        Some(path) if is_tss2_file(&path) => Ok(tpm(TpmKeySource::Tss2File(path))),
        Some(path) if device.is_some() => Err(r.error("tpmDevice", format!("is set but \"key\" ({}) is not a TPM key; name the TPM key with \"keyTpmHandle\", a TSS2 key file in \"key\", or tpmHandle/tpmKey/tpmKeyPub", path.display()))),
        Some(path) => Ok(Some(PrivateKey::File(path))),
        None if device.is_some() => Err(r.error("tpmDevice", "is set but no TPM key is named; set \"keyTpmHandle\" (e.g. \"0x81000001\"), a TSS2 key file in \"key\", or tpmHandle/tpmKey/tpmKeyPub")),
        None => Ok(None),
    }
}

/// Whether the file starts with the `TSS2 PRIVATE KEY` armour (an unreadable file is not; the
/// file checks report it).
fn is_tss2_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    keyfile::is_tss2_pem(&head[..n])
}
