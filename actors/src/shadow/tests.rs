//! Tests of the two halves alone: the pending-request table (time passed in), ShadowIngest's
//! reported cache, and the ShadowMapper actor with a probe in place of the LocalBroker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};

use super::convert::{Action, Filters, Pending, ShadowRules};
use super::mapper::{PendingRequests, Reply};
use super::*;
use crate::messages::{ActorMetrics, CloudInbound, GetMetrics, LocalPublish};
use crate::testkit::{probe_answering, ProbeReceiver};

const DEV: &str = "acme:gw1";
const T: Duration = Duration::from_secs(2);
const RESPONSE_TOPIC: &str = "command//acme:gw1/req//response";

fn pending(token: &str, action: Action, path: &str) -> Pending {
    Pending {
        topic: format!("acme/gw1/things/twin/commands/{}", action.name()),
        path: path.into(),
        action,
        correlation_id: token.into(),
        response_required: true,
    }
}

fn requested(token: &str, action: Action, path: &str, requests: usize) -> ShadowRequested {
    ShadowRequested {
        token: token.into(),
        pending: pending(token, action, path),
        requests,
    }
}

/// A reply of the shadow service on `$aws/things/acme:gw1/shadow/{rest}`.
fn reply(rest: &str, payload: Value) -> CloudInbound {
    CloudInbound {
        topic: format!("$aws/things/{DEV}/shadow/{rest}"),
        payload: serde_json::to_vec(&payload).unwrap(),
        stored: None,
        received_ms: 0,
    }
}

fn ditto(action: &str, path: &str, value: Option<Value>, correlation: &str) -> Vec<u8> {
    let mut m = json!({
        "topic": format!("acme/gw1/things/twin/commands/{action}"),
        "headers": {"correlation-id": correlation},
        "path": path,
    });
    if let Some(v) = value {
        m["value"] = v;
    }
    serde_json::to_vec(&m).unwrap()
}

/// An ingest on a temporary sled tree (the database is returned to keep it open).
fn ingest() -> (Arc<ShadowIngest>, sled::Db) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("shadow-reported").unwrap();
    let cache = crate::store::ShadowCache::from_tree(tree);
    let ingest = ShadowIngest::new(
        DEV.into(),
        Filters::default(),
        ShadowRules::default(),
        cache,
    );
    (Arc::new(ingest), db)
}

struct Rig {
    mapper: Addr<ShadowMapper>,
    local: ProbeReceiver<LocalPublish>,
    ingest: Arc<ShadowIngest>,
    _db: sled::Db,
}

fn rig(configure: impl FnOnce(ShadowMapper) -> ShadowMapper) -> Rig {
    let (ingest, db) = ingest();
    let (local, rx) = probe_answering::<LocalPublish, _>(|_| Ok(()));
    let mapper = configure(ShadowMapper::new(ingest.clone(), local)).start();
    Rig {
        mapper,
        local: rx,
        ingest,
        _db: db,
    }
}

fn json_of(p: &LocalPublish) -> Value {
    serde_json::from_slice(&p.payload).unwrap()
}

fn counter(m: &ActorMetrics, name: &str) -> u64 {
    m.counters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name} in {m:?}"))
}

// ---- the pending-request table, time passed in ----

#[test]
fn pending_requests_table() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(300);
    let ms = Duration::from_millis;
    #[allow(clippy::type_complexity)]
    // (what, requests sent, replies (accepted?) in order, expected replies, sweep at, left after)
    let rows: Vec<(&str, usize, Vec<bool>, Vec<Reply>, Duration, usize)> = vec![
        (
            "one request accepted",
            1,
            vec![true, true],
            vec![
                Reply::Done(pending("t", Action::Modify, "/")),
                Reply::Unknown,
            ],
            ms(0),
            0,
        ),
        (
            "fan-out of 2 waits for both",
            2,
            vec![true, true],
            vec![
                Reply::Waiting,
                Reply::Done(pending("t", Action::Modify, "/")),
            ],
            ms(0),
            0,
        ),
        (
            "a rejection ends a fan-out at once",
            3,
            vec![true, false, true],
            vec![
                Reply::Waiting,
                Reply::Done(pending("t", Action::Modify, "/")),
                Reply::Unknown,
            ],
            ms(0),
            0,
        ),
        (
            "unanswered, swept just before the TTL",
            1,
            vec![],
            vec![],
            ttl - ms(1),
            1,
        ),
        ("unanswered, swept at the TTL", 1, vec![], vec![], ttl, 0),
    ];
    for (what, requests, replies, want, sweep_at, left) in rows {
        let mut table = PendingRequests::new(ttl);
        assert!(!table.insert("t".into(), pending("t", Action::Modify, "/"), requests, t0));
        let got: Vec<Reply> = replies.iter().map(|&a| table.reply("t", a)).collect();
        assert_eq!(got, want, "{what}");
        let before = table.len();
        assert_eq!(
            table.expire(t0 + sweep_at),
            before - left,
            "{what}: expired"
        );
        assert_eq!(table.len(), left, "{what}: left");
    }
}

#[test]
fn pending_requests_keep_at_most_max_pending_forgetting_the_oldest() {
    let t0 = Instant::now();
    let mut table = PendingRequests::new(PENDING_TTL);
    for n in 0..MAX_PENDING {
        let at = t0 + Duration::from_millis(n as u64);
        let token = format!("t{n}");
        assert!(!table.insert(token.clone(), pending(&token, Action::Modify, "/"), 1, at));
    }
    let at = t0 + Duration::from_millis(MAX_PENDING as u64);
    assert!(table.insert("new".into(), pending("new", Action::Modify, "/"), 1, at));
    assert_eq!(table.len(), MAX_PENDING);
    assert_eq!(
        table.reply("t0", true),
        Reply::Unknown,
        "the oldest is gone"
    );
    assert!(matches!(table.reply("t1", true), Reply::Done(_)));
    assert!(matches!(table.reply("new", true), Reply::Done(_)));
}

// ---- ShadowIngest: the reported cache follows what the journal accepted ----

#[test]
fn a_request_the_journal_did_not_accept_leaves_the_reported_cache_as_it_was() {
    let (ingest, _db) = ingest();
    let modify = |value: Value, corr: &str| {
        let mut uplinks = ingest
            .on_local(&ditto("modify", "/attributes", Some(value), corr), 0)
            .expect("a twin command");
        assert_eq!(uplinks.len(), 1);
        let uplink = uplinks.remove(0);
        assert_eq!(
            uplink.message.topic,
            format!("$aws/things/{DEV}/shadow/update")
        );
        let payload: Value = serde_json::from_slice(&uplink.message.payload).unwrap();
        (uplink, payload["state"]["reported"].clone())
    };

    let (first, reported) = modify(json!({"a": 1, "b": 2}), "m1");
    assert_eq!(reported, json!({"a": 1, "b": 2}));
    ingest.journaled(&first);

    // The journal refuses this one: the cache must still hold {a, b}.
    let (_refused, reported) = modify(json!({"a": 1}), "m2");
    assert_eq!(reported, json!({"a": 1, "b": null}));

    let (third, reported) = modify(json!({"c": 3}), "m3");
    assert_eq!(
        reported,
        json!({"c": 3, "a": null, "b": null}),
        "converted against the last accepted state, not the refused one"
    );
    ingest.journaled(&third);

    let (_, reported) = modify(json!({"d": 4}), "m4");
    assert_eq!(
        reported,
        json!({"d": 4, "c": null}),
        "an accepted request updates it"
    );
}

// ---- the ShadowMapper actor, with a probe as the LocalBroker ----

#[actix::test]
async fn accepted_requests_are_answered_by_their_client_token() {
    let mut rig = rig(|m| m);
    let document = json!({
        "state": {"reported": {"serial": "A1", "value": 3}, "desired": {"value": 4}},
        "version": 2,
    });
    // (token, action, path, accepted reply topic, Ditto status, Ditto value)
    let rows = [
        (
            "m1",
            Action::Modify,
            "/attributes/serial",
            "update/accepted",
            204,
            None,
        ),
        (
            "d1",
            Action::Delete,
            "/features/temp",
            "name/temp/delete/accepted",
            204,
            None,
        ),
        (
            "r1",
            Action::Retrieve,
            "/attributes/serial",
            "get/accepted",
            200,
            Some(json!("A1")),
        ),
        (
            "r2",
            Action::Retrieve,
            "/features/temp",
            "name/temp/get/accepted",
            200,
            Some(
                json!({"properties": {"serial": "A1", "value": 3}, "desiredProperties": {"value": 4}}),
            ),
        ),
    ];
    for (token, action, path, rest, status, value) in rows {
        rig.mapper.do_send(requested(token, action, path, 1));
        let mut accepted = document.clone();
        accepted["clientToken"] = json!(token);
        rig.mapper.do_send(reply(rest, accepted));
        let answer = rig.local.expect(T).await;
        assert_eq!(answer.topic, RESPONSE_TOPIC, "{token}");
        let body = json_of(&answer);
        assert_eq!(body["status"], status, "{token}");
        assert_eq!(body["headers"]["correlation-id"], token);
        assert_eq!(
            body["topic"],
            format!("acme/gw1/things/twin/commands/{}", action.name())
        );
        assert_eq!(body["path"], path);
        assert_eq!(body.get("value"), value.as_ref(), "{token}");
    }
    rig.local.expect_none(Duration::from_millis(50)).await;
    let metrics = rig.mapper.send(GetMetrics).await.unwrap();
    assert_eq!(counter(&metrics, "answered"), 4);
    assert_eq!(counter(&metrics, "pending"), 0);
}

#[actix::test]
async fn a_fanned_out_modify_is_answered_after_its_last_acceptance() {
    let mut rig = rig(|m| m);
    rig.mapper.do_send(requested("w1", Action::Modify, "/", 2));
    let accepted = || reply("update/accepted", json!({"clientToken": "w1"}));
    rig.mapper.do_send(accepted());
    rig.local.expect_none(Duration::from_millis(50)).await;
    rig.mapper.do_send(accepted());
    assert_eq!(json_of(&rig.local.expect(T).await)["status"], 204);
}

#[actix::test]
async fn a_rejection_is_answered_with_aws_code_when_it_is_an_error_status() {
    let mut rig = rig(|m| m);
    // (code in the rejected document, Ditto status answered)
    let rows = [
        (Some(json!(409)), 409),
        (Some(json!(404)), 404),
        (Some(json!(503)), 503),
        (Some(json!(70000)), 500), // `as u16` made this 4464
        (Some(json!(65945)), 500), // and this 409
        (Some(json!(200)), 500),
        (Some(json!(-1)), 500),
        (Some(json!(409.5)), 500),
        (Some(json!("409")), 500),
        (Some(Value::Null), 500),
        (None, 500),
    ];
    for (n, (code, want)) in rows.iter().enumerate() {
        let token = format!("x{n}");
        rig.mapper
            .do_send(requested(&token, Action::Modify, "/attributes", 1));
        let mut rejected = json!({"clientToken": token, "message": "Version conflict"});
        if let Some(code) = code {
            rejected["code"] = code.clone();
        }
        rig.mapper.do_send(reply("update/rejected", rejected));
        let answer = rig.local.expect(T).await;
        assert_eq!(answer.topic, RESPONSE_TOPIC);
        let body = json_of(&answer);
        assert_eq!(body["topic"], "acme/gw1/things/twin/errors", "{code:?}");
        assert_eq!(body["status"], *want, "code {code:?}");
        assert_eq!(body["value"]["status"], *want, "code {code:?}");
        assert_eq!(body["value"]["message"], "Version conflict");
        assert_eq!(body["headers"]["correlation-id"], token.as_str());
    }
    let metrics = rig.mapper.send(GetMetrics).await.unwrap();
    assert_eq!(counter(&metrics, "rejected"), rows.len() as u64);
    assert_eq!(counter(&metrics, "pending"), 0);
}

#[actix::test]
async fn a_reply_for_an_unknown_client_token_is_ignored() {
    let mut rig = rig(|m| m);
    rig.mapper
        .do_send(requested("known", Action::Modify, "/attributes", 1));
    rig.mapper
        .do_send(reply("update/accepted", json!({"clientToken": "nobody"})));
    rig.mapper.do_send(reply(
        "update/rejected",
        json!({"clientToken": "nobody", "code": 400}),
    ));
    rig.mapper
        .do_send(reply("update/accepted", json!({"state": {}})));
    rig.local.expect_none(Duration::from_millis(100)).await;
    let metrics = rig.mapper.send(GetMetrics).await.unwrap();
    assert_eq!(
        counter(&metrics, "pending"),
        1,
        "the known request still waits"
    );
    assert_eq!(counter(&metrics, "answered"), 0);
    assert_eq!(counter(&metrics, "rejected"), 0);
}

#[actix::test]
async fn an_unanswered_request_is_forgotten_after_the_ttl() {
    let mut rig = rig(|m| m.with_expiry(Duration::from_millis(20), Duration::from_millis(5)));
    rig.mapper
        .do_send(requested("late", Action::Modify, "/attributes", 1));
    let deadline = Instant::now() + T;
    loop {
        let metrics = rig.mapper.send(GetMetrics).await.unwrap();
        if counter(&metrics, "expired") == 1 {
            assert_eq!(counter(&metrics, "pending"), 0);
            break;
        }
        assert!(Instant::now() < deadline, "not expired: {metrics:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rig.mapper
        .do_send(reply("update/accepted", json!({"clientToken": "late"})));
    rig.local.expect_none(Duration::from_millis(100)).await;
}

#[actix::test]
async fn at_most_1000_requests_wait_and_the_oldest_is_forgotten() {
    let mut rig = rig(|m| m);
    for n in 0..=MAX_PENDING {
        rig.mapper.do_send(requested(
            &format!("t{n}"),
            Action::Modify,
            "/attributes",
            1,
        ));
    }
    let metrics = rig.mapper.send(GetMetrics).await.unwrap();
    assert_eq!(counter(&metrics, "pending"), MAX_PENDING as u64);
    assert_eq!(counter(&metrics, "expired"), 1);
    let newest = format!("t{MAX_PENDING}");
    rig.mapper
        .do_send(reply("update/accepted", json!({"clientToken": newest})));
    let body = json_of(&rig.local.expect(T).await);
    assert_eq!(body["headers"]["correlation-id"], newest.as_str());
}

#[actix::test]
async fn a_delta_becomes_a_modify_of_desired_properties() {
    let mut rig = rig(|m| m);
    rig.mapper.do_send(reply(
        "name/lamp/update/delta",
        json!({"state": {"on": true}, "version": 3}),
    ));
    let command = rig.local.expect(T).await;
    assert_eq!(command.topic, "command//acme:gw1/req//modify");
    let body = json_of(&command);
    assert_eq!(body["topic"], "acme/gw1/things/twin/commands/modify");
    assert_eq!(body["path"], "/features/lamp/desiredProperties");
    assert_eq!(body["value"], json!({"on": true}));
    assert_eq!(body["headers"]["response-required"], false);
    let metrics = rig.mapper.send(GetMetrics).await.unwrap();
    assert_eq!(counter(&metrics, "deltas"), 1);
}

#[actix::test]
async fn commands_through_the_attached_ingest_are_answered() {
    let mut rig = rig(|m| m);
    rig.ingest.attach(&rig.mapper);

    // A broken command is answered 400 locally and journals nothing.
    let broken = ditto("modify", "attributes", Some(json!({})), "bad1");
    assert_eq!(rig.ingest.on_local(&broken, 0), Some(vec![]));
    let body = json_of(&rig.local.expect(T).await);
    assert_eq!(body["status"], 400);
    assert_eq!(body["headers"]["correlation-id"], "bad1");

    // A good one is answered once AWS accepts its clientToken.
    let good = ditto("modify", "/attributes", Some(json!({"a": 1})), "ok1");
    let uplinks = rig.ingest.on_local(&good, 0).unwrap();
    assert_eq!(uplinks.len(), 1);
    rig.mapper
        .do_send(reply("update/accepted", json!({"clientToken": "ok1"})));
    let body = json_of(&rig.local.expect(T).await);
    assert_eq!(body["status"], 204);
    assert_eq!(body["headers"]["correlation-id"], "ok1");
}
