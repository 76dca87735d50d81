//! The lanes of the journal: a model of per-lane FIFOs across appends to random lanes,
//! deliveries, reopens and `dropOldest` drops; the order in which `dropOldest` takes room; the
//! control reserve of `rejectNew`; and a journal written before lanes (generations `uplink.<seq>`,
//! the watermark `delivered_below`, the older tree `uplink`, the old mark file) moved into the
//! lanes at open.

use std::collections::VecDeque;
use std::path::Path;

use super::damage::{MARK_FILE, OLD_MARK_FILE};
use super::layout::{META_TREE, OLD_GENERATION_PREFIX, OLD_WATERMARK_KEY};
use super::legacy::LEGACY_QUEUE_TREE;
use super::record::{encode, RecordBuilder};
use super::*;
use crate::lanes::Lane;
use crate::model::CloudMessage;

/// sled releases its file lock shortly after the last handle is dropped: poll for it.
fn reopen(cfg: &JournalConfig) -> Journal {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Journal::open(cfg) {
            Ok(j) => return j,
            Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// The raw sled database at `path`, once a journal dropped just before let go of it.
fn raw_db(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// A message of `lane` (its cloud topic gives that lane, as for a journal written before lanes).
fn lane_msg(lane: Lane, n: u64) -> CloudMessage {
    let topic = match lane {
        Lane::Control => format!("command//d/res/{n}/200"),
        Lane::Events => format!("event/t/d/{n}"),
        Lane::Telemetry => format!("telemetry/t/d/{n}"),
    };
    CloudMessage {
        topic,
        payload: n.to_string().into_bytes(),
        qos: (n % 2) as i32,
        enqueued_ms: 1_700_000_000_000 + n,
        batch: None,
    }
}

/// The messages of `queued` (as an earlier version journaled them) that belong in `lane`.
fn in_lane(queued: &[CloudMessage], lane: Lane) -> Vec<CloudMessage> {
    queued
        .iter()
        .filter(|m| Lane::of_cloud_topic(&m.topic) == lane)
        .cloned()
        .collect()
}

/// The messages queued in `lane`, in order.
fn lane_messages(journal: &Journal, lane: Lane) -> Vec<CloudMessage> {
    lane_entries(journal, lane)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

fn lane_entries(journal: &Journal, lane: Lane) -> Vec<(u64, CloudMessage)> {
    journal
        .entries_from(lane, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(seq, m)| (seq, m.unwrap()))
        .collect()
}

/// The journal's lanes as the model sees them: per lane a FIFO of (seq, message).
#[derive(Default)]
struct Model {
    lanes: [VecDeque<(u64, CloudMessage)>; 3],
    dropped: [u64; 3],
}

impl Model {
    fn total(&self) -> u64 {
        self.lanes.iter().map(|l| l.len() as u64).sum()
    }

    /// `dropOldest` at `max` messages: room from the lowest lane that holds anything.
    fn make_room(&mut self, max: u64) -> u64 {
        let mut dropped = 0;
        while self.total() >= max {
            let victim = Lane::ALL
                .into_iter()
                .rev()
                .find(|l| !self.lanes[l.index()].is_empty())
                .unwrap();
            self.lanes[victim.index()].pop_front();
            self.dropped[victim.index()] += 1;
            dropped += 1;
        }
        dropped
    }
}

/// Random bursts to random lanes, deliveries of random lanes and reopens, against per-lane
/// FIFOs; with `max_messages`, `dropOldest` drops against the model's order too.
fn run_model(max_messages: Option<u64>, steps: usize, seed: u64) -> [u64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let limits = match max_messages {
        Some(max) => Limits {
            max_messages: max,
            max_bytes: u64::MAX,
            when_full: WhenFull::DropOldest,
        },
        None => Limits::UNLIMITED,
    };
    let cfg = JournalConfig {
        limits,
        ..JournalConfig::for_tests(dir.path().join("j"))
    };
    let mut journal = Journal::open(&cfg).unwrap();
    let mut model = Model::default();
    let mut appended = [0u64; 3];
    let mut state = seed;
    let mut counter = 0;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..steps {
        let r = next();
        match r % 100 {
            0..=59 => {
                // A burst, as the intake commits it, over random lanes (mostly telemetry).
                for _ in 0..=(r >> 8) % 20 {
                    let lane = match next() % 10 {
                        0 => Lane::Control,
                        1..=3 => Lane::Events,
                        _ => Lane::Telemetry,
                    };
                    counter += 1;
                    let msg = lane_msg(lane, counter);
                    let expect_dropped = max_messages.map_or(0, |max| model.make_room(max));
                    let done = journal.append(lane, &msg).unwrap();
                    assert_eq!(done.dropped, expect_dropped, "dropped by append {counter}");
                    let fifo = &mut model.lanes[lane.index()];
                    if let Some((last, _)) = fifo.back() {
                        assert!(done.seq > *last, "keys must increase within a lane");
                    }
                    fifo.push_back((done.seq, msg));
                    appended[lane.index()] += 1;
                }
                journal.commit().unwrap();
            }
            60..=97 => {
                let lane = Lane::ALL[(r >> 8) as usize % 3];
                let n = ((r >> 16) % 25) as usize;
                let fifo = &mut model.lanes[lane.index()];
                let delivered: Vec<_> = fifo.drain(..n.min(fifo.len())).collect();
                if let Some((last, _)) = delivered.last() {
                    journal.delivered_below(lane, last + 1).unwrap();
                }
            }
            _ => {
                drop(journal);
                journal = reopen(&cfg);
                model.dropped = [0; 3]; // counted since the journal was opened
            }
        }
        for lane in Lane::ALL {
            let fifo = &model.lanes[lane.index()];
            assert_eq!(journal.queued(lane), fifo.len() as u64, "{lane:?}");
            assert_eq!(journal.first_from(lane, 0).unwrap(), fifo.front().cloned());
            assert_eq!(
                journal.dropped(lane),
                model.dropped[lane.index()],
                "{lane:?}"
            );
        }
        assert_eq!(journal.queued_total(), model.total());
    }
    drop(journal);
    let journal = reopen(&cfg);
    for lane in Lane::ALL {
        let fifo = &model.lanes[lane.index()];
        assert_eq!(
            lane_entries(&journal, lane),
            Vec::from(fifo.clone()),
            "{lane:?}"
        );
        if let Some((seq, _)) = fifo.get(fifo.len() / 2) {
            let from_middle = journal.entries_from(lane, *seq, 3).unwrap();
            let expected: Vec<u64> = fifo
                .iter()
                .map(|(s, _)| *s)
                .skip(fifo.len() / 2)
                .take(3)
                .collect();
            assert_eq!(
                from_middle.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                expected
            );
        }
    }
    appended
}

#[test]
fn lanes_match_per_lane_fifo_models_across_reopens() {
    let appended = run_model(None, 3000, 0x2545_f491_4f6c_dd1d);
    assert!(
        appended[Lane::Telemetry.index()] > GENERATION_MESSAGES,
        "telemetry spans generations: {appended:?}"
    );
    assert!(
        appended.iter().all(|&n| n > 100),
        "every lane used: {appended:?}"
    );
}

#[test]
fn drop_oldest_takes_from_the_lowest_lane_first_against_the_model() {
    run_model(Some(150), 1500, 0x9e37_79b9_7f4a_7c15);
}

/// Table: what `dropOldest` removes to make room for one more message at `max_messages` 4.
#[test]
fn drop_oldest_takes_telemetry_then_events_then_control() {
    use Lane::{Control as C, Events as E, Telemetry as T};
    let rows: [(&[Lane], Lane, [u64; 3]); 5] = [
        // (already queued, in order; the new message's lane; dropped per lane)
        (&[C, E, T, T], C, [0, 0, 1]),
        (&[C, E, E, C], T, [0, 1, 0]),
        (&[C, C, C, E], C, [0, 1, 0]),
        (&[C, C, C, C], E, [1, 0, 0]),
        (&[T, T, T, T], C, [0, 0, 1]),
    ];
    for (queued, new, dropped) in rows {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig {
            limits: Limits {
                max_messages: 4,
                max_bytes: u64::MAX,
                when_full: WhenFull::DropOldest,
            },
            ..JournalConfig::for_tests(dir.path().join("j"))
        })
        .unwrap();
        for (n, lane) in queued.iter().enumerate() {
            assert_eq!(
                journal
                    .append(*lane, &lane_msg(*lane, n as u64))
                    .unwrap()
                    .dropped,
                0
            );
        }
        let done = journal.append(new, &lane_msg(new, 99)).unwrap();
        assert_eq!(done.dropped, 1, "{queued:?} + {new:?}");
        assert_eq!(
            Lane::ALL.map(|l| journal.dropped(l)),
            dropped,
            "{queued:?} + {new:?}"
        );
        assert_eq!(journal.queued_total(), 4);
        assert_eq!(journal.dropped_total(), 1);
    }
}

/// `rejectNew`: telemetry and events are full at the limits (counted over all lanes), control
/// only beyond the reserve, so a full telemetry backlog never holds control back.
#[test]
fn reject_new_keeps_a_reserve_for_control() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&JournalConfig {
        limits: Limits {
            max_messages: 100,
            max_bytes: u64::MAX,
            when_full: WhenFull::RejectNew,
        },
        ..JournalConfig::for_tests(dir.path().join("j"))
    })
    .unwrap();
    let full = |lane: Lane, n: u64| journal.append(lane, &lane_msg(lane, n)).unwrap().full;
    for n in 0..99 {
        assert!(!full(Lane::Telemetry, n), "{n} of 100 queued");
    }
    assert!(full(Lane::Telemetry, 99), "at the limit");
    assert!(full(Lane::Events, 100), "over it");
    assert!(!journal.has_room(1.0));
    // 101 queued; control is full at 100 + 10 %.
    for n in 101..109 {
        assert!(!full(Lane::Control, n), "control within the reserve: {n}");
    }
    assert!(full(Lane::Control, 109), "at the reserve's end");
    assert_eq!(
        journal.queued_total(),
        110,
        "nothing refused, nothing dropped"
    );
    assert_eq!(journal.dropped_total(), 0);
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, 20).unwrap();
    assert!(journal.has_room(1.0), "90 of 100 queued");
    assert!(
        !journal
            .append(Lane::Telemetry, &lane_msg(Lane::Telemetry, 110))
            .unwrap()
            .full
    );
}

/// Writes a journal as the version before lanes left it: generation trees `uplink.<seq>` with
/// records and single messages, the watermark `delivered_below`, the older tree `uplink` and
/// the old mark file. Returns the messages still queued in it, in order.
fn old_layout(path: &Path, delivered_below: u64, mark: u64) -> Vec<CloudMessage> {
    std::fs::create_dir_all(path).unwrap();
    let db = raw_db(path);
    let lanes = [
        Lane::Telemetry,
        Lane::Events,
        Lane::Control,
        Lane::Telemetry,
    ];
    let msgs: Vec<CloudMessage> = (0..40)
        .map(|n| lane_msg(lanes[n as usize % 4], n))
        .collect();
    // Seq 0..30 in records of 10 in the first generation, 30..40 single values in the next.
    let first = db
        .open_tree(format!("{OLD_GENERATION_PREFIX}{:020}", 0))
        .unwrap();
    for start in [0u64, 10, 20] {
        let mut record = RecordBuilder::new(start);
        for m in &msgs[start as usize..start as usize + 10] {
            record.push(&encode(m));
        }
        let (key, value) = record.finish();
        first.insert(key.to_be_bytes(), value).unwrap();
    }
    let second = db
        .open_tree(format!("{OLD_GENERATION_PREFIX}{:020}", 30))
        .unwrap();
    for (seq, m) in msgs.iter().enumerate().skip(30) {
        second
            .insert((seq as u64).to_be_bytes(), encode(m))
            .unwrap();
    }
    db.open_tree(META_TREE)
        .unwrap()
        .insert(OLD_WATERMARK_KEY, &delivered_below.to_be_bytes())
        .unwrap();
    let older = db.open_tree(LEGACY_QUEUE_TREE).unwrap();
    let older_msgs = [lane_msg(Lane::Events, 100), lane_msg(Lane::Control, 101)];
    for (key, m) in older_msgs.iter().enumerate() {
        older.insert((key as u64).to_be_bytes(), encode(m)).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    std::fs::write(
        path.join(OLD_MARK_FILE),
        format!("awslink journal committed_below={mark}\n"),
    )
    .unwrap();
    let mut queued: Vec<CloudMessage> = msgs[delivered_below as usize..].to_vec();
    queued.extend(older_msgs);
    queued
}

fn tree_names(journal: &Journal) -> Vec<String> {
    journal
        .inner
        .db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn a_journal_written_before_lanes_drains_into_the_lanes_of_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig::for_tests(dir.path().join("j"));
    let queued = old_layout(&cfg.path, 5, 40);
    let found = inspect(&cfg.path).unwrap();
    assert_eq!(
        (found.queued, found.legacy_messages),
        (0, queued.len() as u64)
    );

    let journal = reopen(&cfg);
    for lane in Lane::ALL {
        let expected = in_lane(&queued, lane);
        let got = lane_messages(&journal, lane);
        assert!(!got.is_empty(), "{lane:?}");
        assert_eq!(
            got, expected,
            "{lane:?}: in order, nothing delivered sent again"
        );
    }
    assert_eq!(journal.queued_total(), queued.len() as u64);
    let names = tree_names(&journal);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(OLD_GENERATION_PREFIX) || n == LEGACY_QUEUE_TREE),
        "the old trees are dropped: {names:?}"
    );
    assert!(
        !cfg.path.join(OLD_MARK_FILE).exists(),
        "the old mark is removed"
    );
    assert!(cfg.path.join(MARK_FILE).exists());
    // New messages follow in their lanes; delivery works per lane.
    let control = lane_entries(&journal, Lane::Control);
    let next = journal
        .append(Lane::Control, &lane_msg(Lane::Control, 200))
        .unwrap()
        .seq;
    assert_eq!(next, control.last().unwrap().0 + 1);
    journal.commit().unwrap();
    journal.delivered_below(Lane::Control, next + 1).unwrap();
    assert_eq!(journal.queued(Lane::Control), 0);
    drop(journal);

    let journal = reopen(&cfg);
    assert_eq!(journal.queued(Lane::Control), 0, "moved once, not again");
    assert_eq!(
        journal.queued_total(),
        queued.len() as u64 - control.len() as u64
    );
    drop(journal);
    let found = super::tests::inspect_when_free(&cfg.path);
    assert_eq!(found.legacy_messages, 0);
    let telemetry = &found.lanes[Lane::Telemetry.index()];
    assert_eq!(telemetry.lane, Lane::Telemetry);
    assert!(telemetry.queued > 0);
}

/// A move that crashed after the messages reached the lanes but before the old trees were
/// dropped is done again at the next start: messages may be duplicated, never lost.
#[test]
fn an_interrupted_move_duplicates_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig::for_tests(dir.path().join("j"));
    let queued = old_layout(&cfg.path, 0, 40);
    drop(reopen(&cfg));
    // What the crash left: the old layout again, beside the lanes already holding its messages.
    let again = old_layout(&cfg.path, 0, 40);
    assert_eq!(again, queued);
    let journal = reopen(&cfg);
    for lane in Lane::ALL {
        let expected = in_lane(&queued, lane);
        let got = lane_messages(&journal, lane);
        let twice: Vec<CloudMessage> = expected.iter().chain(&expected).cloned().collect();
        assert_eq!(got, twice, "{lane:?}");
    }
}

/// The mark of the version before lanes still finds the loss of committed messages.
#[test]
fn a_damaged_journal_written_before_lanes_is_refused_with_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig::for_tests(dir.path().join("j"));
    old_layout(&cfg.path, 5, 52);
    let err = Journal::open(&cfg).err().expect("12 messages are missing");
    assert!(matches!(err, JournalError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("12 acknowledged messages"),
        "{err}"
    );
    let journal = reopen(&JournalConfig {
        on_damage: OnDamage::StartWithSurvivors,
        ..cfg.clone()
    });
    assert_eq!(
        journal.queued_total(),
        35 + 2,
        "the survivors, moved into the lanes"
    );
    drop(journal);
    drop(reopen(&cfg)); // accepted once: the next start is silent
}
