//! Table tests of the drain over lanes: each row fills model journals (one FIFO per lane), runs
//! the Buffer's loop over a [`LaneDrain`] (read, next, take) and answers publishes, and
//! compares what was sent, skipped and recorded.

use std::collections::BTreeMap;

use super::*;
use crate::lanes::LaneSettings;

/// Enqueue time of the model's entries unless a row says otherwise.
const T0: u64 = 1_700_000_000_000;

/// One lane's model journal: seq → (enqueued_ms, readable).
type Fifo = BTreeMap<u64, (u64, bool)>;

struct Model {
    drain: LaneDrain,
    journal: [Fifo; 3],
    /// Keys sent and not yet answered, in the order sent.
    outstanding: Vec<u64>,
    trace: Vec<String>,
}

fn tag(lane: Lane) -> char {
    lane.name().chars().next().unwrap_or('?')
}

impl Model {
    fn new(window: usize, rules: &LaneRules) -> Self {
        Model {
            drain: LaneDrain::new(window, rules),
            journal: Default::default(),
            outstanding: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// Appends `n` entries to `lane`, enqueued at `enqueued_ms`.
    fn append(&mut self, lane: Lane, n: u64, enqueued_ms: u64) {
        let fifo = &mut self.journal[lane.index()];
        let next = fifo.last_key_value().map_or(0, |(k, _)| k + 1);
        for seq in next..next + n {
            fifo.insert(seq, (enqueued_ms, true));
        }
    }

    fn entries(&self, lane: Lane, from: u64, max: usize) -> Vec<(u64, Entry)> {
        let fifo = &self.journal[lane.index()];
        fifo.range(from..)
            .take(max)
            .map(|(&seq, &(enqueued_ms, readable))| {
                let entry = if readable {
                    Ok(CloudMessage {
                        topic: format!("{}/x", lane.name()),
                        payload: format!("{}{seq}", tag(lane)).into_bytes(),
                        qos: 1,
                        enqueued_ms,
                        batch: None,
                    })
                } else {
                    Err("bad record".to_string())
                };
                (seq, entry)
            })
            .collect()
    }

    /// The Buffer's fill at `now_ms`, sending at most `budget` publishes (the quota).
    fn fill(&mut self, now_ms: u64, mut budget: usize) {
        let mut exhausted = [false; 3];
        loop {
            for (lane, from, max) in self.drain.reads() {
                if exhausted[lane.index()] {
                    continue;
                }
                let entries = self.entries(lane, from, max);
                exhausted[lane.index()] = entries.is_empty();
                self.drain.read(lane, entries);
            }
            match self.drain.next(now_ms) {
                None => break,
                Some(Next::Expired { lane, seq, age_ms }) => self
                    .trace
                    .push(format!("expired {}{seq} ({age_ms} ms)", tag(lane))),
                Some(Next::Unreadable { lane, seq, .. }) => {
                    self.trace.push(format!("quarantine {}{seq}", tag(lane)))
                }
                Some(Next::Ready { lane, .. }) => {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    let (key, msg) = self.drain.take(lane).unwrap();
                    self.trace
                        .push(format!("send {}", String::from_utf8_lossy(&msg.payload)));
                    self.outstanding.push(key);
                }
            }
        }
        self.watermarks();
    }

    fn watermarks(&mut self) {
        for (lane, below) in self.drain.delivered_below() {
            self.journal[lane.index()].retain(|&k, _| k >= below);
            self.drain.reported(lane, below);
            self.trace.push(format!("watermark {} {below}", tag(lane)));
        }
    }

    /// Answers the oldest `n` outstanding publishes with `outcome`, ends the burst.
    fn answer(&mut self, n: usize, outcome: Outcome) {
        let answered: Vec<u64> = self
            .outstanding
            .drain(..n.min(self.outstanding.len()))
            .collect();
        for key in answered {
            let done = self.drain.completed(key, outcome.clone());
            if let Some((lane, seq, Completion::Retry(_))) = done {
                self.trace.push(format!("retry {}{seq}", tag(lane)));
            }
        }
        if let Some(n) = self.drain.end_of_burst() {
            self.outstanding.clear();
            self.trace.push(format!("gave up {n}"));
        }
        self.watermarks();
    }

    fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn rules_with_max_age(lane: Lane, secs: u64) -> LaneRules {
    let mut settings = Lane::ALL.map(LaneSettings::default_for);
    settings[lane.index()].max_age_secs = Some(secs);
    LaneRules::new(Vec::new(), settings)
}

#[test]
fn publish_keys_carry_lane_and_sequence() {
    let rows = [
        (Lane::Control, 0),
        (Lane::Events, 7),
        (Lane::Telemetry, (1 << 62) - 1),
    ];
    for (lane, seq) in rows {
        assert_eq!(split_key(publish_key(lane, seq)), Some((lane, seq)));
    }
    assert_ne!(publish_key(Lane::Control, 5), publish_key(Lane::Events, 5));
    assert_eq!(split_key(3 << 62), None, "no fourth lane");
}

#[test]
fn a_control_entry_overtakes_a_telemetry_backlog() {
    let mut m = Model::new(3, &LaneRules::default());
    m.append(Lane::Telemetry, 10, T0);
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["send t0", "send t1", "send t2"]));
    // The window is shared: control waits for a free slot, then takes it ahead of t3.
    m.append(Lane::Control, 1, T0);
    m.fill(T0, 100);
    assert!(m.take_trace().is_empty());
    m.answer(1, Outcome::Delivered);
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["watermark t 1", "send c0"]));
    m.answer(3, Outcome::Delivered);
    m.fill(T0, 100);
    assert_eq!(
        m.take_trace(),
        strings(&[
            "watermark c 1",
            "watermark t 3",
            "send t3",
            "send t4",
            "send t5"
        ])
    );
}

#[test]
fn minimum_shares_hold_while_every_lane_has_a_backlog() {
    // (name, lanes with 1,000 entries each, publishes, expected sends per lane, ±1)
    let rows: &[(&str, &[Lane], usize, [usize; 3])] = &[
        ("all three", &Lane::ALL, 500, [350, 100, 50]),
        (
            "events and telemetry",
            &[Lane::Events, Lane::Telemetry],
            500,
            [0, 450, 50],
        ),
        ("telemetry alone", &[Lane::Telemetry], 500, [0, 0, 500]),
    ];
    for (name, lanes, publishes, expected) in rows {
        let mut m = Model::new(100, &LaneRules::default());
        for &lane in *lanes {
            m.append(lane, 1000, T0);
        }
        let mut sent = [0usize; 3];
        for _ in 0..publishes / 10 {
            m.fill(T0, 10);
            m.answer(10, Outcome::Delivered);
        }
        for line in m.take_trace() {
            if let Some(what) = line.strip_prefix("send ") {
                let lane = Lane::ALL.into_iter().find(|l| what.starts_with(tag(*l)));
                sent[lane.unwrap().index()] += 1;
            }
        }
        let close = sent.iter().zip(expected).all(|(s, e)| s.abs_diff(*e) <= 1);
        assert!(close, "{name}: sent {sent:?}, expected {expected:?}");
        // Order kept within each lane: each lane's watermark is where its sends reached.
        for lane in Lane::ALL {
            let first_left = m.journal[lane.index()].keys().next().copied();
            let expected_first = (lanes.contains(&lane) && sent[lane.index()] < 1000)
                .then_some(sent[lane.index()] as u64);
            assert_eq!(first_left, expected_first, "{name}: {lane:?}");
        }
    }
}

#[test]
fn expiry_skips_old_entries_and_the_watermark_passes_them() {
    // (name, lane with maxAgeSecs 60, (enqueued_ms, n) per batch appended to it, trace)
    type Row<'a> = (&'a str, Lane, &'a [(u64, u64)], &'a [&'a str]);
    let rows: &[Row] = &[
        (
            "old entries are skipped, fresh ones sent",
            Lane::Telemetry,
            &[(T0 - 61_000, 2), (T0 - 59_000, 1)],
            &[
                "expired t0 (61000 ms)",
                "expired t1 (61000 ms)",
                "send t2",
                "watermark t 2",
            ],
        ),
        (
            "exactly maxAgeSecs old is not expired",
            Lane::Events,
            &[(T0 - 60_000, 1)],
            &["send e0"],
        ),
        (
            "only expired: nothing sent, the watermark passes all",
            Lane::Control,
            &[(T0 - 3_600_000, 3)],
            &[
                "expired c0 (3600000 ms)",
                "expired c1 (3600000 ms)",
                "expired c2 (3600000 ms)",
                "watermark c 3",
            ],
        ),
    ];
    for (name, lane, batches, trace) in rows {
        let mut m = Model::new(10, &rules_with_max_age(*lane, 60));
        for &(enqueued_ms, n) in *batches {
            m.append(*lane, n, enqueued_ms);
        }
        m.fill(T0, 100);
        assert_eq!(m.take_trace(), strings(trace), "{name}");
    }
}

#[test]
fn expiry_is_per_lane_and_waits_for_older_publishes_in_flight() {
    let mut m = Model::new(10, &rules_with_max_age(Lane::Telemetry, 60));
    m.append(Lane::Telemetry, 1, T0); // fresh
    m.append(Lane::Events, 1, T0 - 3_600_000); // old, but events never expire here
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["send e0", "send t0"]));
    // t1 expires while t0 is in flight: the watermark waits for t0's PUBACK, then passes both.
    m.append(Lane::Telemetry, 1, T0 - 61_000);
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["expired t1 (61000 ms)"]));
    m.answer(2, Outcome::Delivered);
    assert_eq!(m.take_trace(), strings(&["watermark e 1", "watermark t 2"]));
}

#[test]
fn a_link_change_resends_every_lane_from_its_oldest_undelivered() {
    let mut m = Model::new(10, &LaneRules::default());
    m.append(Lane::Telemetry, 3, T0);
    m.append(Lane::Control, 2, T0);
    m.fill(T0, 100);
    assert_eq!(
        m.take_trace(),
        strings(&["send c0", "send c1", "send t0", "send t1", "send t2"])
    );
    m.answer(1, Outcome::Delivered); // c0
    assert_eq!(m.take_trace(), strings(&["watermark c 1"]));
    assert_eq!(m.drain.link_changed(), 4);
    m.outstanding.clear();
    m.fill(T0, 100);
    assert_eq!(
        m.take_trace(),
        strings(&["send c1", "send t0", "send t1", "send t2"])
    );
    // An answer from the old link is not in flight any more.
    assert_eq!(
        m.drain
            .completed(publish_key(Lane::Events, 0), Outcome::Delivered),
        None
    );
}

#[test]
fn a_transient_failure_in_one_lane_resends_every_lane() {
    let mut m = Model::new(10, &LaneRules::default());
    m.append(Lane::Control, 1, T0);
    m.append(Lane::Telemetry, 2, T0);
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["send c0", "send t0", "send t1"]));
    // c0 fails for now; t0 and t1 are still unanswered: the Buffer forgets all three.
    m.answer(1, Outcome::Transient("disconnected".into()));
    assert_eq!(m.take_trace(), strings(&["retry c0", "gave up 2"]));
    assert_eq!(m.drain.in_flight(), 0);
    m.fill(T0, 100);
    assert_eq!(m.take_trace(), strings(&["send c0", "send t0", "send t1"]));
}

#[test]
fn the_window_is_shared_and_unreadable_entries_are_skipped() {
    let mut m = Model::new(4, &LaneRules::default());
    m.append(Lane::Control, 3, T0);
    m.append(Lane::Events, 3, T0);
    m.journal[Lane::Control.index()].insert(1, (T0, false));
    m.fill(T0, 100);
    assert_eq!(
        m.take_trace(),
        strings(&["send c0", "quarantine c1", "send c2", "send e0", "send e1"])
    );
    assert_eq!(m.drain.in_flight(), 4);
    assert_eq!(m.drain.room(), 0);
    assert!(m.drain.reads().is_empty());
    assert_eq!(m.drain.next(T0), None);
    assert_eq!(m.drain.in_flight_of(Lane::Control), 2);
}
