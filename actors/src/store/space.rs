//! Disk space for the journal: what the filesystem has free, what sled's file holds as free
//! segments (written again before the file grows; the file does not shrink when the queue
//! empties), and giving back the space of delivered messages while the intake waits for it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{lock, write, Journal, Result};

/// How long a free-space answer is reused.
pub const FREE_SPACE_REFRESH_MS: u64 = 100;
/// Most pages one [`Journal::reclaim`] moves out of mostly free segments.
const CLEAN_PAGES: usize = 4096;
/// The last free-space answer and what was appended since.
#[derive(Default)]
pub(super) struct Space {
    /// Bytes available on the filesystem at the last check.
    free: AtomicU64,
    /// Bytes of free segments inside sled's file at the last check.
    reusable: AtomicU64,
    /// When the last check was made (unix ms; 0: check at the next call).
    checked_ms: AtomicU64,
    /// Bytes appended since the last check (an estimate of what sled wrote).
    since: AtomicU64,
}

impl Space {
    /// Counts `bytes` written since the last check against the cached answer.
    pub(super) fn appended(&self, bytes: u64) {
        self.since.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Forgets the cached answer: the next free-space question asks the filesystem.
    fn invalidate(&self) {
        self.checked_ms.store(0, Ordering::Relaxed);
    }
}

impl Journal {
    /// Bytes available to this process on the buffer's filesystem (`u64::MAX` if unknown).
    pub fn free_bytes(&self) -> u64 {
        self.free_and_room().0
    }

    /// Room the journal can write into: the filesystem's free bytes plus the free segments
    /// inside sled's file, which sled writes again before it grows the file.
    pub fn room_bytes(&self) -> u64 {
        self.free_and_room().1
    }

    /// (free bytes of the filesystem, room for the journal). Asked at most every
    /// [`FREE_SPACE_REFRESH_MS`] (a `statfs` per message cost ~4% of the CPU in the benchmark);
    /// in between, the bytes appended since are subtracted from the last answer.
    pub(super) fn free_and_room(&self) -> (u64, u64) {
        let space = &self.inner.queue.space;
        let now = crate::clock::unix_ms();
        let checked = space.checked_ms.load(Ordering::Relaxed);
        let (free, reusable, since) = if now.saturating_sub(checked) < FREE_SPACE_REFRESH_MS {
            (
                space.free.load(Ordering::Relaxed),
                space.reusable.load(Ordering::Relaxed),
                space.since.load(Ordering::Relaxed),
            )
        } else {
            let free = fs2::available_space(&self.inner.path).unwrap_or(u64::MAX);
            let reusable = self.inner.db.reusable_bytes();
            space.free.store(free, Ordering::Relaxed);
            space.reusable.store(reusable, Ordering::Relaxed);
            space.since.store(0, Ordering::Relaxed);
            space.checked_ms.store(now, Ordering::Relaxed);
            (free, reusable, 0)
        };
        (
            free.saturating_sub(since),
            free.saturating_add(reusable).saturating_sub(since),
        )
    }

    /// True when the journal has room for `factor` × `min_free_bytes` (resume threshold).
    pub fn disk_ok(&self, factor: f64) -> bool {
        self.room_bytes() as f64 >= self.inner.queue.min_free_bytes as f64 * factor
    }

    /// While the intake waits for disk space: drops every delivered generation, also the last
    /// one once the queue is empty and nothing is staged (the next commit starts a new one),
    /// and has sled move what is left out of mostly free segments, so it can write that space
    /// again; the next free-space answer is asked anew.
    pub fn reclaim(&self) -> Result<()> {
        self.drop_finished_generations()?;
        // sled cleans its segments only in its periodic flusher, which `fsync` mode turns off.
        let cleaned = self
            .inner
            .db
            .clean_segments(CLEAN_PAGES)
            .map_err(|e| self.error(e))?;
        if cleaned > 0 {
            self.flush_and_recheck()?;
        }
        let last = {
            // Lock order as in `append`/`commit`: staged, live, generations.
            let staged = lock(&self.inner.queue.staged);
            let live = lock(&self.inner.queue.live);
            if !staged.is_empty() || !live.sizes.is_empty() || live.persisted < live.next_seq {
                None
            } else {
                let mut generations = write(&self.inner.queue.generations);
                match generations.trees.last_key_value() {
                    Some((start, _)) if *start <= live.persisted => {
                        generations.trees.pop_last().map(|(_, tree)| tree)
                    }
                    _ => None,
                }
            }
        };
        if let Some(tree) = last {
            let name = tree.name();
            drop(tree);
            self.inner.db.drop_tree(name).map_err(|e| self.error(e))?;
            self.flush_and_recheck()?;
        }
        Ok(())
    }

    /// Makes freed space durable and has the next free-space answer asked anew.
    fn flush_and_recheck(&self) -> Result<()> {
        self.flush_db()?;
        self.inner.queue.space.invalidate();
        Ok(())
    }
}
