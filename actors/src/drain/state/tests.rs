//! Table tests of the drain's rules: each row drives a [`Drain`] over a model journal (a set of
//! keys) and compares the trace of what the Buffer would do.

use std::collections::BTreeSet;

use super::*;

/// One input to the drain.
#[derive(Clone, Copy)]
enum Op {
    /// Send what the window allows from the model journal.
    Fill,
    /// The publish of this entry was acknowledged.
    Ack(u64),
    /// The publish of this entry failed for good.
    Reject(u64),
    /// The publish of this entry failed for now.
    Fail(u64),
    /// The burst of completions is over.
    Burst,
    /// The Supervisor reported a new link.
    Link,
    /// The next quarantine copy fails.
    QuarantineBroken,
    /// The Buffer retries the quarantine copies (which now succeed).
    RetryQuarantine,
}

struct Row {
    name: &'static str,
    window: usize,
    /// Keys in the journal at the start.
    journal: &'static [u64],
    /// Keys that cannot be decoded.
    unreadable: &'static [u64],
    ops: &'static [Op],
    trace: &'static [&'static str],
}

fn run(row: &Row) -> Vec<String> {
    let mut drain = Drain::new(row.window);
    let mut journal: BTreeSet<u64> = row.journal.iter().copied().collect();
    let mut quarantine_broken = false;
    let mut trace = Vec::new();
    let quarantine =
        |drain: &mut Drain, seq: u64, reason: String, broken: &mut bool, trace: &mut Vec<_>| {
            if std::mem::take(broken) {
                trace.push(format!("quarantine {seq} failed"));
                drain.quarantine_failed(seq, reason);
            } else {
                trace.push(format!("quarantine {seq}: {reason}"));
            }
        };
    for op in row.ops {
        match *op {
            Op::Fill => {
                while let Some((from, room)) = drain.next() {
                    let batch: Vec<u64> = journal.range(from..).take(room).copied().collect();
                    if batch.is_empty() {
                        break;
                    }
                    for seq in batch {
                        if row.unreadable.contains(&seq) {
                            drain.unreadable(seq);
                            let reason = "unreadable".to_string();
                            quarantine(&mut drain, seq, reason, &mut quarantine_broken, &mut trace);
                        } else {
                            drain.sent(seq);
                            trace.push(format!("send {seq}"));
                        }
                    }
                }
            }
            Op::Ack(seq) | Op::Reject(seq) | Op::Fail(seq) => {
                let outcome = match *op {
                    Op::Ack(_) => Outcome::Delivered,
                    Op::Reject(_) => Outcome::Permanent("bad topic".into()),
                    _ => Outcome::Transient("disconnected".into()),
                };
                match drain.completed(seq, outcome) {
                    None => trace.push(format!("ignore {seq}")),
                    Some(Completion::Delivered) => trace.push(format!("delivered {seq}")),
                    Some(Completion::Quarantine(reason)) => {
                        quarantine(&mut drain, seq, reason, &mut quarantine_broken, &mut trace)
                    }
                    Some(Completion::Retry(_)) => trace.push(format!("retry {seq}")),
                }
            }
            Op::Burst => {
                if let Some(n) = drain.end_of_burst() {
                    trace.push(format!("resend from {}, gave up {n}", drain.cursor));
                }
            }
            Op::Link => {
                let n = drain.link_changed();
                trace.push(format!("new link, gave up {n}"));
            }
            Op::QuarantineBroken => quarantine_broken = true,
            Op::RetryQuarantine => {
                while let Some((seq, reason)) = drain.take_unquarantined() {
                    quarantine(&mut drain, seq, reason, &mut quarantine_broken, &mut trace);
                }
            }
        }
        if let Some(below) = drain.delivered_below() {
            journal.retain(|&k| k >= below);
            drain.reported(below);
            trace.push(format!("watermark {below}"));
        }
    }
    trace
}

use Op::*;

const ROWS: &[Row] = &[
    Row {
        name: "cursor: sends in key order and the watermark follows the acks",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Ack(1), Ack(2), Ack(3), Burst, Fill],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "delivered 1",
            "watermark 2",
            "delivered 2",
            "watermark 3",
            "delivered 3",
            "watermark 4",
        ],
    },
    Row {
        name: "window: at most `window` in flight, room again after an ack",
        window: 2,
        journal: &[1, 2, 3, 4],
        unreadable: &[],
        ops: &[Fill, Fill, Ack(1), Burst, Fill],
        trace: &[
            "send 1",
            "send 2",
            "watermark 1",
            "delivered 1",
            "watermark 2",
            "send 3",
        ],
    },
    Row {
        name: "window of 0 is treated as 1",
        window: 0,
        journal: &[1, 2],
        unreadable: &[],
        ops: &[Fill],
        trace: &["send 1", "watermark 1"],
    },
    Row {
        name: "watermark: an ack out of order does not pass the oldest unanswered",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Ack(2), Ack(3), Burst, Ack(1), Burst],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "delivered 2",
            "delivered 3",
            "delivered 1",
            "watermark 4",
        ],
    },
    Row {
        name: "resend from the oldest unanswered after a link change",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Ack(1), Burst, Link, Fill],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "delivered 1",
            "watermark 2",
            "new link, gave up 2",
            "send 2",
            "send 3",
        ],
    },
    Row {
        name: "link change: an entry acked out of order is sent again (at least once, in order)",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Ack(2), Link, Fill, Ack(1)],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "delivered 2",
            "new link, gave up 2",
            "send 1",
            "send 2",
            "send 3",
            "delivered 1",
            "watermark 2",
        ],
    },
    Row {
        name: "link change: completions of the old link are ignored",
        window: 10,
        journal: &[1],
        unreadable: &[],
        ops: &[Fill, Link, Ack(1)],
        trace: &["send 1", "watermark 1", "new link, gave up 1", "ignore 1"],
    },
    Row {
        name: "quarantine of a permanent failure: the drain moves on past it",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Reject(1), Ack(2), Ack(3), Burst],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "quarantine 1: bad topic",
            "watermark 2",
            "delivered 2",
            "watermark 3",
            "delivered 3",
            "watermark 4",
        ],
    },
    Row {
        name: "quarantine of an unreadable entry: skipped, not sent",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[2],
        ops: &[Fill, Ack(1), Ack(3), Burst],
        trace: &[
            "send 1",
            "quarantine 2: unreadable",
            "send 3",
            "watermark 1",
            "delivered 1",
            "watermark 3",
            "delivered 3",
            "watermark 4",
        ],
    },
    Row {
        name: "quarantine copy failed: the watermark stays below it until a retry succeeds",
        window: 10,
        journal: &[1, 2],
        unreadable: &[],
        ops: &[
            Fill,
            QuarantineBroken,
            Reject(1),
            Ack(2),
            Burst,
            RetryQuarantine,
        ],
        trace: &[
            "send 1",
            "send 2",
            "watermark 1",
            "quarantine 1 failed",
            "delivered 2",
            "quarantine 1: bad topic",
            "watermark 3",
        ],
    },
    Row {
        name: "retry after a transient failure: everything from the failed one again, in order",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Ack(1), Fail(2), Burst, Fill],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "delivered 1",
            "watermark 2",
            "retry 2",
            "resend from 2, gave up 1",
            "send 2",
            "send 3",
        ],
    },
    Row {
        name: "retry: an older entry still unanswered is sent again too",
        window: 10,
        journal: &[1, 2, 3],
        unreadable: &[],
        ops: &[Fill, Fail(3), Burst, Fill],
        trace: &[
            "send 1",
            "send 2",
            "send 3",
            "watermark 1",
            "retry 3",
            "resend from 1, gave up 2",
            "send 1",
            "send 2",
            "send 3",
        ],
    },
    Row {
        name: "no rewind without a transient failure in the burst",
        window: 10,
        journal: &[1],
        unreadable: &[],
        ops: &[Fill, Ack(1), Burst, Burst],
        trace: &["send 1", "watermark 1", "delivered 1", "watermark 2"],
    },
];

#[test]
fn drain_rules() {
    let failed: Vec<String> = ROWS
        .iter()
        .filter_map(|row| {
            let trace = run(row);
            (trace != row.trace)
                .then(|| format!("{}:\n  got  {trace:?}\n  want {:?}", row.name, row.trace))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn next_reports_the_cursor_and_the_room() {
    let mut drain = Drain::new(3);
    assert_eq!(drain.next(), Some((0, 3)));
    drain.sent(5);
    assert_eq!(drain.next(), Some((6, 2)));
    assert_eq!(drain.in_flight(), 1);
    drain.sent(6);
    drain.sent(7);
    assert_eq!(drain.next(), None);
}
