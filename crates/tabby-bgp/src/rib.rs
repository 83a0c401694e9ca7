//! Routing information bases: Adj-RIB-In per neighbour, locally originated routes, and the
//! Loc-RIB with best-path selection (RFC 4271 9.1, RFC 4456 9 for reflected routes).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::wire::{Family, PathAttrs};

mod intern;
#[cfg(test)]
mod tests;

pub(crate) use intern::Interner;

/// LOCAL_PREF assumed when a route has none (RFC 4271 leaves it to policy; BIRD, FRR and
/// GoBGP use 100).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A route held in an Adj-RIB-In.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteIn {
    pub(crate) attrs: Arc<PathAttrs>,
    pub(crate) next_hop: IpAddr,
    /// Kept across the neighbour's restart (RFC 4724), until refreshed or purged.
    pub(crate) stale: bool,
}

/// Where a Loc-RIB route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Originated by this speaker.
    Local,
    /// Learned from the neighbour at this address.
    Peer(IpAddr),
}

/// What best-path selection needs to know about a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    pub(crate) ebgp: bool,
    pub(crate) router_id: Ipv4Addr,
    pub(crate) rr_client: bool,
}

/// The best route to a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Best {
    pub(crate) source: Source,
    pub(crate) attrs: Arc<PathAttrs>,
    /// `None` for local routes (the next hop is ourselves, per session).
    pub(crate) next_hop: Option<IpAddr>,
}

/// One candidate for selection.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub(crate) peer: IpAddr,
    pub(crate) route: &'a RouteIn,
    pub(crate) info: PeerInfo,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        self.route.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }

    fn path_len(&self) -> usize {
        self.route.attrs.as_path.as_ref().map_or(0, |p| p.len())
    }

    fn neighbour_as(&self) -> Option<u32> {
        self.route.attrs.as_path.as_ref().and_then(|p| p.first_as())
    }

    /// RFC 4456 9: a reflected route compares by its ORIGINATOR_ID.
    fn router_id(&self) -> u32 {
        u32::from(
            self.route
                .attrs
                .originator_id
                .unwrap_or(self.info.router_id),
        )
    }
}

/// Keeps only the candidates that are best by `key` (lowest wins).
fn keep_min<'a, K: Ord>(cands: &mut Vec<Candidate<'a>>, key: impl Fn(&Candidate<'a>) -> K) {
    if let Some(min) = cands.iter().map(&key).min() {
        cands.retain(|c| key(c) == min);
    }
}

/// RFC 4271 9.1.2.2 as an elimination: each step keeps only the candidates that tie for best,
/// which makes the non-transitive MED rule deterministic (independent of arrival order).
pub(crate) fn select<'a>(mut cands: Vec<Candidate<'a>>) -> Option<Candidate<'a>> {
    keep_min(&mut cands, |c| std::cmp::Reverse(c.local_pref()));
    keep_min(&mut cands, Candidate::path_len);
    keep_min(&mut cands, |c| c.route.attrs.origin.unwrap_or_default());
    // MED: a route loses to one from the same neighbouring AS with a lower MED (a missing MED
    // is the lowest value, RFC 4271 9.1.2.2 c).
    let snapshot: Vec<(Option<u32>, u32)> = cands
        .iter()
        .map(|c| (c.neighbour_as(), c.route.attrs.med.unwrap_or(0)))
        .collect();
    cands.retain(|c| {
        let (asn, med) = (c.neighbour_as(), c.route.attrs.med.unwrap_or(0));
        !snapshot.iter().any(|&(a, m)| a == asn && m < med)
    });
    keep_min(&mut cands, |c| !c.info.ebgp);
    keep_min(&mut cands, Candidate::router_id);
    keep_min(&mut cands, |c| c.route.attrs.cluster_list.len());
    keep_min(&mut cands, |c| c.peer);
    cands.into_iter().next()
}

/// Family of a prefix.
pub(crate) fn family_of(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::IPV4_UNICAST,
        IpNet::V6(_) => Family::IPV6_UNICAST,
    }
}

/// The RIBs.
#[derive(Debug, Default)]
pub(crate) struct Rib {
    adj_in: BTreeMap<IpAddr, HashMap<IpNet, RouteIn>>,
    info: HashMap<IpAddr, PeerInfo>,
    local: BTreeMap<IpNet, Arc<PathAttrs>>,
    loc: HashMap<IpNet, Best>,
}

impl Rib {
    pub(crate) fn set_info(&mut self, peer: IpAddr, info: PeerInfo) {
        self.info.insert(peer, info);
    }

    pub(crate) fn info(&self, peer: &IpAddr) -> Option<PeerInfo> {
        self.info.get(peer).copied()
    }

    /// Sets or removes a neighbour's route; returns whether anything changed.
    pub(crate) fn set_in(&mut self, peer: IpAddr, prefix: IpNet, route: Option<RouteIn>) -> bool {
        let table = self.adj_in.entry(peer).or_default();
        match route {
            Some(r) => table.insert(prefix, r.clone()) != Some(r),
            None => table.remove(&prefix).is_some(),
        }
    }

    pub(crate) fn adj_in_len(&self, peer: &IpAddr) -> usize {
        self.adj_in.get(peer).map_or(0, HashMap::len)
    }

    pub(crate) fn stale_len(&self, peer: &IpAddr) -> usize {
        self.adj_in
            .get(peer)
            .map_or(0, |t| t.values().filter(|r| r.stale).count())
    }

    /// Removes a neighbour's routes (all, or those of one family, or only stale ones);
    /// returns the prefixes removed.
    pub(crate) fn remove_in(
        &mut self,
        peer: &IpAddr,
        family: Option<Family>,
        stale_only: bool,
    ) -> Vec<IpNet> {
        let Some(table) = self.adj_in.get_mut(peer) else {
            return Vec::new();
        };
        let gone: Vec<IpNet> = table
            .iter()
            .filter(|(p, r)| (!stale_only || r.stale) && family.is_none_or(|f| family_of(p) == f))
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            table.remove(p);
        }
        gone
    }

    /// Marks every route of a neighbour stale (its session dropped, RFC 4724 4.2).
    pub(crate) fn mark_stale(&mut self, peer: &IpAddr) {
        if let Some(table) = self.adj_in.get_mut(peer) {
            for r in table.values_mut() {
                r.stale = true;
            }
        }
    }

    /// Sets or removes a locally originated route; returns whether anything changed.
    pub(crate) fn set_local(&mut self, prefix: IpNet, attrs: Option<Arc<PathAttrs>>) -> bool {
        match attrs {
            Some(a) => self.local.insert(prefix, a.clone()) != Some(a),
            None => self.local.remove(&prefix).is_some(),
        }
    }

    pub(crate) fn local_prefixes(&self) -> impl Iterator<Item = &IpNet> {
        self.local.keys()
    }

    #[cfg(test)]
    pub(crate) fn local_attrs(&self) -> impl Iterator<Item = &Arc<PathAttrs>> {
        self.local.values()
    }

    /// Re-runs selection for a prefix; returns the old and new best when they differ.
    pub(crate) fn reselect(&mut self, prefix: IpNet) -> Option<(Option<Best>, Option<Best>)> {
        let new = if let Some(attrs) = self.local.get(&prefix) {
            // Our own blocks always win: a node is the authority for where its workloads are.
            Some(Best {
                source: Source::Local,
                attrs: attrs.clone(),
                next_hop: None,
            })
        } else {
            let cands: Vec<Candidate<'_>> = self
                .adj_in
                .iter()
                .filter_map(|(peer, table)| {
                    let route = table.get(&prefix)?;
                    let info = self.info.get(peer).copied()?;
                    Some(Candidate {
                        peer: *peer,
                        route,
                        info,
                    })
                })
                .collect();
            select(cands).map(|c| Best {
                source: Source::Peer(c.peer),
                attrs: c.route.attrs.clone(),
                next_hop: Some(c.route.next_hop),
            })
        };
        let old = match &new {
            Some(b) => self.loc.insert(prefix, b.clone()),
            None => self.loc.remove(&prefix),
        };
        (old != new).then_some((old, new))
    }

    pub(crate) fn best(&self, prefix: &IpNet) -> Option<&Best> {
        self.loc.get(prefix)
    }

    pub(crate) fn loc_rib(&self) -> impl Iterator<Item = (&IpNet, &Best)> {
        self.loc.iter()
    }
}
