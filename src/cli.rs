//! Command-line interface: `awslink run`, `awslink config check`, `awslink check`,
//! `awslink cert create|csr|show`, `awslink provision`, `awslink health`,
//! `awslink buffer inspect|purge`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

/// awslink: forwards a local Mosquitto's Hono telemetry, events and command responses to AWS IoT
/// Core over one mutual-TLS connection, delivers cloud commands back, and loses nothing offline.
#[derive(Debug, Parser)]
#[command(name = "awslink", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the connector until SIGTERM or SIGINT.
    Run(ConfigArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Connect to the cloud once, step by step (DNS, TCP, TLS, MQTT CONNECT, SUBSCRIBE, PUBLISH
    /// echo), and say what to fix when a step fails. Exit 0 only when the round trip worked.
    Check(CheckArgs),
    /// Device certificate commands: create a key and certificate or CSR, show a certificate.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Fleet provisioning by claim: connect with a claim certificate, have AWS IoT sign a new
    /// key's CSR (CreateCertificateFromCsr) and register the thing (RegisterThing with a
    /// template); writes {THING}.key (0600) and {THING}.pem. Exit 1 when AWS rejects.
    Provision(ProvisionArgs),
    /// Exit 0 when a running awslink holds the buffer directory and it is usable (for Docker's
    /// HEALTHCHECK); otherwise exit 1 with the reason (2: configuration error). Never opens the
    /// buffer database.
    Health(HealthArgs),
    /// Look into or clean the buffer of a stopped awslink (sled lets one process open it).
    #[command(subcommand)]
    Buffer(BufferCommand),
}

/// `awslink buffer …`.
#[derive(Debug, Subcommand)]
pub enum BufferCommand {
    /// Queue depth, bytes, oldest age, stored commands and quarantined messages.
    Inspect(BufferArgs),
    /// Delete what is selected.
    Purge(PurgeArgs),
}

/// Which buffer directory.
#[derive(Debug, Args)]
pub struct BufferArgs {
    /// The buffer directory ("buffer.path").
    #[arg(long, default_value = "/var/lib/awslink")]
    pub path: PathBuf,
}

/// `awslink buffer purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The buffer directory.
    #[command(flatten)]
    pub buffer: BufferArgs,
    /// Delete the quarantined messages (those AWS IoT would never accept).
    #[arg(long)]
    pub quarantine: bool,
}

/// `awslink health`: the configuration (as for `run`) and the optional checks.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The configuration and its overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also require a metrics document from awslink on the local broker within SECS (at least
    /// metricsIntervalSecs): the connector is alive, not just its process.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_age: Option<u64>,
    /// Unhealthy when the buffer's file system has less than this many MiB available.
    #[arg(long, value_name = "MB", default_value_t = 16)]
    pub min_free_mb: u64,
    /// Unhealthy when awslink's last heartbeat (every actor answered) is older than SECS: the
    /// process exists but is wedged.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub max_heartbeat_age: u64,
}

/// `awslink check`: the configuration (as for `run`) and the time allowed per step.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration and its overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds allowed for each network step and for the probe message to come back.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

/// `awslink provision`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The AWS IoT endpoint, e.g. mqtts://xxxx-ats.iot.eu-west-1.amazonaws.com:8883.
    #[arg(long)]
    pub address: String,
    /// The claim certificate (PEM) shared by the fleet.
    #[arg(long)]
    pub claim_cert: PathBuf,
    /// The claim certificate's private key (PEM, not readable by group or others).
    #[arg(long)]
    pub claim_key: PathBuf,
    /// CA certificate to verify the endpoint with (Amazon Root CA 1); default: the system store.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The provisioning template name.
    #[arg(long)]
    pub template: String,
    /// A template parameter KEY=VALUE (repeatable), e.g. --param SerialNumber=0042.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The parameter that names the device: the CSR's CN and the expected thing name.
    #[arg(long, default_value = "SerialNumber")]
    pub device_id_param: String,
    /// Directory for {THING}.key and {THING}.pem (created if missing).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Key algorithm of the new device key.
    #[arg(long, value_enum, default_value_t = KeyType::EcP256)]
    pub key_type: KeyType,
    /// Replace existing {THING}.key and {THING}.pem.
    #[arg(long)]
    pub force: bool,
    /// Make the new device key inside the TPM 2.0: only its CSR leaves the TPM, and
    /// {THING}.key is a TSS2 key file that only this TPM can use.
    #[arg(long)]
    pub tpm: bool,
    /// The TPM for --tpm: a device path or a TCTI such as swtpm:host=127.0.0.1,port=2321.
    #[arg(long, requires = "tpm", default_value = "/dev/tpmrm0")]
    pub tpm_device: String,
    /// Seconds allowed for connecting and for each answer from AWS IoT.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

/// `awslink cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write a new private key ({ID}.key, mode 0600) and a self-signed certificate ({ID}.pem)
    /// with subject CN = ID, to register in AWS IoT.
    Create(CreateArgs),
    /// Write a private key ({ID}.key, reused if present) and a certificate signing request
    /// ({ID}.csr) for AWS IoT's CreateCertificateFromCsr.
    Csr(CsrArgs),
    /// Print a certificate's subject, issuer, serial, validity, thumbprints and key.
    Show(ShowArgs),
}

/// Key algorithms AWS IoT accepts for device certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (small and fast).
    #[value(name = "ec-p256")]
    EcP256,
    /// RSA with a 2048-bit modulus.
    #[value(name = "rsa-2048")]
    Rsa2048,
}

/// `awslink cert create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Device id = AWS thing name ([a-zA-Z0-9:_-]{1,128}); the certificate's CN and file names.
    #[arg(long)]
    pub device_id: String,
    /// Directory for {ID}.key and {ID}.pem (created if missing).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Key algorithm.
    #[arg(long, value_enum, default_value_t = KeyType::EcP256)]
    pub key_type: KeyType,
    /// Validity in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Replace existing {ID}.key and {ID}.pem.
    #[arg(long)]
    pub force: bool,
    /// Make the key inside the TPM 2.0: {ID}.key is then a TSS2 key file that only this TPM can
    /// use (name it in "key"); the private key never exists outside the TPM.
    #[arg(long)]
    pub tpm: bool,
    /// The TPM for --tpm: a device path or a TCTI such as swtpm:host=127.0.0.1,port=2321.
    #[arg(long, requires = "tpm", default_value = "/dev/tpmrm0")]
    pub tpm_device: String,
}

/// `awslink cert csr`.
#[derive(Debug, Args)]
pub struct CsrArgs {
    /// Device id = AWS thing name ([a-zA-Z0-9:_-]{1,128}); the request's CN and file names.
    #[arg(long)]
    pub device_id: String,
    /// Directory for {ID}.key and {ID}.csr (created if missing).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Key algorithm of a new key (default ec-p256); an existing key must match it.
    #[arg(long, value_enum)]
    pub key_type: Option<KeyType>,
    /// Replace an existing {ID}.key with a new key.
    #[arg(long)]
    pub force: bool,
    /// Make a new key inside the TPM 2.0 ({ID}.key becomes a TSS2 key file); an existing TSS2
    /// {ID}.key is reused from the TPM with or without this flag.
    #[arg(long)]
    pub tpm: bool,
    /// The TPM for --tpm or an existing TSS2 key: a device path or a TCTI.
    #[arg(long, default_value = "/dev/tpmrm0")]
    pub tpm_device: String,
}

/// `awslink cert show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Certificate file (PEM). Default: the "cert" of --config.
    pub path: Option<PathBuf>,
    /// Configuration file whose "cert" to show when no PATH is given; also says where its
    /// private key lives (a file, or a key in the TPM).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `awslink config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and the files it names, without connecting.
    Check(ConfigArgs),
}

/// The configuration file and the values that override it.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (JSON; Kanto aws-connector files load unchanged).
    #[arg(long, short, default_value = "/etc/awslink/config.json")]
    pub config: PathBuf,
    /// Overrides "address" (e.g. mqtts://xxxx-ats.iot.eu-west-1.amazonaws.com:8883).
    #[arg(long)]
    pub address: Option<String>,
    /// Overrides "deviceId" (the AWS thing name).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Overrides "localAddress" (e.g. tcp://localhost:1883).
    #[arg(long)]
    pub local_address: Option<String>,
    /// Overrides "buffer.path".
    #[arg(long)]
    pub buffer_path: Option<String>,
    /// Overrides "logLevel" (ERROR, WARN, INFO, DEBUG, TRACE); RUST_LOG wins over both.
    #[arg(long)]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The command-line overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            address: self.address.clone(),
            device_id: self.device_id.clone(),
            local_address: self.local_address.clone(),
            buffer_path: self.buffer_path.clone(),
            log_level: self.log_level.clone(),
        }
    }
}
