//! How the two sessions of the intake agree on who journals a control message (the rules are
//! in [`super::sessions`]): the main session's marker, the control session's SUBACK and its
//! record, and each session's counters. Methods of the session loop; no MQTT here.

use std::sync::atomic::Ordering;

use log::{error, info, warn};

use super::sessions::{Session, SessionCounters};
use super::Intake;

impl Intake {
    /// This session's counters.
    pub(super) fn counters(&self) -> &SessionCounters {
        self.ingest.counters.session(self.session)
    }

    /// Main session, connected: whatever Mosquitto kept for it, the control session has too if
    /// its persistent subscriptions are the current filters; otherwise it waits for a marker.
    pub(super) fn connected_for_marker(&mut self, session_present: bool) {
        if self.session != Session::Main {
            return;
        }
        self.covered = session_present && self.coordination.recorded.load(Ordering::Acquire);
        self.marker_sent = None;
        self.marker_wanted.store(!self.covered, Ordering::Release);
        if !self.covered {
            info!("local main session journals control messages too until its marker comes back after the control session subscribed");
        }
    }

    /// Main session: its marker came back; the one sent on this connection means that the
    /// control session has its own copy of whatever follows.
    pub(super) fn on_marker(&mut self, payload: &[u8]) {
        let sent = self.marker_sent.map(|m| m.to_string());
        if !self.covered && sent.as_deref().map(str::as_bytes) == Some(payload) {
            self.covered = true;
            info!("local main session: marker back; control messages are journaled by the control session alone");
        }
    }

    /// Main session: once the control session is subscribed on its current connection, publish
    /// a marker (once per connection) to this session's own marker topic.
    pub(super) fn send_marker_if_due(&mut self) {
        if self.session != Session::Main
            || self.covered
            || self.marker_sent.is_some()
            || !self.counters().subscribed.load(Ordering::Relaxed)
            || !self.coordination.control_subscribed.load(Ordering::Acquire)
        {
            return;
        }
        let seq = self.marker_seq + 1;
        if self.publish_marker(seq) {
            self.marker_seq = seq;
            self.marker_sent = Some(seq);
            self.marker_wanted.store(false, Ordering::Release);
        }
    }

    /// The broker answered the session's SUBSCRIBE of `filters` filters (`granted`: all of
    /// them).
    pub(super) fn on_subscribed(&mut self, granted: bool, filters: usize) {
        if !granted {
            return error!(
                "the local broker refused a subscription of the intake's {} session (check its ACL for client {:?})",
                self.session.name(),
                self.client_id
            );
        }
        self.counters().subscribed.store(true, Ordering::Relaxed);
        info!(
            "local {} session subscribed ({filters} filters)",
            self.session.name()
        );
        if self.session == Session::Control {
            // From now on its persistent session has its own copy of every control message.
            let c = &self.coordination;
            c.control_subscribed.store(true, Ordering::Release);
            match self.record.store(&self.filters) {
                Ok(()) => c.recorded.store(true, Ordering::Release),
                Err(e) => warn!("cannot record the control session's filters: {e}"),
            }
        }
        let counters = &self.ingest.counters;
        if counters.sessions_where(true, |s| s.subscribed.load(Ordering::Relaxed)) {
            info!("local intake subscribed (both sessions)");
        }
    }
}
