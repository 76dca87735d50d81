//! How the two sessions of the intake agree on who journals a control message (the rules are
//! in [`super::sessions`]): the main session's basis (its CONNACK and the record, or its
//! marker), the control session's CONNACK, SUBACK and record, and each session's counters.
//! Methods of the session loop; no MQTT here.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::mono_ms;

use log::{error, info, warn};

use super::sessions::{ControlEvent, Session, SessionCounters};
use super::Intake;

/// How long the main session waits for its marker before it warns that the broker does not
/// deliver it (Mosquitto drops a publish its ACL refuses and still acknowledges it).
pub(super) const MARKER_OVERDUE: Duration = Duration::from_secs(10);

/// How the broker answered a session's SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Granted {
    /// Every filter at QoS 1 (or more).
    All,
    /// A filter refused.
    Refused,
    /// Every filter granted, one of them at QoS 0 only.
    Downgraded,
}

impl Intake {
    /// This session's counters.
    pub(super) fn counters(&self) -> &SessionCounters {
        self.ingest.counters.session(self.session)
    }

    /// Main session: whether the control session has its own copy of a control message
    /// received now ([`super::sessions::ControlCopy::covers`]).
    pub(super) fn covered(&self) -> bool {
        self.session == Session::Main && self.coordination.control().covers(self.covered_at)
    }

    /// Main session, connected: whatever Mosquitto kept for it, the control session has too if
    /// its persistent subscriptions are the current filters; otherwise it waits for a marker.
    /// Control session, connected: without `session_present` its persistent subscriptions (and
    /// what Mosquitto queued for them) are gone, so the main session's basis is too.
    pub(super) fn connected_for_marker(&mut self, session_present: bool) {
        let c = &self.coordination;
        if self.session == Session::Control {
            if c.on_control(ControlEvent::Connected { session_present }) {
                self.forget_record("the local broker did not keep the control session");
            }
            return;
        }
        let breaks = c.control().breaks;
        self.covered_at = (session_present && c.recorded.load(Ordering::Acquire)).then_some(breaks);
        self.marker_sent = None;
        self.marker_due_ms.store(0, Ordering::Release);
        c.marker_wanted
            .store(self.covered_at.is_none(), Ordering::Release);
        if self.covered_at.is_none() {
            info!("local main session journals control messages too until its marker comes back after the control session subscribed");
        }
    }

    /// Control session: its connection broke; until its next SUBACK the main session journals
    /// control messages too.
    pub(super) fn control_lost(&self) {
        if self.session == Session::Control {
            self.coordination.on_control(ControlEvent::Lost);
            self.coordination.control_started.notify_one();
        }
    }

    /// Control session: its persistent subscriptions are gone (`why`): forget their record.
    fn forget_record(&self, why: &str) {
        warn!("{why}: the main session journals control messages too until its marker comes back");
        if let Err(e) = self.record.forget() {
            warn!("cannot forget the record of the control session's filters: {e}");
        }
    }

    /// Main session: its marker came back; the one sent on this connection means that the
    /// control session has its own copy of whatever follows (while its subscriptions last).
    pub(super) fn on_marker(&mut self, payload: &[u8]) {
        let Some((seq, breaks)) = self.marker_sent else {
            return;
        };
        if self.covered_at != Some(breaks) && seq.to_string().as_bytes() == payload {
            self.covered_at = Some(breaks);
            self.marker_due_ms.store(0, Ordering::Release);
            info!("local main session: marker back; control messages are journaled by the control session alone");
        }
    }

    /// Main session: once the control session is subscribed on its current connection, publish
    /// a marker (once per connection and control session break) to its own marker topic.
    pub(super) fn send_marker_if_due(&mut self) {
        let control = self.coordination.control();
        if self.session != Session::Main
            || self.covered_at == Some(control.breaks)
            || self.marker_sent.is_some_and(|(_, b)| b == control.breaks)
            || !self.counters().subscribed.load(Ordering::Relaxed)
            || !control.granted
        {
            return;
        }
        let seq = self.marker_seq + 1;
        if self.publish_marker(seq) {
            self.marker_seq = seq;
            self.marker_sent = Some((seq, control.breaks));
            let due = mono_ms() + MARKER_OVERDUE.as_millis() as u64;
            self.marker_due_ms.store(due.max(1), Ordering::Release);
            self.coordination
                .marker_wanted
                .store(false, Ordering::Release);
        }
    }

    /// Main session: a marker that has not come back within [`MARKER_OVERDUE`] while the session
    /// stayed connected says so, once per marker. Until it comes back both sessions journal
    /// control messages: each is sent to the cloud twice, none is lost.
    pub(super) fn warn_if_marker_overdue(&mut self) {
        let due = self.marker_due_ms.load(Ordering::Acquire);
        if due != 0 && mono_ms() >= due {
            self.marker_due_ms.store(0, Ordering::Release);
            warn!(
                "the intake's marker on {:?} has not come back within {} s: the local broker probably refuses it (its ACL must let clients {:?} and {:?} publish and subscribe that topic). Until it does, both intake sessions journal control messages, so each is sent to the cloud twice (none is lost)",
                self.marker_topic,
                MARKER_OVERDUE.as_secs(),
                self.client_id,
                Session::Control.client_id(&self.client_id)
            );
        }
    }

    /// The broker answered the session's SUBSCRIBE of `filters` filters.
    pub(super) fn on_subscribed(&mut self, granted: Granted, filters: usize) {
        let name = self.session.name();
        if self.session == Session::Control {
            let c = &self.coordination;
            c.control_started.notify_one();
            let at_qos1 = granted == Granted::All;
            if c.on_control(ControlEvent::Subscribed { at_qos1 }) {
                self.forget_record(&format!(
                    "the local broker {} a subscription of the control session",
                    if granted == Granted::Refused {
                        "refused"
                    } else {
                        "granted only QoS 0 for"
                    }
                ));
            }
        }
        match granted {
            Granted::Refused => {
                return error!(
                    "the local broker refused a subscription of the intake's {name} session (check its ACL for client {:?})",
                    self.client_id
                )
            }
            Granted::Downgraded => warn!(
                "the local broker granted only QoS 0 for a subscription of the intake's {name} session: Mosquitto keeps no QoS 0 message for it while awslink is away"
            ),
            Granted::All => {}
        }
        self.counters().subscribed.store(true, Ordering::Relaxed);
        info!("local {name} session subscribed ({filters} filters)");
        if self.session == Session::Control && granted == Granted::All {
            // From now on its persistent session has its own copy of every control message.
            match self.record.store(&self.filters) {
                Ok(()) => self.coordination.recorded.store(true, Ordering::Release),
                Err(e) => warn!("cannot record the control session's filters: {e}"),
            }
        }
        let counters = &self.ingest.counters;
        if counters.sessions_where(true, |s| s.subscribed.load(Ordering::Relaxed)) {
            info!("local intake subscribed (both sessions)");
        }
    }
}
