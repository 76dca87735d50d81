//! Which entries at the head of a lane go out as one batch, pure: a run of consecutive readable
//! entries of one cloud topic under the same `batching` rule, closed at the rule's size target
//! (never over the payload limit) — or, while the run is all the lane holds and its oldest has
//! waited less than the rule's `maxDelayMs`, not yet (the lane waits for more).

use crate::batching::{Batching, Envelope};
use crate::model::CloudMessage;

use super::lanes::Entry;

/// What to do with the head of a lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send the head alone, as today (no rule, the rule is gone, or unreadable).
    Single,
    /// The run reached the end of what was read ahead and the journal holds more: read the
    /// lane again from its head (a batch cut at the end of a read ahead would be short).
    Refill,
    /// The run may still grow: look again at `due_ms` (Unix ms).
    Wait {
        /// When the oldest of the run has waited its rule's `maxDelayMs`.
        due_ms: u64,
    },
    /// Send the first `count` entries as this one publish.
    Batch {
        /// Entries in the batch.
        count: usize,
        /// The publish: the head's topic, QoS and enqueue time, the envelope as payload.
        message: CloudMessage,
    },
}

/// The lane's circumstances a plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// AWS's payload limit (`quota.maxPayloadBytes`): no batch exceeds it.
    pub max_payload_bytes: usize,
    /// The entries read ahead are everything the lane's journal held when read.
    pub caught_up: bool,
    /// Most entries one read ahead brings.
    pub lookahead: usize,
    /// The lane's `maxAgeSecs` in ms: a waiting batch is due before its head would expire.
    pub max_age_ms: Option<u64>,
    /// Now (Unix ms).
    pub now_ms: u64,
}

/// The plan for the head of a lane whose entries read ahead are `ahead` (oldest first).
pub fn plan<'a>(
    ahead: impl IntoIterator<Item = &'a (u64, Entry)>,
    batching: &Batching,
    cx: Context,
) -> Plan {
    let mut ahead = ahead.into_iter();
    let Some((_, Ok(head))) = ahead.next() else {
        return Plan::Single;
    };
    let Some(rule_index) = head.batch else {
        return Plan::Single;
    };
    let Some(rule) = batching.rule(rule_index) else {
        return Plan::Single;
    };
    let limit = rule.max_bytes.min(cx.max_payload_bytes);
    let mut envelope = Envelope::new(&head.topic);
    envelope.try_push(head.enqueued_ms, &head.payload, limit);
    if envelope.billed_bytes() > cx.max_payload_bytes {
        // Enveloped (and base64 for a binary payload) it would exceed what AWS accepts, and
        // AWS closes the connection for it: sent alone, as journaled, it fits.
        return Plan::Single;
    }
    let mut qos = head.qos;
    let mut closed = false;
    for (_, entry) in ahead {
        let Ok(msg) = entry else {
            closed = true;
            break;
        };
        if msg.batch != Some(rule_index) || msg.topic != head.topic {
            closed = true;
            break;
        }
        if !envelope.try_push(msg.enqueued_ms, &msg.payload, limit) {
            closed = true;
            break;
        }
        qos = qos.max(msg.qos);
    }
    // Due when the head has waited `maxDelayMs` — before its lane's maxAgeSecs would expire it,
    // and never further ahead than `maxDelayMs` from now (the wall clock may step back).
    let mut due_ms = head.enqueued_ms.saturating_add(rule.max_delay_ms);
    if let Some(max_age_ms) = cx.max_age_ms {
        due_ms = due_ms.min(head.enqueued_ms.saturating_add(max_age_ms / 2));
    }
    due_ms = due_ms.min(cx.now_ms.saturating_add(rule.max_delay_ms));
    if !closed && cx.caught_up && cx.now_ms < due_ms {
        return Plan::Wait { due_ms };
    }
    if !closed && !cx.caught_up && envelope.len() < cx.lookahead {
        return Plan::Refill;
    }
    Plan::Batch {
        count: envelope.len(),
        message: CloudMessage {
            topic: head.topic.clone(),
            qos,
            enqueued_ms: head.enqueued_ms,
            batch: None,
            payload: envelope.finish(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::BatchRule;

    const T0: u64 = 1_700_000_000_000;

    /// (what, entries read ahead, caught up, expected).
    type Row<W> = (&'static str, Vec<(u64, Entry)>, bool, W);

    fn batching() -> Batching {
        Batching::new(vec![
            BatchRule {
                filter: "t/#".into(),
                max_bytes: 200,
                max_delay_ms: 1000,
            },
            BatchRule {
                filter: "e/#".into(),
                max_bytes: 5120,
                max_delay_ms: 0,
            },
        ])
    }

    fn entry(seq: u64, topic: &str, rule: Option<u8>, age_ms: u64) -> (u64, Entry) {
        (
            seq,
            Ok(CloudMessage {
                topic: topic.into(),
                payload: format!("{{\"n\":{seq}}}").into_bytes(),
                qos: 1,
                enqueued_ms: T0 - age_ms,
                batch: rule,
            }),
        )
    }

    fn cx(max_payload_bytes: usize, caught_up: bool) -> Context {
        Context {
            max_payload_bytes,
            caught_up,
            lookahead: 160,
            max_age_ms: None,
            now_ms: T0,
        }
    }

    #[test]
    fn a_message_too_large_to_envelope_goes_alone_and_a_wait_ends_before_expiry() {
        let big = |payload: Vec<u8>| {
            vec![(
                0,
                Ok(CloudMessage {
                    topic: "t".into(),
                    payload,
                    qos: 1,
                    enqueued_ms: T0,
                    batch: Some(1),
                }),
            )]
        };
        // 900 bytes of binary become 1,200 of base64: over a 1,000-byte limit, so alone.
        assert_eq!(
            plan(&big(vec![0xff; 900]), &batching(), cx(1000, false)),
            Plan::Single
        );
        assert!(matches!(
            plan(&big(vec![b'1'; 900]), &batching(), cx(1000, true)),
            Plan::Batch { count: 1, .. }
        ));
        let young = vec![entry(0, "telemetry/t/d", Some(0), 0)];
        let rows = [
            (None, T0 + 1000),
            (Some(600_000), T0 + 1000),
            (Some(1000), T0 + 500),
        ];
        for (max_age_ms, due) in rows {
            let cx = Context {
                max_age_ms,
                ..cx(131_072, true)
            };
            assert_eq!(
                plan(&young, &batching(), cx),
                Plan::Wait { due_ms: due },
                "{max_age_ms:?}"
            );
        }
        // A clock stepped back by an hour: due within maxDelayMs of now, not an hour later.
        let cx = Context {
            now_ms: T0 - 3_600_000,
            ..cx(131_072, true)
        };
        assert_eq!(
            plan(&young, &batching(), cx),
            Plan::Wait {
                due_ms: T0 - 3_600_000 + 1000
            }
        );
    }

    fn count(plan: &Plan) -> Option<usize> {
        match plan {
            Plan::Batch { count, .. } => Some(*count),
            _ => None,
        }
    }

    #[test]
    fn plans_by_table() {
        let a = "telemetry/t/d";
        let b = "telemetry/t/other";
        let rows: Vec<Row<Plan>> = vec![
            (
                "no rule: alone",
                vec![entry(0, a, None, 0)],
                true,
                Plan::Single,
            ),
            (
                "a rule the configuration no longer has: alone",
                vec![entry(0, a, Some(9), 0)],
                true,
                Plan::Single,
            ),
            (
                "unreadable head: alone (the drain quarantines it)",
                vec![(0, Err("bad".into()))],
                true,
                Plan::Single,
            ),
            (
                "young and all there is: wait for more",
                vec![entry(0, a, Some(0), 10), entry(1, a, Some(0), 5)],
                true,
                Plan::Wait {
                    due_ms: T0 - 10 + 1000,
                },
            ),
            (
                "the end of a read ahead, the journal holds more: read again",
                vec![entry(0, a, Some(0), 10)],
                false,
                Plan::Refill,
            ),
        ];
        for (what, ahead, caught_up, want) in rows {
            assert_eq!(
                plan(&ahead, &batching(), cx(131_072, caught_up)),
                want,
                "{what}"
            );
        }
        let rows: Vec<Row<Option<usize>>> = vec![
            (
                "old enough: send what there is",
                vec![entry(0, a, Some(0), 1000), entry(1, a, Some(0), 900)],
                true,
                Some(2),
            ),
            (
                "maxDelayMs 0: at once",
                vec![entry(0, "event/t/d", Some(1), 0)],
                true,
                Some(1),
            ),
            (
                "another topic closes the run",
                vec![
                    entry(0, a, Some(0), 5),
                    entry(1, a, Some(0), 4),
                    entry(2, b, Some(0), 3),
                ],
                true,
                Some(2),
            ),
            (
                "another rule closes the run",
                vec![entry(0, a, Some(0), 5), entry(1, a, Some(1), 4)],
                true,
                Some(1),
            ),
            (
                "an unbatched entry closes the run",
                vec![entry(0, a, Some(0), 5), entry(1, a, None, 4)],
                true,
                Some(1),
            ),
            (
                "an unreadable entry closes the run",
                vec![entry(0, a, Some(0), 5), (1, Err("bad".into()))],
                true,
                Some(1),
            ),
            // Each element is 38 bytes: 13 (topic) + 12 (envelope) + 4 × 38 + 3 (commas) ≤ 200.
            (
                "the size target closes the run",
                (0..20).map(|i| entry(i, a, Some(0), 5)).collect(),
                true,
                Some(4),
            ),
        ];
        for (what, ahead, caught_up, want) in rows {
            assert_eq!(
                count(&plan(&ahead, &batching(), cx(131_072, caught_up))),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn a_whole_read_ahead_is_sent_even_when_the_journal_holds_more() {
        let ahead: Vec<_> = (0..3)
            .map(|i| entry(i, "telemetry/t/d", Some(0), 10))
            .collect();
        let cx = Context {
            lookahead: 3,
            ..cx(131_072, false)
        };
        assert_eq!(count(&plan(&ahead, &batching(), cx)), Some(3));
    }

    #[test]
    fn the_payload_limit_bounds_a_rule_with_a_larger_target() {
        let ahead: Vec<_> = (0..100).map(|i| entry(i, "t", Some(1), 5000)).collect();
        let Plan::Batch { count, message } = plan(&ahead, &batching(), cx(300, true)) else {
            panic!("a batch");
        };
        assert!(message.payload.len() + message.topic.len() <= 300);
        assert!((5..100).contains(&count), "{count}");
        let v: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(v["batch"].as_array().unwrap().len(), count);
        assert_eq!(v["batch"][0]["ts"], serde_json::json!(T0 - 5000));
    }
}
