//! Test helpers for testing one actor alone (compiled for tests, or with the `testkit` feature):
//! a [`probe`] is a typed [`Recipient`] that records every message it receives, and the
//! [`ProbeReceiver`] beside it waits for them with a deadline, in the spirit of thin-edge's
//! `SimpleMessageBox` and `assert_received_matching`. A probe for a message with an answer
//! ([`probe_answering`]) replies with what the test says. Nothing here sleeps to synchronise: a
//! wait ends as soon as the message arrives, or fails at its deadline.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::messages::GetMetrics;

/// How a probe answers the message it received.
type Answer<M> = Box<dyn FnMut(&M) -> <M as Message>::Result>;

/// The actor behind a probe recipient: forwards what it receives to its [`ProbeReceiver`] and
/// answers it.
pub struct Probe<M: Message + Send + 'static> {
    sender: mpsc::UnboundedSender<M>,
    answer: Answer<M>,
}

impl<M> Actor for Probe<M>
where
    M: Message + Send + Unpin + 'static,
{
    type Context = Context<Self>;
}

impl<M> Handler<M> for Probe<M>
where
    M: Message + Send + Unpin + 'static,
{
    type Result = MessageResult<M>;

    fn handle(&mut self, msg: M, _ctx: &mut Context<Self>) -> MessageResult<M> {
        let answer = (self.answer)(&msg);
        // The receiver may already be gone at the end of a test; nothing left to record then.
        let _ = self.sender.send(msg);
        MessageResult(answer)
    }
}

/// What a probe received, in order.
pub struct ProbeReceiver<M> {
    receiver: mpsc::UnboundedReceiver<M>,
}

impl<M: std::fmt::Debug> ProbeReceiver<M> {
    /// The next message, waiting at most `timeout`; panics (the test fails) at the deadline.
    pub async fn expect(&mut self, timeout: Duration) -> M {
        match tokio::time::timeout(timeout, self.receiver.recv()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => panic!("probe closed before a message arrived"),
            Err(_) => panic!("no message within {timeout:?}"),
        }
    }

    /// The next message that `matches`, skipping (and returning) the others it saw first.
    pub async fn expect_matching(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&M) -> bool,
    ) -> (M, Vec<M>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.receiver.recv()).await {
                Ok(Some(msg)) if matches(&msg) => return (msg, skipped),
                Ok(Some(msg)) => skipped.push(msg),
                Ok(None) => panic!("probe closed; saw only {skipped:?}"),
                Err(_) => panic!("no matching message within {timeout:?}; saw {skipped:?}"),
            }
        }
    }

    /// Fails the test if a message arrives within `window`.
    pub async fn expect_none(&mut self, window: Duration) {
        if let Ok(Some(msg)) = tokio::time::timeout(window, self.receiver.recv()).await {
            panic!("expected no message within {window:?}, got {msg:?}");
        }
    }

    /// Every message received so far, without waiting.
    pub fn drain(&mut self) -> Vec<M> {
        let mut out = Vec::new();
        while let Ok(msg) = self.receiver.try_recv() {
            out.push(msg);
        }
        out
    }
}

/// A recipient for `M` that records what it gets, and the receiver to read it back. Must be
/// called inside a running actix system (e.g. in an `#[actix::test]`).
pub fn probe<M>() -> (Recipient<M>, ProbeReceiver<M>)
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    probe_answering(|_| ())
}

/// Like [`probe`], for a message with an answer: each message is answered with `answer(&msg)`
/// (e.g. `probe_answering::<LocalPublish, _>(|_| Ok(()))`).
pub fn probe_answering<M, F>(answer: F) -> (Recipient<M>, ProbeReceiver<M>)
where
    M: Message + Send + Unpin + 'static,
    M::Result: Send,
    F: FnMut(&M) -> M::Result + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    let addr = Probe {
        sender,
        answer: Box::new(answer),
    }
    .start();
    (addr.recipient(), ProbeReceiver { receiver })
}

/// The value of counter `name` in what `actor` answers to [`GetMetrics`]. Panics (failing the
/// test) when the actor does not answer or has no such counter.
pub async fn counter<A>(actor: &Addr<A>, name: &str) -> u64
where
    A: Actor + Handler<GetMetrics>,
    A::Context: actix::dev::ToEnvelope<A, GetMetrics>,
{
    let metrics = actor
        .send(GetMetrics)
        .await
        .expect("the actor answers GetMetrics");
    metrics
        .counters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no counter {name:?} in {metrics:?}"))
}

/// An empty journal (`fsync` mode, no limits) in a new temporary directory, which lives as long
/// as the returned guard.
#[cfg(test)]
pub fn temp_journal() -> (tempfile::TempDir, crate::store::Journal) {
    use crate::store::{Journal, JournalConfig};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let journal = Journal::open(&JournalConfig::for_tests(dir.path().join("journal")))
        .expect("a new journal opens");
    (dir, journal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Message, Debug, PartialEq, Eq)]
    #[rtype(result = "()")]
    struct Ping(u32);

    #[actix::test]
    async fn a_probe_returns_what_it_received_in_order() {
        let (recipient, mut rx) = probe::<Ping>();
        recipient.do_send(Ping(1));
        recipient.do_send(Ping(2));
        assert_eq!(rx.expect(Duration::from_secs(2)).await, Ping(1));
        assert_eq!(rx.expect(Duration::from_secs(2)).await, Ping(2));
        rx.expect_none(Duration::from_millis(50)).await;
    }

    #[actix::test]
    async fn expect_matching_skips_the_others() {
        let (recipient, mut rx) = probe::<Ping>();
        for n in 1..=3 {
            recipient.do_send(Ping(n));
        }
        let (found, skipped) = rx
            .expect_matching(Duration::from_secs(2), |p| p.0 == 3)
            .await;
        assert_eq!(found, Ping(3));
        assert_eq!(skipped, vec![Ping(1), Ping(2)]);
    }

    #[derive(Message, Debug, PartialEq, Eq)]
    #[rtype(result = "Result<u32, String>")]
    struct Ask(u32);

    #[actix::test]
    async fn an_answering_probe_records_and_answers() {
        let (recipient, mut rx) = probe_answering::<Ask, _>(|ask| match ask.0 {
            0 => Err("zero".to_string()),
            n => Ok(n * 2),
        });
        assert_eq!(recipient.send(Ask(21)).await.unwrap(), Ok(42));
        assert_eq!(recipient.send(Ask(0)).await.unwrap(), Err("zero".into()));
        assert_eq!(rx.expect(Duration::from_secs(2)).await, Ask(21));
        assert_eq!(rx.expect(Duration::from_secs(2)).await, Ask(0));
    }

    #[actix::test]
    #[should_panic(expected = "no message within")]
    async fn expect_fails_at_its_deadline() {
        let (_recipient, mut rx) = probe::<Ping>();
        rx.expect(Duration::from_millis(20)).await;
    }
}
