//! Tests of the ingest: what becomes of one message, which session journals it, bursts.

use super::*;
use crate::testkit::probe;

const WAIT: Duration = Duration::from_secs(5);

struct Fixture {
    ingest: Ingest,
    journal: Journal,
    journaled: crate::testkit::ProbeReceiver<Journaled>,
    thing_requests: crate::testkit::ProbeReceiver<ThingRequest>,
    _dir: tempfile::TempDir,
}

fn fixture(max_payload_bytes: usize) -> Fixture {
    fixture_with(max_payload_bytes, Routes::default())
}

fn fixture_with(max_payload_bytes: usize, routes: Routes) -> Fixture {
    let (dir, journal) = crate::testkit::temp_journal();
    let (journaled_to, journaled) = probe::<Journaled>();
    let (thing_requests_to, thing_requests) = probe::<ThingRequest>();
    let peers = IntakePeers {
        journaled: journaled_to,
        thing_requests: thing_requests_to,
    };
    let identity = Identity {
        tenant_id: "t".into(),
        device_id: "d".into(),
    };
    let ingest = Ingest::new(
        identity,
        max_payload_bytes,
        None,
        journal.clone(),
        peers,
        Arc::new(Counters::default()),
    )
    .with_routes(routes);
    Fixture {
        ingest,
        journal,
        journaled,
        thing_requests,
        _dir: dir,
    }
}

#[test]
fn one_refused_append_holds_the_whole_message() {
    use Taken::*;
    assert_eq!(worse(Yes, Yes), Yes);
    assert_eq!(worse(Yes, YesButFull), YesButFull);
    assert_eq!(worse(YesButFull, No), No);
    assert_eq!(worse(No, Yes), No);
}

#[actix::test]
async fn a_thing_request_goes_to_the_status_publisher_and_not_to_the_journal() {
    let mut f = fixture(1024);
    assert_eq!(f.ingest.take(THING_REQUEST_TOPIC, b"", 1), Taken::Yes);
    f.thing_requests.expect(WAIT).await;
    f.ingest.commit().unwrap();
    assert_eq!(f.journal.queued_total(), 0);
    assert_eq!(f.ingest.counters.received.load(Ordering::Relaxed), 0);
}

/// Every journaled message with its lane, lane by lane (highest first).
fn journaled(journal: &Journal) -> Vec<(Lane, CloudMessage)> {
    Lane::ALL
        .into_iter()
        .flat_map(|lane| {
            let entries = journal.entries_from(lane, 0, 10).unwrap();
            entries.into_iter().map(move |(_, m)| (lane, m.unwrap()))
        })
        .collect()
}

#[actix::test]
async fn a_burst_is_journaled_and_announced_once_per_commit() {
    let mut f = fixture(1024);
    assert_eq!(f.ingest.take("telemetry", b"one", 1), Taken::Yes);
    assert_eq!(f.ingest.take("event", b"two", 0), Taken::Yes);
    f.ingest.commit().unwrap();
    let notice = f.journaled.expect(WAIT).await;
    assert_eq!(notice.last_seq, f.journal.last_seq(Lane::Telemetry));
    let got: Vec<(Lane, String, Vec<u8>, i32)> = journaled(&f.journal)
        .into_iter()
        .map(|(lane, m)| (lane, m.topic, m.payload, m.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            (Lane::Events, "event/t/d".to_string(), b"two".to_vec(), 0),
            (
                Lane::Telemetry,
                "telemetry/t/d".to_string(),
                b"one".to_vec(),
                1
            ),
        ]
    );
    f.thing_requests
        .expect_none(Duration::from_millis(50))
        .await;
}

#[actix::test]
async fn each_session_journals_only_its_own_lanes() {
    use crate::lanes::LaneSettings;
    let mut f = fixture(1024);
    let lanes = LaneRules::new(
        vec![("event/+/+/alarm".into(), Lane::Control)],
        Lane::ALL.map(LaneSettings::default_for),
    );
    f.ingest = f.ingest.with_lanes(lanes);
    // (session, main covered, topic, journaled by it)
    let rows = [
        (Session::Control, true, "command///res/1/200", true),
        (Session::Control, true, "event///alarm", true),
        (Session::Control, true, "event///heartbeat", false),
        (Session::Main, true, "command///res/2/200", false),
        (Session::Main, true, "event///alarm", false),
        (Session::Main, true, "telemetry", true),
        (Session::Main, true, "event", true),
        // Not yet covered: the control session may lack its own copy.
        (Session::Main, false, "command///res/3/200", true),
    ];
    for (session, covered, topic, journals) in rows {
        let before = f.ingest.counters.journaled.load(Ordering::Relaxed);
        assert_eq!(
            f.ingest.take_for(session, covered, topic, b"{}", 1),
            Taken::Yes
        );
        let after = f.ingest.counters.journaled.load(Ordering::Relaxed);
        assert_eq!(after - before, journals as u64, "{session:?} {topic}");
    }
    assert_eq!(f.ingest.counters.skipped.load(Ordering::Relaxed), 3);
    // edge/thing/request is the main session's alone.
    let skipped = |f: &Fixture| f.ingest.counters.skipped.load(Ordering::Relaxed);
    f.ingest
        .take_for(Session::Control, true, THING_REQUEST_TOPIC, b"", 1);
    assert_eq!(skipped(&f), 4);
    f.ingest
        .take_for(Session::Main, true, THING_REQUEST_TOPIC, b"", 1);
    f.thing_requests.expect(WAIT).await;
    assert_eq!(skipped(&f), 4);
}

#[actix::test]
async fn an_oversize_payload_is_quarantined_with_its_local_topic() {
    let f = fixture(4);
    assert_eq!(f.ingest.take("telemetry", b"12345", 1), Taken::Yes);
    f.ingest.commit().unwrap();
    assert_eq!(f.journal.queued_total(), 0);
    let quarantined = f.journal.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].msg.topic, "telemetry");
    assert!(
        quarantined[0].reason.contains("maxPayloadBytes"),
        "{}",
        quarantined[0].reason
    );
    assert_eq!(f.ingest.counters.quarantined.load(Ordering::Relaxed), 1);
}

#[actix::test]
async fn a_routed_message_is_journaled_with_its_basic_ingest_topic() {
    use crate::routes::Route;
    let routes = Routes::new(vec![Route {
        filter: "telemetry/#".into(),
        rule: "hot".into(),
    }]);
    let f = fixture_with(1024, routes);
    assert_eq!(f.ingest.take("telemetry///x", b"one", 1), Taken::Yes);
    assert_eq!(f.ingest.take("event", b"two", 1), Taken::Yes);
    assert_eq!(f.ingest.take("aws/jobs/get", b"{}", 1), Taken::Yes);
    f.ingest.commit().unwrap();
    let topics: Vec<(Lane, String)> = journaled(&f.journal)
        .into_iter()
        .map(|(lane, m)| (lane, m.topic))
        .collect();
    let expected = [
        (Lane::Control, "$aws/things/d/jobs/get"),
        (Lane::Events, "event/t/d"),
        (Lane::Telemetry, "$aws/rules/hot/telemetry/t/d/x"),
    ];
    assert_eq!(topics, expected.map(|(l, t)| (l, t.to_string())));
}

#[actix::test]
async fn each_message_is_journaled_into_the_lane_its_local_topic_gives() {
    use crate::lanes::LaneSettings;
    use crate::shadow::convert::{Filters, ShadowRules};
    let (dir, journal) = crate::testkit::temp_journal();
    let cache = journal.shadow_cache().unwrap();
    let shadow = ShadowIngest::new(
        "t:d".into(),
        Filters::default(),
        ShadowRules::default(),
        cache,
    );
    let ingest = Ingest::new(
        Identity {
            tenant_id: "t".into(),
            device_id: "d".into(),
        },
        1024,
        Some(Arc::new(shadow)),
        journal.clone(),
        IntakePeers {
            journaled: probe::<Journaled>().0,
            thing_requests: probe::<ThingRequest>().0,
        },
        Arc::new(Counters::default()),
    )
    .with_lanes(LaneRules::new(
        vec![
            ("event/+/+/alarm".into(), Lane::Control),
            ("event/+/+/heartbeat".into(), Lane::Telemetry),
        ],
        Lane::ALL.map(LaneSettings::default_for),
    ));
    let ditto = br#"{"topic":"t/d/things/twin/commands/modify","headers":{},"path":"/attributes/x","value":1}"#;
    // (local topic, payload, lane)
    let rows: [(&str, &[u8], Lane); 9] = [
        ("telemetry", b"1", Lane::Telemetry),
        ("t", b"2", Lane::Telemetry),
        ("event", b"3", Lane::Events),
        ("e///door", b"4", Lane::Events),
        ("event/t/d/alarm", b"5", Lane::Control),
        ("event/t/d/heartbeat", b"6", Lane::Telemetry),
        ("command///res/1/200", b"7", Lane::Control),
        ("aws/jobs/get", b"{}", Lane::Control),
        // A Ditto twin command on an event topic: its shadow request is control.
        ("event", ditto, Lane::Control),
    ];
    for (topic, payload, lane) in rows {
        let before = Lane::ALL.map(|l| journal.queued(l));
        assert_eq!(ingest.take(topic, payload, 1), Taken::Yes, "{topic}");
        ingest.commit().unwrap();
        let after = Lane::ALL.map(|l| journal.queued(l));
        for l in Lane::ALL {
            let grew = after[l.index()] - before[l.index()];
            assert_eq!(
                grew,
                (l == lane) as u64,
                "{topic} → {lane:?}; {l:?} grew by {grew}"
            );
        }
    }
    let shadow = journal.entries_from(Lane::Control, 0, 10).unwrap();
    let last = shadow.last().unwrap().1.as_ref().unwrap();
    assert!(
        last.topic.starts_with("$aws/things/t:d/shadow"),
        "{}",
        last.topic
    );
    drop(dir);
}

#[actix::test]
async fn messages_carry_their_batching_rule_except_in_the_control_lane() {
    use crate::batching::{BatchRule, Batching};
    let rule = |filter: &str| BatchRule {
        filter: filter.into(),
        max_bytes: 5120,
        max_delay_ms: 1000,
    };
    let mut f = fixture(1024);
    f.ingest = f
        .ingest
        .with_batching(Batching::new(vec![rule("event/#"), rule("#")]));
    assert_eq!(f.ingest.take("telemetry", b"1", 1), Taken::Yes);
    assert_eq!(f.ingest.take("event/t/d", b"2", 1), Taken::Yes);
    assert_eq!(f.ingest.take("command///res/7/200", b"3", 1), Taken::Yes);
    f.ingest.commit().unwrap();
    let rules: Vec<(Lane, Option<u8>)> = journaled(&f.journal)
        .into_iter()
        .map(|(lane, m)| (lane, m.batch))
        .collect();
    assert_eq!(
        rules,
        [
            (Lane::Control, None),
            (Lane::Events, Some(0)),
            (Lane::Telemetry, Some(1)),
        ]
    );
}
