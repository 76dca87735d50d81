//! The outstanding publishes of one link, and how the finished ones are found without polling
//! every token.
//!
//! Each publish's token is polled once when it is added, with a waker of its own that knows the
//! publish's key. When the client completes the token it wakes that waker (once, on its own
//! thread): the waker writes the key into a shared list and wakes the drain. [`Outstanding::reap`]
//! then polls only the tokens whose keys are listed. A burst of PUBACKs costs one poll per
//! completed publish instead of one per outstanding publish per notice (the profile of issue 17
//! put polling every token at 3% of awslink's CPU), and a publish the endpoint dropped without a
//! PUBACK never hides the completions behind it (polling only up to the first pending token did:
//! the drain stalled until the link was replaced).
//!
//! A publish the endpoint dropped (AWS drops what exceeds its limits, without a PUBACK) is found
//! by the same queue: MQTT has the server acknowledge QoS 1 publishes in the order it received
//! them, so a token still pending when one published after it completed was dropped. After
//! [`OVERTAKEN_GRACE`] (in case a server does acknowledge out of order) the reap reports it as
//! `None`, and the drain sends it again at once instead of holding its slot and its lane's
//! watermark until the link watchdog sees a keep-alive period without any answer, which a link
//! that keeps answering the other publishes never has.
//!
//! Generic over the token so that the logic is tested with plain futures.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How long a publish may stay unanswered after one published later was answered before it
/// counts as dropped.
pub const OVERTAKEN_GRACE: Duration = Duration::from_secs(1);

/// What the tokens' wakers share with the queue: the keys completed since the last reap, and
/// the drain's waker.
#[derive(Default)]
struct Shared {
    completed: Mutex<Vec<u64>>,
    notify: Mutex<Option<Waker>>,
}

/// The waker of one token.
struct TokenWaker {
    key: u64,
    shared: Arc<Shared>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.shared.completed).push(self.key);
        if let Some(notify) = lock(&self.shared.notify).as_ref() {
            notify.wake_by_ref();
        }
    }
}

struct Entry<T> {
    key: u64,
    token: T,
    waker: Waker,
    /// Completed by the server's acknowledgement (QoS 1), not when written (QoS 0): only these
    /// tell, and can be, overtaken.
    acknowledged: bool,
    /// When an acknowledged token published after this one completed.
    overtaken_at: Option<Instant>,
}

/// The tokens of the publishes a link has outstanding, oldest first.
pub struct Outstanding<T: Future + Unpin> {
    queue: VecDeque<Entry<T>>,
    /// Tokens that were already complete when added, reported by the next reap.
    finished: Vec<(u64, T::Output)>,
    shared: Arc<Shared>,
    /// Keys taken from `shared` by the last reap (kept for its allocation).
    keys: Vec<u64>,
}

impl<T: Future + Unpin> Default for Outstanding<T> {
    fn default() -> Self {
        Outstanding {
            queue: VecDeque::new(),
            finished: Vec::new(),
            shared: Arc::default(),
            keys: Vec::new(),
        }
    }
}

impl<T: Future + Unpin> Outstanding<T> {
    /// Adds the token of publish `key` and registers its waker; `acknowledged`: it completes
    /// with the server's acknowledgement (QoS 1), not once written (QoS 0).
    pub fn push(&mut self, key: u64, mut token: T, acknowledged: bool) {
        let waker = Waker::from(Arc::new(TokenWaker {
            key,
            shared: self.shared.clone(),
        }));
        match Pin::new(&mut token).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(output) => self.finished.push((key, output)),
            Poll::Pending => self.queue.push_back(Entry {
                key,
                token,
                waker,
                acknowledged,
                overtaken_at: None,
            }),
        }
    }

    /// Hands `done` the key and output of every token that completed since the last call, and
    /// the key and `None` of every token overtaken more than [`OVERTAKEN_GRACE`] before `now`
    /// (forgotten from then on); has `waker` woken when another one completes.
    pub fn reap(
        &mut self,
        waker: &Waker,
        now: Instant,
        mut done: impl FnMut(u64, Option<T::Output>),
    ) {
        {
            let mut notify = lock(&self.shared.notify);
            if !notify.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *notify = Some(waker.clone());
            }
        }
        for (key, output) in self.finished.drain(..) {
            done(key, Some(output));
        }
        std::mem::swap(&mut self.keys, &mut *lock(&self.shared.completed));
        for key in self.keys.drain(..) {
            // PUBACKs come in order, so the key is nearly always the oldest.
            let Some(at) = self.queue.iter().position(|e| e.key == key) else {
                continue; // forgotten since
            };
            let entry = &mut self.queue[at];
            match Pin::new(&mut entry.token).poll(&mut Context::from_waker(&entry.waker)) {
                Poll::Ready(output) => {
                    let acknowledged = entry.acknowledged;
                    done(key, Some(output));
                    self.queue.remove(at);
                    if !acknowledged {
                        continue; // written, not acknowledged: says nothing of the others
                    }
                    // Every acknowledged publish before it and still pending was overtaken (the
                    // marked ones come first among the acknowledged, marked oldest first).
                    for earlier in self.queue.iter_mut().take(at).rev() {
                        if !earlier.acknowledged {
                            continue;
                        }
                        if earlier.overtaken_at.is_some() {
                            break;
                        }
                        earlier.overtaken_at = Some(now);
                    }
                }
                // The wake of a forgotten token whose key was published again: this one is
                // still on its way (and its waker registered again).
                Poll::Pending => {}
            }
        }
        let mut i = 0;
        while let Some(entry) = self.queue.get(i) {
            match entry.overtaken_at {
                Some(at) if now.saturating_duration_since(at) >= OVERTAKEN_GRACE => {
                    let key = entry.key;
                    self.queue.remove(i);
                    done(key, None);
                }
                _ if !entry.acknowledged => i += 1,
                _ => break,
            }
        }
    }

    /// Forgets every outstanding token: their outputs will never be reported.
    pub fn forget(&mut self) {
        self.queue.clear();
        self.finished.clear();
    }

    /// Tokens outstanding.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no token is outstanding.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A token that completes when the test says so, and wakes like paho's: it takes the stored
    /// waker and wakes it once, after setting the result; a poll takes the result.
    #[derive(Clone, Default)]
    struct FakeToken(Arc<Mutex<(Option<u32>, Option<Waker>)>>);

    impl FakeToken {
        fn complete(&self, value: u32) {
            let mut state = lock(&self.0);
            state.0 = Some(value);
            if let Some(w) = state.1.take() {
                w.wake();
            }
        }
    }

    impl Future for FakeToken {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            let mut state = lock(&self.0);
            match state.0.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    state.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn any_waker() -> Waker {
        Waker::from(Arc::new(CountingWaker::default()))
    }

    /// What a reap at `at` hands over: key and output, `None` for a token reported dropped.
    fn reaped(
        out: &mut Outstanding<FakeToken>,
        waker: &Waker,
        at: Instant,
    ) -> Vec<(u64, Option<u32>)> {
        let mut done = Vec::new();
        out.reap(waker, at, |k, v| done.push((k, v)));
        done
    }

    type Setup = (
        Outstanding<FakeToken>,
        Vec<FakeToken>,
        Arc<CountingWaker>,
        Waker,
    );

    /// `n` QoS 1 tokens added with keys 0.., and a first reap (nothing completed yet).
    fn setup(n: u64) -> Setup {
        let mut out = Outstanding::default();
        let tokens: Vec<FakeToken> = (0..n).map(|_| FakeToken::default()).collect();
        for (key, t) in tokens.iter().enumerate() {
            out.push(key as u64, t.clone(), true);
        }
        let count = Arc::new(CountingWaker::default());
        let waker = Waker::from(count.clone());
        assert!(reaped(&mut out, &waker, Instant::now()).is_empty());
        (out, tokens, count, waker)
    }

    #[test]
    fn completions_are_reported_once_in_any_order_and_wake_the_drain() {
        // (completion order, keys reaped in that order)
        let rows: [&[u64]; 4] = [&[0, 1, 2, 3], &[3, 2, 1, 0], &[1, 3], &[2]];
        for order in rows {
            let (mut out, tokens, count, waker) = setup(4);
            for &k in order {
                tokens[k as usize].complete(k as u32 * 10);
            }
            assert_eq!(count.0.load(Ordering::SeqCst), order.len(), "{order:?}");
            let want: Vec<(u64, Option<u32>)> =
                order.iter().map(|&k| (k, Some(k as u32 * 10))).collect();
            assert_eq!(reaped(&mut out, &waker, Instant::now()), want, "{order:?}");
            assert_eq!(out.len(), 4 - order.len());
            let again = reaped(&mut out, &waker, Instant::now());
            assert!(again.is_empty(), "reported once: {order:?}");
        }
    }

    #[test]
    fn a_token_that_never_completes_does_not_hide_the_ones_after_it() {
        let (mut out, tokens, _, waker) = setup(100);
        // Token 0 is dropped by the endpoint: it never completes.
        for token in &tokens[1..] {
            token.complete(1);
        }
        let done = reaped(&mut out, &waker, Instant::now());
        assert_eq!(done.len(), 99);
        assert!(done.iter().all(|(_, v)| v.is_some()));
        assert_eq!(out.len(), 1, "token 0 waits for the grace");
    }

    #[test]
    fn a_token_overtaken_by_a_later_completion_is_reported_dropped_after_the_grace() {
        // (tokens that complete, ms after that reap, keys reported as dropped)
        let rows: [(&[usize], u64, &[u64]); 5] = [
            (&[2], 999, &[]),
            (&[2], 1000, &[0, 1]),
            (&[0, 1, 2], 5000, &[]), // in order: nothing overtaken
            (&[3], 1000, &[0, 1, 2]),
            (&[], 5000, &[]), // nothing completed: nothing overtaken (the watchdog's case)
        ];
        for (complete, after_ms, dropped) in rows {
            let (mut out, tokens, _, waker) = setup(4);
            for &k in complete {
                tokens[k].complete(1);
            }
            let t0 = Instant::now();
            let done = reaped(&mut out, &waker, t0);
            assert!(
                done.iter().all(|(_, v)| v.is_some()),
                "{complete:?}: {done:?}"
            );
            let later = reaped(&mut out, &waker, t0 + Duration::from_millis(after_ms));
            let got: Vec<u64> = later
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(got, dropped, "{complete:?} after {after_ms} ms");
            assert_eq!(out.len(), 4 - complete.len() - dropped.len());
        }
    }

    #[test]
    fn a_qos_0_publish_written_before_an_earlier_puback_overtakes_nothing() {
        // On a slow link a QoS 1 publish waits for its PUBACK longer than the grace; a QoS 0
        // publish after it completes once written. That is no sign of a drop.
        let mut out = Outstanding::default();
        let (qos1, qos0, later1) = (
            FakeToken::default(),
            FakeToken::default(),
            FakeToken::default(),
        );
        out.push(0, qos1.clone(), true);
        out.push(1, qos0.clone(), false);
        out.push(2, later1.clone(), true);
        let waker = any_waker();
        let t0 = Instant::now();
        qos0.complete(1);
        let mut done = reaped(&mut out, &waker, t0);
        done.extend(reaped(&mut out, &waker, t0 + Duration::from_secs(5)));
        assert_eq!(done, vec![(1, Some(1))], "token 0 is still waiting");
        // A QoS 1 completion after it does tell: token 0 was dropped.
        later1.complete(2);
        done.extend(reaped(&mut out, &waker, t0 + Duration::from_secs(5)));
        done.extend(reaped(&mut out, &waker, t0 + Duration::from_secs(6)));
        assert_eq!(done, vec![(1, Some(1)), (2, Some(2)), (0, None)]);
    }

    #[test]
    fn an_overtaken_token_that_completes_within_the_grace_is_reported_completed() {
        let (mut out, tokens, _, waker) = setup(3);
        let t0 = Instant::now();
        tokens[2].complete(2);
        reaped(&mut out, &waker, t0);
        tokens[0].complete(0); // out of order, within the grace
        let done = reaped(&mut out, &waker, t0 + Duration::from_millis(500));
        assert_eq!(done, vec![(0, Some(0))]);
        let done = reaped(&mut out, &waker, t0 + Duration::from_millis(1000));
        assert_eq!(done, vec![(1, None)], "only token 1 was dropped");
    }

    #[test]
    fn a_token_complete_when_added_is_reported_by_the_next_reap() {
        let mut out = Outstanding::default();
        let t = FakeToken::default();
        t.complete(7);
        out.push(5, t, true);
        assert!(out.is_empty());
        let done = reaped(&mut out, &any_waker(), Instant::now());
        assert_eq!(done, vec![(5, Some(7))]);
    }

    #[test]
    fn a_completion_before_the_first_reap_is_not_lost() {
        let mut out = Outstanding::default();
        let t = FakeToken::default();
        out.push(1, t.clone(), true);
        t.complete(3); // no drain waker known yet
        let done = reaped(&mut out, &any_waker(), Instant::now());
        assert_eq!(done, vec![(1, Some(3))]);
    }

    #[test]
    fn forgotten_tokens_are_not_reported_and_a_republished_key_still_is() {
        let (mut out, tokens, _, waker) = setup(3);
        out.forget();
        assert!(out.is_empty());
        // Key 1 is published again; then the old token of key 1 completes, then the new one.
        let again = FakeToken::default();
        out.push(1, again.clone(), true);
        tokens[1].complete(1);
        tokens[2].complete(2);
        let done = reaped(&mut out, &waker, Instant::now());
        assert!(done.is_empty(), "the old tokens' completions: {done:?}");
        assert_eq!(out.len(), 1, "the new token of key 1 is still outstanding");
        again.complete(11);
        let done = reaped(&mut out, &waker, Instant::now());
        assert_eq!(done, vec![(1, Some(11))]);
    }
}
