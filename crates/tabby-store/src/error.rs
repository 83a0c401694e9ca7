use std::path::PathBuf;

use crate::{Key, Revision};

/// Why a datastore operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{key} not found")]
    NotFound {
        /// The missing object.
        key: Key,
    },

    /// A create found the object already there.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The existing object.
        key: Key,
    },

    /// A compare-and-swap found another revision than the caller based its change on:
    /// someone else wrote the object first. Read it again and retry.
    #[error("{key} was changed concurrently: expected revision {expected}, {}", describe_actual(*.actual))]
    Conflict {
        /// The object compared.
        key: Key,
        /// The `mod_revision` the caller required.
        expected: Revision,
        /// The object's current `mod_revision`, or `None` if it no longer exists.
        actual: Option<Revision>,
    },

    /// One op of a commit was refused, so the commit wrote nothing.
    #[error("op {index} of the commit failed, nothing was written: {error}")]
    OpFailed {
        /// The position of the failing op in the commit's list.
        index: usize,
        /// Why it failed; it names the op's key.
        error: Box<Self>,
    },

    /// A commit wrote one key twice; like etcd, the store refuses that.
    #[error("{key} is written twice in one commit")]
    DuplicateKey {
        /// The key written more than once.
        key: Key,
    },

    /// A key that cannot be stored.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The refused key.
        key: Key,
        /// What is wrong with it.
        reason: String,
    },

    /// The history a watch needs was discarded by compaction: list again and watch from the
    /// listing's revision.
    #[error(
        "revision {requested} has been compacted (history up to {compacted} is gone); list again"
    )]
    Compacted {
        /// The revision the watch continues after.
        requested: Revision,
        /// The store's compaction revision.
        compacted: Revision,
    },

    /// A revision beyond the current one, where only past revisions make sense.
    #[error("revision {requested} is in the future: the current revision is {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },

    /// The file exists but is not a tabby datastore; it was left untouched.
    #[error("{} is not a tabby datastore, refusing to use it: {reason}", .path.display())]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },

    /// The datastore was written by a newer tabby with a schema this one does not know.
    #[error("{} has datastore schema version {found}, this tabby supports version {supported}", .path.display())]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The schema version this build reads and writes.
        supported: i64,
    },

    /// The datastore cannot be written: its file or directory is read-only. (A datastore in
    /// a read-only directory usually cannot even be read, as SQLite's WAL needs files beside
    /// it, so this comes from opening it.)
    #[error("datastore {} is read-only: tabby needs write access to the file and its directory (check their permissions and the mount)", .path.display())]
    ReadOnly {
        /// The file, or the directory that could not be written.
        path: PathBuf,
    },

    /// An operating-system error on the datastore's file or directory.
    #[error("{}: {message}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's description.
        message: String,
    },

    /// The backend failed (SQLite error, lock timeout, connection loss).
    #[error("datastore {location}: {message}")]
    Backend {
        /// The file or endpoint.
        location: String,
        /// The backend's description.
        message: String,
    },

    /// A datastore URL that cannot be used.
    #[error("invalid datastore url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong, and which forms are accepted.
        reason: String,
    },

    /// An etcd key prefix already holds keys tabby did not write; they were left untouched.
    #[error(
        "{location}: the key prefix {prefix} already holds data that is not tabby's (for example the key {example:?}); refusing to use it: name another prefix, as in etcd://HOST:PORT/tabby-2"
    )]
    ForeignPrefix {
        /// The datastore URL without options.
        location: String,
        /// The prefix.
        prefix: String,
        /// One key found under it.
        example: String,
    },

    /// A backend this build does not contain.
    #[error(
        "the {scheme} datastore backend is not built into this tabby (it was built without the etcd feature); use sqlite:PATH"
    )]
    NotBuilt {
        /// The URL scheme that names the backend.
        scheme: String,
    },
}

fn describe_actual(actual: Option<Revision>) -> String {
    match actual {
        Some(rev) => format!("found {rev}"),
        None => "but it no longer exists".to_owned(),
    }
}

impl StoreError {
    /// The error itself, or for [`StoreError::OpFailed`] the failing op's error: what callers
    /// match on when they retry a commit.
    pub fn root(&self) -> &Self {
        match self {
            Self::OpFailed { error, .. } => error.root(),
            other => other,
        }
    }

    /// Whether retrying after a fresh read may succeed (a compare-and-swap lost a race).
    pub fn is_conflict(&self) -> bool {
        matches!(self.root(), Self::Conflict { .. })
    }
}
