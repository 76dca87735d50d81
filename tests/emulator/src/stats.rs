//! Counters readable by tests: a shared, locked [`Stats`] snapshot, optionally written as
//! JSON to a file every 200 ms and at exit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Closed connections kept in [`Stats::connections`] beyond the open ones.
pub const KEEP_CLOSED_CONNECTIONS: usize = 1000;

/// Counters of one relayed connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// Sequence number of the connection, from 1.
    pub id: u64,
    /// The device's address.
    pub peer: String,
    /// Common name of the device certificate.
    pub cn: Option<String>,
    /// ALPN protocol negotiated, if any.
    pub alpn: Option<String>,
    /// MQTT client id from CONNECT.
    pub client_id: Option<String>,
    /// PUBLISH packets forwarded to the broker.
    pub publishes_accepted: u64,
    /// PUBLISH packets dropped by the rate limits (no PUBACK).
    pub publishes_throttled: u64,
    /// Payload bytes of forwarded PUBLISH packets.
    pub payload_bytes_accepted: u64,
    /// Basic Ingest PUBLISHes delivered to a known, enabled rule (also in
    /// `publishes_accepted`).
    #[serde(default)]
    pub rule_messages: u64,
    /// Basic Ingest PUBLISHes for a rule that does not exist or is disabled, dropped (also
    /// in `publishes_accepted`: AWS accepts and acknowledges them).
    #[serde(default)]
    pub rule_not_found: u64,
    /// Whether the connection is still open.
    pub open: bool,
    /// Why the emulator closed it for policy (snake_case reason), if it did.
    pub closed_for_policy: Option<String>,
}

/// Totals and per-connection counters; the JSON of `--stats-file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// TLS handshakes that completed.
    pub tls_accepted: u64,
    /// TLS handshakes that failed (no or untrusted certificate, SNI or ALPN refused...).
    pub tls_failed: u64,
    /// CONNECT packets forwarded to the broker.
    pub connects: u64,
    /// CONNECT packets refused with a CONNACK return code.
    pub connects_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// PUBLISH packets forwarded, all connections.
    pub publishes_accepted: u64,
    /// PUBLISH packets throttled, all connections.
    pub publishes_throttled: u64,
    /// Basic Ingest messages delivered, by rule name.
    #[serde(default)]
    pub rule_messages: BTreeMap<String, u64>,
    /// Basic Ingest messages for a rule that does not exist or is disabled, dropped as AWS
    /// drops them (AWS logs `RuleNotFound`): the total...
    #[serde(default)]
    pub rule_not_found: u64,
    /// ...and by the rule name as sent.
    #[serde(default)]
    pub rule_not_found_by_rule: BTreeMap<String, u64>,
    /// Connections closed (or CONNECTs refused) for policy, by reason.
    pub closed_for_policy: BTreeMap<String, u64>,
    /// Shadow requests by outcome, e.g. `update_accepted`, `get_rejected_404`.
    pub shadow_requests: BTreeMap<String, u64>,
    /// Fleet provisioning requests by outcome, e.g. `create_from_csr_accepted`,
    /// `provision_rejected_404`.
    #[serde(default)]
    pub provisioning_requests: BTreeMap<String, u64>,
    /// Open connections and the most recent closed ones.
    pub connections: Vec<ConnectionStats>,
}

impl Stats {
    /// Connections closed for `reason` (0 if none).
    pub fn closed_for(&self, reason: &str) -> u64 {
        self.closed_for_policy.get(reason).copied().unwrap_or(0)
    }

    /// Shadow requests with `outcome` (0 if none).
    pub fn shadow(&self, outcome: &str) -> u64 {
        self.shadow_requests.get(outcome).copied().unwrap_or(0)
    }

    /// Basic Ingest messages delivered to `rule` (0 if none).
    pub fn rule(&self, rule: &str) -> u64 {
        self.rule_messages.get(rule).copied().unwrap_or(0)
    }

    /// Basic Ingest messages dropped because `rule` does not exist or is disabled (0 if none).
    pub fn rule_not_found_for(&self, rule: &str) -> u64 {
        self.rule_not_found_by_rule.get(rule).copied().unwrap_or(0)
    }

    /// Fleet provisioning requests with `outcome` (0 if none).
    pub fn provisioning(&self, outcome: &str) -> u64 {
        self.provisioning_requests
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    /// The connection whose client id is `client_id`, most recent first.
    pub fn connection(&self, client_id: &str) -> Option<&ConnectionStats> {
        self.connections
            .iter()
            .rev()
            .find(|c| c.client_id.as_deref() == Some(client_id))
    }
}

/// Shared handle to the live counters.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Mutex<Stats>>);

impl StatsHandle {
    /// Locks the counters (a poisoned lock is recovered: counters stay usable).
    pub fn lock(&self) -> MutexGuard<'_, Stats> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> Stats {
        self.lock().clone()
    }

    /// Registers a new connection after its TLS handshake and returns its id.
    pub fn open_connection(
        &self,
        peer: SocketAddr,
        cn: Option<String>,
        alpn: Option<String>,
    ) -> u64 {
        let mut s = self.lock();
        s.tls_accepted += 1;
        s.connections_open += 1;
        let id = s.tls_accepted;
        s.connections.push(ConnectionStats {
            id,
            peer: peer.to_string(),
            cn,
            alpn,
            open: true,
            ..Default::default()
        });
        id
    }

    /// Updates connection `id` with `f` (no-op when it was already pruned).
    pub fn with_connection(&self, id: u64, f: impl FnOnce(&mut ConnectionStats)) {
        let mut s = self.lock();
        if let Some(c) = s.connections.iter_mut().rev().find(|c| c.id == id) {
            f(c);
        }
    }

    /// Marks connection `id` closed and prunes old closed connections.
    pub fn close_connection(&self, id: u64) {
        let mut s = self.lock();
        s.connections_open = s.connections_open.saturating_sub(1);
        if let Some(c) = s.connections.iter_mut().rev().find(|c| c.id == id) {
            c.open = false;
        }
        let closed = s.connections.iter().filter(|c| !c.open).count();
        if closed > KEEP_CLOSED_CONNECTIONS {
            let mut excess = closed - KEEP_CLOSED_CONNECTIONS;
            s.connections.retain(|c| {
                if !c.open && excess > 0 {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Counts one shadow request outcome.
    pub fn shadow(&self, outcome: &str) {
        *self
            .lock()
            .shadow_requests
            .entry(outcome.to_string())
            .or_insert(0) += 1;
    }

    /// Counts one Basic Ingest message of connection `id`: delivered to `rule` when `found`,
    /// dropped as `RuleNotFound` otherwise. Returns that rule's count in its map after this one.
    pub fn rule_message(&self, id: u64, rule: &str, found: bool) -> u64 {
        let n = {
            let mut s = self.lock();
            let map = if found {
                &mut s.rule_messages
            } else {
                s.rule_not_found += 1;
                &mut s.rule_not_found_by_rule
            };
            let n = map.entry(rule.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        self.with_connection(id, |c| {
            if found {
                c.rule_messages += 1;
            } else {
                c.rule_not_found += 1;
            }
        });
        n
    }

    /// Counts one fleet provisioning request outcome.
    pub fn provisioning(&self, outcome: &str) {
        *self
            .lock()
            .provisioning_requests
            .entry(outcome.to_string())
            .or_insert(0) += 1;
    }

    /// Writes the counters as pretty JSON to `path` atomically (temp file + rename).
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.snapshot()).map_err(std::io::Error::other)?;
        let tmp = tmp_path(path);
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_and_old_closed_ones_pruned() {
        let h = StatsHandle::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..KEEP_CLOSED_CONNECTIONS + 5 {
            let id = h.open_connection(peer, Some("cn".into()), None);
            h.close_connection(id);
        }
        let open = h.open_connection(peer, None, None);
        h.with_connection(open, |c| c.client_id = Some("dev".into()));
        h.rule_message(open, "known", true);
        h.rule_message(open, "typo", false);
        h.rule_message(open, "typo", false);
        let s = h.snapshot();
        assert_eq!((s.rule("known"), s.rule("typo")), (1, 0));
        assert_eq!((s.rule_not_found, s.rule_not_found_for("typo")), (2, 2));
        let c = s.connection("dev").unwrap();
        assert_eq!((c.rule_messages, c.rule_not_found), (1, 2));
        assert_eq!(s.tls_accepted, KEEP_CLOSED_CONNECTIONS as u64 + 6);
        assert_eq!(s.connections_open, 1);
        assert_eq!(s.connections.len(), KEEP_CLOSED_CONNECTIONS + 1);
        assert!(s.connection("dev").unwrap().open);
    }

    #[test]
    fn file_is_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let h = StatsHandle::default();
        h.shadow("update_accepted");
        let path = dir.path().join("stats.json");
        h.write_file(&path).unwrap();
        let back: Stats = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back.shadow("update_accepted"), 1);
    }
}
