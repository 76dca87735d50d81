//! Damaged journals, in the spirit of Vector's `known_errors` tests: every file of a stopped
//! journal holding 300 messages is truncated, zeroed and overwritten at several offsets, and
//! every case ends in one of the allowed outcomes, never in a silent loss or a panic.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::record::test_message as msg;
use super::super::{Journal, JournalConfig, JournalError, OnDamage};
use super::MARK_FILE;
use crate::lanes::Lane;

const MESSAGES: u64 = 300;

fn config(path: &Path, on_damage: OnDamage) -> JournalConfig {
    JournalConfig {
        on_damage,
        ..JournalConfig::for_tests(path)
    }
}

/// The messages of the journal, with a bigger payload so that sled's files have some size.
fn message(n: u64) -> crate::model::CloudMessage {
    crate::model::CloudMessage {
        payload: format!("{n:06}-{}", "p".repeat(200)).into_bytes(),
        ..msg(n)
    }
}

/// Opens `cfg`, waiting while a dropped handle in this process still holds sled's lock.
fn open(cfg: &JournalConfig) -> std::thread::Result<Result<Journal, JournalError>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = std::panic::catch_unwind(|| Journal::open(cfg));
        match result {
            Ok(Err(JournalError::Locked { .. })) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

/// The lane of message `n`: the messages go round the lanes.
fn lane_of(n: u64) -> Lane {
    Lane::ALL[(n % 3) as usize]
}

/// A stopped journal of [`MESSAGES`] committed messages in `dir`, a third in each lane.
fn journal_of_300(dir: &Path) {
    let journal = Journal::open(&config(dir, OnDamage::Refuse)).unwrap();
    for n in 0..MESSAGES {
        journal.append(lane_of(n), &message(n)).unwrap();
        if n % 10 == 9 {
            journal.commit().unwrap();
        }
    }
    journal.flush().unwrap();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut the file to this fraction of its length.
    Truncate(f64),
    /// Zero 4 KiB at this fraction of the length.
    Zero(f64),
    /// Overwrite 4 KiB with garbage at this fraction of the length.
    Garbage(f64),
}

fn apply(file: &Path, damage: Damage) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len().saturating_sub(1));
    match damage {
        Damage::Truncate(f) => bytes.truncate(at(f)),
        Damage::Zero(f) | Damage::Garbage(f) => {
            let start = at(f);
            let end = (start + 4096).min(bytes.len());
            for (i, b) in bytes[start..end].iter_mut().enumerate() {
                *b = match damage {
                    Damage::Zero(_) => 0,
                    _ => (i as u8).wrapping_mul(151).wrapping_add(7),
                };
            }
        }
    }
    std::fs::write(file, bytes).unwrap();
}

/// All messages, as committed, each in its lane.
fn intact(journal: &Journal) -> bool {
    Lane::ALL.into_iter().all(|lane| {
        let entries = journal
            .entries_from(lane, 0, MESSAGES as usize + 1)
            .unwrap_or_default();
        let expected: Vec<u64> = (0..MESSAGES).filter(|n| lane_of(*n) == lane).collect();
        entries.len() == expected.len()
            && entries
                .iter()
                .zip(expected)
                .all(|((_, m), n)| m.as_ref().is_ok_and(|m| *m == message(n)))
    })
}

/// Issue 16.2: every case is refused naming the directory, or opens with every message intact
/// (`refuse`) / with what survived (`startWithSurvivors`); none panics.
#[test]
fn every_damaged_journal_file_is_refused_or_loses_nothing_silently() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    journal_of_300(&clean);
    let names: Vec<PathBuf> = files(&clean)
        .into_iter()
        .map(|f| f.strip_prefix(&clean).unwrap().to_path_buf())
        .collect();
    assert!(names.iter().any(|n| n == Path::new("db")), "{names:?}");
    assert!(names.iter().any(|n| n == Path::new(MARK_FILE)), "{names:?}");
    let mut damages = vec![Damage::Truncate(0.0), Damage::Truncate(0.5)];
    for f in [0.0, 0.25, 0.5, 0.75, 0.999] {
        damages.push(Damage::Zero(f));
        damages.push(Damage::Garbage(f));
    }
    let (mut refused, mut survived, mut unharmed) = (0, 0, 0);
    for (i, name) in names.iter().enumerate() {
        for (j, damage) in damages.iter().enumerate() {
            let case = base.path().join(format!("case-{i}-{j}"));
            copy_dir(&clean, &case);
            apply(&case.join(name), *damage);
            let what = format!("{} {damage:?}", name.display());
            let first = open(&config(&case, OnDamage::Refuse));
            match first {
                Err(_) => panic!("{what}: the open panicked"),
                Ok(Ok(journal)) => {
                    assert!(
                        intact(&journal),
                        "{what}: opened silently with messages lost"
                    );
                    unharmed += 1;
                    continue;
                }
                Ok(Err(e)) => {
                    let text = e.to_string();
                    assert!(text.contains(&case.display().to_string()), "{what}: {text}");
                    assert!(
                        matches!(
                            e,
                            JournalError::Damaged { .. } | JournalError::Corrupt { .. }
                        ),
                        "{what}: {e:?}"
                    );
                    assert!(text.contains("buffer inspect"), "{what}: {text}");
                    refused += 1;
                }
            }
            match open(&config(&case, OnDamage::StartWithSurvivors)) {
                Err(_) => panic!("{what}: the open with startWithSurvivors panicked"),
                Ok(Ok(journal)) => {
                    assert!(journal.queued_total() <= MESSAGES, "{what}");
                    survived += 1;
                    drop(journal);
                    // Accepted once: the next start is silent.
                    let again = open(&config(&case, OnDamage::Refuse));
                    assert!(
                        matches!(again, Ok(Ok(_))),
                        "{what}: refused again after starting with the survivors"
                    );
                }
                // sled itself cannot open it: refused either way.
                Ok(Err(e)) => assert!(matches!(e, JournalError::Corrupt { .. }), "{what}: {e:?}"),
            }
        }
    }
    eprintln!(
        "{} cases over {names:?}: {refused} refused, {survived} of them started with the survivors when asked, {unharmed} lost nothing",
        names.len() * damages.len()
    );
    assert!(refused > 0, "damage is noticed at all");
}

/// A clean restart is silent: reopened after a normal stop, and after a drop without a flush
/// (every commit was flushed: what a `kill -9` leaves in `fsync` mode).
#[test]
fn a_clean_journal_reopens_without_a_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    journal_of_300(&path);
    let journal = open(&config(&path, OnDamage::Refuse)).unwrap().unwrap();
    assert!(intact(&journal));
    for n in MESSAGES..MESSAGES + 50 {
        journal.append(Lane::Telemetry, &message(n)).unwrap();
        journal.commit().unwrap();
    }
    // Telemetry held seq 0..100 of the 300, and now 100..150 too.
    journal.delivered_below(Lane::Telemetry, 100).unwrap();
    drop(journal);
    let journal = open(&config(&path, OnDamage::Refuse)).unwrap().unwrap();
    assert_eq!(journal.queued(Lane::Telemetry), 50);
    assert_eq!(journal.queued_total(), MESSAGES + 50 - 100);
}

/// The mark is what finds the loss: without the mark file a cut journal opens as it did before.
#[test]
fn a_cut_journal_is_refused_with_the_count_and_started_with_the_survivors_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    journal_of_300(&path);
    // Remove the newest messages of two lanes the way a torn log loses them: behind sled's
    // back, whole records (telemetry: all 100; events: the records from seq 50 on).
    let mut events_from = None;
    {
        let journal = open(&config(&path, OnDamage::Refuse)).unwrap().unwrap();
        for (lane, from) in [(Lane::Events, 50), (Lane::Telemetry, 0)] {
            let generations = super::super::read(&journal.inner.queue.lane(lane).generations);
            for tree in generations.trees.values() {
                for item in tree.iter() {
                    let (key, _) = item.unwrap();
                    let key_seq = super::super::decode_key(&key);
                    if key_seq >= from {
                        if lane == Lane::Events {
                            events_from = Some(events_from.unwrap_or(key_seq).min(key_seq));
                        }
                        tree.remove(key).unwrap();
                    }
                }
            }
        }
        journal.inner.db.flush().unwrap();
    }
    let events_from = events_from.unwrap();
    let lost = 100 + (100 - events_from);
    let refused = open(&config(&path, OnDamage::Refuse)).unwrap();
    let Err(e) = refused else {
        panic!("a journal that lost {lost} messages opened silently");
    };
    let text = e.to_string();
    assert!(
        text.contains(&format!("{lost} acknowledged messages")),
        "{text}"
    );
    assert!(
        text.contains(&format!("events: sequence numbers {events_from} to 99")),
        "{text}"
    );
    assert!(
        text.contains("telemetry: sequence numbers 0 to 99"),
        "{text}"
    );
    assert!(!text.contains("control:"), "control lost nothing: {text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    let journal = open(&config(&path, OnDamage::StartWithSurvivors))
        .unwrap()
        .unwrap();
    assert_eq!(journal.queued_total(), MESSAGES - lost);
    assert_eq!(journal.queued(Lane::Control), 100);
}
