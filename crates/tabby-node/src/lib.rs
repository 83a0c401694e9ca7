//! The node agent (`tabby node run`): it wires the datastore, the calc engine and the
//! dataplane together for one host and holds no policy logic of its own.
//!
//! ```text
//! Datastore --list/watch--> Syncer --Update--> Engine --Delta--> Dataplane --> nft, netlink
//!                              |                          |          ^ learned routes
//!                              +--Node/BGP kinds--> Bgp <-+ local routes --> peers
//!                                                                   |
//!                                    Metrics <----------------------+----> /livez /readyz /metrics
//! ```
//!
//! Key types:
//! - [`Syncer`]: lists every resource at one revision, feeds a fresh [`tabby_calc::Engine`],
//!   marks it in sync, then watches from that revision. On [`tabby_store::StoreError::Compacted`]
//!   or a lost datastore it starts over with a fresh engine, whose first flush is the whole
//!   desired state, so nothing is missed or applied twice.
//! - [`Dataplane`]: the deltas into the `inet tabby` table (through [`tabby_dataplane::NftApply`])
//!   and routes to local workloads (through [`tabby_dataplane::Netlink`]); after a resync it
//!   starts from an empty table so the next write is one full, atomic take-over script.
//! - [`agent::run`]: the loop, with backoff on datastore and dataplane failures. While the
//!   datastore is away the kernel keeps the last state written.
//! - [`NodeLock`]: one agent per node name per machine (an `flock` the kernel drops with the
//!   process, so a crashed agent never leaves a stale lock).
//! - [`Metrics`] and [`http::serve`]: health and Prometheus text on a local address, and
//!   `/status` (routing and BGP peers as JSON, [`NodeStatus`]) for `tabby node status`.
//! - [`bgp::Bgp`]: the BGP speaker (`tabby-bgp`) on its own thread, its sessions derived from
//!   Node, BGPConfiguration and BGPPeer resources as Calico does; it originates this node's
//!   workload routes and hands learned routes to the [`Dataplane`], which programs them with
//!   tabby's route protocol in place of datastore-derived remote routes ([`Routing`]).

pub mod agent;
mod backoff;
pub mod bgp;
mod dataplane;
pub mod http;
mod lock;
mod metrics;
mod syncer;
#[cfg(test)]
mod test_support;

pub use crate::agent::{AgentConfig, AgentError};
pub use crate::backoff::Backoff;
pub use crate::bgp::{NodeStatus, Routing};
pub use crate::dataplane::{Dataplane, DataplaneError, RouteCounts};
pub use crate::http::AgentStatus;
pub use crate::lock::{LockError, NodeLock};
pub use crate::metrics::{DatastoreStatus, Metrics};
pub use crate::syncer::{SyncError, Syncer};
