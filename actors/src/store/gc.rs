//! The journal's own thread: drops delivered generations (a `drop_tree` may read every page of
//! the tree back first, too slow for the drain's thread) and writes the mark file after a flush
//! of sled (`damage.rs`). It ends when the journal is dropped.

use std::path::Path;

use log::warn;

use super::damage::{write_mark, Committed};
use super::queue::Queue;
use super::{lock, Journal, Result};

/// Work for the journal's own thread.
pub(super) enum Job {
    /// Drop this delivered generation.
    Drop(sled::Tree),
    /// Flush sled, then write the mark file with these sequence numbers (`damage.rs`).
    Mark(Committed),
}

impl Journal {
    /// Asks the journal's thread to flush sled and then write the mark `committed`.
    pub(super) fn send_mark(&self, committed: Committed) {
        // A gone thread (it only ends with the journal) leaves the mark for the last flush.
        let _ = lock(&self.inner.queue.to_drop).send(Job::Mark(committed));
    }

    /// Has the journal's thread drop `tree` (here, if the thread is gone).
    pub(super) fn drop_tree_later(&self, tree: sled::Tree) -> Result<()> {
        if let Err(returned) = lock(&self.inner.queue.to_drop).send(Job::Drop(tree)) {
            // The thread is gone (it only ends with the journal): drop it here.
            if let Job::Drop(tree) = returned.0 {
                self.inner
                    .db
                    .drop_tree(tree.name())
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }
}

/// Starts the thread that drops delivered generations and writes the mark file; it ends when
/// the journal is dropped.
pub(super) fn start_dropper(
    db: sled::Db,
    path: &Path,
) -> std::io::Result<(std::sync::mpsc::Sender<Job>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let path = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("awslink-journal-gc".into())
        .spawn(move || {
            for job in rx {
                let tree = match job {
                    Job::Drop(tree) => tree,
                    Job::Mark(committed) => {
                        if let Err(e) = db.flush().map(|_| ()).map_err(|e| e.to_string()).and_then(|()| {
                            write_mark(&path, &committed).map_err(|e| e.to_string())
                        }) {
                            warn!("cannot write the journal's mark file in {}: {e}", path.display());
                        }
                        continue;
                    }
                };
                let name = tree.name();
                drop(tree);
                if let Err(e) = db.drop_tree(&name) {
                    warn!(
                        "cannot drop the delivered journal generation {}: {e}; it is dropped at the next start",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        })?;
    Ok((tx, thread))
}

impl Drop for Queue {
    /// Ends the journal's thread after the work it was given.
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut *lock(&self.to_drop), closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
