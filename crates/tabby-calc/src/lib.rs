//! Policy calculation: from resources to what each endpoint's policy is.
//!
//! - [`Engine`]: the incremental per-host engine. Fed a snapshot, an in-sync mark and updates
//!   for one host, it emits ordered [`Delta`]s: IP sets and their members, policies and
//!   profiles whose rules name those sets, each local endpoint's tiers and profiles, and
//!   routes. Only what touches the host's endpoints is expanded.
//! - [`Cluster`] and [`evaluate`]: the reference evaluator behind `tabby policy matrix` and
//!   `tabby policy explain`, a deliberately plain reading of Calico's semantics that answers
//!   whether a connection is allowed and which tier, policy and rule decided. It is the oracle
//!   the engine is tested against.
//! - [`HostState`]: the engine's deltas applied in order, with the ordering contract checked
//!   and packets judged as a dataplane must; the in-memory stand-in for a dataplane.
//!
//! Both the engine and the evaluator apply Calico's conventions: implicit labels,
//! `kns.`/`ksa.` profiles and the `pcns.`/`pcsa.` labels endpoints inherit from them, the
//! default tier, Kubernetes NetworkPolicy conversion, and failing closed on anything missing
//! or broken.
//!
//! It must not do I/O or read clocks.

mod cluster;
mod compile;
mod engine;
mod evaluate;
mod host_state;

pub use crate::cluster::{
    Cluster, Endpoint, EndpointId, LABEL_NAME, LABEL_NAMESPACE, LABEL_ORCHESTRATOR,
    LABEL_SERVICE_ACCOUNT, NamedPort, NetworkSetInfo, ProfileInfo, TierInfo,
};
pub use crate::compile::{CompiledEntity, CompiledPolicy, CompiledRule, NamespaceScope};
pub use crate::engine::{
    Delta, EndpointOut, Engine, EngineStats, EntityOut, IcmpMatch, IpSetId, IpSetKind, IpSetMember,
    PolicyId, PolicyOut, PortRange, ProfileOut, ResourceKey, RouteOut, RouteTarget, RuleOut,
    TierOut, Update,
};
pub use crate::evaluate::{
    Decision, DirectionVerdict, Matrix, Peer, Query, RuleRef, Verdict, evaluate, matrix,
};
pub use crate::host_state::{HeldSet, HostState, IntegrityError, Packet};
