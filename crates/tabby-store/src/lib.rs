//! The datastore: the [`Datastore`] trait that every other part of tabby reads and writes
//! resources through, and its backends.
//!
//! This crate owns keys, revisions, compare-and-swap, all-or-nothing commits, ordered watches
//! and compaction. It must not know about policy or resource schemas: a value is opaque JSON
//! text, and the only structure the store sees is the [`Key`] (kind, namespace, name).
//!
//! Key types:
//! - [`Datastore`]: get, list, create, update-if-revision, delete, [`Datastore::commit`] of
//!   several [`Op`]s as one revision, [`Datastore::watch`] from a revision, compaction.
//! - [`Watch`]: the ordered stream of [`Event`]s after a revision; it reports
//!   [`StoreError::Compacted`] when that history is gone, so the caller re-lists.
//! - [`open`] turns a URL into a backend: `sqlite:PATH` ([`sqlite::SqliteStore`], one file
//!   shared by many processes on one machine) or `etcd://HOST:PORT,...[/PREFIX]` and
//!   `etcds://` (`etcd::EtcdStore`, feature `etcd`, on by default: one etcd cluster shared
//!   by many machines). `etcd::server` runs etcd members for tests and the lab.
//! - `conformance` (feature `test-util`): the behaviour every backend must show, written
//!   against the trait so that the etcd backend runs the same suite.

mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod sqlite;
mod url;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

pub use crate::error::StoreError;
pub use crate::url::{default_url, open};

/// A store-wide revision. Every write gets a higher one than all writes before it; several
/// writes committed together share one. `0` means "nothing written yet".
///
/// Revisions increase strictly but need not be consecutive: a shared etcd cluster also
/// counts writes that are not ours.
pub type Revision = i64;

/// Identifies one stored object.
///
/// Keys order by kind, then namespace, then name; listings come in that order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The resource kind, for example `NetworkPolicy`. Never empty.
    pub kind: String,
    /// The namespace, or `""` for a cluster-scoped object.
    pub namespace: String,
    /// The object's name. Never empty.
    pub name: String,
}

impl Key {
    /// Builds a key; pass `""` as the namespace of a cluster-scoped object.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Why the store refuses this key, if it does: an empty kind or name cannot be addressed
    /// by every backend.
    pub(crate) fn invalid_reason(&self) -> Option<&'static str> {
        if self.kind.is_empty() {
            Some("the kind is empty")
        } else if self.name.is_empty() {
            Some("the name is empty")
        } else {
            None
        }
    }
}

impl fmt::Display for Key {
    /// `NetworkPolicy default/allow-web`, or `IPPool pool1` when cluster-scoped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A stored object with the revisions that created and last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the object is stored.
    pub key: Key,
    /// The object, as JSON text the store does not interpret.
    pub value: String,
    /// The revision that created the object (kept by later updates).
    pub create_revision: Revision,
    /// The revision of the last write to the object: what compare-and-swap compares.
    pub mod_revision: Revision,
}

/// The result of [`Datastore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The matching objects, sorted by key.
    pub entries: Vec<Entry>,
    /// The store revision the listing reflects: `watch(revision, ..)` continues from exactly
    /// this state, with no gap and no repeat.
    pub revision: Revision,
}

/// One write in a [`Datastore::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create an object; fails with [`StoreError::AlreadyExists`] if it exists.
    Create {
        /// The object to create.
        key: Key,
        /// Its JSON text.
        value: String,
    },
    /// Replace an existing object; fails with [`StoreError::NotFound`], or with
    /// [`StoreError::Conflict`] when `expect` is not its current `mod_revision`.
    Update {
        /// The object to replace.
        key: Key,
        /// Its new JSON text.
        value: String,
        /// The `mod_revision` the object must still have, or `None` for any.
        expect: Option<Revision>,
    },
    /// Create or overwrite, unconditionally.
    Put {
        /// The object to write.
        key: Key,
        /// Its JSON text.
        value: String,
    },
    /// Remove an object; fails like [`Op::Update`].
    Delete {
        /// The object to remove.
        key: Key,
        /// The `mod_revision` the object must still have, or `None` for any.
        expect: Option<Revision>,
    },
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &Key {
        match self {
            Self::Create { key, .. }
            | Self::Update { key, .. }
            | Self::Put { key, .. }
            | Self::Delete { key, .. } => key,
        }
    }
}

/// One change delivered by a [`Watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An object was created or modified.
    Put {
        /// The object as written; its `mod_revision` is the event's revision.
        entry: Entry,
        /// The object before this write, or `None` when the write created it.
        prev: Option<Entry>,
    },
    /// An object was removed.
    Delete {
        /// The removed object's key.
        key: Key,
        /// The revision of the removal.
        revision: Revision,
        /// The object as it was just before the removal.
        prev: Entry,
    },
}

impl Event {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        match self {
            Self::Put { entry, .. } => entry.mod_revision,
            Self::Delete { revision, .. } => *revision,
        }
    }

    /// The key of the object that changed.
    pub fn key(&self) -> &Key {
        match self {
            Self::Put { entry, .. } => &entry.key,
            Self::Delete { key, .. } => key,
        }
    }
}

/// Which changes a [`Watch`] delivers. The default delivers everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Only this kind, or every kind.
    pub kind: Option<String>,
    /// Only this namespace (`""` is cluster-scoped objects), or every namespace.
    pub namespace: Option<String>,
}

impl WatchFilter {
    /// Whether a change to `key` passes the filter.
    pub fn matches(&self, key: &Key) -> bool {
        self.kind.as_deref().is_none_or(|k| k == key.kind)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == key.namespace)
    }
}

/// One op as its own commit, failing with the op's own error rather than
/// [`StoreError::OpFailed`] (the single-object calls of [`Datastore`]).
fn commit_one<S: Datastore + ?Sized>(store: &S, op: Op) -> Result<Revision, StoreError> {
    store
        .commit(std::slice::from_ref(&op))
        .map_err(|err| match err {
            StoreError::OpFailed { error, .. } => *error,
            other => other,
        })
}

/// A store of opaque JSON values under typed keys, with revisions, compare-and-swap and
/// ordered watches.
///
/// The shape follows etcd's v3 API (revisions, a transaction that compares before it writes,
/// watch from a revision, compaction) so that an etcd backend implements it directly.
pub trait Datastore: Send + Sync {
    /// The object under `key`, if any.
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError>;

    /// Every object of `kind` (or of every kind) in `namespace` (or in every namespace;
    /// `Some("")` selects cluster-scoped objects), sorted by key, with the revision the
    /// listing reflects.
    fn list(&self, kind: Option<&str>, namespace: Option<&str>) -> Result<Listing, StoreError>;

    /// Creates an object; [`StoreError::AlreadyExists`] if it exists.
    fn create(&self, key: &Key, value: &str) -> Result<Revision, StoreError> {
        commit_one(
            self,
            Op::Create {
                key: key.clone(),
                value: value.to_owned(),
            },
        )
    }

    /// Replaces an object, only if its `mod_revision` is `expect` when given.
    ///
    /// [`StoreError::NotFound`] if it does not exist and `expect` is `None`;
    /// [`StoreError::Conflict`] if `expect` does not match, including when the object is gone
    /// (`actual: None`).
    fn update(
        &self,
        key: &Key,
        value: &str,
        expect: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        commit_one(
            self,
            Op::Update {
                key: key.clone(),
                value: value.to_owned(),
                expect,
            },
        )
    }

    /// Removes an object, only if its `mod_revision` is `expect` when given; fails like
    /// [`Datastore::update`].
    fn delete(&self, key: &Key, expect: Option<Revision>) -> Result<Revision, StoreError> {
        commit_one(
            self,
            Op::Delete {
                key: key.clone(),
                expect,
            },
        )
    }

    /// Applies all ops or none, as one revision (like an etcd transaction).
    ///
    /// On failure nothing is written and the error is [`StoreError::OpFailed`] with the index
    /// of the failing op. Two ops on one key are refused ([`StoreError::DuplicateKey`]), as
    /// etcd refuses them. An empty commit writes nothing and returns the current revision.
    fn commit(&self, ops: &[Op]) -> Result<Revision, StoreError>;

    /// Every change with a revision above `after` that passes `filter`, in order, with no
    /// gap; the events of one commit share a revision and come in op order.
    ///
    /// `after` may be `0` (from the beginning), a [`Listing::revision`], or the revision of
    /// the last event the caller handled. If that history has been compacted, the watch's
    /// [`Watch::next`] returns [`StoreError::Compacted`].
    fn watch(&self, after: Revision, filter: WatchFilter) -> Result<Box<dyn Watch>, StoreError>;

    /// Discards the history of revisions up to and including `up_to`; watches from before it
    /// then fail with [`StoreError::Compacted`]. Current objects are kept. Compacting to a
    /// revision at or below an earlier compaction does nothing;
    /// [`StoreError::FutureRevision`] if `up_to` is above the current revision.
    fn compact(&self, up_to: Revision) -> Result<(), StoreError>;

    /// The current store revision: that of the last write, or `0` before any.
    fn revision(&self) -> Result<Revision, StoreError>;
}

/// An ordered stream of changes, from [`Datastore::watch`].
pub trait Watch: Send {
    /// The next event, waiting up to `timeout`; `Ok(None)` if none came in time.
    ///
    /// [`StoreError::Compacted`] when the history this watch still has to deliver was
    /// compacted away (the caller must re-list and watch again); the watch stays failed.
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, StoreError>;

    /// Why the watch cannot reach its datastore right now, while it keeps retrying (it
    /// resumes after the last event it delivered once it can); `None` while connected.
    /// Backends that cannot lose their datastore (a local file) never report one.
    fn disconnected(&self) -> Option<StoreError> {
        None
    }
}

/// Refuses ops no backend can commit (unaddressable or repeated keys), before any backend
/// work; the error names the op.
pub(crate) fn validate_ops(ops: &[Op]) -> Result<(), StoreError> {
    let mut seen = HashSet::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let key = op.key();
        let error = if let Some(reason) = key.invalid_reason() {
            StoreError::InvalidKey {
                key: key.clone(),
                reason: reason.to_owned(),
            }
        } else if !seen.insert(key) {
            StoreError::DuplicateKey { key: key.clone() }
        } else {
            continue;
        };
        return Err(StoreError::OpFailed {
            index,
            error: Box::new(error),
        });
    }
    Ok(())
}
