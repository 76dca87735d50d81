//! Tests of the LocalBroker's routing of cloud messages and its downlink store, without a
//! broker: the local copies go to a probe that answers for Mosquitto and records them.

use std::time::{Duration, Instant};

use super::*;
use crate::messages::CloudMessage;
use crate::testkit::{counter, probe, probe_answering, temp_journal, ProbeReceiver};

const WAIT: Duration = Duration::from_secs(5);

fn identity() -> Identity {
    Identity {
        tenant_id: "ten".into(),
        device_id: "dev".into(),
    }
}

#[test]
fn cloud_topics_route_to_local_copies() {
    let rows: &[(&str, Route, &[&str])] = &[
        (
            "command//dev/req/42/restart",
            Route::Command,
            &["command//dev/req/42/restart", "c//dev/q/42/restart"],
        ),
        (
            "command//dev:child/req/7/open",
            Route::Command,
            &["command//dev:child/req/7/open", "c//dev:child/q/7/open"],
        ),
        (
            "command//other/req/1/x",
            Route::NotForUs("other".into()),
            &[],
        ),
        (
            "$aws/things/dev/jobs/notify",
            Route::Jobs,
            &["aws/jobs/notify"],
        ),
        (
            "$aws/things/dev/jobs/j1/get/accepted",
            Route::Jobs,
            &["aws/jobs/j1/get/accepted"],
        ),
        ("$aws/things/dev/jobs/j1/get", Route::Unknown, &[]),
        ("$aws/things/other/jobs/notify", Route::Unknown, &[]),
        ("some/topic", Route::Unknown, &[]),
    ];
    for (cloud, route, local) in rows {
        let (got_route, copies) = local_copies(cloud, b"{\"a\":1}", &identity());
        assert_eq!(&got_route, route, "route of {cloud:?}");
        let topics: Vec<&str> = copies.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(&topics, local, "local topics of {cloud:?}");
        for copy in &copies {
            assert_eq!(copy.payload, b"{\"a\":1}", "payload of {cloud:?}");
            assert_eq!((copy.qos, copy.retain), (1, false), "{cloud:?}");
        }
    }
}

struct Fixture {
    broker: Addr<LocalBroker>,
    journal: Journal,
    copies: ProbeReceiver<LocalPublish>,
    _dir: tempfile::TempDir,
}

/// A routing-only LocalBroker whose journal already holds `stored` downlink messages.
fn start(stored: &[CloudMessage], refused: &[&str]) -> Fixture {
    let (dir, journal) = temp_journal();
    for msg in stored {
        journal.downlink().append(msg).unwrap();
    }
    // Stands in for Mosquitto: records every local copy, refuses those on `refused` topics.
    let refused: Vec<String> = refused.iter().map(|t| t.to_string()).collect();
    let (mosquitto, copies) =
        probe_answering(move |p: &LocalPublish| match refused.contains(&p.topic) {
            true => Err("refused".to_string()),
            false => Ok(()),
        });
    let (journaled, _) = probe::<Journaled>();
    let (thing_requests, _) = probe::<ThingRequest>();
    let config = LocalConfig {
        connection: LocalConnection::for_tests("tcp://localhost:1"),
        status_topic: crate::topics::DEFAULT_STATUS_TOPIC.into(),
        identity: identity(),
        max_payload_bytes: 128 * 1024,
        routes: Default::default(),
        batching: Default::default(),
        lanes: Default::default(),
        shadow: None,
        downlink_ttl: Duration::from_secs(3600),
    };
    let peers = LocalPeers {
        journaled,
        thing_requests,
    };
    let broker = LocalBroker::routing_only(config, journal.clone(), peers, mosquitto).start();
    Fixture {
        broker,
        journal,
        copies,
        _dir: dir,
    }
}

fn inbound(topic: &str, stored: Option<u64>) -> CloudInbound {
    CloudInbound {
        topic: topic.into(),
        payload: b"go".to_vec(),
        stored,
        received_ms: unix_ms(),
    }
}

fn stored(topic: &str, enqueued_ms: u64) -> CloudMessage {
    CloudMessage {
        topic: topic.into(),
        payload: b"go".to_vec(),
        qos: 1,
        enqueued_ms,
        batch: None,
    }
}

/// Polls (with a deadline) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::task::yield_now().await;
    }
}

#[actix::test]
async fn a_command_is_published_on_both_local_topics_and_then_forgotten() {
    let mut f = start(&[], &[]);
    // The broker has started (and replayed nothing) once it answers.
    assert_eq!(counter(&f.broker, "commands_down").await, 0);
    let seq = f
        .journal
        .downlink()
        .append(&stored("command//dev/req/1/open", unix_ms()))
        .unwrap();
    f.broker
        .do_send(inbound("command//dev/req/1/open", Some(seq)));
    let first = f.copies.expect(WAIT).await;
    let second = f.copies.expect(WAIT).await;
    assert_eq!(
        (first.topic.as_str(), second.topic.as_str()),
        ("command//dev/req/1/open", "c//dev/q/1/open")
    );
    assert_eq!(
        (first.payload, first.qos, first.retain),
        (b"go".to_vec(), 1, false)
    );
    eventually("the delivered command is forgotten", || {
        f.journal.downlink().is_empty()
    })
    .await;
    assert_eq!(counter(&f.broker, "commands_down").await, 1);
}

#[actix::test]
async fn a_command_mosquitto_refused_stays_stored() {
    let mut f = start(&[], &["c//dev/q/1/open"]);
    assert_eq!(counter(&f.broker, "commands_down").await, 0);
    let refused = f
        .journal
        .downlink()
        .append(&stored("command//dev/req/1/open", unix_ms()))
        .unwrap();
    let delivered = f
        .journal
        .downlink()
        .append(&stored("command//dev/req/2/open", unix_ms()))
        .unwrap();
    f.broker
        .do_send(inbound("command//dev/req/1/open", Some(refused)));
    f.broker
        .do_send(inbound("command//dev/req/2/open", Some(delivered)));
    for _ in 0..4 {
        f.copies.expect(WAIT).await;
    }
    // The second command's answers came after the first's: once it is forgotten, the first
    // one's outcome is settled too.
    eventually("the delivered command is forgotten", || {
        f.journal.downlink().len() == 1
    })
    .await;
    let left: Vec<u64> = f
        .journal
        .downlink()
        .entries()
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(left, vec![refused]);
}

#[actix::test]
async fn jobs_replies_are_copied_once_and_foreign_or_unrouted_messages_are_dropped() {
    let mut f = start(&[], &[]);
    f.broker.do_send(inbound("command//other/req/1/x", None));
    f.broker.do_send(inbound("nobody/routes/this", None));
    f.broker
        .do_send(inbound("$aws/things/dev/jobs/notify", None));
    // The first copy is the Jobs reply's: the dropped ones made none.
    assert_eq!(f.copies.expect(WAIT).await.topic, "aws/jobs/notify");
    assert_eq!(counter(&f.broker, "commands_dropped").await, 2);
    assert_eq!(counter(&f.broker, "jobs_down").await, 1);
    assert_eq!(counter(&f.broker, "commands_down").await, 0);
    f.copies.expect_none(Duration::from_millis(50)).await;
}

#[actix::test]
async fn stored_commands_are_replayed_at_start_unless_older_than_the_ttl() {
    let fresh = stored("command//dev/req/9/open", unix_ms());
    let expired = stored("command//dev/req/8/open", 1);
    let mut f = start(&[expired, fresh], &[]);
    let first = f.copies.expect(WAIT).await;
    let second = f.copies.expect(WAIT).await;
    assert_eq!(
        (first.topic.as_str(), second.topic.as_str()),
        ("command//dev/req/9/open", "c//dev/q/9/open")
    );
    eventually("the replayed command is forgotten", || {
        f.journal.downlink().is_empty()
    })
    .await;
    assert_eq!(counter(&f.broker, "downlink_expired").await, 1);
    assert_eq!(counter(&f.broker, "commands_down").await, 1);
    f.copies.expect_none(Duration::from_millis(50)).await;
}
