//! A host's state as a dataplane holds it, built by applying the engine's deltas in order.
//!
//! It checks the ordering contract on every delta (nothing is named before it exists, nothing
//! is removed while named, no member is added twice or removed when absent), and it can judge a
//! packet the way the dataplane's chains must. Tests use it as the engine's consumer; it is
//! also the in-memory stand-in for a dataplane.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tabby_model::policy::{Action, PolicyType};

use crate::cluster::EndpointId;
use crate::engine::{
    Delta, EndpointOut, EntityOut, IcmpMatch, IpSetId, IpSetKind, IpSetMember, PolicyId, PolicyOut,
    ProfileOut, RouteTarget, RuleOut,
};

/// A delta that breaks the ordering contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{delta}: {reason}")]
pub struct IntegrityError {
    /// The delta, briefly.
    pub delta: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The first packet of a connection, as a dataplane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (TCP, UDP, SCTP).
    pub src_port: Option<u16>,
    /// Destination port (TCP, UDP, SCTP).
    pub dst_port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, Option<u8>)>,
}

/// An IP set as held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSet {
    /// What it holds.
    pub kind: IpSetKind,
    /// Its members.
    pub members: BTreeSet<IpSetMember>,
}

/// Everything a dataplane holds for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// IP sets.
    pub ip_sets: BTreeMap<IpSetId, HeldSet>,
    /// Policies.
    pub policies: BTreeMap<PolicyId, Arc<PolicyOut>>,
    /// Profiles.
    pub profiles: BTreeMap<String, Arc<ProfileOut>>,
    /// Local endpoints.
    pub endpoints: BTreeMap<EndpointId, Arc<EndpointOut>>,
    /// Routes.
    pub routes: BTreeMap<IpNet, RouteTarget>,
}

fn rules_name_sets<'a>(rules: impl IntoIterator<Item = &'a RuleOut>) -> BTreeSet<&'a IpSetId> {
    rules
        .into_iter()
        .flat_map(|r| r.source.ip_set_ids().chain(r.destination.ip_set_ids()))
        .collect()
}

impl HostState {
    /// Applies deltas in order, stopping at the first that breaks the contract.
    pub fn apply_all<'a>(
        &mut self,
        deltas: impl IntoIterator<Item = &'a Delta>,
    ) -> Result<(), IntegrityError> {
        deltas.into_iter().try_for_each(|d| self.apply(d))
    }

    /// Applies one delta.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), IntegrityError> {
        let fail = |reason: String| {
            Err(IntegrityError {
                delta: brief(delta),
                reason,
            })
        };
        match delta {
            Delta::IpSetCreated { id, kind, members } => {
                if self.ip_sets.contains_key(id) {
                    return fail("the set exists already".into());
                }
                self.ip_sets.insert(
                    id.clone(),
                    HeldSet {
                        kind: *kind,
                        members: members.iter().copied().collect(),
                    },
                );
            }
            Delta::IpSetMembers { id, added, removed } => {
                let Some(set) = self.ip_sets.get_mut(id) else {
                    return fail("no such set".into());
                };
                for m in removed {
                    if !set.members.remove(m) {
                        return fail(format!("removes {m:?}, which it does not hold"));
                    }
                }
                for m in added {
                    if !set.members.insert(*m) {
                        return fail(format!("adds {m:?}, which it holds already"));
                    }
                }
            }
            Delta::IpSetRemoved(id) => {
                if self.set_users(id) > 0 {
                    return fail("a policy or profile still names it".into());
                }
                if self.ip_sets.remove(id).is_none() {
                    return fail("no such set".into());
                }
            }
            Delta::PolicyUpdated(p) => {
                if let Some(missing) = self.missing_set(p.ingress.iter().chain(&p.egress)) {
                    return fail(format!("names set {missing} before it exists"));
                }
                self.policies.insert(p.id.clone(), p.clone());
            }
            Delta::ProfileUpdated(p) => {
                if let Some(missing) = self.missing_set(p.ingress.iter().chain(&p.egress)) {
                    return fail(format!("names set {missing} before it exists"));
                }
                self.profiles.insert(p.name.clone(), p.clone());
            }
            Delta::EndpointUpdated(e) => {
                for t in &e.tiers {
                    for p in t.ingress.iter().chain(&t.egress) {
                        if !self.policies.contains_key(p) {
                            return fail(format!("names {p} before it exists"));
                        }
                    }
                }
                for p in &e.profiles {
                    if !self.profiles.contains_key(p) {
                        return fail(format!("names profile {p:?} before it exists"));
                    }
                }
                self.endpoints.insert(e.id.clone(), e.clone());
            }
            Delta::RouteUpdated(r) => {
                if let RouteTarget::Local { interface } = &r.target
                    && !self.endpoints.values().any(|e| e.interface == *interface)
                {
                    return fail(format!("routes to {interface} before its endpoint exists"));
                }
                self.routes.insert(r.dst, r.target.clone());
            }
            Delta::RouteRemoved(dst) => {
                if self.routes.remove(dst).is_none() {
                    return fail("no such route".into());
                }
            }
            Delta::EndpointRemoved(id) => {
                let Some(e) = self.endpoints.remove(id) else {
                    return fail("no such endpoint".into());
                };
                let routed = self.routes.values().any(|t| {
                    matches!(t, RouteTarget::Local { interface } if *interface == e.interface)
                        && !self.endpoints.values().any(|o| o.interface == e.interface)
                });
                if routed {
                    return fail("a route still sends traffic to it".into());
                }
            }
            Delta::ProfileRemoved(name) => {
                if self.endpoints.values().any(|e| e.profiles.contains(name)) {
                    return fail("an endpoint still names it".into());
                }
                if self.profiles.remove(name).is_none() {
                    return fail("no such profile".into());
                }
            }
            Delta::PolicyRemoved(id) => {
                let named = self.endpoints.values().any(|e| {
                    e.tiers
                        .iter()
                        .any(|t| t.ingress.contains(id) || t.egress.contains(id))
                });
                if named {
                    return fail("an endpoint still names it".into());
                }
                if self.policies.remove(id).is_none() {
                    return fail("no such policy".into());
                }
            }
        }
        Ok(())
    }

    fn missing_set<'a>(&self, rules: impl IntoIterator<Item = &'a RuleOut>) -> Option<IpSetId> {
        rules_name_sets(rules)
            .into_iter()
            .find(|id| !self.ip_sets.contains_key(*id))
            .cloned()
    }

    fn set_users(&self, id: &IpSetId) -> usize {
        let in_policies = self
            .policies
            .values()
            .filter(|p| rules_name_sets(p.ingress.iter().chain(&p.egress)).contains(id))
            .count();
        let in_profiles = self
            .profiles
            .values()
            .filter(|p| rules_name_sets(p.ingress.iter().chain(&p.egress)).contains(id))
            .count();
        in_policies + in_profiles
    }

    /// Whether the endpoint's policy lets the packet through in one direction (egress: the
    /// endpoint sends it; ingress: it receives it). `None` when the endpoint is not here.
    pub fn allows(&self, endpoint: &EndpointId, dir: PolicyType, pkt: &Packet) -> Option<bool> {
        let ep = self.endpoints.get(endpoint)?;
        Some(self.judge(ep, dir, pkt))
    }

    fn judge(&self, ep: &EndpointOut, dir: PolicyType, pkt: &Packet) -> bool {
        'tiers: for tier in &ep.tiers {
            let list = tier.policies(dir);
            if list.is_empty() {
                continue;
            }
            for id in list {
                let Some(p) = self.policies.get(id) else {
                    return false;
                };
                for r in p.rules(dir).iter().filter(|r| self.rule_matches(r, pkt)) {
                    match r.action {
                        Action::Allow => return true,
                        Action::Deny => return false,
                        Action::Pass => continue 'tiers,
                        Action::Log => {}
                    }
                }
            }
            if tier.default_action != Action::Pass {
                return false;
            }
        }
        for name in &ep.profiles {
            let Some(p) = self.profiles.get(name) else {
                return false;
            };
            for r in p.rules(dir).iter().filter(|r| self.rule_matches(r, pkt)) {
                match r.action {
                    Action::Allow => return true,
                    Action::Deny => return false,
                    Action::Pass => break,
                    Action::Log => {}
                }
            }
        }
        false
    }

    fn rule_matches(&self, r: &RuleOut, pkt: &Packet) -> bool {
        let icmp_matches = |m: &IcmpMatch| {
            pkt.icmp.is_some_and(|(t, c)| {
                m.icmp_type.is_none_or(|mt| mt == t) && m.code.is_none_or(|mc| Some(mc) == c)
            })
        };
        let version = if pkt.dst.is_ipv4() { 4 } else { 6 };
        r.protocol.is_none_or(|p| p == pkt.protocol)
            && r.not_protocol != Some(pkt.protocol)
            && r.ip_version.is_none_or(|v| v == version)
            && r.icmp.as_ref().is_none_or(icmp_matches)
            && !r.not_icmp.as_ref().is_some_and(icmp_matches)
            && self.entity_matches(&r.source, pkt.src, pkt.src_port, pkt.protocol)
            && self.entity_matches(&r.destination, pkt.dst, pkt.dst_port, pkt.protocol)
    }

    fn in_set(&self, id: &IpSetId, addr: IpAddr) -> bool {
        self.ip_sets.get(id).is_some_and(|s| {
            s.members
                .iter()
                .any(|m| matches!(m, IpSetMember::Net(n) if n.contains(&addr)))
        })
    }

    fn in_port_set(&self, id: &IpSetId, addr: IpAddr, protocol: u8, port: u16) -> bool {
        self.ip_sets.get(id).is_some_and(|s| {
            s.members.contains(&IpSetMember::NetPort {
                addr,
                protocol,
                port,
            })
        })
    }

    fn entity_matches(&self, e: &EntityOut, addr: IpAddr, port: Option<u16>, protocol: u8) -> bool {
        if !e.nets.is_empty() && !e.nets.iter().any(|n| n.contains(&addr)) {
            return false;
        }
        if e.not_nets.iter().any(|n| n.contains(&addr)) {
            return false;
        }
        if !e.ip_sets.iter().all(|id| self.in_set(id, addr)) {
            return false;
        }
        if e.not_ip_sets.iter().any(|id| self.in_set(id, addr)) {
            return false;
        }
        if !e.ports.is_empty() || !e.named_port_sets.is_empty() {
            let Some(p) = port else {
                return false;
            };
            let ok = e.ports.iter().any(|r| (r.first..=r.last).contains(&p))
                || e.named_port_sets
                    .iter()
                    .any(|id| self.in_port_set(id, addr, protocol, p));
            if !ok {
                return false;
            }
        }
        if let Some(p) = port {
            if e.not_ports.iter().any(|r| (r.first..=r.last).contains(&p)) {
                return false;
            }
            if e.not_named_port_sets
                .iter()
                .any(|id| self.in_port_set(id, addr, protocol, p))
            {
                return false;
            }
        }
        true
    }
}

fn brief(d: &Delta) -> String {
    match d {
        Delta::IpSetCreated { id, .. } => format!("create set {id}"),
        Delta::IpSetMembers { id, .. } => format!("change members of set {id}"),
        Delta::IpSetRemoved(id) => format!("remove set {id}"),
        Delta::PolicyUpdated(p) => format!("update {}", p.id),
        Delta::ProfileUpdated(p) => format!("update profile {:?}", p.name),
        Delta::EndpointUpdated(e) => format!("update endpoint {}", e.id),
        Delta::RouteUpdated(r) => format!("update route {}", r.dst),
        Delta::RouteRemoved(dst) => format!("remove route {dst}"),
        Delta::EndpointRemoved(id) => format!("remove endpoint {id}"),
        Delta::ProfileRemoved(name) => format!("remove profile {name:?}"),
        Delta::PolicyRemoved(id) => format!("remove {id}"),
    }
}
