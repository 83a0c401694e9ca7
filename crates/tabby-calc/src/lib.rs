//! Policy calculation: from resources to what each endpoint's policy is.
//!
//! Today this crate holds the reference evaluator behind `tabby policy matrix` and `tabby
//! policy explain`: [`Cluster`] gathers the policy-relevant state from resources (applying
//! Calico's conventions: implicit labels, `kns.`/`ksa.` profiles, the default tier, Kubernetes
//! NetworkPolicy conversion), and [`evaluate`] answers whether a connection is allowed and which
//! tier, policy and rule decided. The incremental per-host engine will be tested against it.
//!
//! It must not do I/O or read clocks.

mod cluster;
mod compile;
mod engine;
mod evaluate;

pub use crate::cluster::{
    Cluster, Endpoint, EndpointId, LABEL_NAME, LABEL_NAMESPACE, LABEL_ORCHESTRATOR,
    LABEL_SERVICE_ACCOUNT, NamedPort, NetworkSetInfo, ProfileInfo, TierInfo,
};
pub use crate::compile::{CompiledEntity, CompiledPolicy, CompiledRule, NamespaceScope};
pub use crate::engine::{
    Delta, EndpointOut, EntityOut, IcmpMatch, IpSetId, IpSetKind, IpSetMember, PolicyId,
    PolicyOut, PortRange, ProfileOut, RouteOut, RouteTarget, RuleOut, TierOut,
};
pub use crate::evaluate::{
    Decision, DirectionVerdict, Matrix, Peer, Query, RuleRef, Verdict, evaluate, matrix,
};
