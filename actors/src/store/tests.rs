//! The store's tests: the queue against a FIFO model across reopens, generations, the
//! watermark, the legacy tree, the quarantine, the downlink store, the shadow cache, the lock
//! and the read-only inspection.

use std::collections::VecDeque;
use std::path::Path;

use super::layout::{generation_name, generation_prefix};
use super::legacy::LEGACY_QUEUE_TREE;
use super::record::{self, encode, test_message as msg};
use super::recovery::MAX_GAP;
use super::*;
use crate::lanes::Lane;
use crate::model::CloudMessage;

fn config(dir: &Path) -> JournalConfig {
    JournalConfig::for_tests(dir.join("j"))
}

/// [`config`] with `dropOldest` beyond `max_messages` (and no byte limit).
fn drop_oldest_beyond(dir: &Path, max_messages: u64) -> JournalConfig {
    JournalConfig {
        limits: Limits {
            max_messages,
            max_bytes: u64::MAX,
            when_full: WhenFull::DropOldest,
        },
        ..config(dir)
    }
}

/// sled releases its file lock when its background threads let go of the database, shortly
/// after the last handle is dropped: poll for it (within this process only).
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

fn generation_trees(journal: &Journal) -> usize {
    journal
        .inner
        .db
        .tree_names()
        .iter()
        .filter(|n| n.starts_with(generation_prefix(Lane::Telemetry).as_bytes()))
        .count()
}

/// Generations are dropped on the journal's own thread: poll until at most `n` are left.
fn wait_for_generations(journal: &Journal, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while generation_trees(journal) > n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} generations left, wanted at most {n}",
            generation_trees(journal)
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn all_entries(journal: &Journal) -> Vec<(u64, CloudMessage)> {
    journal
        .entries_from(Lane::Telemetry, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(seq, m)| (seq, m.unwrap()))
        .collect()
}

/// Random append / commit / deliver / reopen sequences against a VecDeque model.
#[test]
fn matches_a_fifo_model_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut journal = Journal::open(&cfg).unwrap();
    let mut model: VecDeque<(u64, CloudMessage)> = VecDeque::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut counter = 0;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 100 {
            0..=59 => {
                // A burst, as the intake commits it.
                for _ in 0..=(state >> 8) % 20 {
                    counter += 1;
                    let seq = journal.append(Lane::Telemetry, &msg(counter)).unwrap().seq;
                    if let Some((last, _)) = model.back() {
                        assert!(seq > *last, "keys must increase");
                    }
                    model.push_back((seq, msg(counter)));
                }
                journal.commit().unwrap();
            }
            60..=97 => {
                let n = ((state >> 8) % 25) as usize;
                let delivered: Vec<_> = model.drain(..n.min(model.len())).collect();
                if let Some((last, _)) = delivered.last() {
                    journal.delivered_below(Lane::Telemetry, last + 1).unwrap();
                }
            }
            _ => {
                drop(journal);
                journal = reopen(&cfg);
            }
        }
        assert_eq!(journal.queued(Lane::Telemetry), model.len() as u64);
        assert_eq!(
            journal.first_from(Lane::Telemetry, 0).unwrap(),
            model.front().cloned()
        );
        // A read from anywhere in the queue (the in-memory tail or sled) returns the model's.
        let at = (state >> 16) as usize % (model.len() + 1);
        let max = 1 + (state >> 32) as usize % 70;
        let from = model.get(at).map_or(counter + 1_000_000, |(seq, _)| *seq);
        let read: Vec<_> = journal
            .entries_from(Lane::Telemetry, from, max)
            .unwrap()
            .into_iter()
            .map(|(seq, m)| (seq, m.unwrap()))
            .collect();
        let want: Vec<_> = model.iter().skip(at).take(max).cloned().collect();
        assert_eq!(read, want, "entries_from({from}, {max})");
    }
    assert!(counter > GENERATION_MESSAGES * 2, "spans generations");
    wait_for_generations(&journal, 2);
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(all_entries(&journal), Vec::from(model.clone()));
    if let Some((seq, _)) = model.get(model.len() / 2) {
        let from_middle = journal.entries_from(Lane::Telemetry, *seq, 3).unwrap();
        let expected: Vec<u64> = model
            .iter()
            .map(|(s, _)| *s)
            .skip(model.len() / 2)
            .take(3)
            .collect();
        assert_eq!(
            from_middle.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            expected
        );
    }
}

#[test]
fn appends_are_read_only_after_commit_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    for n in 0..5 {
        journal.append(Lane::Telemetry, &msg(n)).unwrap();
    }
    assert_eq!(
        journal.queued(Lane::Telemetry),
        5,
        "counted from the append"
    );
    assert!(
        journal.first_from(Lane::Telemetry, 0).unwrap().is_none(),
        "not written before the commit"
    );
    journal.commit().unwrap();
    let entries = all_entries(&journal);
    assert_eq!(
        entries.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        (0..5).map(msg).collect::<Vec<_>>()
    );
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(all_entries(&journal), entries);
    assert_eq!(journal.last_seq(Lane::Telemetry), entries[4].0);
}

#[test]
fn the_watermark_survives_a_reopen_so_nothing_delivered_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let seqs: Vec<u64> = (0..10)
        .map(|n| journal.append(Lane::Telemetry, &msg(n)).unwrap().seq)
        .collect();
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, seqs[7]).unwrap();
    journal.delivered_below(Lane::Telemetry, seqs[3]).unwrap(); // a late acknowledgement changes nothing
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    journal.flush().unwrap();
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    assert_eq!(
        all_entries(&journal),
        (7..10)
            .map(|n| (seqs[n as usize], msg(n)))
            .collect::<Vec<_>>()
    );
    let next = journal.append(Lane::Telemetry, &msg(10)).unwrap().seq;
    assert!(next > seqs[9], "sequence numbers are never reused");
}

#[test]
fn delivered_generations_are_dropped_and_their_bytes_leave_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let mut last = 0;
    for n in 0..(GENERATION_MESSAGES * 3) {
        last = journal.append(Lane::Telemetry, &msg(n)).unwrap().seq;
        if n % 50 == 49 {
            journal.commit().unwrap();
        }
    }
    journal.commit().unwrap();
    assert!(
        generation_trees(&journal) >= 3,
        "{}",
        generation_trees(&journal)
    );
    journal.delivered_below(Lane::Telemetry, last).unwrap();
    wait_for_generations(&journal, 1); // only the one still being written
    assert_eq!(journal.queued(Lane::Telemetry), 1);
    assert_eq!(
        journal
            .first_from(Lane::Telemetry, 0)
            .unwrap()
            .map(|(s, _)| s),
        Some(last)
    );
    assert_eq!(
        journal.queued_bytes(Lane::Telemetry),
        encode(&msg(GENERATION_MESSAGES * 3 - 1)).len() as u64
    );
}

/// Issue 16.1: an emptied journal gives its last generation back too, and sled writes that
/// space again: rounds of 8 MB appended and delivered keep its files bounded (they grew by
/// ~7 MB a round while a dropped tree's blob files were never removed), and appending goes on
/// in a new generation, across a reopen.
#[test]
fn reclaimed_space_is_written_again_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        min_free_bytes: 1 << 20,
        ..config(dir.path())
    };
    let journal = Journal::open(&cfg).unwrap();
    let payload = |n: u64| CloudMessage {
        payload: vec![b'x'; 4000],
        ..msg(n)
    };
    let round = |journal: &Journal| {
        for n in 0..2000 {
            journal.append(Lane::Telemetry, &payload(n)).unwrap();
            if n % 50 == 49 {
                journal.commit().unwrap();
            }
        }
        journal.commit().unwrap();
    };
    round(&journal);
    journal.append(Lane::Telemetry, &payload(2000)).unwrap();
    journal.delivered_below(Lane::Telemetry, 2000).unwrap();
    journal.reclaim().unwrap();
    wait_for_generations(&journal, 1);
    assert_eq!(
        generation_trees(&journal),
        1,
        "a queued append keeps its generation"
    );
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, 2001).unwrap();
    journal.reclaim().unwrap();
    wait_for_generations(&journal, 0);
    assert!(journal.room_bytes() >= journal.free_bytes());
    for _ in 0..6 {
        round(&journal);
        journal
            .delivered_below(Lane::Telemetry, journal.last_seq(Lane::Telemetry) + 1)
            .unwrap();
        journal.reclaim().unwrap();
        wait_for_generations(&journal, 0);
    }
    let size = journal.inner.db.size_on_disk().unwrap();
    assert!(
        size < 32 << 20,
        "56 MB written and delivered in 7 rounds: sled's files hold {size} bytes"
    );
    let seq = journal.append(Lane::Telemetry, &msg(7)).unwrap().seq;
    journal.commit().unwrap();
    assert_eq!(seq, 7 * 2000 + 1);
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(all_entries(&journal), vec![(seq, msg(7))]);
}

fn legacy_queue(cfg: &JournalConfig, keys: &[u64]) {
    // A journal dropped just before lets go of the lock when its threads have ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::open(&cfg.path) {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("open {}: {e}", cfg.path.display()),
        }
    };
    let old = db.open_tree(LEGACY_QUEUE_TREE).unwrap();
    for &n in keys {
        old.insert(n.to_be_bytes(), encode(&msg(n))).unwrap();
    }
    db.flush().unwrap();
}

fn tree_exists(journal: &Journal, name: &str) -> bool {
    journal
        .inner
        .db
        .tree_names()
        .iter()
        .any(|n| &**n == name.as_bytes())
}

#[test]
fn a_queue_left_by_an_earlier_version_is_moved_and_drained() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    legacy_queue(&cfg, &[4, 5, 7]);
    let journal = reopen(&cfg);
    assert!(
        !tree_exists(&journal, LEGACY_QUEUE_TREE),
        "old tree dropped"
    );
    let entries = all_entries(&journal);
    assert_eq!(
        entries.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        vec![msg(4), msg(5), msg(7)]
    );
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    let seq = journal.append(Lane::Telemetry, &msg(8)).unwrap().seq;
    journal.commit().unwrap();
    assert_eq!(seq, entries[2].0 + 1, "new messages follow the moved ones");
    journal.delivered_below(Lane::Telemetry, seq + 1).unwrap();
    assert_eq!(
        (
            journal.queued(Lane::Telemetry),
            journal.queued_bytes(Lane::Telemetry)
        ),
        (0, 0)
    );
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(all_entries(&journal), vec![], "moved once, not again");
}

/// An older awslink, run after this one, writes its own tree from key 0 again: its
/// messages are newer than what this version had queued, and below the stored watermark.
#[test]
fn messages_of_a_downgrade_are_sent_after_an_upgrade_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let seqs: Vec<u64> = (100..110)
        .map(|n| journal.append(Lane::Telemetry, &msg(n)).unwrap().seq)
        .collect();
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, seqs[5]).unwrap();
    drop(journal);
    legacy_queue(&cfg, &[0, 1]);
    let journal = reopen(&cfg);
    let got: Vec<CloudMessage> = all_entries(&journal).into_iter().map(|(_, m)| m).collect();
    let mut expected: Vec<CloudMessage> = (105..110).map(msg).collect();
    expected.extend([msg(0), msg(1)]);
    assert_eq!(got, expected);
}

#[test]
fn a_record_with_an_impossible_key_is_quarantined_at_open_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let first = journal.append(Lane::Telemetry, &msg(1)).unwrap().seq;
    journal.commit().unwrap();
    let generation = generation_name(Lane::Telemetry, first);
    let tree = journal.inner.db.open_tree(&generation).unwrap();
    for bogus in [u64::MAX - 1, first + MAX_GAP + 10] {
        tree.insert(bogus.to_be_bytes(), encode(&msg(9))).unwrap();
    }
    drop(tree);
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(journal.queued(Lane::Telemetry), 1);
    assert_eq!(all_entries(&journal), vec![(first, msg(1))]);
    let q = journal.quarantined().unwrap();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q.iter().all(|q| q.reason.contains("out of sequence")),
        "{q:?}"
    );
    let next = journal.append(Lane::Telemetry, &msg(2)).unwrap().seq;
    journal.commit().unwrap();
    assert_eq!(next, first + 1);
    assert_eq!(all_entries(&journal).len(), 2);
}

#[test]
fn what_was_just_committed_is_read_from_memory_not_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let first = journal.append(Lane::Telemetry, &msg(1)).unwrap().seq;
    journal.append(Lane::Telemetry, &msg(2)).unwrap();
    journal.commit().unwrap();
    // The record as stored is overwritten behind the journal's back: the drain's reads do not
    // see it, as they come from the lane's tail.
    journal
        .inner
        .db
        .open_tree(generation_name(Lane::Telemetry, first))
        .unwrap()
        .insert(first.to_be_bytes(), encode(&msg(99)))
        .unwrap();
    assert_eq!(
        all_entries(&journal),
        vec![(first, msg(1)), (first + 1, msg(2))]
    );
    // Once delivered, the tail lets go of them and a read past them finds nothing.
    journal.delivered_below(Lane::Telemetry, first + 2).unwrap();
    assert_eq!(all_entries(&journal), vec![]);
    assert_eq!(
        lock(&journal.inner.queue.lane(Lane::Telemetry).tail).bytes(),
        0
    );
}

#[test]
fn an_unreadable_entry_is_quarantined_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let seq = journal.append(Lane::Telemetry, &msg(1)).unwrap().seq;
    journal.commit().unwrap();
    let generation = generation_name(Lane::Telemetry, seq);
    let garbage = vec![record::MESSAGE_VERSION, 0, 1];
    journal
        .inner
        .db
        .open_tree(generation)
        .unwrap()
        .insert(seq.to_be_bytes(), garbage.clone())
        .unwrap();
    // Damage is found on disk, i.e. after a restart (the running journal reads what it just
    // wrote from its in-memory tail).
    drop(journal);
    let journal = Journal::open(&config(dir.path())).unwrap();
    let entries = journal.entries_from(Lane::Telemetry, 0, 10).unwrap();
    assert!(
        matches!(&entries[..], [(s, Err(_))] if *s == seq),
        "{entries:?}"
    );
    journal
        .quarantine_entry(Lane::Telemetry, seq, "unreadable journal entry")
        .unwrap();
    journal.delivered_below(Lane::Telemetry, seq + 1).unwrap();
    let q = journal.quarantined().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].msg.payload, garbage, "the stored bytes are kept");
    assert!(
        q[0].reason.starts_with("unreadable journal entry ("),
        "{}",
        q[0].reason
    );
}

/// Issue 16.3: the quarantine keeps at most `quarantine_max_messages` (the oldest go first and
/// are counted, also across a reopen with a lower limit) and its bytes count against
/// `max_bytes`.
#[test]
fn the_quarantine_keeps_its_newest_within_its_limit_and_counts_against_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        limits: Limits {
            max_messages: u64::MAX,
            max_bytes: 3000,
            when_full: WhenFull::RejectNew,
        },
        quarantine_max_messages: 5,
        ..config(dir.path())
    };
    let journal = Journal::open(&cfg).unwrap();
    for n in 0..8 {
        journal
            .quarantine_new(&msg(n), &format!("reason {n}"))
            .unwrap();
    }
    let reasons: Vec<String> = journal
        .quarantined()
        .unwrap()
        .into_iter()
        .map(|q| q.reason)
        .collect();
    assert_eq!(
        reasons,
        (3..8).map(|n| format!("reason {n}")).collect::<Vec<_>>()
    );
    assert_eq!(
        (journal.quarantine_len(), journal.quarantine_dropped()),
        (5, 3)
    );
    assert!(journal.has_room(1.0));
    let big = CloudMessage {
        payload: vec![b'q'; 3000],
        ..msg(99)
    };
    journal.quarantine_new(&big, "too big").unwrap();
    assert!(
        !journal.has_room(1.0),
        "3 KB quarantined of a 3 KB limit leaves the queue no room"
    );
    drop(journal);
    let journal = reopen(&JournalConfig {
        quarantine_max_messages: 2,
        ..cfg.clone()
    });
    assert_eq!(
        (journal.quarantine_len(), journal.quarantine_dropped()),
        (2, 3)
    );
    assert_eq!(journal.quarantined().unwrap()[1].reason, "too big");
    journal.purge_quarantine().unwrap();
    assert!(
        journal.has_room(1.0),
        "purged: its bytes are gone from the count"
    );
}

#[test]
fn drop_oldest_drops_whole_generations_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = drop_oldest_beyond(dir.path(), 100);
    let journal = Journal::open(&cfg).unwrap();
    let total = GENERATION_MESSAGES * 3;
    for n in 0..total {
        journal.append(Lane::Telemetry, &msg(n)).unwrap();
        if n % 64 == 63 {
            journal.commit().unwrap();
        }
    }
    journal.commit().unwrap();
    assert_eq!(journal.queued(Lane::Telemetry), 100);
    assert_eq!(journal.dropped(Lane::Telemetry), total - 100);
    wait_for_generations(&journal, 2);
    let newest: Vec<CloudMessage> = ((total - 100)..total).map(msg).collect();
    let got: Vec<CloudMessage> = all_entries(&journal).into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, newest);
}

#[test]
fn quarantine_keeps_reason_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&config(dir.path())).unwrap();
    let seq = journal.append(Lane::Telemetry, &msg(1)).unwrap().seq;
    journal.commit().unwrap();
    journal
        .quarantine_entry(Lane::Telemetry, seq, "rejected by AWS")
        .unwrap();
    journal.delivered_below(Lane::Telemetry, seq + 1).unwrap();
    journal
        .quarantine_new(&msg(2), "payload too large")
        .unwrap();
    assert_eq!(journal.queued(Lane::Telemetry), 0);
    let q = journal.quarantined().unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        (q[0].reason.as_str(), &q[0].msg),
        ("rejected by AWS", &msg(1))
    );
    assert_eq!(
        (q[1].reason.as_str(), &q[1].msg),
        ("payload too large", &msg(2))
    );
}

#[test]
fn downlink_entries_survive_a_reopen_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let a = journal.downlink().append(&msg(1)).unwrap();
    let b = journal.downlink().append(&msg(2)).unwrap();
    assert!(b > a);
    drop(journal);
    let journal = reopen(&cfg);
    let downlink = journal.downlink();
    let entries = downlink.entries().unwrap();
    assert_eq!(entries, vec![(a, msg(1)), (b, msg(2))]);
    downlink.remove(a).unwrap();
    assert_eq!(downlink.entries().unwrap(), vec![(b, msg(2))]);
    assert_eq!(downlink.len(), 1);
    assert_eq!(
        journal.queued(Lane::Telemetry),
        0,
        "downlink entries are not uplink queue entries"
    );
}

#[test]
fn drop_oldest_lets_the_in_memory_tail_go_of_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = drop_oldest_beyond(dir.path(), 10);
    let journal = Journal::open(&cfg).unwrap();
    let tail_bytes = || lock(&journal.inner.queue.lane(Lane::Telemetry).tail).bytes();
    for n in 0..10 {
        journal.append(Lane::Telemetry, &msg(n)).unwrap();
    }
    journal.commit().unwrap();
    assert!(tail_bytes() > 0, "the committed burst is in the tail");
    // Ten more push the first ten out before they are committed (and the cloud is away, so no
    // delivery trims anything).
    for n in 10..20 {
        journal.append(Lane::Telemetry, &msg(n)).unwrap();
    }
    assert_eq!(tail_bytes(), 0, "the dropped burst left the tail");
    journal.commit().unwrap();
    let first = journal.first_from(Lane::Telemetry, 0).unwrap().unwrap().0;
    let read: Vec<_> = journal
        .entries_from(Lane::Telemetry, 0, 100)
        .unwrap()
        .into_iter()
        .map(|(seq, m)| (seq, m.unwrap()))
        .collect();
    assert_eq!(
        read,
        (first..first + 10)
            .zip((10..20).map(msg))
            .collect::<Vec<_>>()
    );
}

#[test]
fn drop_oldest_keeps_the_newest_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = drop_oldest_beyond(dir.path(), 3);
    let journal = Journal::open(&cfg).unwrap();
    let dropped: Vec<u64> = (1..=5)
        .map(|n| journal.append(Lane::Telemetry, &msg(n)).unwrap().dropped)
        .collect();
    journal.commit().unwrap();
    assert_eq!(dropped, [0, 0, 0, 1, 1]);
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    assert_eq!(journal.dropped(Lane::Telemetry), 2);
    assert_eq!(
        journal.first_from(Lane::Telemetry, 0).unwrap().unwrap().1,
        msg(3)
    );
    journal.delivered_below(Lane::Telemetry, 1).unwrap(); // the PUBACK of a dropped message
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(journal.queued(Lane::Telemetry), 3, "the drops are stored");

    let one = encode(&msg(1)).len() as u64;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_messages: 100,
        max_bytes: 2 * one + 1,
        when_full: WhenFull::DropOldest,
    };
    let journal = Journal::open(&JournalConfig {
        limits,
        ..config(dir.path())
    })
    .unwrap();
    for n in 1..=4 {
        journal.append(Lane::Telemetry, &msg(n)).unwrap();
    }
    assert_eq!(journal.queued(Lane::Telemetry), 2);
    assert!(journal.queued_bytes(Lane::Telemetry) <= 2 * one + 1);
    let huge = CloudMessage {
        payload: vec![7; 1000],
        ..msg(9)
    };
    journal.append(Lane::Telemetry, &huge).unwrap();
    journal.commit().unwrap();
    assert_eq!(
        journal.queued(Lane::Telemetry),
        1,
        "an oversize entry empties the queue and still goes in"
    );
    assert_eq!(all_entries(&journal).len(), 1);
}

#[test]
fn reject_new_keeps_everything_and_says_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_messages: 2,
        max_bytes: u64::MAX,
        when_full: WhenFull::RejectNew,
    };
    let journal = Journal::open(&JournalConfig {
        limits,
        ..config(dir.path())
    })
    .unwrap();
    let first = journal.append(Lane::Telemetry, &msg(1)).unwrap();
    assert!(!first.full);
    assert!(
        journal.append(Lane::Telemetry, &msg(2)).unwrap().full,
        "at the limit: pause intake"
    );
    let over = journal.append(Lane::Telemetry, &msg(3)).unwrap();
    assert!(over.full && over.dropped == 0, "kept, never dropped");
    assert_eq!(journal.queued(Lane::Telemetry), 3);
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, over.seq).unwrap();
    assert!(journal.has_room(1.0), "1 of 2 queued");
    assert!(
        journal.append(Lane::Telemetry, &msg(4)).unwrap().full,
        "2 of 2 queued again"
    );
    assert_eq!(journal.dropped(Lane::Telemetry), 0);
}

#[test]
fn second_open_of_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Journal::open(&config(dir.path())).unwrap();
    let err = Journal::open(&config(dir.path()))
        .err()
        .expect("second open must fail");
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn unwritable_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let cfg = JournalConfig {
        path: file.join("sub"),
        ..config(dir.path())
    };
    let err = Journal::open(&cfg).err().expect("must fail");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// Opens the raw sled database at `path` once a journal dropped just before let go of it.
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

/// A tree's name with its keys and values.
type RawTree = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Every tree of the database at `path` with its keys and values.
fn raw_contents(path: &Path) -> Vec<RawTree> {
    let db = raw_db(path);
    let mut names: Vec<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let tree = db.open_tree(&name).unwrap();
            let items = tree
                .iter()
                .map(|item| {
                    let (k, v) = item.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (name, items)
        })
        .collect()
}

/// `inspect` waiting for a journal dropped just before to let go of the lock.
pub(super) fn inspect_when_free(path: &Path) -> Inspection {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match inspect(path) {
            Ok(found) => return found,
            Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("inspect: {e}"),
        }
    }
}

#[test]
fn inspect_reports_what_an_open_would_do_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let seqs: Vec<u64> = (0..3)
        .map(|n| journal.append(Lane::Telemetry, &msg(n)).unwrap().seq)
        .collect();
    journal.commit().unwrap();
    journal.delivered_below(Lane::Telemetry, seqs[1]).unwrap();
    journal.downlink().append(&msg(50)).unwrap();
    let generation = generation_name(Lane::Telemetry, seqs[0]);
    let tree = journal.inner.db.open_tree(&generation).unwrap();
    tree.insert((u64::MAX - 1).to_be_bytes(), encode(&msg(9)))
        .unwrap();
    drop(tree);
    journal.flush().unwrap();
    drop(journal);
    legacy_queue(&cfg, &[4, 5]);
    let before = raw_contents(&cfg.path);
    assert!(before
        .iter()
        .any(|(n, _)| n == LEGACY_QUEUE_TREE.as_bytes()));
    assert!(before
        .iter()
        .any(|(n, items)| n == b"quarantine" && items.is_empty()));

    let found = inspect_when_free(&cfg.path);
    assert_eq!(
        found,
        Inspection {
            queued: 2,
            queued_bytes: (encode(&msg(1)).len() + encode(&msg(2)).len()) as u64,
            oldest_enqueued_ms: Some(msg(1).enqueued_ms),
            lanes: Lane::ALL
                .into_iter()
                .map(|lane| LaneInspection {
                    lane,
                    queued: if lane == Lane::Telemetry { 2 } else { 0 },
                    queued_bytes: if lane == Lane::Telemetry {
                        (encode(&msg(1)).len() + encode(&msg(2)).len()) as u64
                    } else {
                        0
                    },
                    oldest_enqueued_ms: (lane == Lane::Telemetry).then_some(msg(1).enqueued_ms),
                })
                .collect(),
            downlink: 1,
            quarantined: vec![],
            legacy_messages: 2,
            legacy_bytes: (encode(&msg(4)).len() + encode(&msg(5)).len()) as u64,
            misplaced: 1,
        }
    );
    assert_eq!(
        inspect_when_free(&cfg.path),
        found,
        "the same answer twice: nothing was moved"
    );
    assert_eq!(
        raw_contents(&cfg.path),
        before,
        "no tree created, moved, quarantined or dropped"
    );

    // A normal open does what the inspection reported.
    let journal = reopen(&cfg);
    assert_eq!(journal.queued(Lane::Telemetry), 4);
    assert!(!tree_exists(&journal, LEGACY_QUEUE_TREE));
    assert_eq!(journal.quarantined().unwrap().len(), 1);
    drop(journal);
    let after = inspect_when_free(&cfg.path);
    assert_eq!(
        (after.queued, after.legacy_messages, after.misplaced),
        (4, 0, 0)
    );
    assert_eq!(after.quarantined.len(), 1);
}

#[test]
fn inspect_of_a_missing_directory_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let err = inspect(&path).expect_err("must fail");
    assert!(
        matches!(&err, JournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn a_locked_directory_is_named_as_locked_by_open_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let first = Journal::open(&cfg).unwrap();
    for err in [
        Journal::open(&cfg).err().expect("second open must fail"),
        inspect(&cfg.path).expect_err("inspect of a locked directory must fail"),
    ] {
        match &err {
            JournalError::Locked { path } => assert_eq!(path, &cfg.path),
            other => panic!("not reported as locked: {other}"),
        }
    }
    drop(first);
    drop(reopen(&cfg));
}

/// The lock is recognised by the `flock` itself, whoever holds it, not by sled's wording.
#[test]
fn a_flock_held_outside_sled_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    drop(Journal::open(&cfg).unwrap());
    drop(reopen(&cfg)); // the first journal has let go
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let file = std::fs::File::open(cfg.path.join("db")).unwrap();
    while fs2::FileExt::try_lock_exclusive(&file).is_err() {
        assert!(std::time::Instant::now() < deadline, "lock never released");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let err = Journal::open(&cfg).err().expect("open must fail");
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    fs2::FileExt::unlock(&file).unwrap();
    drop(reopen(&cfg));
}

#[test]
fn an_io_error_that_is_not_the_lock_is_not_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let cfg = JournalConfig {
        path: file.join("sub"),
        ..config(dir.path())
    };
    let err = Journal::open(&cfg).err().expect("must fail");
    assert!(!matches!(err, JournalError::Locked { .. }), "{err}");
}

#[test]
fn the_shadow_cache_keeps_reported_state_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let journal = Journal::open(&cfg).unwrap();
    let cache = journal.shadow_cache().unwrap();
    let doc = serde_json::json!({"temp": 21, "nested": {"a": [1, 2]}});
    assert_eq!(cache.get("$aws/things/t/shadow").unwrap(), None);
    cache.put("$aws/things/t/shadow", &doc).unwrap();
    cache
        .put("$aws/things/t/shadow/name/x", &serde_json::json!({}))
        .unwrap();
    cache.remove("$aws/things/t/shadow/name/x").unwrap();
    journal
        .inner
        .db
        .open_tree(SHADOW_CACHE_TREE)
        .unwrap()
        .insert("$aws/things/t/shadow/name/bad", b"not json".to_vec())
        .unwrap();
    journal.flush().unwrap();
    drop((cache, journal));
    let journal = reopen(&cfg);
    let cache = journal.shadow_cache().unwrap();
    assert_eq!(cache.get("$aws/things/t/shadow").unwrap(), Some(doc));
    assert_eq!(cache.get("$aws/things/t/shadow/name/x").unwrap(), None);
    assert_eq!(
        cache.get("$aws/things/t/shadow/name/bad").unwrap(),
        None,
        "an unreadable entry is as good as none"
    );
    assert_eq!(
        journal.queued(Lane::Telemetry),
        0,
        "not part of the uplink queue"
    );
}

/// Whether any file of the journal at `dir` holds `needle` (what sled has written, not what
/// is still in its in-memory buffer).
fn journal_files_hold(dir: &Path, needle: &[u8]) -> bool {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return true;
                }
            }
        }
    }
    false
}

fn lone_message(payload: &str) -> CloudMessage {
    CloudMessage {
        payload: payload.as_bytes().to_vec(),
        ..msg(1)
    }
}

/// `batched`: a write that no commit follows is not left in sled's memory. A stored cloud
/// command neither flushes nor asks for a mark file (whose flush would write it too), so only
/// the journal's flusher thread can write it.
#[test]
fn in_batched_mode_a_lone_write_reaches_the_file_without_more_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        durability: Durability::Batched { flush_every_ms: 50 },
        ..config(dir.path())
    };
    let journal = Journal::open(&cfg).unwrap();
    journal
        .downlink()
        .append(&lone_message("lone-command-9c2e"))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !journal_files_hold(&cfg.path, b"lone-command-9c2e") {
        assert!(
            std::time::Instant::now() < deadline,
            "the stored command never reached the journal's files"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(journal);
    let journal = reopen(&cfg);
    assert_eq!(journal.downlink().len(), 1);
}
