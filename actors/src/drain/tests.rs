//! The Buffer actor alone: a real journal in a temporary directory, and a fake [`Publish`] link
//! whose publishes the test completes by hand (waking the Buffer through its waker, as paho
//! does). Waits poll with a deadline; a check that nothing more happened follows a round trip
//! through the Buffer's mailbox (messages are handled in order).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::lanes::{Lane, LaneSettings};
use crate::messages::GetMetrics;
use crate::model::{CloudMessage, Publish};
use crate::testkit::temp_journal;

/// What the fake link saw and holds.
#[derive(Default)]
struct FakeState {
    /// Every publish, in the order it was started.
    sent: Vec<(u64, CloudMessage)>,
    /// Started and not yet finished (nor forgotten).
    outstanding: Vec<u64>,
    /// Finished, not yet taken by the Buffer.
    finished: Vec<(u64, Outcome)>,
    /// Most publishes outstanding at once.
    max_outstanding: usize,
    waker: Option<Waker>,
    answered: usize,
    retired: bool,
}

/// A cloud link whose publishes complete when the test says so.
struct FakeLink {
    attempt: u64,
    state: Mutex<FakeState>,
}

impl FakeLink {
    fn new(attempt: u64) -> Arc<Self> {
        Arc::new(FakeLink {
            attempt,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// The publish of `seq` ended with `outcome`; wakes the Buffer like a paho token would.
    fn finish(&self, seq: u64, outcome: Outcome) {
        let waker = {
            let mut state = self.state();
            let at = state.outstanding.iter().position(|&s| s == seq);
            state
                .outstanding
                .remove(at.expect("finished a publish that is not outstanding"));
            state.finished.push((seq, outcome));
            state.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Journal keys of every publish so far, in order.
    fn sent_seqs(&self) -> Vec<u64> {
        self.state().sent.iter().map(|(seq, _)| *seq).collect()
    }

    /// Payloads of every publish so far, in order.
    fn sent_payloads(&self) -> Vec<String> {
        let state = self.state();
        let payloads = state.sent.iter();
        payloads
            .map(|(_, m)| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }

    fn handle(self: &Arc<Self>) -> Link {
        Link::new(self.clone())
    }
}

impl Publish for FakeLink {
    fn publish(&self, seq: u64, msg: CloudMessage) {
        let mut state = self.state();
        state.sent.push((seq, msg));
        state.outstanding.push(seq);
        state.max_outstanding = state.max_outstanding.max(state.outstanding.len());
    }

    fn completed(&self, waker: &Waker, done: &mut Vec<(u64, Outcome)>) {
        let mut state = self.state();
        done.append(&mut state.finished);
        state.waker = Some(waker.clone());
    }

    fn forget_outstanding(&self) {
        let mut state = self.state();
        state.outstanding.clear();
        state.finished.clear();
    }

    fn answered(&self, n: usize) {
        self.state().answered += n;
    }

    fn retire(&self) {
        self.state().retired = true;
    }

    fn attempt(&self) -> u64 {
        self.attempt
    }
}

/// A Buffer over a fresh journal, connected to `link`.
struct Harness {
    _dir: tempfile::TempDir,
    journal: Journal,
    buffer: Addr<Buffer>,
}

impl Harness {
    fn start(window: usize, link: &Arc<FakeLink>) -> Harness {
        Harness::start_with(window, link, Meter::default())
    }

    fn start_with(window: usize, link: &Arc<FakeLink>, meter: Meter) -> Harness {
        Harness::start_lanes(window, link, meter, &LaneRules::default())
    }

    fn start_lanes(
        window: usize,
        link: &Arc<FakeLink>,
        meter: Meter,
        rules: &LaneRules,
    ) -> Harness {
        let (dir, journal) = temp_journal();
        let buffer = Buffer::new(journal.clone(), window, None)
            .with_meter(meter)
            .with_lanes(rules)
            .start();
        buffer.do_send(LinkChanged {
            publisher: Some(link.handle()),
        });
        Harness {
            _dir: dir,
            journal,
            buffer,
        }
    }

    /// Journals messages with payloads `m<first>`..`m<first + n - 1>` and tells the Buffer.
    fn append(&self, first: u64, n: u64) {
        let mut last_seq = 0;
        for i in first..first + n {
            let msg = CloudMessage {
                topic: format!("telemetry/t/d/{i}"),
                payload: format!("m{i}").into_bytes(),
                qos: 1,
                enqueued_ms: 1_700_000_000_000 + i,
                batch: None,
            };
            last_seq = self.journal.append(Lane::Telemetry, &msg).unwrap().seq;
        }
        self.journal.commit().unwrap();
        self.buffer.do_send(Journaled { last_seq });
    }

    /// Journals one message per payload into `lane` (topic `{lane}/t/d`), enqueued at
    /// `enqueued_ms`, and tells the Buffer.
    fn append_to(&self, lane: Lane, payloads: &[&str], enqueued_ms: u64) {
        let mut last_seq = 0;
        for payload in payloads {
            let msg = CloudMessage {
                topic: format!("{}/t/d", lane.name()),
                payload: payload.as_bytes().to_vec(),
                qos: 1,
                enqueued_ms,
                batch: None,
            };
            last_seq = self.journal.append(lane, &msg).unwrap().seq;
        }
        self.journal.commit().unwrap();
        self.buffer.do_send(Journaled { last_seq });
    }

    /// The Buffer's counters, after everything sent to it before was handled.
    async fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.buffer.send(GetMetrics).await.unwrap().counters
    }

    async fn counter(&self, name: &str) -> u64 {
        let counters = self.metrics().await;
        let value = counters.iter().find(|(n, _)| *n == name);
        value.map(|(_, v)| *v).unwrap()
    }
}

/// Polls `cond` until it holds; fails after five seconds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

fn refs(items: &[String]) -> Vec<&str> {
    items.iter().map(String::as_str).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[actix::test]
async fn delivers_in_journal_order_and_empties_the_journal_on_acks() {
    let link = FakeLink::new(1);
    let h = Harness::start(10, &link);
    h.append(0, 5);
    until("5 publishes", || link.sent_seqs().len() == 5).await;
    assert_eq!(
        link.sent_payloads(),
        strings(&["m0", "m1", "m2", "m3", "m4"])
    );
    for seq in link.sent_seqs() {
        link.finish(seq, Outcome::Delivered);
    }
    until("an empty journal", || {
        h.journal.queued(Lane::Telemetry) == 0
    })
    .await;
    assert_eq!(h.counter("delivered").await, 5);
    assert_eq!(h.counter("in_flight").await, 0);
    assert_eq!(link.state().answered, 5);
}

#[actix::test]
async fn keeps_at_most_window_publishes_in_flight() {
    let link = FakeLink::new(1);
    let h = Harness::start(3, &link);
    h.append(0, 7);
    until("3 publishes", || link.sent_seqs().len() == 3).await;
    // The Buffer handled the append: a full window sends nothing more.
    assert_eq!(h.counter("sent").await, 3);
    assert_eq!(h.counter("in_flight").await, 3);
    for acked in 1..=7 {
        link.finish(link.sent_seqs()[acked - 1], Outcome::Delivered);
        until("the window to refill", || {
            link.sent_seqs().len() == (acked + 3).min(7)
                && h.journal.queued(Lane::Telemetry) == 7 - acked as u64
        })
        .await;
    }
    let expected: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    assert_eq!(link.sent_payloads(), expected);
    assert_eq!(link.state().max_outstanding, 3);
}

#[actix::test]
async fn resends_from_the_oldest_unanswered_after_a_link_change() {
    let old = FakeLink::new(1);
    let h = Harness::start(10, &old);
    h.append(0, 3);
    until("3 publishes", || old.sent_seqs().len() == 3).await;
    // m0 acknowledged, m2 acknowledged out of order, m1 unanswered when the link goes.
    let seqs = old.sent_seqs();
    old.finish(seqs[0], Outcome::Delivered);
    old.finish(seqs[2], Outcome::Delivered);
    until("m0 to leave the journal", || {
        h.journal.queued(Lane::Telemetry) == 2
    })
    .await;
    assert_eq!(h.counter("delivered").await, 2);

    let new = FakeLink::new(2);
    h.buffer.do_send(LinkChanged {
        publisher: Some(new.handle()),
    });
    until("the resend", || new.sent_seqs().len() == 2).await;
    assert_eq!(new.sent_payloads(), strings(&["m1", "m2"]));
    assert!(old.state().retired, "the old link was not retired");
    assert!(
        old.state().outstanding.is_empty(),
        "the old link still holds publishes"
    );
    assert_eq!(h.counter("retried").await, 1);

    for seq in new.sent_seqs() {
        new.finish(seq, Outcome::Delivered);
    }
    until("an empty journal", || {
        h.journal.queued(Lane::Telemetry) == 0
    })
    .await;
}

#[actix::test]
async fn sends_nothing_while_no_link_is_up() {
    let link = FakeLink::new(1);
    let h = Harness::start(10, &link);
    assert_eq!(h.counter("sent").await, 0);
    h.buffer.do_send(LinkChanged { publisher: None });
    h.append(0, 2);
    assert_eq!(h.counter("sent").await, 0);
    assert!(link.sent_seqs().is_empty());
    let next = FakeLink::new(2);
    h.buffer.do_send(LinkChanged {
        publisher: Some(next.handle()),
    });
    until("2 publishes", || next.sent_seqs().len() == 2).await;
    assert_eq!(next.sent_payloads(), strings(&["m0", "m1"]));
}

#[actix::test]
async fn quarantines_a_permanent_failure_and_moves_on() {
    let link = FakeLink::new(1);
    let h = Harness::start(10, &link);
    h.append(0, 3);
    until("3 publishes", || link.sent_seqs().len() == 3).await;
    let seqs = link.sent_seqs();
    link.finish(seqs[0], Outcome::Permanent("topic name is invalid".into()));
    link.finish(seqs[1], Outcome::Delivered);
    link.finish(seqs[2], Outcome::Delivered);
    until("an empty journal", || {
        h.journal.queued(Lane::Telemetry) == 0
    })
    .await;
    let quarantined = h.journal.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].msg.payload, b"m0");
    assert!(quarantined[0].reason.contains("topic name is invalid"));
    assert_eq!(h.counter("quarantined").await, 1);
    assert_eq!(h.counter("delivered").await, 2);
    // Never sent again.
    assert_eq!(link.sent_seqs().len(), 3);
}

#[actix::test]
async fn retries_a_transient_failure_in_order() {
    let link = FakeLink::new(1);
    let h = Harness::start(10, &link);
    h.append(0, 2);
    until("2 publishes", || link.sent_seqs().len() == 2).await;
    let seqs = link.sent_seqs();
    link.finish(seqs[0], Outcome::Transient("disconnected".into()));
    // After the retry pause, m0 and the still unanswered m1 go again, in order.
    until("the retry", || link.sent_seqs().len() == 4).await;
    assert_eq!(link.sent_payloads(), strings(&["m0", "m1", "m0", "m1"]));
    assert_eq!(
        link.state().outstanding.len(),
        2,
        "m1's first publish was not forgotten"
    );
    assert_eq!(h.counter("retried").await, 2);
    for &seq in &link.sent_seqs()[2..] {
        link.finish(seq, Outcome::Delivered);
    }
    until("an empty journal", || {
        h.journal.queued(Lane::Telemetry) == 0
    })
    .await;
    assert!(h.journal.quarantined().unwrap().is_empty());
    assert_eq!(h.counter("delivered").await, 2);
}

#[actix::test]
async fn counts_billed_units_and_basic_ingest_publishes_per_rule_resends_included() {
    let link = FakeLink::new(1);
    let h = Harness::start_with(10, &link, Meter::new(&["hot"]));
    let rows: &[(&str, usize)] = &[
        ("telemetry/t/d", 200), // 1 unit
        ("$aws/rules/hot/telemetry/t/d", 200),
        ("telemetry/t/d", 6000),            // 2 units
        ("$aws/rules/other/event/t/d", 10), // a rule not configured (any more)
    ];
    let mut last_seq = 0;
    for (i, (topic, size)) in rows.iter().enumerate() {
        let msg = CloudMessage {
            topic: topic.to_string(),
            payload: vec![b'x'; *size],
            qos: 1,
            enqueued_ms: 1_700_000_000_000 + i as u64,
            batch: None,
        };
        last_seq = h.journal.append(Lane::Telemetry, &msg).unwrap().seq;
    }
    h.journal.commit().unwrap();
    h.buffer.do_send(Journaled { last_seq });
    until("4 publishes", || link.sent_seqs().len() == 4).await;
    assert_eq!(h.counter("billed_units").await, 3);
    assert_eq!(h.counter("basic_ingest_publishes").await, 2);
    assert_eq!(h.counter("route_hot_sent").await, 1);

    // Every publish sent is billed, also the ones sent again after a link change.
    let new = FakeLink::new(2);
    h.buffer.do_send(LinkChanged {
        publisher: Some(new.handle()),
    });
    until("the resend", || new.sent_seqs().len() == 4).await;
    assert_eq!(h.counter("billed_units").await, 6);
    assert_eq!(h.counter("basic_ingest_publishes").await, 4);
    assert_eq!(h.counter("route_hot_sent").await, 2);
}

#[actix::test]
async fn a_control_entry_overtakes_a_telemetry_backlog() {
    let link = FakeLink::new(1);
    let h = Harness::start(4, &link);
    let backlog: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let backlog: Vec<&str> = backlog.iter().map(String::as_str).collect();
    h.append_to(Lane::Telemetry, &backlog, unix_ms());
    until("a full window", || link.sent_seqs().len() == 4).await;
    h.append_to(Lane::Control, &["c0"], unix_ms());
    h.append_to(Lane::Events, &["e0"], unix_ms());
    // The window is full: nothing more goes out until a PUBACK.
    assert_eq!(h.counter("sent").await, 4);
    let first = link.sent_seqs()[0];
    link.finish(first, Outcome::Delivered);
    until("the next publish", || link.sent_seqs().len() == 5).await;
    assert_eq!(link.sent_payloads()[4], "c0", "control goes first");
    let second = link.sent_seqs()[1];
    link.finish(second, Outcome::Delivered);
    until("the next publish", || link.sent_seqs().len() == 6).await;
    assert_eq!(link.sent_payloads()[5], "e0", "then events");
    let third = link.sent_seqs()[2];
    link.finish(third, Outcome::Delivered);
    until("the next publish", || link.sent_seqs().len() == 7).await;
    assert_eq!(
        link.sent_payloads()[6],
        "t4",
        "then the telemetry backlog, in order"
    );
    assert_eq!(h.counter("control_sent").await, 1);
    assert_eq!(h.counter("events_sent").await, 1);
    assert_eq!(h.counter("telemetry_sent").await, 5);
    assert_eq!(
        h.counter("control_queued").await,
        1,
        "c0 is not acknowledged yet"
    );
    assert_eq!(h.counter("telemetry_queued").await, 47);
}

#[actix::test]
async fn the_telemetry_backlog_keeps_its_minimum_share_under_control_traffic() {
    let link = FakeLink::new(1);
    let h = Harness::start(1, &link);
    let names = |lane: &str| (0..100).map(|i| format!("{lane}{i}")).collect::<Vec<_>>();
    let (control, telemetry) = (names("c"), names("t"));
    h.append_to(Lane::Telemetry, &refs(&telemetry), unix_ms());
    h.append_to(Lane::Control, &refs(&control), unix_ms());
    // One publish at a time: 50 slots, acknowledged one by one.
    for n in 1..=50 {
        until("the next publish", || link.sent_seqs().len() == n).await;
        link.finish(link.sent_seqs()[n - 1], Outcome::Delivered);
    }
    let telemetry_sent = link.sent_payloads()[..50]
        .iter()
        .filter(|p| p.starts_with('t'))
        .count();
    // Both backlogs are there before the Buffer's first slot: telemetry gets one slot in ten.
    assert!(
        (5..=7).contains(&telemetry_sent),
        "telemetry got {telemetry_sent} of 50 slots: {:?}",
        link.sent_payloads()
    );
}

#[actix::test]
async fn an_expired_entry_is_not_sent_and_leaves_the_journal() {
    let link = FakeLink::new(1);
    let mut settings = Lane::ALL.map(LaneSettings::default_for);
    settings[Lane::Telemetry.index()].max_age_secs = Some(60);
    let rules = LaneRules::new(Vec::new(), settings);
    let h = Harness::start_lanes(10, &link, Meter::default(), &rules);
    h.buffer.do_send(LinkChanged { publisher: None });
    assert_eq!(
        h.counter("sent").await,
        0,
        "the link is gone before the appends"
    );
    let now = unix_ms();
    h.append_to(Lane::Telemetry, &["old0", "old1"], now - 120_000);
    h.append_to(Lane::Telemetry, &["fresh"], now);
    h.append_to(Lane::Events, &["old event"], now - 120_000); // events do not expire here
    assert_eq!(h.counter("telemetry_queued").await, 3);
    assert!(h.counter("telemetry_oldest_age_ms").await >= 120_000);
    h.buffer.do_send(LinkChanged {
        publisher: Some(link.handle()),
    });
    until("2 publishes", || link.sent_seqs().len() == 2).await;
    assert_eq!(link.sent_payloads(), strings(&["old event", "fresh"]));
    for seq in link.sent_seqs() {
        link.finish(seq, Outcome::Delivered);
    }
    until("an empty journal", || h.journal.queued_total() == 0).await;
    assert_eq!(h.counter("telemetry_expired").await, 2);
    assert_eq!(h.counter("expired").await, 2);
    assert_eq!(h.counter("events_expired").await, 0);
    assert_eq!(h.counter("delivered").await, 2);
    assert_eq!(link.sent_seqs().len(), 2, "the expired ones are never sent");
}
