//! Disk space for the journal: what the filesystem has free, what sled's file holds as free
//! segments that keep their blocks (written again before the file grows; the file does not
//! shrink when the queue empties), and giving back the space of delivered messages while the
//! intake waits for it (dropped generations, segments sled ends early so that it frees what was
//! replaced, freed segments whose blocks sled gives back to the filesystem).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Journal, Result};

/// How long a free-space answer is reused.
pub const FREE_SPACE_REFRESH_MS: u64 = 100;
/// Most pages one [`Journal::reclaim`] moves out of mostly free segments.
const CLEAN_PAGES: usize = 4096;
/// Most segments one [`Journal::reclaim`] has sled end early (two end one round of waiting
/// frees: the segment written when they were replaced, and the one after it).
const MAX_SEALS: usize = 2;
/// sled's segment size (its default; the journal does not change it): ending a segment early
/// writes at most this much padding.
const SEGMENT_BYTES: u64 = 512 * 1024;
/// Least time between two rounds of ending segments early: the held intake asks for room after
/// every event, and a round costs a few `fdatasync`s.
const SEAL_INTERVAL_MS: u64 = 200;
/// Fewest segment frees worth ending a segment for: ending one leaves that segment to be freed
/// by the next round, so fewer would only move the waiting around.
const SEAL_FOR_SEGMENTS: usize = 3;
/// The last free-space answer and what was appended since.
#[derive(Default)]
pub(super) struct Space {
    /// Bytes available on the filesystem at the last check.
    free: AtomicU64,
    /// Bytes of free segments inside sled's file that keep their blocks, at the last check.
    reusable: AtomicU64,
    /// When the last check was made (unix ms; 0: check at the next call).
    checked_ms: AtomicU64,
    /// Bytes appended since the last check (an estimate of what sled wrote).
    since: AtomicU64,
    /// When segments were last ended early (unix ms).
    sealed_ms: AtomicU64,
    /// Tests: the size of a filesystem holding only the journal (0: ask the real one).
    #[cfg(test)]
    budget: AtomicU64,
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
    /// inside sled's file that keep their blocks, which sled writes again before it grows the
    /// file.
    pub fn room_bytes(&self) -> u64 {
        self.free_and_room().1
    }

    /// (free bytes of the filesystem, room for the journal). Asked at most every
    /// [`FREE_SPACE_REFRESH_MS`] (a `statfs` per message cost ~4% of the CPU in the benchmark);
    /// in between, the bytes appended since are subtracted from the last answer: from sled's
    /// free segments first, which it writes again before it grows its file.
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
            let free = self.filesystem_free().unwrap_or(u64::MAX);
            let reusable = self.inner.db.reusable_bytes();
            space.free.store(free, Ordering::Relaxed);
            space.reusable.store(reusable, Ordering::Relaxed);
            space.since.store(0, Ordering::Relaxed);
            space.checked_ms.store(now, Ordering::Relaxed);
            (free, reusable, 0)
        };
        // sled writes its free segments before it grows the file: what was appended since
        // comes out of them first, and out of the filesystem only beyond them.
        (
            free.saturating_sub(since.saturating_sub(reusable)),
            free.saturating_add(reusable).saturating_sub(since),
        )
    }

    /// True when the journal has room for `factor` × `min_free_bytes` (resume threshold).
    pub fn disk_ok(&self, factor: f64) -> bool {
        self.room_bytes() as f64 >= self.inner.queue.min_free_bytes as f64 * factor
    }

    /// While the intake waits for disk space: drops every delivered generation, also the last
    /// one of a lane once it is empty and nothing is staged (the next commit starts a new one),
    /// has sled move what is left out of mostly free segments, so it can write that space
    /// again, and ends sled's segment early when frees wait for it
    /// (`seal_segments`); the next free-space answer is asked anew.
    pub fn reclaim(&self) -> Result<()> {
        self.drop_finished_generations_all()?;
        // sled cleans its segments only in its periodic flusher, which `fsync` mode turns off.
        let cleaned = self
            .inner
            .db
            .clean_segments(CLEAN_PAGES)
            .map_err(|e| self.error(e))?;
        if cleaned > 0 {
            self.flush_and_recheck()?;
        }
        if self.drop_empty_last_generations()? {
            self.flush_and_recheck()?;
        }
        self.seal_segments()
    }

    /// sled frees a segment whose pages were all replaced, and removes a replaced blob file,
    /// only once the segment holding the replacement is no longer written to, i.e. once later
    /// writes filled it: a journal paused for disk space writes nothing, so what delivered
    /// messages occupied would never come back. While anything waits like that (any blob file,
    /// or [`SEAL_FOR_SEGMENTS`] segments), sled ends its segment early, at most [`MAX_SEALS`]
    /// times per [`SEAL_INTERVAL_MS`]; each writes at most a [`SEGMENT_BYTES`] pad and a
    /// header, so only with room for two of them on the filesystem. sled punches a hole over
    /// each segment it frees, so the filesystem gets the blocks back (`vendor/sled` patches).
    fn seal_segments(&self) -> Result<()> {
        let now = crate::clock::unix_ms();
        let last = self.inner.queue.space.sealed_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SEAL_INTERVAL_MS {
            return Ok(());
        }
        let mut sealed = false;
        for _ in 0..MAX_SEALS {
            let (segments, blobs) = self.inner.db.deferred_frees();
            if blobs == 0 && segments < SEAL_FOR_SEGMENTS {
                break;
            }
            let free = self.filesystem_free().unwrap_or(0);
            if free < 2 * SEGMENT_BYTES
                || !self.inner.db.seal_segment().map_err(|e| self.error(e))?
            {
                break;
            }
            sealed = true;
            // What the freed segments still held goes into the new one.
            self.inner
                .db
                .clean_segments(CLEAN_PAGES)
                .map_err(|e| self.error(e))?;
        }
        if sealed {
            self.inner
                .queue
                .space
                .sealed_ms
                .store(now, Ordering::Relaxed);
            self.flush_and_recheck()?;
        }
        Ok(())
    }

    /// Bytes available on the buffer's filesystem, asked anew.
    fn filesystem_free(&self) -> Option<u64> {
        #[cfg(test)]
        {
            let budget = self.inner.queue.space.budget.load(Ordering::Relaxed);
            if budget > 0 {
                return Some(budget.saturating_sub(allocated_bytes(&self.inner.path)));
            }
        }
        fs2::available_space(&self.inner.path).ok()
    }

    /// Tests: the journal's filesystem holds `bytes` and nothing but the journal.
    #[cfg(test)]
    pub(super) fn set_disk_budget(&self, bytes: u64) {
        self.inner
            .queue
            .space
            .budget
            .store(bytes, Ordering::Relaxed);
        self.inner.queue.space.invalidate();
    }

    /// Makes freed space durable and has the next free-space answer asked anew.
    fn flush_and_recheck(&self) -> Result<()> {
        self.flush_db()?;
        self.inner.queue.space.invalidate();
        Ok(())
    }
}

/// Tests: the blocks the files under `dir` occupy (holes take none).
#[cfg(test)]
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
#[path = "space_tests.rs"]
mod tests;
