//! The AWS IoT emulator rig shared by the emulator-backed tests: local Mosquitto → awslink →
//! [`Proxy`] (cut / black-hole) → emulator; `cloud` probes listen on the emulator's private broker.

use aws_iot_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use super::proxy::Proxy;
use super::*;

/// Everything one emulator-backed test needs; dropped in field order (awslink first).
pub struct CloudRig {
    pub awslink: Awslink,
    pub proxy: Proxy,
    pub emulator: Emulator,
    pub local: Mosquitto,
    pub certs: Certs,
    pub dir: tempfile::TempDir,
}

impl CloudRig {
    /// Starts the rig for `device`; `emulator` adjusts the AWS-default emulator settings,
    /// `extra` is merged into awslink's config.
    pub fn start(
        device: &str,
        emulator: impl FnOnce(EmulatorConfig) -> EmulatorConfig,
        extra: Value,
    ) -> CloudRig {
        Self::start_with_local(device, emulator, extra, Mosquitto::plain())
    }

    /// [`CloudRig::start`] with the test's own local broker (e.g. one with an ACL).
    pub fn start_with_local(
        device: &str,
        emulator: impl FnOnce(EmulatorConfig) -> EmulatorConfig,
        extra: Value,
        local: Mosquitto,
    ) -> CloudRig {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path(), device);
        let config = emulator(EmulatorConfig::new(
            &certs.ca,
            &certs.server_cert,
            &certs.server_key,
        ));
        let emulator = start_emulator(config);
        let proxy = Proxy::start(emulator.port());
        let awslink = Awslink::start(&AwslinkSetup {
            dir: dir.path(),
            cloud_port: proxy.port,
            local_uri: local.uri(),
            certs: &certs,
            device_id: device,
            extra,
        });
        // Mosquitto queues messages for awslink's session only once it has subscribed: a test
        // that publishes before would lose its first messages to the start-up, not to awslink.
        awslink.wait_for_intake(Duration::from_secs(30));
        CloudRig {
            awslink,
            proxy,
            emulator,
            local,
            certs,
            dir,
        }
    }

    /// A client of the emulator's private broker: what "AWS" received, and the cloud side's API.
    pub fn cloud(&self, filters: &[&str]) -> Probe {
        let uri = format!("tcp://127.0.0.1:{}", self.emulator.broker_port());
        Probe::connect(&uri, "cloud-app", filters)
    }

    /// A client of the local Mosquitto.
    pub fn local(&self, id: &str, filters: &[&str]) -> Probe {
        Probe::connect(&self.local.uri(), id, filters)
    }

    /// Waits until awslink's log (e.g. its periodic metrics) shows `needle`.
    pub fn wait_for_metric(&self, needle: &str) {
        self.awslink.wait_for_log(needle, Duration::from_secs(30));
    }
}

/// Starts the emulator; a start that lost a free-port race to a parallel test (its private
/// Mosquitto's port was taken between choosing and binding) is retried with new ports.
fn start_emulator(config: EmulatorConfig) -> Emulator {
    let mut last = None;
    for _ in 0..3 {
        match Emulator::start(config.clone()) {
            Ok(e) => return e,
            Err(e) => {
                eprintln!("emulator start failed, retrying: {e}");
                last = Some(e);
            }
        }
    }
    panic!("emulator does not start: {last:?}");
}
