//! The intake's two persistent local sessions, as pure rules: which filters each subscribes,
//! which of them journals a message, and how the main session learns that the control session
//! has its own copy of every control message (the marker, the record of the control session's
//! filters). Mosquitto delivers one session's messages through one in-flight window, so a held
//! telemetry backlog would block every command response behind it in the same session: the
//! control lane has a session of its own (client id `{localClientId}-control`).
//!
//! The main session keeps every uplink filter it had (so it has a persistent copy of every
//! uplink message whatever the lanes say); the control session subscribes the default control
//! topics and the operator's control filters. A message both receive is journaled by exactly
//! one of them:
//! - the control session journals only control-lane messages and acknowledges the rest (the
//!   main session, subscribed to every uplink filter since its session exists, has them too);
//! - the main session journals every other lane, and control-lane messages too until it is
//!   *covered*: until it knows that the control session was subscribed when they were
//!   published. Its *basis* for that: a connection whose session Mosquitto kept
//!   (`session_present`) when the record says the control session's persistent subscriptions
//!   are the current control filters; otherwise a marker it published after the control
//!   session's SUBACK came back (Mosquitto delivers a session's messages in order, so whatever
//!   follows the marker was published while the control session was subscribed). A basis holds
//!   only while the control session's persistent subscriptions last ([`ControlCopy`]): a
//!   control CONNACK without `session_present`, or a SUBACK that refuses a filter or grants
//!   less than QoS 1 (Mosquitto queues no QoS 0 message for an offline session), voids it and
//!   the record. And the main session is covered only while the control session is connected
//!   with its SUBACK of that connection granted at QoS 1, so it never leaves a message to a
//!   session whose CONNACK has not yet said whether Mosquitto kept it. Otherwise a control
//!   message may be journaled twice (at-least-once), never lost.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::lanes::{Lane, LaneRules};
use crate::topics::{THING_REQUEST_TOPIC, UPLINK_FILTERS};

/// The uplink filters whose topics are control by default (command responses, Jobs requests).
pub const DEFAULT_CONTROL_FILTERS: [&str; 3] = ["command//+/res/#", "c//+/s/#", "aws/jobs/#"];

/// The file (in the journal's directory) that records the filters the control session's
/// persistent subscriptions hold.
const RECORD_FILE: &str = "intake-control-filters";

/// One of the intake's two local sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Client id `localClientId`: every uplink filter; journals events and telemetry.
    Main,
    /// Client id `{localClientId}-control`: the control lane's filters; journals control.
    Control,
}

impl Session {
    /// Both sessions.
    pub const ALL: [Session; 2] = [Session::Main, Session::Control];

    /// Position in [`Session::ALL`], for per-session arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The session's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Session::Main => "main",
            Session::Control => "control",
        }
    }

    /// The session's MQTT client id, given the configured `localClientId`.
    pub fn client_id(self, local_client_id: &str) -> String {
        match self {
            Session::Main => local_client_id.to_string(),
            Session::Control => format!("{local_client_id}-control"),
        }
    }

    /// Whether this session journals a message of `lane` (or only acknowledges it, because the
    /// other session journals its own copy); `covered`: see the module docs (main only).
    pub fn journals(self, lane: Lane, covered: bool) -> bool {
        match self {
            Session::Control => lane == Lane::Control,
            Session::Main => lane != Lane::Control || !covered,
        }
    }

    /// What the session subscribes: the main session every uplink filter, `edge/thing/request`
    /// and its marker topic; the control session the default control filters and the
    /// operator's control filters.
    pub fn filters(self, rules: &LaneRules, local_client_id: &str) -> Vec<String> {
        let mut filters: Vec<String> = match self {
            Session::Main => UPLINK_FILTERS
                .iter()
                .map(|f| f.to_string())
                .chain([
                    THING_REQUEST_TOPIC.to_string(),
                    marker_topic(local_client_id),
                ])
                .collect(),
            Session::Control => DEFAULT_CONTROL_FILTERS
                .iter()
                .map(|f| f.to_string())
                .chain(
                    rules
                        .filters()
                        .iter()
                        .filter(|(_, lane)| *lane == Lane::Control)
                        .map(|(f, _)| f.clone()),
                )
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        filters.retain(|f| seen.insert(f.clone()));
        filters
    }
}

/// The topic the main session publishes its marker on (and subscribes to).
pub fn marker_topic(local_client_id: &str) -> String {
    format!("awslink/intake/{local_client_id}/marker")
}

/// Per-session counters (metrics, liveness), shared with the LocalBroker.
#[derive(Default)]
pub struct SessionCounters {
    /// (Re)connections.
    pub connects: AtomicU64,
    /// Times the session started holding messages.
    pub pauses: AtomicU64,
    /// Messages held unacknowledged right now.
    pub held: AtomicU64,
    /// True while the session is connected.
    pub connected: AtomicBool,
    /// True once the broker granted the session's subscriptions on the current connection.
    pub subscribed: AtomicBool,
    /// True while the session holds new messages back.
    pub paused: AtomicBool,
}

/// What the control session tells the main session about its own copies ([`ControlCopy::on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// Its CONNACK: whether Mosquitto kept its session.
    Connected {
        /// The CONNACK's `session_present`.
        session_present: bool,
    },
    /// Its SUBACK: every filter granted at QoS 1 (false: one refused, or granted at QoS 0).
    Subscribed {
        /// Every filter granted at QoS 1 or more.
        at_qos1: bool,
    },
    /// Its connection broke.
    Lost,
}

/// The control session's persistent copy of the control lane, as the main session sees it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControlCopy {
    /// Connected, with its SUBACK on this connection granting every filter at QoS 1.
    pub granted: bool,
    /// How many times its persistent subscriptions were lost (a CONNACK without
    /// `session_present`, a SUBACK refused or downgraded): a basis of the main session's from
    /// before does not hold.
    pub breaks: u64,
}

impl ControlCopy {
    /// The copy after `event`, and whether the record of its filters must be forgotten (its
    /// persistent subscriptions are gone, or were never granted at QoS 1).
    pub fn on(self, event: ControlEvent) -> (ControlCopy, bool) {
        let broken = ControlCopy {
            granted: false,
            breaks: self.breaks + 1,
        };
        match event {
            ControlEvent::Connected {
                session_present: true,
            }
            | ControlEvent::Lost => (
                ControlCopy {
                    granted: false,
                    ..self
                },
                false,
            ),
            ControlEvent::Connected {
                session_present: false,
            }
            | ControlEvent::Subscribed { at_qos1: false } => (broken, true),
            ControlEvent::Subscribed { at_qos1: true } => (
                ControlCopy {
                    granted: true,
                    ..self
                },
                false,
            ),
        }
    }

    /// Whether the main session, whose basis dates from `basis` breaks (`None`: it has none),
    /// may leave a control message it receives now to the control session.
    pub fn covers(self, basis: Option<u64>) -> bool {
        self.granted && basis == Some(self.breaks)
    }
}

/// What the two sessions share on the intake thread.
#[derive(Default)]
pub struct Coordination {
    /// The control session's subscriptions are granted (QoS 1) on its current connection
    /// ([`ControlCopy::granted`]).
    pub control_subscribed: AtomicBool,
    /// [`ControlCopy::breaks`].
    pub control_breaks: AtomicU64,
    /// The control session's persistent subscriptions are the current control filters: from
    /// the record at start, or since its SUBACK in this run (until they are lost).
    pub recorded: AtomicBool,
    /// Main session, for its wake-up task: a marker is due and waits for the loop.
    pub marker_wanted: AtomicBool,
    /// The control session got its first SUBACK or failed to connect: the main session starts
    /// then, so that after a restart it knows whether the control session has its copies.
    pub control_started: tokio::sync::Notify,
}

impl Coordination {
    /// The control session's copy now.
    pub fn control(&self) -> ControlCopy {
        ControlCopy {
            granted: self.control_subscribed.load(Ordering::Acquire),
            breaks: self.control_breaks.load(Ordering::Acquire),
        }
    }

    /// Applies the control session's `event`; true when its record must be forgotten.
    pub fn on_control(&self, event: ControlEvent) -> bool {
        let (copy, forget) = self.control().on(event);
        self.control_breaks.store(copy.breaks, Ordering::Release);
        self.control_subscribed
            .store(copy.granted, Ordering::Release);
        if forget {
            self.recorded.store(false, Ordering::Release);
            self.marker_wanted.store(true, Ordering::Release);
        }
        forget
    }
}

/// The record of the control session's persistent filters in the journal directory `dir`.
#[derive(Debug, Clone)]
pub struct Record {
    path: PathBuf,
}

impl Record {
    /// The record in `dir`.
    pub fn new(dir: &Path) -> Record {
        Record {
            path: dir.join(RECORD_FILE),
        }
    }

    /// True when the record names every one of `filters` (a missing or unreadable record:
    /// false).
    pub fn holds(&self, filters: &[String]) -> bool {
        std::fs::read_to_string(&self.path)
            .is_ok_and(|text| filters.iter().all(|f| text.lines().any(|l| l == f)))
    }

    /// Records exactly `filters`, the subscriptions just granted (atomically: a temporary file
    /// renamed over the record). A filter no longer configured is left out although Mosquitto
    /// keeps it: if Mosquitto lost the session meanwhile, it would not be there.
    pub fn store(&self, filters: &[String]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, encode(filters))?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Forgets the record (the control session's persistent subscriptions are gone); a missing
    /// record is fine.
    pub fn forget(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn encode(filters: &[String]) -> String {
    filters.iter().map(|f| format!("{f}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::LaneSettings;
    use crate::routes::filter_matches;

    fn rules(filters: &[(&str, Lane)]) -> LaneRules {
        LaneRules::new(
            filters.iter().map(|(f, l)| (f.to_string(), *l)).collect(),
            Lane::ALL.map(LaneSettings::default_for),
        )
    }

    #[test]
    fn exactly_one_session_journals_each_lane_once_the_main_session_is_covered() {
        use Lane::{Events, Telemetry};
        use Session::{Control, Main};
        const C: Lane = Lane::Control;
        // (session, lane, covered, journals)
        let rows = [
            (Control, C, false, true),
            (Control, Events, false, false),
            (Control, Telemetry, true, false),
            (Main, Telemetry, true, true),
            (Main, Events, true, true),
            (Main, C, true, false),
            // Not covered: the control session may not have its own copy yet.
            (Main, C, false, true),
            (Main, Telemetry, false, true),
        ];
        for (session, lane, covered, journals) in rows {
            assert_eq!(
                session.journals(lane, covered),
                journals,
                "{session:?} {lane:?} covered={covered}"
            );
        }
        for lane in Lane::ALL {
            let by = Session::ALL.iter().filter(|s| s.journals(lane, true));
            assert_eq!(by.count(), 1, "{lane:?}");
        }
    }

    /// Replays the control session's `events` from a fresh start; the main session's basis was
    /// taken before them (`breaks` 0: its CONNACK with the record, or its marker).
    fn after(events: &[ControlEvent]) -> (ControlCopy, bool) {
        let start = ControlCopy::default()
            .on(ControlEvent::Connected {
                session_present: true,
            })
            .0
            .on(ControlEvent::Subscribed { at_qos1: true })
            .0;
        assert!(start.covers(Some(0)), "the basis holds at first");
        events.iter().fold((start, false), |(copy, forgot), e| {
            let (copy, forget) = copy.on(*e);
            (copy, forgot || forget)
        })
    }

    #[test]
    fn the_main_session_is_covered_only_while_the_control_sessions_subscriptions_last() {
        use ControlEvent::{Connected, Lost, Subscribed};
        let kept = Connected {
            session_present: true,
        };
        let lost_session = Connected {
            session_present: false,
        };
        let granted = Subscribed { at_qos1: true };
        let refused_or_qos0 = Subscribed { at_qos1: false };
        // (what the control session reported since the main session's basis, main covered
        // with that basis, the record forgotten, why)
        let rows: [(&[ControlEvent], bool, bool, &str); 9] = [
            (&[], true, false, "subscribed, session kept"),
            (
                &[Lost],
                false,
                false,
                "offline: it may come back without its session",
            ),
            (&[Lost, kept], false, false, "back, SUBACK not yet"),
            (
                &[Lost, kept, granted],
                true,
                false,
                "back with its session and QoS 1",
            ),
            // (1) Mosquitto restored an older snapshot: what it queued offline is gone.
            (
                &[Lost, lost_session],
                false,
                true,
                "back without its session",
            ),
            (
                &[Lost, lost_session, granted],
                false,
                true,
                "subscribed again: the main session needs a new marker",
            ),
            // (2) an ACL refuses a filter; (3) the filter is granted at QoS 0 only.
            (
                &[Lost, kept, refused_or_qos0],
                false,
                true,
                "SUBACK refused or QoS 0",
            ),
            (
                &[refused_or_qos0],
                false,
                true,
                "a later SUBACK refused or QoS 0",
            ),
            (
                &[Lost, kept, refused_or_qos0, Lost, kept, granted],
                false,
                true,
                "granted again after a refusal: a new marker first",
            ),
        ];
        for (events, covered, forgot, why) in rows {
            let (copy, forget) = after(events);
            assert_eq!(copy.covers(Some(0)), covered, "{why}: {events:?}");
            assert_eq!(forget, forgot, "{why}: {events:?}");
            assert!(!copy.covers(None), "{why}: no basis, never covered");
            // A marker sent once it is granted again, under the current breaks, restores it.
            assert_eq!(copy.covers(Some(copy.breaks)), copy.granted, "{why}");
        }
    }

    #[test]
    fn a_lost_control_session_voids_the_record_and_asks_the_main_session_for_a_marker() {
        let c = Coordination::default();
        c.recorded.store(true, Ordering::Release);
        for event in [
            ControlEvent::Connected {
                session_present: true,
            },
            ControlEvent::Subscribed { at_qos1: true },
            ControlEvent::Lost,
        ] {
            assert!(!c.on_control(event), "{event:?}");
            assert!(c.recorded.load(Ordering::Acquire), "{event:?}");
        }
        assert!(c.on_control(ControlEvent::Connected {
            session_present: false
        }));
        assert!(!c.recorded.load(Ordering::Acquire));
        assert!(c.marker_wanted.load(Ordering::Acquire));
        assert_eq!(c.control().breaks, 1);
        assert!(!c.control().granted);
        let dir = tempfile::tempdir().unwrap();
        let record = Record::new(dir.path());
        let filters: Vec<String> = vec!["aws/jobs/#".into()];
        record.store(&filters).unwrap();
        record.forget().unwrap();
        assert!(!record.holds(&filters), "forgotten");
        record.forget().unwrap();
    }

    #[test]
    fn the_control_session_subscribes_the_default_control_topics_and_the_operators_filters() {
        let r = rules(&[
            ("event/+/+/alarm", Lane::Control),
            ("event/+/+/heartbeat", Lane::Telemetry),
            ("aws/jobs/#", Lane::Control),
        ]);
        assert_eq!(
            Session::Control.filters(&r, "gw"),
            vec![
                "command//+/res/#",
                "c//+/s/#",
                "aws/jobs/#",
                "event/+/+/alarm"
            ]
        );
        let main = Session::Main.filters(&r, "gw");
        for f in UPLINK_FILTERS {
            assert!(main.contains(&f.to_string()), "{f}");
        }
        assert!(main.contains(&THING_REQUEST_TOPIC.to_string()));
        assert!(main.contains(&"awslink/intake/gw/marker".to_string()));
        assert!(!main.contains(&"event/+/+/alarm".to_string()));
        assert_eq!(Session::Control.client_id("gw"), "gw-control");
        assert_eq!(Session::Main.client_id("gw"), "gw");
    }

    #[test]
    fn every_default_control_topic_is_in_the_control_lane_and_an_uplink_filter() {
        let r = LaneRules::default();
        for (filter, sample) in DEFAULT_CONTROL_FILTERS.iter().zip([
            "command///res/42/200",
            "c//child/s/7/204",
            "aws/jobs/get",
        ]) {
            assert!(UPLINK_FILTERS.contains(filter), "{filter}");
            assert!(filter_matches(filter, sample), "{filter} {sample}");
            assert_eq!(r.lane_of(sample), Lane::Control, "{sample}");
        }
    }

    #[test]
    fn the_record_holds_only_the_filters_it_stored() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record::new(dir.path());
        let filters: Vec<String> = vec!["command//+/res/#".into(), "event/+/+/alarm".into()];
        assert!(!record.holds(&filters), "no record yet");
        record.store(&filters).unwrap();
        assert!(record.holds(&filters));
        assert!(record.holds(&filters[..1]), "a filter was removed since");
        let added: Vec<String> = vec!["command//+/res/#".into(), "e/#".into()];
        assert!(!record.holds(&added), "a filter was added since");
        record.store(&filters[..1]).unwrap();
        assert!(!record.holds(&filters), "what is no longer recorded");
    }
}
