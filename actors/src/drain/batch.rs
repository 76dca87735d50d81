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

/// The plan for the head of a lane whose entries read ahead are `ahead` (oldest first);
/// `caught_up`: they are everything the lane's journal held when read.
pub fn plan<'a>(
    ahead: impl IntoIterator<Item = &'a (u64, Entry)>,
    batching: &Batching,
    max_payload_bytes: usize,
    caught_up: bool,
    now_ms: u64,
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
    let limit = rule.max_bytes.min(max_payload_bytes);
    let mut envelope = Envelope::new(&head.topic);
    envelope.try_push(head.enqueued_ms, &head.payload, limit);
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
    let due_ms = head.enqueued_ms.saturating_add(rule.max_delay_ms);
    if !closed && caught_up && now_ms < due_ms {
        return Plan::Wait { due_ms };
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
                "young but the journal holds more: send",
                vec![entry(0, a, Some(0), 10)],
                false,
                Plan::Batch {
                    count: 1,
                    message: CloudMessage {
                        topic: a.into(),
                        payload: format!(
                            "{{\"batch\":[{{\"ts\":{},\"payload\":{{\"n\":0}}}}]}}",
                            T0 - 10
                        )
                        .into_bytes(),
                        qos: 1,
                        enqueued_ms: T0 - 10,
                        batch: None,
                    },
                },
            ),
        ];
        for (what, ahead, caught_up, want) in rows {
            assert_eq!(
                plan(&ahead, &batching(), 131_072, caught_up, T0),
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
                count(&plan(&ahead, &batching(), 131_072, caught_up, T0)),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn the_payload_limit_bounds_a_rule_with_a_larger_target() {
        let ahead: Vec<_> = (0..100).map(|i| entry(i, "t", Some(1), 5000)).collect();
        let Plan::Batch { count, message } = plan(&ahead, &batching(), 300, true, T0) else {
            panic!("a batch");
        };
        assert!(message.payload.len() + message.topic.len() <= 300);
        assert!((5..100).contains(&count), "{count}");
        let v: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(v["batch"].as_array().unwrap().len(), count);
        assert_eq!(v["batch"][0]["ts"], serde_json::json!(T0 - 5000));
    }
}
