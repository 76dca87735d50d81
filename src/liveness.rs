//! Liveness: awslink never runs half alive. A heartbeat thread of its own (outside the actors'
//! arbiter, so a wedged actor cannot stop it) asks every actor for an answer each
//! [`LivenessConfig::interval`]. When all answer it tells systemd `WATCHDOG=1` and writes the
//! time to `{buffer}/heartbeat` (what `awslink health` judges); the first such round after the
//! local intake is subscribed (both its sessions) also sends `READY=1`. An actor that stopped,
//! or that has not answered for [`LivenessConfig::fatal_after`], is fatal: [`fatal`] logs one
//! line naming the cause and ends the process with exit code 1, so that Docker's restart
//! policy or systemd restarts it.
//! The decisions are the pure [`Heartbeat`]; the thread only performs them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use log::{error, warn};

use awslink_actors::messages::{ActorMetrics, GetMetrics};

/// File in the buffer directory that holds the unix time (ms) of the last good heartbeat.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// How often and how patiently the heartbeat asks.
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// How long one actor may take to answer one round.
    pub answer_timeout: Duration,
    /// How long without a complete round before awslink gives up and exits 1.
    pub fatal_after: Duration,
    /// Where the heartbeat time is written.
    pub heartbeat_file: PathBuf,
}

impl LivenessConfig {
    /// The defaults: a round every second (or a third of systemd's `WatchdogSec`, if shorter),
    /// fatal after 30 s (or `WatchdogSec`, if shorter) without a complete round.
    pub fn for_buffer(buffer_dir: &Path, watchdog: Option<Duration>) -> Self {
        let mut interval = Duration::from_secs(1);
        let mut fatal_after = Duration::from_secs(30);
        if let Some(w) = watchdog {
            interval = interval.min(w / 3).max(Duration::from_millis(100));
            fatal_after = fatal_after.min(w).max(interval * 2);
        }
        LivenessConfig {
            interval,
            answer_timeout: interval,
            fatal_after,
            heartbeat_file: buffer_dir.join(HEARTBEAT_FILE),
        }
    }
}

/// One actor's answer to one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It answered with its counters.
    Alive(ActorMetrics),
    /// It did not answer within the timeout.
    Silent,
    /// Its mailbox is closed: the actor stopped.
    Stopped,
}

/// What the heartbeat thread does after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell systemd the service is ready (once).
    Ready,
    /// Tell systemd `WATCHDOG=1` and write the heartbeat file.
    Beat,
    /// End the process with exit code 1 for this cause.
    Fatal(String),
}

/// The heartbeat's rules, over values (time comes in as an argument).
#[derive(Debug)]
pub struct Heartbeat {
    last_complete: Instant,
    fatal_after: Duration,
    ready_sent: bool,
}

impl Heartbeat {
    /// A heartbeat that counts silence from `now`.
    pub fn new(now: Instant, fatal_after: Duration) -> Self {
        Heartbeat {
            last_complete: now,
            fatal_after,
            ready_sent: false,
        }
    }

    /// Judges one round: every actor's answer, by name.
    pub fn round(&mut self, now: Instant, answers: &[(&'static str, Answer)]) -> Vec<Action> {
        if let Some((name, _)) = answers.iter().find(|(_, a)| *a == Answer::Stopped) {
            return vec![Action::Fatal(format!("the {name} actor stopped"))];
        }
        let silent: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| *a == Answer::Silent)
            .map(|(n, _)| *n)
            .collect();
        if !silent.is_empty() {
            let quiet = now.saturating_duration_since(self.last_complete);
            if quiet >= self.fatal_after {
                return vec![Action::Fatal(format!(
                    "no answer from {} for {:.1} s (wedged)",
                    silent.join(", "),
                    quiet.as_secs_f64()
                ))];
            }
            return Vec::new();
        }
        self.last_complete = now;
        let mut actions = Vec::new();
        if !self.ready_sent && answers.iter().any(|(_, a)| intake_up(a)) {
            self.ready_sent = true;
            actions.push(Action::Ready);
        }
        actions.push(Action::Beat);
        actions
    }
}

/// Whether an answer is the LocalBroker's, with its local sessions up and the intake's
/// subscriptions granted (awslink takes local messages now).
fn intake_up(answer: &Answer) -> bool {
    let has = |m: &ActorMetrics, key: &str| m.counters.iter().any(|&(k, v)| k == key && v == 1);
    match answer {
        Answer::Alive(m) => m.actor == "local" && has(m, "connected") && has(m, "subscribed"),
        _ => false,
    }
}

/// Something to do before a fatal exit (flush the journal); it gets at most a second.
type FatalHook = Box<dyn Fn() + Send + Sync>;

fn fatal_hook() -> &'static Mutex<Option<Arc<FatalHook>>> {
    static HOOK: OnceLock<Mutex<Option<Arc<FatalHook>>>> = OnceLock::new();
    HOOK.get_or_init(|| Mutex::new(None))
}

/// Registers what [`fatal`] does before it exits (at most one second of it).
pub fn on_fatal(hook: impl Fn() + Send + Sync + 'static) {
    let mut slot = fatal_hook().lock().unwrap_or_else(|p| p.into_inner());
    *slot = Some(Arc::new(Box::new(hook)));
}

/// Ends the process with exit code 1 after one log line naming `cause`: a failure awslink
/// cannot recover from. The local session closes without DISCONNECT, so Mosquitto publishes the
/// last will (`CONNECTION_UNKNOWN`) on the status topic.
pub fn fatal(cause: &str) -> ! {
    error!("fatal: {cause}; exiting with code 1 so that the supervisor restarts awslink");
    let hook = fatal_hook()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(hook) = hook {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("awslink-fatal".into())
            .spawn(move || {
                hook();
                let _ = done_tx.send(());
            });
        if spawned.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(1));
        }
    }
    std::process::exit(1)
}

/// Makes every panic, on any thread, fatal: one log line with the panic, then exit code 1.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        fatal(&format!("panic in thread {name}{place}: {message}"));
    }));
}

/// Tells systemd something, if it is listening (`NOTIFY_SOCKET` set); logs a failure once.
pub fn notify(state: sd_notify::NotifyState<'_>) {
    static WARNED: OnceLock<()> = OnceLock::new();
    if let Err(e) = sd_notify::notify(&[state]) {
        WARNED.get_or_init(|| warn!("cannot notify systemd (NOTIFY_SOCKET): {e}"));
    }
}

/// Writes the heartbeat file: the unix time in ms, replaced atomically.
pub fn write_heartbeat(path: &Path) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{now}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Reads the heartbeat file: the unix time in ms it holds.
pub fn read_heartbeat(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse::<u64>().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold a time", path.display()),
        )
    })
}

/// The running heartbeat thread.
pub struct HeartbeatThread {
    stopping: Arc<AtomicBool>,
}

impl HeartbeatThread {
    /// Ends the heartbeat (shutdown: actors stop on purpose now, which is not fatal).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// Starts the heartbeat thread over `actors` (name, recipient).
pub fn spawn(
    config: LivenessConfig,
    system: System,
    actors: Vec<(&'static str, Recipient<GetMetrics>)>,
) -> std::io::Result<HeartbeatThread> {
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    std::thread::Builder::new()
        .name("awslink-liveness".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => fatal(&format!("cannot start the heartbeat: {e}")),
            };
            runtime.block_on(beat(config, system, actors, flag));
        })?;
    Ok(HeartbeatThread { stopping })
}

async fn beat(
    config: LivenessConfig,
    system: System,
    actors: Vec<(&'static str, Recipient<GetMetrics>)>,
    stopping: Arc<AtomicBool>,
) {
    let mut heartbeat = Heartbeat::new(Instant::now(), config.fatal_after);
    let mut file_warned = false;
    loop {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let round_started = Instant::now();
        // A stopped actix system runs no actor any more, but closes no mailbox either: its
        // arbiter refusing new work is the only sign.
        if !system.arbiter().spawn(async {}) {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            fatal("the actix system stopped (no actor runs any more)");
        }
        // Every request is in its actor's mailbox before the first answer is awaited, so one
        // round takes at most `answer_timeout`, however many actors are silent.
        let requests: Vec<_> = actors
            .iter()
            .map(|(name, recipient)| (*name, recipient.send(GetMetrics)))
            .collect();
        let deadline = tokio::time::Instant::now() + config.answer_timeout;
        let mut answers = Vec::with_capacity(requests.len());
        for (name, request) in requests {
            let answer = match tokio::time::timeout_at(deadline, request).await {
                Ok(Ok(metrics)) => Answer::Alive(metrics),
                Ok(Err(MailboxError::Closed)) => Answer::Stopped,
                Ok(Err(MailboxError::Timeout)) | Err(_) => Answer::Silent,
            };
            answers.push((name, answer));
        }
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        for action in heartbeat.round(Instant::now(), &answers) {
            match action {
                Action::Ready => notify(sd_notify::NotifyState::Ready),
                Action::Beat => {
                    notify(sd_notify::NotifyState::Watchdog);
                    if let Err(e) = write_heartbeat(&config.heartbeat_file) {
                        if !file_warned {
                            warn!(
                                "cannot write the heartbeat {}: {e} (awslink health will call it wedged)",
                                config.heartbeat_file.display()
                            );
                            file_warned = true;
                        }
                    } else {
                        file_warned = false;
                    }
                }
                Action::Fatal(cause) => fatal(&cause),
            }
        }
        let next = round_started + config.interval;
        tokio::time::sleep_until(next.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(actor: &'static str, up: u64) -> Answer {
        Answer::Alive(ActorMetrics {
            actor,
            counters: vec![("connected", up), ("subscribed", up)],
        })
    }

    #[test]
    fn heartbeat_rounds_by_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (seconds after t0, answers, actions expected)
        type Row = (u64, Vec<(&'static str, Answer)>, Vec<Action>);
        let rows: Vec<Row> = vec![
            // intake not up yet: alive, but not ready
            (
                1,
                vec![("local", alive("local", 0)), ("buffer", alive("buffer", 0))],
                vec![Action::Beat],
            ),
            // intake up: ready once, then beats only
            (
                2,
                vec![("local", alive("local", 1)), ("buffer", alive("buffer", 0))],
                vec![Action::Ready, Action::Beat],
            ),
            (3, vec![("local", alive("local", 1))], vec![Action::Beat]),
            // one silent actor: no beat, not yet fatal (29 s < 30 s since the last complete round)
            (
                32,
                vec![("local", alive("local", 1)), ("buffer", Answer::Silent)],
                vec![],
            ),
            // silent for 30 s: fatal, naming it
            (
                33,
                vec![("local", Answer::Silent), ("buffer", Answer::Silent)],
                vec![Action::Fatal(
                    "no answer from local, buffer for 30.0 s (wedged)".into(),
                )],
            ),
        ];
        let mut hb = Heartbeat::new(t0, s(30));
        for (at, answers, expected) in rows {
            assert_eq!(hb.round(t0 + s(at), &answers), expected, "at {at} s");
        }
    }

    #[test]
    fn a_stopped_actor_is_fatal_at_once() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(t0, Duration::from_secs(30));
        let answers = [
            ("local", alive("local", 1)),
            ("supervisor", Answer::Stopped),
        ];
        assert_eq!(
            hb.round(t0, &answers),
            vec![Action::Fatal("the supervisor actor stopped".into())]
        );
    }

    #[test]
    fn a_complete_round_resets_the_silence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(t0, s(10));
        assert!(hb.round(t0 + s(9), &[("b", Answer::Silent)]).is_empty());
        assert_eq!(
            hb.round(t0 + s(10), &[("b", alive("b", 0))]),
            vec![Action::Beat]
        );
        assert!(hb.round(t0 + s(19), &[("b", Answer::Silent)]).is_empty());
        assert!(matches!(
            hb.round(t0 + s(20), &[("b", Answer::Silent)]).as_slice(),
            [Action::Fatal(_)]
        ));
    }

    #[test]
    fn intervals_follow_systemds_watchdog() {
        let dir = Path::new("/var/lib/awslink");
        let rows = [
            (None, 1_000, 30_000),
            (Some(60_000), 1_000, 30_000),
            (Some(9_000), 1_000, 9_000),
            (Some(1_500), 500, 1_500),
            (Some(150), 100, 200),
        ];
        for (watchdog_ms, interval_ms, fatal_ms) in rows {
            let c = LivenessConfig::for_buffer(dir, watchdog_ms.map(Duration::from_millis));
            assert_eq!(c.interval.as_millis(), interval_ms, "{watchdog_ms:?}");
            assert_eq!(c.fatal_after.as_millis(), fatal_ms, "{watchdog_ms:?}");
            assert_eq!(c.heartbeat_file, dir.join("heartbeat"));
        }
    }

    #[test]
    fn the_heartbeat_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HEARTBEAT_FILE);
        write_heartbeat(&path).unwrap();
        let ms = read_heartbeat(&path).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now >= ms && now - ms < 10_000, "{ms} vs {now}");
        std::fs::write(&path, "garbage").unwrap();
        assert!(read_heartbeat(&path).is_err());
    }
}
