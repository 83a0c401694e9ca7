//! Builders for hand-made calc deltas, shared by the golden and the real-traffic tests.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tabby_calc::{
    Delta, EndpointId, EndpointOut, EntityOut, IpSetId, IpSetKind, IpSetMember, PolicyId,
    PolicyOut, PortRange, ProfileOut, RuleOut, TierOut,
};
use tabby_model::Kind;
use tabby_model::policy::Action;

pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().expect("test networks are valid")
}

pub(crate) fn host(s: &str) -> IpSetMember {
    IpSetMember::Net(net(s))
}

pub(crate) fn set_id(s: &str) -> IpSetId {
    Arc::from(s)
}

pub(crate) fn set(id: &str, members: &[&str]) -> Delta {
    Delta::IpSetCreated {
        id: set_id(id),
        kind: IpSetKind::Nets,
        members: members.iter().map(|m| host(m)).collect(),
    }
}

pub(crate) fn named_port_set(id: &str, members: &[(&str, u8, u16)]) -> Delta {
    Delta::IpSetCreated {
        id: set_id(id),
        kind: IpSetKind::NetPorts,
        members: members
            .iter()
            .map(|(a, protocol, port)| IpSetMember::NetPort {
                addr: a.parse::<IpAddr>().expect("valid address"),
                protocol: *protocol,
                port: *port,
            })
            .collect(),
    }
}

pub(crate) fn gnp(name: &str) -> PolicyId {
    PolicyId {
        kind: Kind::GlobalNetworkPolicy,
        namespace: String::new(),
        name: name.to_owned(),
    }
}

pub(crate) fn np(namespace: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: Kind::NetworkPolicy,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

pub(crate) fn rule(index: usize, action: Action) -> RuleOut {
    RuleOut {
        index,
        action,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: EntityOut::default(),
        destination: EntityOut::default(),
    }
}

pub(crate) fn ports(list: &[u16]) -> Vec<PortRange> {
    list.iter()
        .map(|p| PortRange {
            first: *p,
            last: *p,
        })
        .collect()
}

/// A rule: `action` for `protocol` from the members of `from_set` to `port`.
pub(crate) fn from_set_to_port(
    index: usize,
    action: Action,
    protocol: u8,
    from_set: &str,
    port: u16,
) -> RuleOut {
    let mut r = rule(index, action);
    r.protocol = Some(protocol);
    r.source.ip_sets = vec![set_id(from_set)];
    r.destination.ports = ports(&[port]);
    r
}

pub(crate) fn policy(
    id: PolicyId,
    tier: &str,
    ingress: Vec<RuleOut>,
    egress: Vec<RuleOut>,
) -> Delta {
    Delta::PolicyUpdated(Arc::new(PolicyOut {
        id,
        tier: tier.to_owned(),
        ingress,
        egress,
    }))
}

pub(crate) fn profile(name: &str, ingress: Vec<RuleOut>, egress: Vec<RuleOut>) -> Delta {
    Delta::ProfileUpdated(Arc::new(ProfileOut {
        name: name.to_owned(),
        ingress,
        egress,
    }))
}

pub(crate) fn tier(name: &str, ingress: Vec<PolicyId>, egress: Vec<PolicyId>) -> TierOut {
    TierOut {
        name: name.to_owned(),
        default_action: Action::Deny,
        ingress,
        egress,
    }
}

pub(crate) fn ep_id(namespace: &str, name: &str) -> EndpointId {
    EndpointId {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

pub(crate) fn endpoint(
    namespace: &str,
    name: &str,
    interface: &str,
    ips: &[&str],
    tiers: Vec<TierOut>,
    profiles: &[&str],
) -> Delta {
    Delta::EndpointUpdated(Arc::new(EndpointOut {
        id: ep_id(namespace, name),
        interface: interface.to_owned(),
        ips: ips.iter().map(|i| net(i)).collect(),
        tiers,
        profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
        missing_profile: None,
    }))
}
