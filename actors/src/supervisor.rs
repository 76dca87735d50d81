//! Supervisor: owns reconnecting. Starts one CloudLink per attempt (never two at once), waits for
//! its `LinkEvent`, and after a `Down` schedules the next attempt with the backoff policy.
//! Tells the Buffer where to publish (`LinkChanged` with the link's `Link` handle) and the
//! StatusPublisher what the state is (`ConnectionStatus`).

use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{info, warn};
use rand::Rng;

use crate::backoff::BackoffPolicy;
use crate::clock::unix_secs;
use crate::messages::{
    ActorMetrics, ConnectionStatus, Disconnect, DownCause, DownReason, GetMetrics, LinkChanged,
    LinkEvent, Shutdown,
};

/// What the Supervisor needs of a running CloudLink (its publisher comes with `LinkEvent::Up`).
pub struct LinkHandle {
    /// Used at shutdown.
    pub disconnect: Recipient<Disconnect>,
}

/// Starts a CloudLink for attempt `n` that reports to the given recipient. Only the binary's
/// `src/wiring.rs` knows which actor it is (tests pass a fake).
pub type LinkFactory = Box<dyn Fn(u64, Recipient<LinkEvent>) -> LinkHandle>;

/// Uniform random numbers in `[0, 1)` for the backoff's jitter.
pub type RandomSource = Box<dyn FnMut() -> f64>;

/// Reconnect supervisor.
pub struct Supervisor {
    policy: BackoffPolicy,
    start_link: LinkFactory,
    random: RandomSource,
    buffer: Recipient<LinkChanged>,
    status: Recipient<ConnectionStatus>,
    attempt: u64,
    current: Option<LinkHandle>,
    up_since: Option<Instant>,
    failures: u32,
    next_delay: Duration,
    reconnects: u64,
    shutting_down: bool,
    /// The last reason published, so repeated identical failures do not republish the status.
    last_down: Option<DownReason>,
}

impl Supervisor {
    /// A supervisor that starts links with `start_link` and reconnects under `policy`, its jitter
    /// drawn from the thread's random generator.
    pub fn new(
        policy: BackoffPolicy,
        start_link: LinkFactory,
        buffer: Recipient<LinkChanged>,
        status: Recipient<ConnectionStatus>,
    ) -> Self {
        Supervisor {
            policy,
            start_link,
            random: Box::new(|| rand::thread_rng().gen::<f64>()),
            buffer,
            status,
            attempt: 0,
            current: None,
            up_since: None,
            failures: 0,
            next_delay: Duration::ZERO,
            reconnects: 0,
            shutting_down: false,
            last_down: None,
        }
    }

    /// The same supervisor drawing its jitter from `random` instead (tests make it fixed).
    pub fn with_random(mut self, random: RandomSource) -> Self {
        self.random = random;
        self
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.current.is_some() {
            return;
        }
        self.attempt += 1;
        let handle = (self.start_link)(self.attempt, ctx.address().recipient());
        self.current = Some(handle);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_attempt(ctx);
    }
}

impl Handler<LinkEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, event: LinkEvent, ctx: &mut Self::Context) {
        match event {
            LinkEvent::Up { attempt, publisher } if attempt == self.attempt => {
                if self.current.is_none() {
                    return;
                }
                self.up_since = Some(Instant::now());
                self.last_down = None;
                self.buffer.do_send(LinkChanged {
                    publisher: Some(publisher),
                });
                self.status.do_send(ConnectionStatus {
                    connected: true,
                    timestamp: unix_secs(),
                    reason: None,
                });
            }
            LinkEvent::Down { attempt, reason }
                if attempt == self.attempt && self.current.is_some() =>
            {
                self.current = None;
                if let Some(since) = self.up_since.take() {
                    self.buffer.do_send(LinkChanged { publisher: None });
                    self.failures = self
                        .policy
                        .failures_after_drop(self.failures, since.elapsed());
                }
                self.failures = self.failures.saturating_add(1);
                if self.shutting_down {
                    return;
                }
                if self.last_down.as_ref() != Some(&reason) {
                    self.last_down = Some(reason.clone());
                    self.status.do_send(ConnectionStatus {
                        connected: false,
                        timestamp: unix_secs(),
                        reason: Some(reason),
                    });
                }
                self.next_delay = self.policy.delay(self.failures, (self.random)());
                self.reconnects += 1;
                info!(
                    "next cloud connection attempt in {} ms",
                    self.next_delay.as_millis()
                );
                ctx.run_later(self.next_delay, |act, ctx| act.start_attempt(ctx));
            }
            stale => warn!("ignoring event of an old cloud link: {stale:?}"),
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let link = self.current.take();
        if self.up_since.take().is_some() {
            self.buffer.do_send(LinkChanged { publisher: None });
        }
        let status = self.status.clone();
        Box::pin(
            async move {
                if let Some(link) = link {
                    let _ = link.disconnect.send(Disconnect).await;
                }
                let closed = ConnectionStatus {
                    connected: false,
                    timestamp: unix_secs(),
                    reason: Some(DownReason {
                        cause: DownCause::Closed,
                        detail: "shutdown".into(),
                    }),
                };
                let _ = status.send(closed).await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetMetrics> for Supervisor {
    type Result = ActorMetrics;

    fn handle(&mut self, _msg: GetMetrics, _ctx: &mut Self::Context) -> ActorMetrics {
        ActorMetrics {
            actor: "supervisor",
            counters: vec![
                ("connected", self.up_since.is_some() as u64),
                ("attempts", self.attempt),
                ("reconnects", self.reconnects),
                ("failures", u64::from(self.failures)),
                ("backoff_ms", self.next_delay.as_millis() as u64),
                (
                    "uptime_s",
                    self.up_since.map(|s| s.elapsed().as_secs()).unwrap_or(0),
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests;
