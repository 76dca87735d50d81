//! The intake thread: both local sessions run on one thread of their own, with a
//! single-threaded tokio runtime; [`IntakeHandle`] stops them. A panic ends the thread and is
//! reported through the counters' `exited` flag (the LocalBroker turns it into the fatal exit).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::error;

use super::ingest::Ingest;
use super::sessions::{Coordination, Record, Session};
use super::{run, setups, Setup};
use crate::local::connection::LocalConnection;

/// Controls the intake thread.
pub struct IntakeHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl IntakeHandle {
    /// Acknowledges what is journaled, disconnects and ends the thread; resolves when it has.
    pub fn stop(&mut self) -> impl std::future::Future<Output = ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = self.done.take();
        async move {
            if let Some(done) = done {
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
        }
    }
}

/// Starts the intake's two sessions to `connection` on their own thread, handing every message
/// to `ingest`; the record of the control session's filters lives in `record_dir`.
pub fn start(
    connection: &LocalConnection,
    ingest: Ingest,
    record_dir: &std::path::Path,
) -> Result<IntakeHandle, String> {
    let ingest = Arc::new(ingest);
    let coordination = Arc::new(Coordination::default());
    let record = Record::new(record_dir);
    let setups = setups(connection, &ingest, &coordination, &record)?;
    let control_filters = &setups[Session::Control.index()].filters;
    coordination
        .recorded
        .store(record.holds(control_filters), Ordering::Release);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("awslink-intake".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    ingest.counters.exited.store(true, Ordering::Release);
                    return error!("cannot start the intake runtime: {e}");
                }
            };
            let counters = ingest.counters.clone();
            let run = std::panic::AssertUnwindSafe(|| {
                runtime.block_on(run_both(setups, stop_rx));
            });
            if std::panic::catch_unwind(run).is_err() {
                error!("the local intake failed (panic); no more local messages are taken");
            }
            counters.exited.store(true, Ordering::Release);
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the intake thread: {e}"))?;
    Ok(IntakeHandle {
        stop: Some(stop_tx),
        done: Some(done_rx),
    })
}

/// Runs both sessions until `stop` (or its sender is gone).
async fn run_both(setups: [Setup; 2], stop: tokio::sync::oneshot::Receiver<()>) {
    let (main_stop, main_stopped) = tokio::sync::oneshot::channel();
    let (control_stop, control_stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = stop.await;
        let _ = main_stop.send(());
        let _ = control_stop.send(());
    });
    let [main, control] = setups;
    tokio::join!(run(main, main_stopped), run(control, control_stopped));
}
