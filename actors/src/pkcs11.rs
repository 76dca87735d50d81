//! Device keys in a PKCS #11 token (a secure element, an HSM, SoftHSM): the key is opened
//! through OpenSSL's pkcs11 engine (libengine-pkcs11-openssl), which signs on the token, and is
//! handed to openssl and Paho like a TPM key. Errors name the setting; the PIN is never shown.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use foreign_types::ForeignType;
use openssl::pkey::{Id, PKey, Private};
use openssl_sys::{ENGINE, EVP_PKEY};

use crate::tpm::{TpmError, TpmIdentity};

extern "C" {
    fn ENGINE_by_id(id: *const c_char) -> *mut ENGINE;
    fn ENGINE_ctrl_cmd_string(
        e: *mut ENGINE,
        cmd: *const c_char,
        arg: *const c_char,
        optional: c_int,
    ) -> c_int;
    fn ENGINE_init(e: *mut ENGINE) -> c_int;
    fn ENGINE_free(e: *mut ENGINE) -> c_int;
    fn ENGINE_load_private_key(
        e: *mut ENGINE,
        key_id: *const c_char,
        ui_method: *const c_void,
        callback_data: *mut c_void,
    ) -> *mut EVP_PKEY;
    fn UI_null() -> *const c_void;
}

/// A private key in a PKCS #11 token.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Key {
    /// `pkcs11Module`: the token's PKCS #11 library (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// `keyPkcs11`: the key's PKCS #11 URI (`pkcs11:token=…;object=…;type=private`).
    pub uri: String,
    /// `pkcs11Pin`: the user PIN, if the token needs a login. Never printed.
    pub pin: Option<String>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = if self.pin.is_some() {
            "(set)"
        } else {
            "(none)"
        };
        write!(
            f,
            "Pkcs11Key({}, {}, pin {pin})",
            self.module.display(),
            self.uri
        )
    }
}

/// The engine, loaded once per process (its module path is fixed by the first key).
static ENGINE_PTR: Mutex<Option<(usize, PathBuf)>> = Mutex::new(None);

impl Pkcs11Key {
    /// Where the key lives, for `cert show`, `check` and the log.
    pub fn describe(&self) -> String {
        format!(
            "in the PKCS #11 token, {} (module {})",
            self.uri,
            self.module.display()
        )
    }

    fn error(setting: &'static str, problem: impl Into<String>) -> TpmError {
        TpmError {
            setting,
            problem: problem.into(),
        }
    }

    /// Opens the key through the pkcs11 engine and registers it for Paho.
    pub fn open(&self) -> Result<TpmIdentity, TpmError> {
        if !self.module.is_file() {
            return Err(Self::error(
                "pkcs11Module",
                format!(
                    "{} is not a readable PKCS #11 library",
                    self.module.display()
                ),
            ));
        }
        let uri = CString::new(self.uri.as_str())
            .map_err(|_| Self::error("keyPkcs11", "contains a NUL byte"))?;
        let engine = self.engine()?;
        // SAFETY: the engine is initialised; the key returned is owned by `PKey`.
        let key = unsafe {
            ENGINE_load_private_key(engine, uri.as_ptr(), UI_null(), std::ptr::null_mut())
        };
        if key.is_null() {
            let reason = crate::tpm::openssl_reasons();
            let (setting, hint) = if reason.to_lowercase().contains("pin") {
                (
                    "pkcs11Pin",
                    "the token refused the login (a wrong or missing PIN)",
                )
            } else {
                ("keyPkcs11", "no private key with this URI in the token")
            };
            return Err(Self::error(setting, format!("{hint}: {reason}")));
        }
        // SAFETY: a valid key, now owned here.
        let pkey = unsafe { PKey::<Private>::from_ptr(key) };
        let kind = match pkey.id() {
            Id::EC => format!("EC {} bits", pkey.bits()),
            Id::RSA => format!("RSA {} bits", pkey.bits()),
            other => format!("{other:?}"),
        };
        let name = format!("pkcs11-key:{}", self.uri);
        crate::tpm::register_for_paho(&name, &pkey, &kind)
            .map_err(|e| Self::error("keyPkcs11", e))?;
        Ok(TpmIdentity {
            pkey,
            kind,
            paho_name: name,
        })
    }

    fn engine(&self) -> Result<*mut ENGINE, TpmError> {
        let mut slot = ENGINE_PTR.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, module)) = slot.as_ref() {
            if *module != self.module {
                return Err(Self::error(
                    "pkcs11Module",
                    format!("this process already uses {}", module.display()),
                ));
            }
            return Ok(*e as *mut ENGINE);
        }
        let module = CString::new(self.module.to_string_lossy().as_bytes())
            .map_err(|_| Self::error("pkcs11Module", "contains a NUL byte"))?;
        // SAFETY: plain ENGINE calls; the engine stays loaded for the life of the process.
        unsafe {
            let e = ENGINE_by_id(c"pkcs11".as_ptr());
            if e.is_null() {
                return Err(Self::error("keyPkcs11", format!("OpenSSL's pkcs11 engine is not installed (apt-get install libengine-pkcs11-openssl): {}", crate::tpm::openssl_reasons())));
            }
            // libp11 prints its own error lines to stderr unless told to be quiet; awslink reports
            // one line itself. (Optional: older engines lack the command.)
            ENGINE_ctrl_cmd_string(e, c"QUIET".as_ptr(), std::ptr::null(), 1);
            let mut ok =
                ENGINE_ctrl_cmd_string(e, c"MODULE_PATH".as_ptr(), module.as_ptr(), 0) == 1;
            if ok {
                if let Some(pin) = &self.pin {
                    let pin = CString::new(pin.as_str())
                        .map_err(|_| Self::error("pkcs11Pin", "contains a NUL byte"))?;
                    ok = ENGINE_ctrl_cmd_string(e, c"PIN".as_ptr(), pin.as_ptr(), 0) == 1;
                }
            }
            if !ok || ENGINE_init(e) != 1 {
                let reason = crate::tpm::openssl_reasons();
                ENGINE_free(e);
                return Err(Self::error(
                    "pkcs11Module",
                    format!(
                        "the pkcs11 engine cannot use {}: {reason}",
                        self.module.display()
                    ),
                ));
            }
            *slot = Some((e as usize, self.module.clone()));
            Ok(e)
        }
    }
}
