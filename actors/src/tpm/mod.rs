//! Device keys that never leave a TPM 2.0: which key (a persistent handle, a `TSS2 PRIVATE KEY`
//! file, or Kanto's `tpmHandle`/`tpmKey`/`tpmKeyPub` blobs), on which TPM (`tpmDevice`), and an
//! OpenSSL key for it that every TLS client can use (the signatures are made by the TPM; see
//! [`engine`]). Errors name the setting to fix and never contain key material.

mod engine;
pub mod keyfile;

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};

/// Where the TPM key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmKeySource {
    /// A key made persistent with `tpm2_evictcontrol` (`keyTpmHandle`).
    Persistent(u32),
    /// A `TSS2 PRIVATE KEY` PEM file (`key`), e.g. from `openssl genpkey -provider tpm2`.
    Tss2File(PathBuf),
    /// Kanto's form: the parent (storage root key) handle and the `tpm2_create -r`/`-u` blobs.
    KantoBlobs {
        /// `tpmHandle`: the persistent handle of the parent key.
        parent: u32,
        /// `tpmKey`: the private blob (TPM2B_PRIVATE, wrapped by the parent).
        private: PathBuf,
        /// `tpmKeyPub`: the public blob (TPM2B_PUBLIC).
        public: PathBuf,
    },
}

/// A private key held by a TPM 2.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmKey {
    /// `tpmDevice`: a device path or a TCTI string; empty = `/dev/tpmrm0`.
    pub device: String,
    /// The key.
    pub source: TpmKeySource,
}

/// A TPM key that cannot be used: the setting to fix and why (one line, no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmError {
    /// The configuration key (`tpmDevice`, `keyTpmHandle`, `key`, `tpmKey`, …).
    pub setting: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key \"{}\": {}", self.setting, self.problem)
    }
}

impl std::error::Error for TpmError {}

/// A TPM key opened for TLS: an OpenSSL key for the client's context, its type, and the name
/// under which Paho's TLS setup finds it (give it as Paho's `privateKey`).
#[derive(Clone)]
pub struct TpmIdentity {
    /// The key to hand to OpenSSL (`SslContextBuilder::set_private_key`).
    pub pkey: PKey<Private>,
    /// `EC prime256v1`, `RSA 2048`, …
    pub kind: String,
    /// The `privateKey` string for Paho.
    pub paho_name: String,
}

impl fmt::Debug for TpmIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TpmIdentity({}, {})", self.kind, self.paho_name)
    }
}

impl TpmKey {
    /// The setting that names the key itself.
    pub fn key_setting(&self) -> &'static str {
        match self.source {
            TpmKeySource::Persistent(_) => "keyTpmHandle",
            TpmKeySource::Tss2File(_) => "key",
            TpmKeySource::KantoBlobs { .. } => "tpmKey",
        }
    }

    /// The device in words (`/dev/tpmrm0`, or the TCTI as given).
    pub fn device_name(&self) -> &str {
        if self.device.trim().is_empty() {
            "/dev/tpmrm0"
        } else {
            self.device.trim()
        }
    }

    /// Where the key lives, for `cert show`, `check` and the log.
    pub fn describe(&self) -> String {
        let on = self.device_name();
        match &self.source {
            TpmKeySource::Persistent(h) => {
                format!("in the TPM on {on}, persistent handle 0x{h:08x}")
            }
            TpmKeySource::Tss2File(p) => {
                format!("in the TPM on {on}, wrapped in {}", p.display())
            }
            TpmKeySource::KantoBlobs {
                parent, private, ..
            } => format!(
                "in the TPM on {on}, under parent 0x{parent:08x} ({})",
                private.display()
            ),
        }
    }

    fn error(&self, setting: &'static str, problem: impl Into<String>) -> TpmError {
        TpmError {
            setting,
            problem: problem.into(),
        }
    }

    /// Opens the TPM, loads the key and signs a test digest with it; afterwards the key can be
    /// used by OpenSSL and Paho. Loading the same key again returns the first result.
    pub fn open(&self) -> Result<TpmIdentity, TpmError> {
        let tcti =
            keyfile::tcti_for_device(&self.device).map_err(|e| self.error("tpmDevice", e))?;
        if let Some(path) = tcti.strip_prefix("device:") {
            self.check_device(Path::new(path))?;
        }
        let (recipe, name) = self.recipe()?;
        let loaded = engine::load(&tcti, recipe, &name)
            .map_err(|(stage, reason)| self.explain(stage, &reason))?;
        Ok(TpmIdentity {
            pkey: loaded.stand_in,
            kind: loaded.kind,
            paho_name: loaded.paho_name,
        })
    }

    fn check_device(&self, path: &Path) -> Result<(), TpmError> {
        use std::os::unix::fs::FileTypeExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.error("tpmDevice", format!("{shown} does not exist: this machine has no TPM 2.0, or its driver (tpm_tis, tpm_crb) is not loaded; in a container pass the device (--device {shown})"))
            } else {
                self.error("tpmDevice", format!("cannot read {shown}: {e}"))
            }
        })?;
        if meta.file_type().is_socket() {
            return Err(self.error("tpmDevice", format!("{shown} is a socket; give a TPM simulator as a TCTI, e.g. \"swtpm:host=127.0.0.1,port=2321\"")));
        }
        if !meta.file_type().is_char_device() {
            return Err(self.error(
                "tpmDevice",
                format!(
                    "{shown} is not a TPM device (expected a character device such as /dev/tpmrm0)"
                ),
            ));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    self.error("tpmDevice", format!("{shown} is busy: another process holds it; use /dev/tpmrm0 (the kernel's resource manager), which many processes can share"))
                } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                    self.error("tpmDevice", format!("awslink's user may not open {shown} (permission denied): add it to the group that owns the device (usually tss)"))
                } else {
                    self.error("tpmDevice", format!("cannot open {shown}: {e}"))
                }
            })
    }

    fn recipe(&self) -> Result<(engine::Recipe, String), TpmError> {
        let read = |setting: &'static str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| self.error(setting, format!("cannot read {}: {e}", path.display())))
        };
        match &self.source {
            TpmKeySource::Persistent(h) => {
                let uri = format!("handle:0x{h:08x}");
                let c = std::ffi::CString::new(uri.clone())
                    .map_err(|_| self.error("keyTpmHandle", "bad handle"))?;
                Ok((engine::Recipe::Store(c), format!("tpm:{uri}")))
            }
            TpmKeySource::Tss2File(path) => {
                let pem = read("key", path)?;
                if !keyfile::is_tss2_pem(&pem) {
                    return Err(self.error(
                        "key",
                        format!("{} is not a TSS2 PRIVATE KEY file", path.display()),
                    ));
                }
                self.check_empty_auth("key", path, &pem)?;
                Ok((
                    engine::Recipe::Pem(pem),
                    format!("tpm:key:{}", path.display()),
                ))
            }
            TpmKeySource::KantoBlobs {
                parent,
                private,
                public,
            } => {
                let private_blob = read("tpmKey", private)?;
                let public_blob = read("tpmKeyPub", public)?;
                for (setting, path, blob, what) in [
                    (
                        "tpmKey",
                        private,
                        &private_blob,
                        "TPM2B_PRIVATE (the -r output of tpm2_create)",
                    ),
                    (
                        "tpmKeyPub",
                        public,
                        &public_blob,
                        "TPM2B_PUBLIC (the -u output of tpm2_create)",
                    ),
                ] {
                    if !keyfile::is_tpm2b(blob) {
                        return Err(
                            self.error(setting, format!("{} is not a {what}", path.display()))
                        );
                    }
                }
                let pem = keyfile::tss2_pem(*parent, &public_blob, &private_blob);
                Ok((
                    engine::Recipe::Pem(pem.into_bytes()),
                    format!("tpm:kanto:{}", private.display()),
                ))
            }
        }
    }

    fn check_empty_auth(
        &self,
        setting: &'static str,
        path: &Path,
        pem: &[u8],
    ) -> Result<(), TpmError> {
        let der = keyfile::pem_body(&String::from_utf8_lossy(pem));
        match der.as_deref().and_then(keyfile::tss2_empty_auth) {
            Some(false) => Err(self.error(setting, format!("{} needs a password (emptyAuth is false); awslink uses TPM keys without an authorization value: create the key without -p", path.display()))),
            _ => Ok(()),
        }
    }

    /// One line for a failure of `stage`, from OpenSSL's reason (the TPM's response text).
    fn explain(&self, stage: engine::Stage, reason: &str) -> TpmError {
        let lower = reason.to_lowercase();
        let setting = self.key_setting();
        if lower.contains("lockout") {
            return self.error(setting, format!("the TPM refuses the key: it is in dictionary-attack lockout ({reason}); wait for the lockout to expire or clear it: tpm2_dictionarylockout -c"));
        }
        match stage {
            engine::Stage::Device => self.error("tpmDevice", format!("{}: {reason}", self.device_name())),
            engine::Stage::Key => {
                let fix = match &self.source {
                    TpmKeySource::Persistent(h) => format!("no usable key at persistent handle 0x{h:08x} in this TPM (tpm2_getcap handles-persistent lists them)"),
                    TpmKeySource::Tss2File(p) => format!("the TPM cannot load {} (made for another TPM or parent?)", p.display()),
                    TpmKeySource::KantoBlobs { parent, .. } => format!("the TPM cannot load tpmKey/tpmKeyPub under parent 0x{parent:08x} (tpmHandle): they must come from tpm2_create -C 0x{parent:08x} on this TPM"),
                };
                self.error(setting, format!("{fix}: {reason}"))
            }
            engine::Stage::Sign => self.error(setting, format!("the TPM cannot sign with the key ({reason}); awslink needs a signing key without an authorization value")),
        }
    }
}
