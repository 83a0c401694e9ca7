//! What the engine hands to the dataplane: IP sets, policies, profiles, local endpoints and
//! routes, as ordered deltas.
//!
//! The order is the contract: on the way in, IP sets before the policies whose rules name them,
//! policies and profiles before the endpoints that list them, endpoints before the routes that
//! send traffic to them; on the way out the reverse. A dataplane that applies deltas in order
//! never refers to something it has not been told about.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tabby_model::Kind;
use tabby_model::policy::{Action, PolicyType};

use crate::cluster::EndpointId;

/// Names an IP set. `s:` + the selector's ID for a set of addresses (Calico's naming), `n:` +
/// an ID of selector, protocol and port name for a named-port set.
pub type IpSetId = Arc<str>;

/// What an IP set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpSetKind {
    /// Networks and addresses ([`IpSetMember::Net`]).
    Nets,
    /// Address, protocol and port triples ([`IpSetMember::NetPort`]), for named ports.
    NetPorts,
}

/// One element of an IP set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpSetMember {
    /// An endpoint's address (as a /32 or /128) or a network set's network.
    Net(IpNet),
    /// An endpoint address that serves a named port.
    NetPort {
        /// The endpoint's address.
        addr: IpAddr,
        /// IP protocol number (6, 17, 132, ...).
        protocol: u8,
        /// The port number the name resolves to on this endpoint.
        port: u16,
    },
}

/// Names a policy: its kind, namespace ("" for global kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// GlobalNetworkPolicy, NetworkPolicy or (Kubernetes) NetworkPolicy.
    pub kind: Kind,
    /// Namespace, "" when global.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&tabby_model::describe(
            self.kind,
            &self.namespace,
            &self.name,
        ))
    }
}

/// An inclusive port range (a single port has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

/// ICMP type and code to match (either may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code (only with a type).
    pub code: Option<u8>,
}

/// The source or destination half of a rule. Every non-empty field must hold for a packet to
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EntityOut {
    /// The address is in one of these networks.
    pub nets: Vec<IpNet>,
    /// The address is in none of these networks.
    pub not_nets: Vec<IpNet>,
    /// The address is in every one of these sets (of kind [`IpSetKind::Nets`]).
    pub ip_sets: Vec<IpSetId>,
    /// The address is in none of these sets.
    pub not_ip_sets: Vec<IpSetId>,
    /// Ports: the port is in one of `ports`, or (address, protocol, port) is in one of
    /// `named_port_sets`. Both empty: any port.
    pub ports: Vec<PortRange>,
    /// Named-port sets (kind [`IpSetKind::NetPorts`]), ORed with `ports`.
    pub named_port_sets: Vec<IpSetId>,
    /// The port is in none of these ranges.
    pub not_ports: Vec<PortRange>,
    /// (address, protocol, port) is in none of these sets.
    pub not_named_port_sets: Vec<IpSetId>,
}

impl EntityOut {
    /// Every IP set this half refers to.
    pub fn ip_set_ids(&self) -> impl Iterator<Item = &IpSetId> {
        self.ip_sets
            .iter()
            .chain(&self.not_ip_sets)
            .chain(&self.named_port_sets)
            .chain(&self.not_named_port_sets)
    }
}

/// One rule of a policy or profile, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOut {
    /// Index of the rule in its direction's list as written (for counters and comments; rules
    /// that can never match, such as `services` matches, are left out, so indexes may skip).
    pub index: usize,
    /// Allow, Deny, Pass or Log.
    pub action: Action,
    /// 4 or 6: only packets of that IP version match.
    pub ip_version: Option<u8>,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// IP protocol number that must not match.
    pub not_protocol: Option<u8>,
    /// ICMP type/code (the rule's protocol is ICMP or ICMPv6).
    pub icmp: Option<IcmpMatch>,
    /// ICMP type/code that must not match.
    pub not_icmp: Option<IcmpMatch>,
    /// Source half.
    pub source: EntityOut,
    /// Destination half.
    pub destination: EntityOut,
}

/// A policy that applies to at least one local endpoint, with its rules in dataplane form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyOut {
    /// Which policy.
    pub id: PolicyId,
    /// Its tier.
    pub tier: String,
    /// Ingress rules (empty when the policy does not govern ingress).
    pub ingress: Vec<RuleOut>,
    /// Egress rules (empty when the policy does not govern egress).
    pub egress: Vec<RuleOut>,
}

impl PolicyOut {
    /// The rules of one direction.
    pub fn rules(&self, dir: PolicyType) -> &[RuleOut] {
        match dir {
            PolicyType::Ingress => &self.ingress,
            PolicyType::Egress => &self.egress,
        }
    }
}

/// A profile that a local endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileOut {
    /// Name (`kns.<namespace>`, `ksa.<namespace>.<sa>` or a Profile resource's name).
    pub name: String,
    /// Ingress rules.
    pub ingress: Vec<RuleOut>,
    /// Egress rules.
    pub egress: Vec<RuleOut>,
}

impl ProfileOut {
    /// The rules of one direction.
    pub fn rules(&self, dir: PolicyType) -> &[RuleOut] {
        match dir {
            PolicyType::Ingress => &self.ingress,
            PolicyType::Egress => &self.egress,
        }
    }
}

/// One tier as it applies to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TierOut {
    /// Tier name.
    pub name: String,
    /// What happens when no policy of the tier decides (Deny or Pass). Applies to a direction
    /// only when that direction's list is not empty; a tier with an empty list is skipped.
    pub default_action: Action,
    /// Policies governing ingress, in evaluation order.
    pub ingress: Vec<PolicyId>,
    /// Policies governing egress, in evaluation order.
    pub egress: Vec<PolicyId>,
}

impl TierOut {
    /// The policies of one direction, in order.
    pub fn policies(&self, dir: PolicyType) -> &[PolicyId] {
        match dir {
            PolicyType::Ingress => &self.ingress,
            PolicyType::Egress => &self.egress,
        }
    }
}

/// A workload endpoint on this host with everything its chains need.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointOut {
    /// `namespace/name`.
    pub id: EndpointId,
    /// Host-side interface name.
    pub interface: String,
    /// Its addresses (/32, /128): also the only source addresses it may send from.
    pub ips: Vec<IpNet>,
    /// Tiers in evaluation order; only tiers with at least one policy for the endpoint.
    pub tiers: Vec<TierOut>,
    /// Profiles in order, applied when no tier decided. Ends before the first profile that
    /// does not exist (see `missing_profile`): what follows is denied.
    pub profiles: Vec<String>,
    /// The first profile the endpoint names that does not exist; traffic that reaches it is
    /// denied (fail closed).
    pub missing_profile: Option<String>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// A workload on this host, through its interface.
    Local {
        /// Host-side interface of the workload.
        interface: String,
    },
    /// A workload on another host, through that host's address.
    Remote {
        /// The other node.
        node: String,
        /// Its address.
        via: IpAddr,
    },
}

/// A route this host needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteOut {
    /// Destination.
    pub dst: IpNet,
    /// Where to.
    pub target: RouteTarget,
}

/// One change for the dataplane. See the module header for the order they come in.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// A new IP set with its members.
    IpSetCreated {
        /// Its name.
        id: IpSetId,
        /// What it holds.
        kind: IpSetKind,
        /// Its members, sorted.
        members: Vec<IpSetMember>,
    },
    /// Members of an existing set changed.
    IpSetMembers {
        /// The set.
        id: IpSetId,
        /// New members, sorted.
        added: Vec<IpSetMember>,
        /// Members gone, sorted.
        removed: Vec<IpSetMember>,
    },
    /// A policy was added or changed.
    PolicyUpdated(Arc<PolicyOut>),
    /// A profile was added or changed.
    ProfileUpdated(Arc<ProfileOut>),
    /// A local endpoint was added or changed.
    EndpointUpdated(Arc<EndpointOut>),
    /// A route was added or changed.
    RouteUpdated(RouteOut),
    /// A route is no longer needed.
    RouteRemoved(IpNet),
    /// A local endpoint is gone.
    EndpointRemoved(EndpointId),
    /// No local endpoint uses the profile any more.
    ProfileRemoved(String),
    /// No local endpoint uses the policy any more.
    PolicyRemoved(PolicyId),
    /// No rule refers to the set any more.
    IpSetRemoved(IpSetId),
}
