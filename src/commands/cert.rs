//! `awslink cert create|csr|show`: a device key and a self-signed certificate or a CSR for AWS IoT,
//! and a readable summary of a certificate (validity, AWS certificate id, thumbprints). The key
//! and CSR helpers and the certificate names are shared with `check` and `provision`; the files
//! are written by [`output`](super::output).
//!
//! Private keys are written with mode 0600 from the moment the file exists; existing files are
//! replaced only with `--force`, atomically (written next to the target, then renamed).

use std::fs;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509NameRef, X509Ref, X509ReqBuilder, X509};

use super::output::{ensure_dir, refuse_existing, write_new};
use super::tpm_key;
use crate::cli::{CertCommand, CreateArgs, CsrArgs, KeyType, ShowArgs};
use crate::config::{self, PrivateKey};
use crate::failure::Failure;
use awslink_actors::tpm::TpmError;

/// Days left below which `cert show` prints a warning.
const WARN_DAYS: i64 = 30;

/// `awslink cert create|csr|show`.
pub fn run(command: &CertCommand) -> Result<(), Failure> {
    match command {
        CertCommand::Create(args) => create(args),
        CertCommand::Csr(args) => csr(args),
        CertCommand::Show(args) => show(args),
    }
}

/// `awslink cert create`: a new key and a self-signed certificate with CN = device id.
pub fn create(args: &CreateArgs) -> Result<(), Failure> {
    check_device_id(&args.device_id)?;
    let key_path = file_in(&args.out_dir, &args.device_id, "key");
    let cert_path = file_in(&args.out_dir, &args.device_id, "pem");
    if !args.force {
        refuse_existing(&key_path)?;
        refuse_existing(&cert_path)?;
    }
    ensure_dir(&args.out_dir)?;
    let (key, cert, place) = if args.tpm {
        let key = tpm_key::create(&args.tpm_device, args.key_type, &key_path, args.force)?;
        let cert = self_signed(&args.device_id, &key, args.days)?;
        let cert_pem = cert
            .to_pem()
            .map_err(Failure::crypto("certificate to PEM"))?;
        write_new(&cert_path, &cert_pem, 0o644, args.force)?;
        (key, cert, " in the TPM")
    } else {
        let key = new_key(args.key_type)?;
        let cert = self_signed(&args.device_id, &key, args.days)?;
        let (key_pem, cert_pem) = pem_pair(&key, &cert)?;
        write_new(&key_path, &key_pem, 0o600, args.force)?;
        write_new(&cert_path, &cert_pem, 0o644, args.force)?;
        (key, cert, "")
    };
    println!(
        "wrote {} ({}{place}, mode 0600)",
        key_path.display(),
        key_type_name(&key)
    );
    println!(
        "wrote {} (self-signed, CN={}, valid {} days)",
        cert_path.display(),
        args.device_id,
        args.days
    );
    println!("AWS certificate id: {}", aws_certificate_id(&cert)?);
    print_register_steps(&args.device_id, &cert_path);
    Ok(())
}

/// `awslink cert csr`: a key (reused if present, unless `--force`) and a CSR with CN = device id.
pub fn csr(args: &CsrArgs) -> Result<(), Failure> {
    check_device_id(&args.device_id)?;
    let key_path = file_in(&args.out_dir, &args.device_id, "key");
    let csr_path = file_in(&args.out_dir, &args.device_id, "csr");
    ensure_dir(&args.out_dir)?;
    let key = if let Some((key, verb)) = tpm_key::for_csr(args, &key_path)? {
        check_reused_type(&key_path, &key, args.key_type)?;
        let shown = key_path.display();
        println!("{verb} {shown} ({} in the TPM)", key_type_name(&key));
        key
    } else if key_path.exists() && !args.force {
        let key = load_private_key(&key_path)?;
        check_reused_type(&key_path, &key, args.key_type)?;
        println!("reusing {} ({})", key_path.display(), key_type_name(&key));
        key
    } else {
        let key = new_key(args.key_type.unwrap_or(KeyType::EcP256))?;
        let pem = key
            .private_key_to_pem_pkcs8()
            .map_err(Failure::crypto("key to PEM"))?;
        write_new(&key_path, &pem, 0o600, true)?;
        println!(
            "wrote {} ({}, mode 0600)",
            key_path.display(),
            key_type_name(&key)
        );
        key
    };
    let request = signing_request(&args.device_id, &key)?;
    write_new(&csr_path, &request, 0o644, true)?;
    println!("wrote {} (CN={})", csr_path.display(), args.device_id);
    print_csr_steps(&args.device_id, &csr_path);
    Ok(())
}

/// `awslink cert show`: subject, issuer, serial, validity, thumbprints, key.
pub fn show(args: &ShowArgs) -> Result<(), Failure> {
    let (path, key) = show_path(args)?;
    let cert = load_certificate(&path)?;
    for line in describe(&cert)? {
        println!("{line}");
    }
    // A key file is where the configuration says; a TPM or token key's place and fit are worth
    // a line.
    if let Some(held) = key.filter(|k| k.file().is_none()) {
        println!("private key  {}", describe_held_key(&held, &cert));
    }
    Ok(())
}

/// Where the configured TPM or PKCS #11 key lives and whether it belongs to the certificate.
fn describe_held_key(held: &PrivateKey, cert: &X509) -> String {
    let opened = held.open_held().unwrap_or_else(|| {
        Err(TpmError {
            setting: held.setting(),
            problem: "not a held key".into(),
        })
    });
    let verdict = match (opened, cert.public_key()) {
        (Ok(id), Ok(public)) if id.pkey.public_eq(&public) => {
            format!("{}, matches the certificate", id.kind)
        }
        (Ok(id), _) => format!("{}, does NOT match the certificate", id.kind),
        (Err(e), _) => format!("cannot be opened: {e}"),
    };
    format!("{} ({verdict})", held.describe())
}

fn check_device_id(id: &str) -> Result<(), Failure> {
    config::check_thing_name(id).map_err(|e| Failure::usage(format!("--device-id {e}")))
}

fn file_in(dir: &Path, device_id: &str, ext: &str) -> PathBuf {
    dir.join(format!("{device_id}.{ext}"))
}

/// The key (PKCS #8) and the certificate as PEM, ready to write.
pub(crate) fn pem_pair(key: &PKey<Private>, cert: &X509) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(Failure::crypto("key to PEM"))?;
    let cert_pem = cert
        .to_pem()
        .map_err(Failure::crypto("certificate to PEM"))?;
    Ok((key_pem, cert_pem))
}

/// A new private key of the requested type.
pub(crate) fn new_key(key_type: KeyType) -> Result<PKey<Private>, Failure> {
    match key_type {
        KeyType::EcP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
                .map_err(Failure::crypto("EC P-256 group"))?;
            let ec = EcKey::generate(&group).map_err(Failure::crypto("EC key generation"))?;
            PKey::from_ec_key(ec).map_err(Failure::crypto("EC key"))
        }
        KeyType::Rsa2048 => {
            let rsa = Rsa::generate(2048).map_err(Failure::crypto("RSA key generation"))?;
            PKey::from_rsa(rsa).map_err(Failure::crypto("RSA key"))
        }
    }
}

fn subject(device_id: &str) -> Result<openssl::x509::X509Name, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, device_id)?;
    Ok(name.build())
}

fn self_signed(device_id: &str, key: &PKey<Private>, days: u32) -> Result<X509, Failure> {
    build_self_signed(device_id, key, days).map_err(Failure::crypto("certificate"))
}

fn build_self_signed(device_id: &str, key: &PKey<Private>, days: u32) -> Result<X509, ErrorStack> {
    let name = subject(device_id)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    b.set_serial_number(&*serial.to_asn1_integer()?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(days)?)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    let mut usage = KeyUsage::new();
    usage.critical().digital_signature();
    if key.id() == Id::RSA {
        usage.key_encipherment();
    }
    b.append_extension(usage.build()?)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A PEM CSR with subject CN = `device_id`, signed by `key`.
pub(crate) fn signing_request(device_id: &str, key: &PKey<Private>) -> Result<Vec<u8>, Failure> {
    let build = || -> Result<Vec<u8>, ErrorStack> {
        let mut b = X509ReqBuilder::new()?;
        b.set_version(0)?;
        b.set_subject_name(&*subject(device_id)?)?;
        b.set_pubkey(key)?;
        b.sign(key, MessageDigest::sha256())?;
        b.build().to_pem()
    };
    build().map_err(Failure::crypto("certificate signing request"))
}

fn load_private_key(path: &Path) -> Result<PKey<Private>, Failure> {
    let pem = fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    PKey::private_key_from_pem(&pem).map_err(|_| {
        Failure::usage(format!(
            "{} is not a PEM private key; move it away or use --force to replace it",
            path.display()
        ))
    })
}

fn check_reused_type(
    path: &Path,
    key: &PKey<Private>,
    wanted: Option<KeyType>,
) -> Result<(), Failure> {
    let matches = match wanted {
        None => true,
        Some(KeyType::EcP256) => key.id() == Id::EC && key.bits() == 256,
        Some(KeyType::Rsa2048) => key.id() == Id::RSA && key.bits() == 2048,
    };
    if matches {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "{} holds a key of type {}, not the --key-type asked for; drop --key-type to reuse it, or use --force to replace the key",
        path.display(),
        key_type_name(key)
    )))
}

/// The certificate to show and, with `--config`, the configured private key.
fn show_path(args: &ShowArgs) -> Result<(PathBuf, Option<PrivateKey>), Failure> {
    if let (Some(path), None) = (&args.path, &args.config) {
        return Ok((path.clone(), None));
    }
    let Some(config_path) = &args.config else {
        return Err(Failure::usage(
            "no certificate given: use awslink cert show PATH, or --config FILE to show its \"cert\"",
        ));
    };
    let text = fs::read_to_string(config_path).map_err(|e| {
        Failure::usage(format!(
            "cannot read config file {}: {e}",
            config_path.display()
        ))
    })?;
    let config = config::parse(&text, &config::Overrides::default())
        .map_err(|e| Failure::usage(format!("{}: {e}", config_path.display())))?;
    let cert = match (&args.path, config.cert) {
        (Some(path), _) => path.clone(),
        (None, Some(cert)) => cert,
        (None, None) => {
            return Err(Failure::usage(format!(
            "{}: config key \"cert\" is not set; give the certificate file: awslink cert show PATH",
            config_path.display()
        )))
        }
    };
    Ok((cert, config.key))
}

fn load_certificate(path: &Path) -> Result<X509, Failure> {
    let pem = fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read certificate {}: {e}", path.display())))?;
    X509::from_pem(&pem).map_err(|_| {
        Failure::usage(format!(
            "{} is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    })
}

/// The lines `cert show` prints.
fn describe(cert: &X509) -> Result<Vec<String>, Failure> {
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
        .map_err(Failure::crypto("serial number"))?;
    let key = cert.public_key().map_err(Failure::crypto("public key"))?;
    let days = days_left(cert.not_after())?;
    let mut lines = vec![
        format!("subject      {}", name_text(cert.subject_name())),
        format!("issuer       {}", name_text(cert.issuer_name())),
        format!("serial       {serial}"),
        format!("not before   {}", cert.not_before()),
        format!("not after    {}", cert.not_after()),
        format!("days left    {days}"),
        format!(
            "SHA-256      {}",
            thumbprint(cert, MessageDigest::sha256())?
        ),
        format!("SHA-1        {}", thumbprint(cert, MessageDigest::sha1())?),
        format!("AWS cert id  {}", aws_certificate_id(cert)?),
        format!("key          {}", key_type_name(&key)),
    ];
    if days <= 0 {
        lines.push(format!(
            "WARNING: the certificate has expired (not after {}): create a new one and register it in AWS IoT",
            cert.not_after()
        ));
    } else if days < WARN_DAYS {
        lines.push(format!(
            "WARNING: the certificate expires in {days} days: rotate it before it does"
        ));
    }
    Ok(lines)
}

/// Whole days until `not_after`, a started day counting as one; 0 or less once expired.
fn days_left(not_after: &Asn1TimeRef) -> Result<i64, Failure> {
    let now = Asn1Time::days_from_now(0).map_err(Failure::crypto("current time"))?;
    let diff = now
        .diff(not_after)
        .map_err(Failure::crypto("certificate validity"))?;
    let total = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(if total > 0 {
        (total + 86_399) / 86_400
    } else {
        total.div_euclid(86_400)
    })
}

/// `CN=dev-1, O=Example` (short names, in the certificate's order).
fn name_text(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = String::from_utf8_lossy(entry.data().as_slice());
            format!("{key}={value}")
        })
        .collect();
    parts.join(", ")
}

/// The fingerprint as `openssl x509 -fingerprint` prints it: uppercase hex pairs joined by `:`.
fn thumbprint(cert: &X509, digest: MessageDigest) -> Result<String, Failure> {
    let bytes = cert
        .digest(digest)
        .map_err(Failure::crypto("fingerprint"))?;
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    Ok(pairs.join(":"))
}

/// AWS IoT's certificate id: the SHA-256 of the DER certificate in lowercase hex.
fn aws_certificate_id(cert: &X509) -> Result<String, Failure> {
    let bytes = cert
        .digest(MessageDigest::sha256())
        .map_err(Failure::crypto("fingerprint"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// AWS IoT's certificate id of the PEM certificate in `path`, if it can be read.
pub fn aws_certificate_id_of(path: &Path) -> Option<String> {
    let pem = fs::read(path).ok()?;
    let cert = X509::from_pem(&pem).ok()?;
    aws_certificate_id(&cert).ok()
}

/// `CN=…` of the certificate's subject, or `(no CN)`.
pub(crate) fn subject_cn(cert: &X509Ref) -> String {
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map_or_else(
            || "(no CN)".into(),
            |e| format!("CN={}", String::from_utf8_lossy(e.data().as_slice())),
        )
}

/// The DNS names and IP addresses a certificate is valid for (or its CN).
pub(crate) fn certificate_names(cert: &X509Ref) -> String {
    let mut names = Vec::new();
    if let Some(sans) = cert.subject_alt_names() {
        for san in &sans {
            if let Some(dns) = san.dnsname() {
                names.push(dns.to_string());
            } else if let Some(ip) = san.ipaddress() {
                names.push(ip_text(ip));
            }
        }
    }
    if names.is_empty() {
        return subject_cn(cert);
    }
    if names.len() > 4 {
        let more = names.len() - 4;
        names.truncate(4);
        names.push(format!("{more} more"));
    }
    names.join(", ")
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => "?".into(),
    }
}

fn key_type_name<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> String {
    match key.id() {
        Id::RSA => format!("RSA {} bits", key.bits()),
        Id::EC => {
            let curve = key
                .ec_key()
                .ok()
                .and_then(|ec| ec.group().curve_name())
                .map(curve_name)
                .unwrap_or_else(|| "unknown curve".into());
            format!("EC {curve} ({} bits)", key.bits())
        }
        Id::ED25519 => "Ed25519".into(),
        other => format!("key type {} ({} bits)", other.as_raw(), key.bits()),
    }
}

fn curve_name(nid: Nid) -> String {
    match nid {
        Nid::X9_62_PRIME256V1 => "P-256".into(),
        Nid::SECP384R1 => "P-384".into(),
        Nid::SECP521R1 => "P-521".into(),
        other => other.short_name().unwrap_or("unknown curve").into(),
    }
}

fn print_register_steps(device_id: &str, cert_path: &Path) {
    println!("next: register the certificate in AWS IoT, attach a policy and the thing:");
    println!(
        "  aws iot register-certificate-without-ca --certificate-pem file://{} --status ACTIVE",
        cert_path.display()
    );
    println!("  aws iot attach-policy --policy-name POLICY --target CERTIFICATE_ARN");
    println!(
        "  aws iot attach-thing-principal --thing-name {device_id} --principal CERTIFICATE_ARN"
    );
    println!("then set \"cert\" and \"key\" in the config and run: awslink check --config FILE");
}

fn print_csr_steps(device_id: &str, csr_path: &Path) {
    let pem = csr_path.with_extension("pem");
    println!("next: let AWS IoT sign it, then attach a policy and the thing:");
    println!(
        "  aws iot create-certificate-from-csr --certificate-signing-request file://{} --set-as-active --query certificatePem --output text > {}",
        csr_path.display(),
        pem.display()
    );
    println!("  aws iot attach-policy --policy-name POLICY --target CERTIFICATE_ARN");
    println!(
        "  aws iot attach-thing-principal --thing-name {device_id} --principal CERTIFICATE_ARN"
    );
    println!("then set \"cert\" and \"key\" in the config and run: awslink check --config FILE");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_has_the_device_cn_and_verifies() {
        let key = new_key(KeyType::EcP256).unwrap();
        let cert = self_signed("dev-1", &key, 365).unwrap();
        assert_eq!(name_text(cert.subject_name()), "CN=dev-1");
        assert!(cert.verify(&key).unwrap());
        assert_eq!(days_left(cert.not_after()).unwrap(), 365);
        let lines = describe(&cert).unwrap();
        assert!(!lines.iter().any(|l| l.starts_with("WARNING")), "{lines:?}");
    }

    #[test]
    fn short_lived_certificate_warns() {
        let key = new_key(KeyType::EcP256).unwrap();
        let cert = self_signed("dev-1", &key, 10).unwrap();
        let lines = describe(&cert).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("WARNING: the certificate expires in 10 days")),
            "{lines:?}"
        );
    }
}
