//! The incremental per-host engine: fed a snapshot, an in-sync mark and then updates, it emits
//! ordered [`Delta`]s for one host.

mod output;

pub use self::output::{
    Delta, EndpointOut, EntityOut, IcmpMatch, IpSetId, IpSetKind, IpSetMember, PolicyId,
    PolicyOut, PortRange, ProfileOut, RouteOut, RouteTarget, RuleOut, TierOut,
};
