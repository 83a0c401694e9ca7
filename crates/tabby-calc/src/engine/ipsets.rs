//! The IP sets that rules of this host's policies and profiles name, and their members.
//!
//! A set exists while some emitted rule refers to it. Its members are the addresses (or, for
//! named-port sets, address/protocol/port triples) of the endpoints and network sets its
//! selector matches, counted per contributor so that two endpoints sharing an address, or
//! overlapping network sets, never remove a member the other still gives. Changes to sets the
//! dataplane already has are gathered until the next flush, where additions and removals of the
//! same member cancel out.

use crate::engine::fast_hash::{FastMap, FastSet};
use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::label_index::{ItemId, LabelIndex, MatchChange};
use super::labels::LabelSet;
use super::output::{Delta, IpSetId, IpSetMember};
use super::rules::IpSetSpec;
use crate::cluster::NamedPort;

/// What an item puts into the sets that match it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ItemAddrs {
    /// Endpoint addresses as host networks, or a network set's networks.
    pub(crate) nets: Vec<IpNet>,
    /// An endpoint's named ports.
    pub(crate) ports: Vec<NamedPort>,
}

impl ItemAddrs {
    fn members(&self, spec: &IpSetSpec, mut f: impl FnMut(IpSetMember)) {
        match &spec.named_port {
            None => self.nets.iter().for_each(|n| f(IpSetMember::Net(*n))),
            Some(name) => {
                for p in self.ports.iter().filter(|p| p.name == *name) {
                    for net in &self.nets {
                        f(IpSetMember::NetPort {
                            addr: net.addr(),
                            protocol: p.protocol.number(),
                            port: p.port,
                        });
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
struct SetState {
    spec: IpSetSpec,
    refs: u32,
    members: FastMap<IpSetMember, u32>,
    /// Whether the dataplane has been told about it.
    emitted: bool,
}

#[derive(Debug, Default)]
struct Pending {
    added: BTreeSet<IpSetMember>,
    removed: BTreeSet<IpSetMember>,
}

/// All IP sets of the host.
#[derive(Debug, Default)]
pub(crate) struct IpSets {
    sets: FastMap<IpSetId, SetState>,
    index: LabelIndex<IpSetId>,
    items: FastMap<ItemId, ItemAddrs>,
    pending: FastMap<IpSetId, Pending>,
    removed: BTreeSet<IpSetId>,
}

impl SetState {
    fn add(&mut self, m: IpSetMember, pending: &mut FastMap<IpSetId, Pending>, id: &IpSetId) {
        let n = self.members.entry(m).or_insert(0);
        *n += 1;
        if *n == 1 && self.emitted {
            let p = pending.entry(id.clone()).or_default();
            if !p.removed.remove(&m) {
                p.added.insert(m);
            }
        }
    }

    fn remove(&mut self, m: IpSetMember, pending: &mut FastMap<IpSetId, Pending>, id: &IpSetId) {
        let Some(n) = self.members.get_mut(&m) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.members.remove(&m);
            if self.emitted {
                let p = pending.entry(id.clone()).or_default();
                if !p.added.remove(&m) {
                    p.removed.insert(m);
                }
            }
        }
    }
}

impl IpSets {
    /// Adds or changes an endpoint or network set.
    pub(crate) fn upsert_item(&mut self, item: ItemId, labels: LabelSet, addrs: ItemAddrs) {
        let mut changes = Vec::new();
        if self.items.get(&item) == Some(&addrs) {
            self.index.upsert_item(item, labels, &mut changes);
            for c in changes {
                self.contribute(&c.selector, &addrs, c.matched);
            }
            return;
        }
        if let Some(old) = self.items.remove(&item) {
            let before: Vec<IpSetId> = self.index.matched_by(item).cloned().collect();
            for id in &before {
                self.contribute(id, &old, false);
            }
        }
        self.index.upsert_item(item, labels, &mut changes);
        let after: Vec<IpSetId> = self.index.matched_by(item).cloned().collect();
        for id in &after {
            self.contribute(id, &addrs, true);
        }
        self.items.insert(item, addrs);
    }

    /// Removes an endpoint or network set.
    pub(crate) fn remove_item(&mut self, item: ItemId) {
        let Some(old) = self.items.remove(&item) else {
            return;
        };
        let mut changes = Vec::new();
        self.index.remove_item(item, &mut changes);
        for MatchChange { selector, .. } in changes {
            self.contribute(&selector, &old, false);
        }
    }

    fn contribute(&mut self, id: &IpSetId, addrs: &ItemAddrs, add: bool) {
        let Some(set) = self.sets.get_mut(id) else {
            return;
        };
        let pending = &mut self.pending;
        let spec = set.spec.clone();
        addrs.members(&spec, |m| {
            if add {
                set.add(m, pending, id);
            } else {
                set.remove(m, pending, id);
            }
        });
    }

    /// A rule now refers to the set.
    pub(crate) fn add_ref(&mut self, id: &IpSetId, spec: &IpSetSpec) {
        if let Some(set) = self.sets.get_mut(id) {
            set.refs += 1;
            return;
        }
        self.sets.insert(
            id.clone(),
            SetState {
                spec: spec.clone(),
                refs: 1,
                members: FastMap::default(),
                emitted: false,
            },
        );
        let mut changes = Vec::new();
        self.index
            .upsert_selector(id.clone(), spec.selector.clone(), &mut changes);
        for c in changes {
            if let Some(addrs) = self.items.get(&c.item).cloned() {
                self.contribute(id, &addrs, c.matched);
            }
        }
    }

    /// A rule no longer refers to the set.
    pub(crate) fn drop_ref(&mut self, id: &IpSetId) {
        let Some(set) = self.sets.get_mut(id) else {
            return;
        };
        set.refs -= 1;
        if set.refs > 0 {
            return;
        }
        let emitted = set.emitted;
        self.sets.remove(id);
        self.index.remove_selector(id, &mut Vec::new());
        self.pending.remove(id);
        if emitted {
            self.removed.insert(id.clone());
        }
    }

    /// Deltas since the last call: (new sets, member changes, sets to remove last).
    pub(crate) fn take_deltas(&mut self) -> (Vec<Delta>, Vec<Delta>, Vec<Delta>) {
        let mut created = Vec::new();
        let mut ids: Vec<&IpSetId> = self
            .sets
            .iter()
            .filter(|(_, s)| !s.emitted)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let new_ids: Vec<IpSetId> = ids.into_iter().cloned().collect();
        for id in new_ids {
            let set = self.sets.get_mut(&id).expect("listed above");
            set.emitted = true;
            let mut members: Vec<IpSetMember> = set.members.keys().copied().collect();
            members.sort();
            created.push(Delta::IpSetCreated {
                id,
                kind: set.spec.kind(),
                members,
            });
        }
        let mut changed: Vec<(IpSetId, Pending)> = self.pending.drain().collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        let members = changed
            .into_iter()
            .filter(|(_, p)| !p.added.is_empty() || !p.removed.is_empty())
            .map(|(id, p)| Delta::IpSetMembers {
                id,
                added: p.added.into_iter().collect(),
                removed: p.removed.into_iter().collect(),
            })
            .collect();
        // The engine takes every new reference before dropping old ones within a flush, so a
        // set is never removed and re-created in one batch.
        let removed = std::mem::take(&mut self.removed)
            .into_iter()
            .map(Delta::IpSetRemoved)
            .collect();
        (created, members, removed)
    }

    /// Number of sets.
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }

    /// Members of a set, for tests and diagnostics.
    pub(crate) fn members(&self, id: &IpSetId) -> FastSet<IpSetMember> {
        self.sets
            .get(id)
            .map(|s| s.members.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// An address as the host network an IP set holds.
pub(crate) fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}
