//! Resource operations over a [`Datastore`]: apply, create, replace, delete, get, list and
//! label, with the semantics people expect from kubectl and calicoctl.
//!
//! Every write of several resources is one datastore commit: all of them or none. Writes are
//! compare-and-swap against the revisions read just before, so a concurrent writer can never be
//! overwritten unseen; `apply` and `label` re-read and retry when that happens.
//!
//! This crate sits between `tabby-model` (typed resources, no I/O) and `tabby-store` (opaque
//! keys and values, no schemas); it must not parse command lines or print.

use std::collections::HashMap;
use std::fmt;

use tabby_model::stored::{self, DecodeError};
use tabby_model::{FieldIssue, Kind, Resource, describe};
use tabby_store::{Datastore, Entry, Key, Op, Revision, StoreError};
use tracing::{debug, info_span};

/// How many times `apply` and `label` re-read and retry when a concurrent writer wins a race.
const MAX_ATTEMPTS: usize = 8;

/// What a write does with objects that exist or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create what is missing, update what exists.
    Apply,
    /// Create only; any existing object fails the whole write.
    Create,
    /// Update only; any missing object fails the whole write. A `metadata.resourceVersion` in
    /// the input must match the stored one.
    Replace,
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// It existed with exactly this content; nothing was written.
    Unchanged,
    /// It was deleted.
    Deleted,
    /// Its labels were changed.
    Labeled,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
            Self::Deleted => "deleted",
            Self::Labeled => "labeled",
        })
    }
}

/// The result for one object of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Kind "name"` or `Kind "ns/name"`.
    pub object: String,
    /// What happened (or, in a dry run, would happen).
    pub change: Change,
}

/// Identifies one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace ("" for cluster-scoped kinds).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// Refers to an object; the namespace is ignored for cluster-scoped kinds.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        let namespace = if kind.info().namespaced {
            namespace
        } else {
            ""
        };
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn key(&self) -> Key {
        Key::new(
            self.kind.info().store_name,
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self.kind, &self.namespace, &self.name))
    }
}

/// A change to one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    /// `key=value`.
    Set(String, String),
    /// `key-`.
    Remove(String),
}

/// Why an operation failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The datastore failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `create` of an object that exists.
    #[error("{object} already exists (use apply or replace to change it)")]
    AlreadyExists {
        /// The object.
        object: String,
    },
    /// An object that does not exist.
    #[error("{object} not found")]
    NotFound {
        /// The object.
        object: String,
    },
    /// The stored object changed since the given resourceVersion.
    #[error(
        "{object} has changed since resourceVersion {given} (it is now at {current}): get it again, \
         reapply your change and retry"
    )]
    Conflict {
        /// The object.
        object: String,
        /// The resourceVersion given.
        given: String,
        /// The stored revision.
        current: Revision,
    },
    /// The change would make the object invalid.
    #[error("{object}: {}", render(.issues))]
    Invalid {
        /// The object.
        object: String,
        /// What is wrong.
        issues: Vec<FieldIssue>,
    },
    /// A label change that needs `--overwrite`.
    #[error(
        "{object}: label {key:?} already has the value {current:?} (pass overwrite to change it)"
    )]
    LabelExists {
        /// The object.
        object: String,
        /// The label.
        key: String,
        /// Its current value.
        current: String,
    },
    /// A stored object this version cannot read.
    #[error("{key}: {error}")]
    Undecodable {
        /// Where it is stored.
        key: Key,
        /// Why it cannot be read.
        error: DecodeError,
    },
    /// Other writers kept changing the same objects.
    #[error("gave up after {MAX_ATTEMPTS} attempts: other writers kept changing the same objects")]
    Contended,
    /// Several of the above, for different objects; nothing was written.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<Self>),
}

fn render(issues: &[FieldIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Resource operations over a datastore.
pub struct Client {
    store: Box<dyn Datastore>,
}

impl Client {
    /// Wraps a datastore.
    pub fn new(store: Box<dyn Datastore>) -> Self {
        Self { store }
    }

    /// The datastore underneath.
    pub fn store(&self) -> &dyn Datastore {
        self.store.as_ref()
    }

    /// Writes resources, all or nothing. In a dry run nothing is written and the outcomes say
    /// what would happen.
    pub fn write(
        &self,
        resources: &[Resource],
        mode: WriteMode,
        dry_run: bool,
    ) -> Result<Vec<Outcome>, ClientError> {
        let _span = info_span!("write", ?mode, count = resources.len(), dry_run).entered();
        for attempt in 1..=MAX_ATTEMPTS {
            let (ops, outcomes) = self.plan_write(resources, mode)?;
            if dry_run || ops.is_empty() {
                return Ok(outcomes);
            }
            match self.store.commit(&ops) {
                Ok(revision) => {
                    debug!(revision, ops = ops.len(), "committed");
                    return Ok(outcomes);
                }
                Err(e) if is_race(&e) => {
                    debug!(attempt, error = %e, "lost a race with another writer; planning again");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Contended)
    }

    fn plan_write(
        &self,
        resources: &[Resource],
        mode: WriteMode,
    ) -> Result<(Vec<Op>, Vec<Outcome>), ClientError> {
        let existing = self.current(resources.iter().map(|r| (r.kind(), r.namespace())))?;
        let mut ops = Vec::new();
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for r in resources {
            let form = stored::encode(r);
            let key = Key::new(form.kind, form.namespace, form.name);
            let object = r.describe();
            let current = existing.get(&key);
            let change = match (mode, current) {
                (WriteMode::Create, Some(_)) => {
                    errors.push(ClientError::AlreadyExists { object });
                    continue;
                }
                (WriteMode::Replace, None) => {
                    errors.push(ClientError::NotFound { object });
                    continue;
                }
                (_, None) => {
                    ops.push(Op::Create {
                        key,
                        value: form.json,
                    });
                    Change::Created
                }
                (_, Some(entry)) => {
                    if mode == WriteMode::Replace
                        && let Some(given) = &r.meta().resource_version
                        && given.parse::<Revision>().ok() != Some(entry.mod_revision)
                    {
                        errors.push(ClientError::Conflict {
                            object,
                            given: given.clone(),
                            current: entry.mod_revision,
                        });
                        continue;
                    }
                    if entry.value == form.json {
                        Change::Unchanged
                    } else {
                        ops.push(Op::Update {
                            key,
                            value: form.json,
                            expect: Some(entry.mod_revision),
                        });
                        Change::Configured
                    }
                }
            };
            outcomes.push(Outcome { object, change });
        }
        match errors.len() {
            0 => Ok((ops, outcomes)),
            1 => Err(errors.remove(0)),
            _ => Err(ClientError::Several(errors)),
        }
    }

    /// The stored entries of the kinds and namespaces touched, keyed for lookup. One listing per
    /// (kind, namespace) keeps a 10,000-object apply to a handful of queries.
    fn current<'a>(
        &self,
        touched: impl Iterator<Item = (Kind, &'a str)>,
    ) -> Result<HashMap<Key, Entry>, ClientError> {
        let mut scopes: Vec<(Kind, &str)> = touched.collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut out = HashMap::new();
        for (kind, ns) in scopes {
            let ns = kind.info().namespaced.then_some(ns);
            for e in self.store.list(Some(kind.info().store_name), ns)?.entries {
                out.insert(e.key.clone(), e);
            }
        }
        Ok(out)
    }

    /// Deletes objects, all or nothing. Missing objects fail the whole delete unless
    /// `ignore_missing` is set, in which case they are skipped.
    pub fn delete(
        &self,
        objects: &[ObjectRef],
        ignore_missing: bool,
        dry_run: bool,
    ) -> Result<Vec<Outcome>, ClientError> {
        let _span = info_span!("delete", count = objects.len(), dry_run).entered();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut ops = Vec::new();
            let mut outcomes = Vec::new();
            let mut missing = Vec::new();
            for obj in objects {
                match self.store.get(&obj.key())? {
                    Some(entry) => {
                        ops.push(Op::Delete {
                            key: entry.key,
                            expect: Some(entry.mod_revision),
                        });
                        outcomes.push(Outcome {
                            object: obj.to_string(),
                            change: Change::Deleted,
                        });
                    }
                    None if ignore_missing => {}
                    None => missing.push(ClientError::NotFound {
                        object: obj.to_string(),
                    }),
                }
            }
            match missing.len() {
                0 => {}
                1 => return Err(missing.remove(0)),
                _ => return Err(ClientError::Several(missing)),
            }
            if dry_run || ops.is_empty() {
                return Ok(outcomes);
            }
            match self.store.commit(&ops) {
                Ok(_) => return Ok(outcomes),
                Err(e) if is_race(&e) => debug!(attempt, error = %e, "lost a race; retrying"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Contended)
    }

    /// One object, if it exists.
    pub fn get(&self, object: &ObjectRef) -> Result<Option<Resource>, ClientError> {
        self.store
            .get(&object.key())?
            .map(|e| decode(&e))
            .transpose()
    }

    /// Every object of a kind, in one namespace or (None) all of them, sorted by namespace and
    /// name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Resource>, ClientError> {
        let ns = if kind.info().namespaced {
            namespace
        } else {
            None
        };
        let listing = self.store.list(Some(kind.info().store_name), ns)?;
        listing.entries.iter().map(decode).collect()
    }

    /// Changes labels of one object, compare-and-swap, retrying if someone else wrote it.
    pub fn label(
        &self,
        object: &ObjectRef,
        changes: &[LabelChange],
        overwrite: bool,
    ) -> Result<Outcome, ClientError> {
        let _span = info_span!("label", %object).entered();
        for attempt in 1..=MAX_ATTEMPTS {
            let entry = self
                .store
                .get(&object.key())?
                .ok_or_else(|| ClientError::NotFound {
                    object: object.to_string(),
                })?;
            let mut resource = decode(&entry)?;
            let labels = &mut resource.meta_mut().labels;
            let before = labels.clone();
            for change in changes {
                match change {
                    LabelChange::Set(k, v) => {
                        if let Some(current) = labels.get(k)
                            && current != v
                            && !overwrite
                        {
                            return Err(ClientError::LabelExists {
                                object: object.to_string(),
                                key: k.clone(),
                                current: current.clone(),
                            });
                        }
                        labels.insert(k.clone(), v.clone());
                    }
                    LabelChange::Remove(k) => {
                        labels.remove(k);
                    }
                }
            }
            if *labels == before {
                return Ok(Outcome {
                    object: object.to_string(),
                    change: Change::Unchanged,
                });
            }
            let (errors, _) = resource.check();
            if !errors.is_empty() {
                return Err(ClientError::Invalid {
                    object: object.to_string(),
                    issues: errors,
                });
            }
            let form = stored::encode(&resource);
            match self
                .store
                .update(&entry.key, &form.json, Some(entry.mod_revision))
            {
                Ok(_) => {
                    return Ok(Outcome {
                        object: object.to_string(),
                        change: Change::Labeled,
                    });
                }
                Err(e) if is_race(&e) => debug!(attempt, "lost a race; retrying"),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Contended)
    }
}

fn decode(entry: &Entry) -> Result<Resource, ClientError> {
    stored::decode(&entry.key.kind, &entry.value, entry.mod_revision).map_err(|error| {
        ClientError::Undecodable {
            key: entry.key.clone(),
            error,
        }
    })
}

/// Whether a failed commit lost a race (someone else wrote in between), so planning again from
/// fresh reads may succeed.
fn is_race(e: &StoreError) -> bool {
    matches!(
        e.root(),
        StoreError::Conflict { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
    )
}

#[cfg(test)]
mod tests;
