//! Block IPAM over the datastore, Calico's design: IP pools are cut into blocks (/26 and /122
//! by default, per pool `blockSize`); a node claims blocks (affinity) and hands out their
//! addresses; when its blocks are full and it may claim no more, it borrows a free address
//! from another node's block unless strict affinity forbids it. Each container interface
//! holds its addresses under a handle, so a release frees exactly what an assignment took;
//! each allocation carries the block's sequence number, so a late release cannot free an
//! address that has been handed out again. IPReservations, disabled pools, `nodeSelector`,
//! `namespaceSelector`, `allowedUses` and `assignmentMode` are honoured.
//!
//! Every write is one datastore commit that compares the revisions it read (the block, the
//! handle) and is retried from a fresh read when another writer got there first: many CNI
//! processes on one host and many hosts share one datastore with no lock of their own. A claim
//! creates the block and its affinity in the same commit, so two nodes can never both win one
//! block.
//!
//! This crate only reads and writes the datastore; it must not touch the kernel (the CNI
//! plugin and the agent program addresses and routes).
//!
//! Key types: [`Ipam`] (assign, release, usage, check), [`records`] (the stored forms and
//! their keys), [`IpamError`].

mod assign;
mod error;
mod pools;
pub mod records;
mod release;
mod report;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tabby_store::{Datastore, Entry, Op, StoreError};

pub use crate::assign::{AssignIpRequest, AssignRequest, Assigned, Planned};
pub use crate::error::IpamError;
pub use crate::release::Released;
pub use crate::report::{BlockUsage, CheckReport, IpInfo, Leak, PoolUsage, Usage};

/// Allocation attribute: when it was made, in Unix seconds (set by the CNI plugin).
pub const ATTR_TIMESTAMP: &str = "timestamp";

/// How long an allocation whose endpoint is missing counts as an ADD still in flight rather
/// than a leak (`check`). The CNI plugin writes allocation and record in one commit except
/// when it lost a race for the address; then the record follows within milliseconds.
pub const LEAK_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Compare-and-swap attempts before giving up, as Calico's `datastoreRetries`.
pub const RETRIES: u32 = 100;

/// The IPAM, over a datastore it is handed.
#[derive(Clone, Copy)]
pub struct Ipam<'a> {
    store: &'a dyn Datastore,
}

impl std::fmt::Debug for Ipam<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipam").finish_non_exhaustive()
    }
}

/// One try of a compare-and-swap loop.
enum Attempt<T> {
    Done(T),
    Raced,
}

impl<'a> Ipam<'a> {
    /// The IPAM over `store`.
    pub fn new(store: &'a dyn Datastore) -> Self {
        Self { store }
    }

    /// The datastore.
    pub fn store(&self) -> &'a dyn Datastore {
        self.store
    }

    /// Runs `attempt` until it is done, fails, or has raced [`RETRIES`] times.
    fn retry<T>(
        &self,
        what: impl Fn() -> String,
        mut attempt: impl FnMut() -> Result<Attempt<T>, IpamError>,
    ) -> Result<T, IpamError> {
        for n in 1..=RETRIES {
            match attempt()? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Raced => {
                    tracing::debug!(attempt = n, what = %what(), "lost a race; retrying")
                }
            }
        }
        Err(IpamError::Contended {
            what: what(),
            attempts: RETRIES,
        })
    }

    /// Commits `ops`; a lost compare-and-swap (or a create that found the object, or an
    /// update that found it gone) is a race to retry, not an error.
    fn commit<T>(&self, ops: &[Op], done: T) -> Result<Attempt<T>, IpamError> {
        match self.store.commit(ops) {
            Ok(_) => Ok(Attempt::Done(done)),
            Err(e) if raced(&e) => Ok(Attempt::Raced),
            Err(e) => Err(e.into()),
        }
    }
}

fn raced(e: &StoreError) -> bool {
    matches!(
        e.root(),
        StoreError::Conflict { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
    )
}

/// Decodes a stored record.
fn decode<T: DeserializeOwned>(e: &Entry) -> Result<T, IpamError> {
    serde_json::from_str(&e.value).map_err(|err| IpamError::Corrupt {
        key: e.key.clone(),
        reason: err.to_string(),
    })
}

/// Encodes a record (plain data with string keys: cannot fail).
fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
