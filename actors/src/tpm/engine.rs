//! The OpenSSL side of a TPM key: the tpm2 provider (tpm2-openssl) in a library context of its
//! own, and a public-only stand-in key in OpenSSL's default context whose signatures the TPM
//! makes. Only the signature of the handshake goes to the TPM: digests, random numbers, key
//! exchange and the verification of the server stay in the default provider, so no TPM resource
//! manager is needed and every other key in the process (the local broker's) is untouched.
//!
//! Why not the provider in the default context: OpenSSL 3.0 then either signs with the default
//! provider after exporting only the public half of the TPM key ("missing private key"), or (tpm2
//! preferred) runs hashing, key generation and verification on the TPM and fails to sign with
//! plain file keys. The stand-in is a legacy key bound to an in-process ENGINE whose only job is
//! its `sign` method; the ENGINE is attached to the stand-in alone.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Mutex;

use foreign_types::ForeignType;
use openssl::pkey::{Id, PKey, Private};
use openssl_sys::{ENGINE, EVP_MD, EVP_PKEY, EVP_PKEY_CTX, OSSL_LIB_CTX, SSL_CTX};

#[repr(C)]
struct OsslStoreCtx {
    _p: [u8; 0],
}
#[repr(C)]
struct OsslStoreInfo {
    _p: [u8; 0],
}
#[repr(C)]
struct OsslDecoderCtx {
    _p: [u8; 0],
}
#[repr(C)]
struct EvpPkeyMethod {
    _p: [u8; 0],
}

type SignInit = unsafe extern "C" fn(*mut EVP_PKEY_CTX) -> c_int;
type SignFn =
    unsafe extern "C" fn(*mut EVP_PKEY_CTX, *mut u8, *mut usize, *const u8, usize) -> c_int;
type PkeyMeths =
    unsafe extern "C" fn(*mut ENGINE, *mut *mut EvpPkeyMethod, *mut *const c_int, c_int) -> c_int;
type PahoKeyHook = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

extern "C" {
    fn OSSL_LIB_CTX_new() -> *mut OSSL_LIB_CTX;
    fn OSSL_PROVIDER_load(ctx: *mut OSSL_LIB_CTX, name: *const c_char) -> *mut c_void;
    fn EVP_set_default_properties(ctx: *mut OSSL_LIB_CTX, propq: *const c_char) -> c_int;
    fn OSSL_STORE_open_ex(
        uri: *const c_char,
        ctx: *mut OSSL_LIB_CTX,
        propq: *const c_char,
        ui_method: *const c_void,
        ui_data: *mut c_void,
        params: *const c_void,
        post_process: *const c_void,
        post_process_data: *mut c_void,
    ) -> *mut OsslStoreCtx;
    fn OSSL_STORE_load(ctx: *mut OsslStoreCtx) -> *mut OsslStoreInfo;
    fn OSSL_STORE_eof(ctx: *mut OsslStoreCtx) -> c_int;
    fn OSSL_STORE_close(ctx: *mut OsslStoreCtx) -> c_int;
    fn OSSL_STORE_INFO_get_type(info: *const OsslStoreInfo) -> c_int;
    fn OSSL_STORE_INFO_get1_PKEY(info: *const OsslStoreInfo) -> *mut EVP_PKEY;
    fn OSSL_STORE_INFO_free(info: *mut OsslStoreInfo);
    fn OSSL_DECODER_CTX_new_for_pkey(
        pkey: *mut *mut EVP_PKEY,
        input_type: *const c_char,
        input_struct: *const c_char,
        keytype: *const c_char,
        selection: c_int,
        ctx: *mut OSSL_LIB_CTX,
        propq: *const c_char,
    ) -> *mut OsslDecoderCtx;
    fn OSSL_DECODER_from_data(
        ctx: *mut OsslDecoderCtx,
        data: *mut *const u8,
        len: *mut usize,
    ) -> c_int;
    fn OSSL_DECODER_CTX_free(ctx: *mut OsslDecoderCtx);
    fn EVP_PKEY_CTX_new_from_pkey(
        ctx: *mut OSSL_LIB_CTX,
        pkey: *mut EVP_PKEY,
        propq: *const c_char,
    ) -> *mut EVP_PKEY_CTX;
    fn EVP_PKEY_CTX_free(ctx: *mut EVP_PKEY_CTX);
    fn EVP_PKEY_CTX_get0_pkey(ctx: *mut EVP_PKEY_CTX) -> *mut EVP_PKEY;
    fn EVP_PKEY_CTX_get_signature_md(ctx: *mut EVP_PKEY_CTX, md: *mut *const EVP_MD) -> c_int;
    fn EVP_PKEY_CTX_set_signature_md(ctx: *mut EVP_PKEY_CTX, md: *const EVP_MD) -> c_int;
    fn EVP_PKEY_CTX_get_rsa_padding(ctx: *mut EVP_PKEY_CTX, pad: *mut c_int) -> c_int;
    fn EVP_PKEY_CTX_set_rsa_padding(ctx: *mut EVP_PKEY_CTX, pad: c_int) -> c_int;
    fn EVP_PKEY_CTX_get_rsa_pss_saltlen(ctx: *mut EVP_PKEY_CTX, len: *mut c_int) -> c_int;
    fn EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx: *mut EVP_PKEY_CTX, len: c_int) -> c_int;
    fn EVP_PKEY_sign_init(ctx: *mut EVP_PKEY_CTX) -> c_int;
    fn EVP_PKEY_sign(
        ctx: *mut EVP_PKEY_CTX,
        sig: *mut u8,
        siglen: *mut usize,
        tbs: *const u8,
        tbslen: usize,
    ) -> c_int;
    fn EVP_PKEY_get_size(pkey: *const EVP_PKEY) -> c_int;
    fn EVP_PKEY_get_base_id(pkey: *const EVP_PKEY) -> c_int;
    fn EVP_PKEY_free(pkey: *mut EVP_PKEY);
    fn EVP_PKEY_meth_find(id: c_int) -> *const EvpPkeyMethod;
    fn EVP_PKEY_meth_new(id: c_int, flags: c_int) -> *mut EvpPkeyMethod;
    fn EVP_PKEY_meth_copy(dst: *mut EvpPkeyMethod, src: *const EvpPkeyMethod);
    fn EVP_PKEY_meth_get_sign(
        pmeth: *const EvpPkeyMethod,
        init: *mut Option<SignInit>,
        sign: *mut Option<SignFn>,
    );
    fn EVP_PKEY_meth_set_sign(
        pmeth: *mut EvpPkeyMethod,
        init: Option<SignInit>,
        sign: Option<SignFn>,
    );
    fn ENGINE_new() -> *mut ENGINE;
    fn ENGINE_set_id(e: *mut ENGINE, id: *const c_char) -> c_int;
    fn ENGINE_set_name(e: *mut ENGINE, name: *const c_char) -> c_int;
    fn ENGINE_set_pkey_meths(e: *mut ENGINE, f: Option<PkeyMeths>) -> c_int;
    fn EVP_PKEY_set1_engine(pkey: *mut EVP_PKEY, e: *mut ENGINE) -> c_int;
    fn SSL_CTX_use_PrivateKey(ctx: *mut SSL_CTX, pkey: *mut EVP_PKEY) -> c_int;
    /// Paho C, patched in `vendor/paho-mqtt-sys` (see its AWSLINK-PATCHES.md).
    fn MQTTAsync_setPrivateKeyHook(hook: Option<PahoKeyHook>);
}

const EVP_PKEY_RSA: c_int = 6;
const EVP_PKEY_EC: c_int = 408;
const RSA_PKCS1_PSS_PADDING: c_int = 6;
const OSSL_STORE_INFO_PKEY: c_int = 4;
const EVP_PKEY_KEYPAIR: c_int = 0x87;
/// The TPM makes signatures (and holds keys); hashing, random numbers and ciphers are left to
/// the default provider (tpm2-openssl tags its implementations `tpm2.digest`, `tpm2.rand`, …).
const TPM_PROPERTIES: &CStr = c"?provider=tpm2,tpm2.digest!=yes,tpm2.rand!=yes,tpm2.cipher!=yes";

/// How to get the TPM key again for each signature (the provider loads it into the TPM and
/// flushes it when freed, so nothing stays loaded between handshakes).
#[derive(Clone)]
pub(super) enum Recipe {
    /// An OSSL_STORE URI of the tpm2 provider, `handle:0x81000001`.
    Store(CString),
    /// A `TSS2 PRIVATE KEY` PEM (a key wrapped by its parent; it loads only in that TPM).
    Pem(Vec<u8>),
}

struct Runtime {
    ctx: usize,
    tcti: String,
}

struct Entry {
    name: CString,
    /// `None` for a key another engine signs with (PKCS #11).
    recipe: Option<Recipe>,
    kind: String,
    stand_in: PKey<Private>,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);
static KEYS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static ENGINE_PTR: Mutex<usize> = Mutex::new(0);
/// tpm2-openssl shares one ESYS context per provider: one TPM operation at a time.
pub(super) static TPM_LOCK: Mutex<()> = Mutex::new(());

pub(super) use crate::sync::lock;

/// OpenSSL's pending errors as one line (the tpm2 provider's reasons include the TPM's response
/// code text); the queue is cleared.
pub(crate) fn openssl_errors() -> String {
    describe(&openssl::error::ErrorStack::get())
}

/// An error stack as one line: each reason, with its detail (the TPM's response code) if any.
fn describe(stack: &openssl::error::ErrorStack) -> String {
    let text = stack
        .errors()
        .iter()
        .map(|e| match e.data() {
            Some(data) if !data.is_empty() => format!("{} ({data})", e.reason().unwrap_or("?")),
            _ => e.reason().unwrap_or("?").to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        "no reason given".into()
    } else {
        text
    }
}

/// The tpm2 provider's library context, opened on `tcti` the first time. A process talks to one
/// TPM: asking for another afterwards is an error.
pub(super) fn runtime(tcti: &str) -> Result<*mut OSSL_LIB_CTX, String> {
    let mut rt = lock(&RUNTIME);
    if let Some(rt) = rt.as_ref() {
        return if rt.tcti == tcti {
            Ok(rt.ctx as *mut OSSL_LIB_CTX)
        } else {
            Err(format!("this process already uses the TPM at {}", rt.tcti))
        };
    }
    // tpm2-openssl 1.1 takes its TCTI only from the environment, read once when it is loaded.
    std::env::set_var("TPM2OPENSSL_TCTI", tcti);
    if std::env::var_os("TSS2_LOG").is_none() {
        // The TSS would print its own ERROR lines to stderr; awslink reports one line instead.
        std::env::set_var("TSS2_LOG", "all+none");
    }
    // SAFETY: plain OpenSSL calls on a context this function owns; the context and providers
    // stay loaded for the life of the process (they are never freed).
    let ctx = unsafe { OSSL_LIB_CTX_new() };
    if ctx.is_null() {
        return Err(format!("OpenSSL: {}", openssl_errors()));
    }
    if unsafe { OSSL_PROVIDER_load(ctx, c"tpm2".as_ptr()) }.is_null() {
        return Err(format!(
            "cannot open the TPM through {tcti} ({}); is the tpm2-openssl package installed?",
            openssl_errors()
        ));
    }
    if unsafe { OSSL_PROVIDER_load(ctx, c"default".as_ptr()) }.is_null()
        || unsafe { EVP_set_default_properties(ctx, TPM_PROPERTIES.as_ptr()) } != 1
    {
        return Err(format!("OpenSSL: {}", openssl_errors()));
    }
    *rt = Some(Runtime {
        ctx: ctx as usize,
        tcti: tcti.to_string(),
    });
    Ok(ctx)
}

/// The key in the TPM, as the tpm2 provider's `EVP_PKEY` (free with `EVP_PKEY_free`).
fn load_tpm_key(ctx: *mut OSSL_LIB_CTX, recipe: &Recipe) -> Result<*mut EVP_PKEY, String> {
    let _tpm = lock(&TPM_LOCK);
    let mut pkey: *mut EVP_PKEY = std::ptr::null_mut();
    // SAFETY: pointers are checked before use and every object made here is freed here, except
    // the returned key, which the caller frees.
    unsafe {
        match recipe {
            Recipe::Store(uri) => {
                let store = OSSL_STORE_open_ex(
                    uri.as_ptr(),
                    ctx,
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                );
                while !store.is_null() && pkey.is_null() && OSSL_STORE_eof(store) == 0 {
                    let info = OSSL_STORE_load(store);
                    if info.is_null() {
                        break;
                    }
                    if OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY {
                        pkey = OSSL_STORE_INFO_get1_PKEY(info);
                    }
                    OSSL_STORE_INFO_free(info);
                }
                if !store.is_null() {
                    OSSL_STORE_close(store);
                }
            }
            Recipe::Pem(pem) => {
                let dctx = OSSL_DECODER_CTX_new_for_pkey(
                    &mut pkey,
                    c"PEM".as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    EVP_PKEY_KEYPAIR,
                    ctx,
                    std::ptr::null(),
                );
                if !dctx.is_null() {
                    let mut data = pem.as_ptr();
                    let mut len = pem.len();
                    if OSSL_DECODER_from_data(dctx, &mut data, &mut len) != 1 && !pkey.is_null() {
                        EVP_PKEY_free(pkey);
                        pkey = std::ptr::null_mut();
                    }
                    OSSL_DECODER_CTX_free(dctx);
                }
            }
        }
    }
    if pkey.is_null() {
        Err(openssl_errors())
    } else {
        Ok(pkey)
    }
}

/// The key: the stand-in for OpenSSL's default context (public half of the TPM key, signing
/// through the TPM), its key type and the name Paho is given for it.
pub(super) struct Loaded {
    pub stand_in: PKey<Private>,
    pub kind: String,
    pub paho_name: String,
}

/// Which step of [`load`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Opening the TPM (the device or TCTI).
    Device,
    /// Loading the key into the TPM.
    Key,
    /// Signing with it.
    Sign,
}

/// Opens the TPM at `tcti`, loads the key once (so a missing handle, a foreign blob or a locked
/// TPM shows now), makes a test signature, and registers the stand-in under `paho_name`. A name
/// already registered is answered from the registry.
pub(super) fn load(tcti: &str, recipe: Recipe, paho_name: &str) -> Result<Loaded, (Stage, String)> {
    let name = CString::new(paho_name)
        .map_err(|_| (Stage::Key, "a key name with a NUL byte".to_string()))?;
    if let Some(e) = lock(&KEYS).iter().find(|e| e.name == name) {
        return Ok(Loaded {
            stand_in: e.stand_in.clone(),
            kind: e.kind.clone(),
            paho_name: paho_name.to_string(),
        });
    }
    let ctx = runtime(tcti).map_err(|e| (Stage::Device, e))?;
    let tpm_key = load_tpm_key(ctx, &recipe).map_err(|e| (Stage::Key, e))?;
    let (stand_in, kind) = stand_in(tpm_key).map_err(|e| (Stage::Key, e))?;
    lock(&KEYS).push(Entry {
        name,
        recipe: Some(recipe),
        kind: kind.clone(),
        stand_in: stand_in.clone(),
    });
    if let Err(e) = test_signature(&stand_in) {
        lock(&KEYS).retain(|e| e.stand_in.as_ptr() != stand_in.as_ptr());
        return Err((Stage::Sign, e));
    }
    install_paho_hook();
    Ok(Loaded {
        stand_in,
        kind,
        paho_name: paho_name.to_string(),
    })
}

/// The public-only legacy copy of the TPM key, bound to the signing ENGINE, and its type.
fn stand_in(tpm_key: *mut EVP_PKEY) -> Result<(PKey<Private>, String), String> {
    // SAFETY: `tpm_key` is a valid key owned here; `PKey::from_ptr` takes that ownership.
    let tpm_key = unsafe { PKey::<Private>::from_ptr(tpm_key) };
    let (stand_in, kind) = match tpm_key.id() {
        Id::RSA => {
            let rsa = tpm_key.rsa().map_err(|e| e.to_string())?;
            let kind = format!("RSA {}", rsa.size() * 8);
            (PKey::from_rsa(rsa).map_err(|e| e.to_string())?, kind)
        }
        Id::EC => {
            let ec = tpm_key.ec_key().map_err(|e| e.to_string())?;
            let curve = ec
                .group()
                .curve_name()
                .and_then(|n| n.short_name().ok())
                .unwrap_or("?");
            let kind = format!("EC {curve}");
            (PKey::from_ec_key(ec).map_err(|e| e.to_string())?, kind)
        }
        other => {
            return Err(format!(
                "a {other:?} key; awslink signs with RSA and EC keys"
            ))
        }
    };
    {
        let _tpm = lock(&TPM_LOCK);
        drop(tpm_key);
    }
    let engine = engine()?;
    // SAFETY: both pointers are valid; set1 takes its own reference on the engine.
    if unsafe { EVP_PKEY_set1_engine(stand_in.as_ptr(), engine) } != 1 {
        return Err(format!("OpenSSL engine: {}", openssl_errors()));
    }
    Ok((stand_in, kind))
}

/// Signs a digest through the stand-in (as a handshake would), so that a key the TPM cannot use
/// (authorization needed, dictionary-attack lockout) is reported at start-up.
fn test_signature(stand_in: &PKey<Private>) -> Result<(), String> {
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), stand_in)
        .map_err(|e| e.to_string())?;
    signer
        .sign_oneshot_to_vec(b"awslink TPM key check")
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// The process's one ENGINE whose RSA and EC methods are the built-in ones with `sign` replaced.
fn engine() -> Result<*mut ENGINE, String> {
    let mut e = lock(&ENGINE_PTR);
    if *e != 0 {
        return Ok(*e as *mut ENGINE);
    }
    // SAFETY: the methods and the engine are made once and live for the life of the process.
    unsafe {
        for (slot, id) in [(0, EVP_PKEY_RSA), (1, EVP_PKEY_EC)] {
            let base = EVP_PKEY_meth_find(id);
            let meth = EVP_PKEY_meth_new(id, 0);
            if base.is_null() || meth.is_null() {
                return Err(format!("OpenSSL key methods: {}", openssl_errors()));
            }
            EVP_PKEY_meth_copy(meth, base);
            let mut init: Option<SignInit> = None;
            let mut sign: Option<SignFn> = None;
            EVP_PKEY_meth_get_sign(base, &mut init, &mut sign);
            EVP_PKEY_meth_set_sign(meth, init, Some(tpm_sign));
            lock(&METHODS)[slot] = meth as usize;
        }
        let engine = ENGINE_new();
        if engine.is_null()
            || ENGINE_set_id(engine, c"awslink-tpm".as_ptr()) != 1
            || ENGINE_set_name(engine, c"awslink: signatures by a TPM 2.0 key".as_ptr()) != 1
            || ENGINE_set_pkey_meths(engine, Some(pkey_meths)) != 1
        {
            return Err(format!("OpenSSL engine: {}", openssl_errors()));
        }
        *e = engine as usize;
        Ok(engine)
    }
}

static METHODS: Mutex<[usize; 2]> = Mutex::new([0, 0]);
static NIDS: [c_int; 2] = [EVP_PKEY_RSA, EVP_PKEY_EC];

unsafe extern "C" fn pkey_meths(
    _e: *mut ENGINE,
    pmeth: *mut *mut EvpPkeyMethod,
    nids: *mut *const c_int,
    nid: c_int,
) -> c_int {
    if pmeth.is_null() {
        if !nids.is_null() {
            *nids = NIDS.as_ptr();
        }
        return NIDS.len() as c_int;
    }
    let methods = lock(&METHODS);
    let m = match nid {
        EVP_PKEY_RSA => methods[0],
        EVP_PKEY_EC => methods[1],
        _ => 0,
    };
    *pmeth = m as *mut EvpPkeyMethod;
    c_int::from(m != 0)
}

/// The stand-in's `sign`: the same digest, padding and hash, signed by the TPM key.
unsafe extern "C" fn tpm_sign(
    ctx: *mut EVP_PKEY_CTX,
    sig: *mut u8,
    siglen: *mut usize,
    tbs: *const u8,
    tbslen: usize,
) -> c_int {
    std::panic::catch_unwind(|| {
        let stand_in = EVP_PKEY_CTX_get0_pkey(ctx);
        if stand_in.is_null() || siglen.is_null() {
            return 0;
        }
        if sig.is_null() {
            *siglen = usize::try_from(EVP_PKEY_get_size(stand_in)).unwrap_or(0);
            return 1;
        }
        let Some((recipe, tcti_ctx)) = recipe_for(stand_in) else {
            return 0;
        };
        let rsa = EVP_PKEY_get_base_id(stand_in) == EVP_PKEY_RSA;
        let mut md: *const EVP_MD = std::ptr::null();
        EVP_PKEY_CTX_get_signature_md(ctx, &mut md);
        let mut pad: c_int = 0;
        let mut saltlen: c_int = 0;
        if rsa {
            EVP_PKEY_CTX_get_rsa_padding(ctx, &mut pad);
            if pad == RSA_PKCS1_PSS_PADDING {
                EVP_PKEY_CTX_get_rsa_pss_saltlen(ctx, &mut saltlen);
            }
        }
        let Ok(key) = load_tpm_key(tcti_ctx, &recipe) else {
            return 0;
        };
        let _tpm = lock(&TPM_LOCK);
        let t = EVP_PKEY_CTX_new_from_pkey(tcti_ctx, key, std::ptr::null());
        let mut ok = !t.is_null() && EVP_PKEY_sign_init(t) == 1;
        if ok && !md.is_null() {
            ok = EVP_PKEY_CTX_set_signature_md(t, md) == 1;
        }
        if ok && rsa && pad != 0 {
            ok = EVP_PKEY_CTX_set_rsa_padding(t, pad) == 1;
        }
        if ok && rsa && pad == RSA_PKCS1_PSS_PADDING {
            // The TPM chooses the salt length itself (the digest's length); the provider may
            // refuse to be told, which is fine.
            EVP_PKEY_CTX_set_rsa_pss_saltlen(t, saltlen);
        }
        if ok {
            ok = EVP_PKEY_sign(t, sig, siglen, tbs, tbslen) == 1;
        }
        if !t.is_null() {
            EVP_PKEY_CTX_free(t);
        }
        EVP_PKEY_free(key);
        c_int::from(ok)
    })
    .unwrap_or(0)
}

fn recipe_for(stand_in: *mut EVP_PKEY) -> Option<(Recipe, *mut OSSL_LIB_CTX)> {
    let recipe = lock(&KEYS)
        .iter()
        .find(|e| e.stand_in.as_ptr() == stand_in)
        .and_then(|e| e.recipe.clone())?;
    let ctx = lock(&RUNTIME).as_ref()?.ctx as *mut OSSL_LIB_CTX;
    Some((recipe, ctx))
}

/// Registers a key that signs by other means (a PKCS #11 engine key) under `name`, so that Paho's
/// TLS setup finds it as it finds TPM keys.
pub(crate) fn register_for_paho(name: &str, key: &PKey<Private>, kind: &str) -> Result<(), String> {
    let name = CString::new(name).map_err(|_| "a key name with a NUL byte".to_string())?;
    let mut keys = lock(&KEYS);
    keys.retain(|e| e.name != name);
    keys.push(Entry {
        name,
        recipe: None,
        kind: kind.to_string(),
        stand_in: key.clone(),
    });
    drop(keys);
    install_paho_hook();
    Ok(())
}

fn install_paho_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before the TPM key's first connect; Paho reads it when it builds a
    // TLS context.
    ONCE.call_once(|| unsafe { MQTTAsync_setPrivateKeyHook(Some(paho_key_hook)) });
}

/// Paho's private key hook: a registered TPM key name gets the stand-in; anything else is a file.
unsafe extern "C" fn paho_key_hook(ssl_ctx: *mut c_void, name: *const c_char) -> c_int {
    std::panic::catch_unwind(|| {
        if name.is_null() || ssl_ctx.is_null() {
            return -1;
        }
        let name = CStr::from_ptr(name);
        let keys = lock(&KEYS);
        match keys.iter().find(|e| e.name.as_c_str() == name) {
            Some(e) => SSL_CTX_use_PrivateKey(ssl_ctx.cast(), e.stand_in.as_ptr()),
            None => -1,
        }
    })
    .unwrap_or(0)
}
