//! A software TPM 2.0 (`swtpm socket`) in a test's temp dir, keys made in it with tpm2-tools the
//! way Kanto's documentation does, and device certificates for those keys signed by the test CA.
//! swtpm serves one client at a time: run awslink and the tools one after another.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509NameBuilder, X509};

use super::{free_port, wait_until};

const TOOLS: &[&str] = &[
    "swtpm",
    "tpm2_createprimary",
    "tpm2_create",
    "tpm2_load",
    "tpm2_evictcontrol",
    "tpm2_flushcontext",
    "tpm2_readpublic",
    "tpm2_dictionarylockout",
];

/// Why the TPM tests cannot run here (a missing program or the tpm2 OpenSSL provider), or `None`.
pub fn missing() -> Option<String> {
    for tool in TOOLS {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is not installed (apt-get install swtpm swtpm-tools tpm2-tools tpm2-openssl)"));
        }
    }
    let modules = Command::new("openssl")
        .args(["version", "-m"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let dir = modules
        .split('"')
        .nth(1)
        .unwrap_or("/usr/lib/x86_64-linux-gnu/ossl-modules");
    if !Path::new(dir).join("tpm2.so").exists() {
        return Some(format!(
            "the tpm2 OpenSSL provider ({dir}/tpm2.so) is not installed (apt-get install tpm2-openssl)"
        ));
    }
    None
}

/// A running swtpm; killed on drop.
pub struct SwTpm {
    child: Child,
    /// The TPM command port.
    pub port: u16,
    /// The TCTI for awslink's `tpmDevice` and for tpm2-tools.
    pub tcti: String,
    dir: PathBuf,
}

impl SwTpm {
    /// Starts swtpm with its state in `dir/tpm` and waits until this very process listens on the
    /// command port (a port taken by someone else between choosing and binding is retried).
    pub fn start(dir: &Path) -> SwTpm {
        let state = dir.join("tpm");
        fs::create_dir_all(&state).unwrap();
        for _ in 0..5 {
            // The swtpm TCTI talks to the control channel on the command port + 1.
            let port = free_port();
            let Some(ctrl) = port.checked_add(1) else {
                continue;
            };
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", state.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm starts");
            let pid = child.id();
            let listening = wait_until(Duration::from_secs(10), "swtpm to listen", || {
                if child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                owns_listener(pid, port).then_some(true)
            });
            if listening {
                return SwTpm {
                    child,
                    port,
                    tcti: format!("swtpm:host=127.0.0.1,port={port}"),
                    dir: dir.to_path_buf(),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm does not start");
    }

    /// Runs a tpm2-tools command against this TPM; panics with its stderr on failure. Afterwards
    /// the transient objects the tools leave loaded are flushed (swtpm has no resource manager
    /// and room for three).
    pub fn tool(&self, args: &[&str]) {
        self.tool_result(args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs a tpm2-tools command; `Err` with its stderr when it fails.
    pub fn tool_result(&self, args: &[&str]) -> Result<(), String> {
        let run = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .current_dir(&self.dir)
                .env("TPM2TOOLS_TCTI", &self.tcti)
                .output()
                .unwrap()
        };
        let out = run(args);
        let flushed = run(&["tpm2_flushcontext", "-t"]);
        if !out.status.success() {
            return Err(format!(
                "{args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        assert!(flushed.status.success(), "tpm2_flushcontext -t failed");
        Ok(())
    }

    /// The storage root key as Kanto's documentation makes it: a primary key under the owner
    /// hierarchy, made persistent at `handle`.
    pub fn create_parent(&self, handle: &str) {
        self.tool(&[
            "tpm2_createprimary",
            "-C",
            "o",
            "-G",
            "ecc",
            "-c",
            "parent.ctx",
        ]);
        self.tool(&["tpm2_evictcontrol", "-C", "o", "-c", "parent.ctx", handle]);
    }

    /// A key under `parent` (`-G rsa2048`, `ecc256`): returns the `tpm2_create` blobs (private,
    /// public) and the public key as PEM.
    pub fn create_key(&self, parent: &str, alg: &str, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let (private, public, pem) = (
            self.dir.join(format!("{name}.priv")),
            self.dir.join(format!("{name}.pub")),
            self.dir.join(format!("{name}.pub.pem")),
        );
        let ctx = format!("{name}.ctx");
        let (p, u, m) = (s(&private), s(&public), s(&pem));
        self.tool(&["tpm2_create", "-C", parent, "-G", alg, "-u", &u, "-r", &p]);
        self.tool(&["tpm2_load", "-C", parent, "-u", &u, "-r", &p, "-c", &ctx]);
        self.tool(&["tpm2_readpublic", "-c", &ctx, "-f", "pem", "-o", &m]);
        (private, public, pem)
    }

    /// A key made persistent at `handle` (under a parent at `parent`); returns its public PEM.
    pub fn create_persistent_key(&self, parent: &str, alg: &str, handle: &str) -> PathBuf {
        let (private, public, pem) = self.create_key(parent, alg, "persistent");
        let (p, u) = (s(&private), s(&public));
        self.tool(&[
            "tpm2_load",
            "-C",
            parent,
            "-u",
            &u,
            "-r",
            &p,
            "-c",
            "persistent.ctx",
        ]);
        self.tool(&[
            "tpm2_evictcontrol",
            "-C",
            "o",
            "-c",
            "persistent.ctx",
            handle,
        ]);
        pem
    }
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (from /proc/net/tcp).
fn owns_listener(pid: u32, port: u16) -> bool {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f.get(1)?.rsplit(':').next()?;
        (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == "0A")
            .then(|| f.get(9).map(|i| i.to_string()))?
    });
    let Some(inode) = inode else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        })
        .unwrap_or(false)
}

/// A device certificate with CN `cn` for the public key in `public_pem`, signed by the test CA
/// (`ca.pem`, `ca.key` in `certs_dir`); written to `out`.
pub fn device_certificate(certs_dir: &Path, public_pem: &Path, cn: &str, out: &Path) {
    let ca = X509::from_pem(&fs::read(certs_dir.join("ca.pem")).unwrap()).unwrap();
    let ca_key = PKey::private_key_from_pem(&fs::read(certs_dir.join("ca.key")).unwrap()).unwrap();
    let public = PKey::public_key_from_pem(&fs::read(public_pem).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand::random::<u32>() >> 1).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.subject_name()).unwrap();
    b.set_pubkey(&public).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
        .unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    fs::write(out, b.build().to_pem().unwrap()).unwrap();
}
