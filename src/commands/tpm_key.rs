//! `cert create|csr --tpm`: a device key made inside the TPM 2.0 and written as a TSS2 key file,
//! and the OpenSSL key that signs with it (for the self-signed certificate or the CSR).

use std::path::Path;

use awslink_actors::tpm::{self, keyfile, NewKeyType, TpmKey, TpmKeySource};
use openssl::pkey::{PKey, Private};

use super::output::write_new;
use crate::cli::{CsrArgs, KeyType};
use crate::failure::Failure;

/// A new key of `key_type` made by the TPM at `device`, written to `key_path` (mode 0600; with
/// `replace` over an existing file); returns the key to sign with.
pub fn create(
    device: &str,
    key_type: KeyType,
    key_path: &Path,
    replace: bool,
) -> Result<PKey<Private>, Failure> {
    let kind = match key_type {
        KeyType::EcP256 => NewKeyType::EcP256,
        KeyType::Rsa2048 => NewKeyType::Rsa2048,
    };
    let pem = tpm::generate_key(device, kind, "--tpm-device")
        .map_err(|e| Failure::usage(format!("{}: {}", e.setting, e.problem)))?;
    write_new(key_path, &pem, 0o600, replace)?;
    open(device, key_path)
}

/// The TSS2 key file `key_path`, opened in the TPM at `device`.
pub fn open(device: &str, key_path: &Path) -> Result<PKey<Private>, Failure> {
    let key = TpmKey {
        device: device.to_string(),
        source: TpmKeySource::Tss2File(key_path.to_path_buf()),
    };
    key.open()
        .map(|id| id.pkey)
        .map_err(|e| Failure::usage(format!("{}: {}", key_path.display(), e.problem)))
}

/// Whether `path` is a TSS2 key file (by its armour).
pub fn is_tss2_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|text| keyfile::is_tss2_pem(&text))
}

/// `cert csr`'s key when it is a TPM key: an existing TSS2 `{ID}.key` is reused ("reusing"),
/// `--tpm` makes a new one ("wrote"; an existing key file is replaced only with `--force`);
/// `None` for a key file.
pub fn for_csr(
    args: &CsrArgs,
    key_path: &Path,
) -> Result<Option<(PKey<Private>, &'static str)>, Failure> {
    let existing = key_path.exists() && !args.force;
    if existing && is_tss2_file(key_path) {
        return Ok(Some((open(&args.tpm_device, key_path)?, "reusing")));
    }
    if !args.tpm {
        return Ok(None);
    }
    if existing {
        return Err(Failure::usage(format!(
            "{} exists and is not a TPM key; use --force to replace it with a key made in the TPM",
            key_path.display()
        )));
    }
    let key_type = args.key_type.unwrap_or(KeyType::EcP256);
    let key = create(&args.tpm_device, key_type, key_path, true)?;
    Ok(Some((key, "wrote")))
}
