//! What the Adj-RIB-Out of a neighbour gets: the export rules (iBGP split horizon, route
//! reflection per RFC 4456, well-known communities) and the attribute rewriting eBGP, iBGP and
//! reflection each require.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::SpeakerConfig;
use crate::rib::{Best, DEFAULT_LOCAL_PREF, PeerInfo, Source, family_of};
use crate::wire::{Family, attr_flag};

#[cfg(test)]
mod tests;

/// RFC 1997 well-known communities.
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
/// Do not advertise to any peer.
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
/// Do not advertise outside the confederation sub-AS (handled as NO_EXPORT: no confederations).
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// The neighbour a route is exported to.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub(crate) addr: IpAddr,
    pub(crate) ibgp: bool,
    pub(crate) rr_client: bool,
    pub(crate) next_hop_self: bool,
    /// Pass learned next hops on unchanged to this eBGP neighbour too.
    pub(crate) next_hop_keep: bool,
    /// Subnets we share with the neighbour: a learned next hop in one is kept for eBGP.
    pub(crate) shared_subnets: &'a [IpNet],
    /// Our address for each family on this session (from the connection or configuration).
    pub(crate) self_v4: Option<Ipv4Addr>,
    pub(crate) self_v6: Option<Ipv6Addr>,
    pub(crate) families: &'a [Family],
}

/// A route as advertised to one neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Exported {
    pub(crate) attrs: Arc<crate::wire::PathAttrs>,
    pub(crate) next_hop: IpAddr,
}

/// Decides whether `best` goes to `to` and with which attributes. `from` describes the
/// neighbour the route was learned from (`None` for local routes).
pub(crate) fn export(
    prefix: &IpNet,
    best: &Best,
    from: Option<PeerInfo>,
    to: &Target<'_>,
    me: &SpeakerConfig,
) -> Option<Exported> {
    if !to.families.contains(&family_of(prefix)) {
        return None;
    }
    if best.source == Source::Peer(to.addr) {
        // Never back to where it came from (the neighbour has it; reflection excludes the
        // originating client too).
        return None;
    }
    let comms = &best.attrs.communities;
    if comms.contains(&NO_ADVERTISE) {
        return None;
    }
    if !to.ibgp && (comms.contains(&NO_EXPORT) || comms.contains(&NO_EXPORT_SUBCONFED)) {
        return None;
    }
    // iBGP split horizon (RFC 4271 9.2) and its relaxation on a reflector (RFC 4456 6).
    let from_ibgp = from.is_some_and(|f| !f.ebgp);
    let reflecting = from_ibgp && to.ibgp;
    if reflecting {
        let from_client = from.is_some_and(|f| f.rr_client);
        if me.cluster_id.is_none() || (!from_client && !to.rr_client) {
            return None;
        }
    }

    let mut attrs = (*best.attrs).clone();
    // Unrecognised transitive attributes we pass on get the Partial bit (RFC 4271 5).
    for raw in &mut attrs.unknown {
        raw.flags |= attr_flag::PARTIAL;
    }
    let self_nh = match prefix {
        IpNet::V4(_) => to.self_v4.map(IpAddr::V4),
        IpNet::V6(_) => to.self_v6.map(IpAddr::V6),
    };
    let next_hop = if to.ibgp {
        attrs.local_pref = Some(attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        if reflecting {
            // RFC 4456 8: the reflector records the originator and its cluster; the path
            // attributes and next hop are otherwise unchanged.
            if attrs.originator_id.is_none() {
                attrs.originator_id = from.map(|f| f.router_id);
            }
            let cluster = me.cluster_id.unwrap_or(me.router_id);
            attrs.cluster_list.insert(0, cluster);
            best.next_hop?
        } else if best.source == Source::Local || to.next_hop_self {
            self_nh?
        } else {
            best.next_hop?
        }
    } else {
        attrs
            .as_path
            .get_or_insert_with(Default::default)
            .prepend(me.asn);
        attrs.local_pref = None;
        // MED is not passed to other ASes (RFC 4271 5.1.4); reflection attributes stay inside
        // the AS (RFC 4456 8).
        if best.source != Source::Local {
            attrs.med = None;
        }
        attrs.originator_id = None;
        attrs.cluster_list.clear();
        // RFC 4271 5.1.3: a next hop on the neighbour's own subnet is passed on (a third-party
        // next hop, BIRD's default too), so that it sends the traffic straight to the host of
        // the route, not through us (which would make the flow asymmetric).
        let third_party = best.next_hop.filter(|nh| {
            best.source != Source::Local
                && !to.next_hop_self
                && (to.next_hop_keep || to.shared_subnets.iter().any(|n| n.contains(nh)))
        });
        match third_party {
            Some(nh) => nh,
            None => self_nh?,
        }
    };
    attrs.next_hop = None;
    if attrs.origin.is_none() {
        attrs.origin = Some(crate::wire::Origin::Igp);
    }
    if attrs.as_path.is_none() {
        attrs.as_path = Some(Default::default());
    }
    Some(Exported {
        attrs: Arc::new(attrs),
        next_hop,
    })
}
