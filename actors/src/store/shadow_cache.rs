//! The shadow mapper's cache: the last reported state of each shadow, as JSON under the
//! shadow's topic prefix (what a `modify` needs to null the keys it removes). A lost or
//! unreadable entry only means the next full document from the service fills it again.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{open_error, JournalError, Result};

/// The `shadow-reported` tree of the database; cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct ShadowCache {
    path: PathBuf,
    tree: sled::Tree,
}

impl ShadowCache {
    /// The cache kept in `tree` (of the buffer directory `path`).
    pub(super) fn new(path: &Path, tree: sled::Tree) -> Self {
        ShadowCache {
            path: path.to_path_buf(),
            tree,
        }
    }

    /// A cache in a tree the test opened itself (a temporary database).
    #[cfg(test)]
    pub(crate) fn from_tree(tree: sled::Tree) -> Self {
        Self::new(Path::new("(test)"), tree)
    }

    /// The cached reported state of `shadow` (`None` when there is none or it is not JSON).
    pub fn get(&self, shadow: &str) -> Result<Option<Value>> {
        let bytes = self.tree.get(shadow).map_err(|e| self.error(e))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Replaces the cached reported state of `shadow`.
    pub fn put(&self, shadow: &str, reported: &Value) -> Result<()> {
        self.tree
            .insert(shadow, reported.to_string().into_bytes())
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Forgets `shadow` (it was deleted).
    pub fn remove(&self, shadow: &str) -> Result<()> {
        self.tree
            .remove(shadow)
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: sled::Error) -> JournalError {
        open_error(&self.path, e)
    }
}
