//! From the datastore to the calc engine: a snapshot at one revision, then the watch from it.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tabby_calc::{Delta, Engine, ResourceKey, Update};
use tabby_model::Kind;
use tabby_model::stored::{self, DecodeError};
use tabby_store::{Datastore, Event, Revision, StoreError, Watch, WatchFilter};

use crate::bgp::BgpInputs;

/// The most events taken into one engine flush: bounds the latency of a burst.
const MAX_BATCH: usize = 1000;

/// Why the syncer has to start over.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The watch's history was compacted away: list again.
    #[error("watch history after revision {revision} was compacted; listing again")]
    Compacted {
        /// The revision the watch had reached.
        revision: Revision,
    },
    /// The datastore failed (unreachable, closed, corrupt).
    #[error("datastore: {error}")]
    Store {
        /// What the store said.
        #[source]
        error: StoreError,
    },
    /// [`Syncer::poll`] before a successful [`Syncer::resync`].
    #[error("not synced yet")]
    NotSynced,
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> Self {
        Self::Store { error }
    }
}

/// Feeds one host's [`Engine`] from a [`Datastore`].
pub struct Syncer {
    store: Arc<dyn Datastore>,
    host: String,
    engine: Engine,
    watch: Option<Box<dyn Watch>>,
    revision: Revision,
    /// Stored objects this version could not decode, since the start.
    undecodable: u64,
    /// Nodes, BGPConfigurations, BGPPeers and block affinities, which the BGP speaker reads
    /// (the engine does not).
    bgp: BgpInputs,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("host", &self.host)
            .field("revision", &self.revision)
            .field("watching", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    /// A syncer for host `host`; nothing is read until [`Syncer::resync`].
    pub fn new(store: Arc<dyn Datastore>, host: impl Into<String>) -> Self {
        let host = host.into();
        Self {
            store,
            engine: Engine::new(host.clone()),
            host,
            watch: None,
            revision: 0,
            undecodable: 0,
            bgp: BgpInputs::default(),
        }
    }

    /// Lists everything, feeds it to a fresh engine, marks it in sync and starts watching from
    /// the listing's revision. Returns the whole desired state as deltas from nothing: the
    /// caller applies them to an empty dataplane (a take-over), never on top of the old one.
    ///
    /// On failure the old engine and watch are gone, so the caller must call this again.
    pub fn resync(&mut self) -> Result<Vec<Delta>, SyncError> {
        let _span = tracing::info_span!("resync", node = %self.host).entered();
        self.watch = None;
        let listing = self.store.list(None, None)?;
        let mut engine = Engine::new(self.host.clone());
        let mut bgp = BgpInputs::default();
        for entry in &listing.entries {
            // IPAM records are not resources the engine knows; BGP reads block affinities.
            if bgp.upsert_ipam(entry) {
                continue;
            }
            match stored::decode(&entry.key.kind, &entry.value, entry.mod_revision) {
                Ok(r) => {
                    bgp.upsert(&r);
                    engine.apply(Update::upsert(r));
                }
                Err(err) => self.skip(&entry.key, &err),
            }
        }
        engine.set_in_sync();
        let deltas = engine.flush();
        // Watch before replacing the engine: if the watch cannot start, the caller retries
        // the whole resync rather than running an engine nobody feeds.
        let watch = self.store.watch(listing.revision, WatchFilter::default())?;
        self.engine = engine;
        // Generations keep growing across resyncs, so a reader never misses the swap.
        bgp.bump_past(self.bgp.generation());
        self.bgp = bgp;
        self.watch = Some(watch);
        self.revision = listing.revision;
        tracing::info!(
            revision = listing.revision,
            objects = listing.entries.len(),
            deltas = deltas.len(),
            "in sync"
        );
        Ok(deltas)
    }

    /// Waits up to `timeout` for changes, takes every change already waiting (up to a batch),
    /// and returns the engine's deltas for them (empty when nothing came or nothing this host
    /// cares about changed).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Delta>, SyncError> {
        let watch = self.watch.as_mut().ok_or(SyncError::NotSynced)?;
        let mut events = Vec::new();
        let mut wait = timeout;
        while events.len() < MAX_BATCH {
            match watch.next(wait) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => {
                    self.watch = None;
                    return Err(match err {
                        StoreError::Compacted { .. } => SyncError::Compacted {
                            revision: self.revision,
                        },
                        error => SyncError::Store { error },
                    });
                }
            }
            // After the first event, only what is already there joins the batch.
            wait = Duration::ZERO;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        for event in events {
            self.revision = event.revision();
            self.feed(event);
        }
        Ok(self.engine.flush())
    }

    fn feed(&mut self, event: Event) {
        match event {
            Event::Put { entry, .. } => {
                if self.bgp.upsert_ipam(&entry) {
                    return;
                }
                match stored::decode(&entry.key.kind, &entry.value, entry.mod_revision) {
                    Ok(r) => {
                        self.bgp.upsert(&r);
                        self.engine.apply(Update::upsert(r));
                    }
                    Err(err) => self.skip(&entry.key, &err),
                }
            }
            Event::Delete { key, .. } => {
                if self.bgp.remove_ipam(&key) {
                    return;
                }
                // Kinds this version does not know were never fed, so there is nothing to remove.
                if let Some(kind) = Kind::from_store_name(&key.kind) {
                    self.bgp.remove_key(kind, &key.namespace, &key.name);
                    self.engine.apply(Update::Remove(ResourceKey {
                        kind,
                        namespace: key.namespace,
                        name: key.name,
                    }));
                }
            }
        }
    }

    fn skip(&mut self, key: &tabby_store::Key, err: &DecodeError) {
        // A kind from a newer version is not ours to judge; a broken object of a known kind
        // is, and is counted, but it cannot be enforced either way.
        if matches!(err, DecodeError::UnknownKind(_)) {
            tracing::debug!(%key, "skipping a kind this version does not know");
        } else {
            self.undecodable += 1;
            tracing::warn!(%key, error = %err, "skipping a stored object that cannot be decoded");
        }
    }

    /// The engine, for counts and notes.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The resources BGP reads.
    pub fn bgp_inputs(&self) -> &BgpInputs {
        &self.bgp
    }

    /// The last revision handled.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Why the running watch cannot reach the datastore now (it retries and resumes where it
    /// stopped); `None` while it can, or when there is no watch.
    pub fn disconnected(&self) -> Option<StoreError> {
        self.watch.as_ref().and_then(|w| w.disconnected())
    }

    /// Whether a snapshot was loaded and the watch is running.
    pub fn is_synced(&self) -> bool {
        self.watch.is_some()
    }

    /// Stored objects skipped because they could not be decoded.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }
}
