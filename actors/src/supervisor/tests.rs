//! The Supervisor alone: a fake link factory records every attempt, probes stand in for the
//! Buffer (`LinkChanged`), the StatusPublisher (`ConnectionStatus`) and each link's `Disconnect`.
//! Delays are a few milliseconds through the policy; the test waits only on probe deadlines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::cloud::publisher::{Progress, Publisher};
use crate::cloud::session::Outbox;
use crate::model::Link;
use crate::testkit::{counter, probe, ProbeReceiver};

/// Long enough for anything the Supervisor does on its own to have happened.
const WAIT: Duration = Duration::from_secs(2);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(150);

/// What the fake factory records: attempt `attempt` was started and reports to `events`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Started {
    attempt: u64,
    events: Recipient<LinkEvent>,
}

struct Harness {
    supervisor: Addr<Supervisor>,
    started: ProbeReceiver<Started>,
    buffer: ProbeReceiver<LinkChanged>,
    status: ProbeReceiver<ConnectionStatus>,
    disconnects: ProbeReceiver<Disconnect>,
}

fn policy(min_ms: u64, max_ms: u64, reset_after: Duration) -> BackoffPolicy {
    BackoffPolicy {
        min_delay: Duration::from_millis(min_ms),
        max_delay: Duration::from_millis(max_ms),
        reset_after,
    }
}

/// A random source that returns `units` in turn, then the last one forever.
fn scripted(units: &[f64]) -> RandomSource {
    let mut units: VecDeque<f64> = units.iter().copied().collect();
    Box::new(move || {
        if units.len() > 1 {
            units.pop_front().unwrap_or(0.0)
        } else {
            units.front().copied().unwrap_or(0.0)
        }
    })
}

/// Starts a Supervisor whose link factory only records the attempt.
fn start(policy: BackoffPolicy, random: RandomSource) -> Harness {
    let (started_tx, started) = probe::<Started>();
    let (disconnect_tx, disconnects) = probe::<Disconnect>();
    let (buffer_tx, buffer) = probe::<LinkChanged>();
    let (status_tx, status) = probe::<ConnectionStatus>();
    let factory: LinkFactory = Box::new(move |attempt, events| {
        started_tx.do_send(Started { attempt, events });
        LinkHandle {
            disconnect: disconnect_tx.clone(),
        }
    });
    let supervisor = Supervisor::new(policy, factory, buffer_tx, status_tx)
        .with_random(random)
        .start();
    Harness {
        supervisor,
        started,
        buffer,
        status,
        disconnects,
    }
}

/// The publishing half of a link that never connects (an outbox no I/O thread reads).
fn publisher(attempt: u64) -> Publisher {
    let outbox = Arc::new(Outbox::new().unwrap());
    Publisher::new(outbox, Arc::new(Progress::default()), attempt, 100)
}

fn up(attempt: u64) -> LinkEvent {
    LinkEvent::Up {
        attempt,
        publisher: Link::new(Arc::new(publisher(attempt))),
    }
}

fn down(attempt: u64) -> LinkEvent {
    LinkEvent::Down {
        attempt,
        reason: refused(),
    }
}

fn refused() -> DownReason {
    DownReason {
        cause: DownCause::Error,
        detail: "connection refused".into(),
    }
}

#[actix::test]
async fn backoff_follows_the_policy_with_the_injected_random_source() {
    let mut h = start(
        policy(10, 80, Duration::from_secs(3600)),
        scripted(&[0.0, 0.5, 1.0, 0.5]),
    );
    let mut link = h.started.expect(WAIT).await;
    assert_eq!(link.attempt, 1);
    // min 10 ms, ceiling min·2^failures capped at 80 ms; delay = min + (ceiling - min)·unit.
    for (failures, expected_ms) in [(1u64, 10u64), (2, 25), (3, 80), (4, 45)] {
        let sent = Instant::now();
        link.events.do_send(down(link.attempt));
        assert_eq!(counter(&h.supervisor, "backoff_ms").await, expected_ms);
        assert_eq!(counter(&h.supervisor, "failures").await, failures);
        link = h.started.expect(WAIT).await;
        assert_eq!(link.attempt, failures + 1);
        assert!(
            sent.elapsed() >= Duration::from_millis(expected_ms),
            "attempt {} started {:?} after the failure, before its {expected_ms} ms delay",
            link.attempt,
            sent.elapsed()
        );
    }
    assert_eq!(counter(&h.supervisor, "reconnects").await, 4);
    // The same reason four times is published once.
    let status = h.status.expect(WAIT).await;
    assert!(!status.connected);
    assert_eq!(status.reason, Some(refused()));
    h.status.expect_none(QUIET).await;
}

#[actix::test]
async fn never_two_attempts_at_once() {
    let mut h = start(policy(10, 10, Duration::from_secs(3600)), scripted(&[0.0]));
    let first = h.started.expect(WAIT).await;
    assert_eq!(first.attempt, 1);
    // While attempt 1 runs, its events (even repeated) start nothing.
    first.events.do_send(up(1));
    first.events.do_send(up(1));
    h.started.expect_none(QUIET).await;
    // One failure, reported twice: exactly one next attempt.
    first.events.do_send(down(1));
    first.events.do_send(down(1));
    let second = h.started.expect(WAIT).await;
    assert_eq!(second.attempt, 2);
    h.started.expect_none(QUIET).await;
    assert_eq!(counter(&h.supervisor, "attempts").await, 2);
}

#[actix::test]
async fn events_of_an_old_attempt_are_ignored() {
    let mut h = start(policy(10, 10, Duration::from_secs(3600)), scripted(&[0.0]));
    let first = h.started.expect(WAIT).await;
    first.events.do_send(down(1));
    let (old_status, _) = h.status.expect_matching(WAIT, |s| !s.connected).await;
    assert_eq!(old_status.reason, Some(refused()));
    let second = h.started.expect(WAIT).await;
    assert_eq!(second.attempt, 2);

    // Attempt 1 speaks again: neither an Up nor a Down of it changes anything.
    first.events.do_send(up(1));
    first.events.do_send(down(1));
    h.buffer.expect_none(QUIET).await;
    h.status.expect_none(Duration::ZERO).await;
    h.started.expect_none(Duration::ZERO).await;
    assert_eq!(counter(&h.supervisor, "connected").await, 0);

    // The current attempt's Up goes through, with its own publisher.
    second.events.do_send(up(2));
    let changed = h.buffer.expect(WAIT).await;
    assert_eq!(changed.publisher.map(|p| p.attempt()), Some(2));
    let status = h.status.expect(WAIT).await;
    assert!(status.connected);
    assert_eq!(status.reason, None);
}

#[actix::test]
async fn a_stable_connection_resets_the_backoff() {
    // (reset_after, backoff after a failure, an up-and-down, with jitter 1.0 = the ceiling)
    let rows = [
        (Duration::ZERO, 20u64), // the connection counts as stable: failures 0 → 1
        (Duration::from_secs(3600), 40u64), // not stable: failures 1 → 2
    ];
    for (reset_after, expected_ms) in rows {
        let mut h = start(policy(10, 80, reset_after), scripted(&[1.0]));
        let first = h.started.expect(WAIT).await;
        first.events.do_send(down(1));
        assert_eq!(counter(&h.supervisor, "backoff_ms").await, 20);
        let second = h.started.expect(WAIT).await;
        second.events.do_send(up(2));
        assert!(h.buffer.expect(WAIT).await.publisher.is_some());
        second.events.do_send(down(2));
        // The drop takes the publisher away from the Buffer, then backs off.
        assert!(h.buffer.expect(WAIT).await.publisher.is_none());
        assert_eq!(
            counter(&h.supervisor, "backoff_ms").await,
            expected_ms,
            "reset_after={reset_after:?}"
        );
        assert_eq!(h.started.expect(WAIT).await.attempt, 3);
    }
}

#[actix::test]
async fn shutdown_disconnects_the_link_and_publishes_closed() {
    let mut h = start(policy(10, 10, Duration::from_secs(3600)), scripted(&[0.0]));
    let first = h.started.expect(WAIT).await;
    first.events.do_send(up(1));
    assert!(h.buffer.expect(WAIT).await.publisher.is_some());
    assert!(h.status.expect(WAIT).await.connected);

    h.supervisor.send(Shutdown).await.unwrap();
    h.disconnects.expect(WAIT).await;
    assert!(h.buffer.expect(WAIT).await.publisher.is_none());
    let closed = h.status.expect(WAIT).await;
    assert!(!closed.connected);
    assert_eq!(
        closed.reason,
        Some(DownReason {
            cause: DownCause::Closed,
            detail: "shutdown".into(),
        })
    );
    // The link's own Down after the disconnect neither reconnects nor republishes.
    first.events.do_send(down(1));
    h.started.expect_none(QUIET).await;
    h.status.expect_none(Duration::ZERO).await;
}

#[actix::test]
async fn shutdown_during_the_backoff_cancels_the_next_attempt() {
    let mut h = start(policy(50, 50, Duration::from_secs(3600)), scripted(&[0.0]));
    let first = h.started.expect(WAIT).await;
    first.events.do_send(down(1));
    h.supervisor.send(Shutdown).await.unwrap();
    // No link was running: nothing to disconnect, and no publisher to take back.
    let (closed, _) = h
        .status
        .expect_matching(WAIT, |s| {
            s.reason.as_ref().map(|r| r.cause) == Some(DownCause::Closed)
        })
        .await;
    assert!(!closed.connected);
    h.started.expect_none(Duration::from_millis(200)).await;
    h.disconnects.expect_none(Duration::ZERO).await;
    h.buffer.expect_none(Duration::ZERO).await;
}
