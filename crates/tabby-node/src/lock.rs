//! One agent per node name per machine.
//!
//! An exclusive `flock` on `<dir>/node-<name>.lock`, held for the agent's life. The kernel
//! drops it when the process ends however it ends (even `kill -9`), so a crashed agent never
//! blocks its restart, unlike a datastore lease that would have to time out; and it needs no
//! datastore, so it also holds while the datastore is unreachable.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another tabby agent for node {node:?} is already running on this machine (it holds {})",
        path.display()
    )]
    Held {
        /// The node name.
        node: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {}: {error}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// Held while the agent runs; dropping it (or exiting) releases the node name.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    path: PathBuf,
}

impl NodeLock {
    /// Takes the lock for `node` under `dir` (created if missing), or fails at once if another
    /// process holds it.
    pub fn acquire(dir: &Path, node: &str) -> Result<Self, LockError> {
        // Node names are DNS names, but a path separator must never escape the folder.
        let safe: String = node
            .chars()
            .map(|c| if c == '/' || c == '\0' { '_' } else { c })
            .collect();
        let path = dir.join(format!("node-{safe}.lock"));
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                node: node.to_owned(),
                path,
            }),
            Err(TryLockError::Error(error)) => Err(io(error)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_for_the_same_node_is_refused_until_the_first_is_dropped() {
        let dir = tabby_test_util::ScratchDir::new("node-lock");
        let first = NodeLock::acquire(dir.path(), "node-1").expect("first lock");
        let err = NodeLock::acquire(dir.path(), "node-1").expect_err("second must fail");
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("already running"), "{err}");
        // Another node on the same machine is fine.
        let _other = NodeLock::acquire(dir.path(), "node-2").expect("other node");
        drop(first);
        NodeLock::acquire(dir.path(), "node-1").expect("free again");
    }
}
