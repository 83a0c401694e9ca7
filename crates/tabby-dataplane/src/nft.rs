//! The desired `inet tabby` table, built by applying the calc engine's deltas in order, and the
//! `nft -f` scripts that bring the kernel to it: a full one (start-up, take-over, recovery) and
//! incremental ones (only what changed since the last successful write).

mod batch;
pub mod names;
mod render;
mod script;
mod sets;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tabby_calc::{Delta, EndpointId, EndpointOut, IpSetId, PolicyId, PolicyOut, ProfileOut};

use crate::apply::{NftApply, NftError};
use names::{Direction, Family, SetPart};
pub use render::{EndpointToHost, MARK_ACCEPT, MARK_PASS};
use render::{Known, Owner, SetInfo};
use sets::IpSet;

/// How the table is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// What happens to workload traffic to the host once its egress policy allowed it.
    pub endpoint_to_host: EndpointToHost,
}

/// One nft set as desired: its declaration (`{ type ...; }`) and elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NftSet {
    pub(crate) decl: String,
    pub(crate) elements: BTreeSet<String>,
}

/// Element changes of one set not yet written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ElementOps {
    pub(crate) add: BTreeSet<String>,
    pub(crate) delete: BTreeSet<String>,
}

/// What the kernel holds (as far as tabby wrote it; it is never read back).
#[derive(Debug, Clone, Default)]
pub(crate) struct Written {
    /// Set name -> declaration (elements are tracked as pending operations instead, so a large
    /// set is not copied on every write).
    pub(crate) sets: BTreeMap<String, String>,
    pub(crate) chains: BTreeMap<String, Vec<String>>,
    pub(crate) from_wl: BTreeMap<String, String>,
    pub(crate) to_wl: BTreeMap<String, String>,
}

/// Names touched since the last write.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dirty {
    pub(crate) sets: BTreeSet<String>,
    pub(crate) chains: BTreeSet<String>,
    pub(crate) from_wl: BTreeSet<String>,
    pub(crate) to_wl: BTreeSet<String>,
}

/// A script to hand to `nft -f -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The text.
    pub text: String,
    /// Whether it replaces the whole table (else it changes what the last write left).
    pub full: bool,
    /// Whether it went to the kernel as an nfnetlink element batch instead of through `nft`
    /// (the text is then what `nft` would have been given).
    pub netlink: bool,
}

/// The table tabby wants, and what it last wrote.
#[derive(Debug, Default)]
pub struct NftTable {
    config: Config,
    ipsets: BTreeMap<IpSetId, IpSet>,
    policies: BTreeMap<PolicyId, Arc<PolicyOut>>,
    profiles: BTreeMap<String, Arc<ProfileOut>>,
    endpoints: BTreeMap<EndpointId, Arc<EndpointOut>>,
    /// Desired nft objects.
    sets: BTreeMap<String, NftSet>,
    chains: BTreeMap<String, Vec<String>>,
    from_wl: BTreeMap<String, String>,
    to_wl: BTreeMap<String, String>,
    /// `None` until a full script succeeded, and again after a failed write.
    written: Option<Written>,
    dirty: Dirty,
    pending: BTreeMap<String, ElementOps>,
    /// Sets that left the desired table since the last write (their pending element changes
    /// went with them): if they come back, the write empties them and adds every element.
    resets: BTreeSet<String>,
}

struct KnownIn<'a> {
    policies: &'a BTreeMap<PolicyId, Arc<PolicyOut>>,
    profiles: &'a BTreeMap<String, Arc<ProfileOut>>,
}

impl Known for KnownIn<'_> {
    fn policy(&self, id: &PolicyId) -> bool {
        self.policies.contains_key(id)
    }

    fn profile(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }
}

fn rules_of<'a>(
    ingress: &'a [tabby_calc::RuleOut],
    egress: &'a [tabby_calc::RuleOut],
    dir: Direction,
) -> &'a [tabby_calc::RuleOut] {
    match dir {
        Direction::Ingress => ingress,
        Direction::Egress => egress,
    }
}

fn refers_to(rules: &[tabby_calc::RuleOut], id: &IpSetId) -> bool {
    rules.iter().any(|r| {
        r.source.ip_set_ids().any(|s| s == id) || r.destination.ip_set_ids().any(|s| s == id)
    })
}

impl NftTable {
    /// An empty table: its first script is a full one.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Applies one delta to the desired table. Route deltas are not nftables' business and are
    /// ignored here.
    pub fn apply(&mut self, delta: &Delta) {
        match delta {
            Delta::IpSetCreated { id, kind, members } => {
                let old_info = self.ipsets.get(id).map(IpSet::info);
                self.ipsets
                    .insert(id.clone(), IpSet::new(*kind, members.iter().copied()));
                self.sync_ipset(id);
                if old_info != self.ipsets.get(id).map(IpSet::info) {
                    self.rerender_users_of(id);
                }
            }
            Delta::IpSetMembers { id, added, removed } => self.ipset_members(id, added, removed),
            Delta::IpSetRemoved(id) => {
                if self.ipsets.remove(id).is_some() {
                    self.sync_ipset(id);
                    self.rerender_users_of(id);
                }
            }
            Delta::PolicyUpdated(p) => {
                let new = !self.policies.contains_key(&p.id);
                self.policies.insert(p.id.clone(), p.clone());
                self.render_policy(&p.id);
                if new {
                    self.rerender_endpoints(|ep| {
                        ep.tiers
                            .iter()
                            .any(|t| t.ingress.contains(&p.id) || t.egress.contains(&p.id))
                    });
                }
            }
            Delta::PolicyRemoved(id) => {
                if self.policies.remove(id).is_some() {
                    for dir in Direction::ALL {
                        self.remove_chain(&names::policy_chain(id, dir));
                    }
                    self.rerender_endpoints(|ep| {
                        ep.tiers
                            .iter()
                            .any(|t| t.ingress.contains(id) || t.egress.contains(id))
                    });
                }
            }
            Delta::ProfileUpdated(p) => {
                let new = !self.profiles.contains_key(&p.name);
                self.profiles.insert(p.name.clone(), p.clone());
                self.render_profile(&p.name);
                if new {
                    self.rerender_endpoints(|ep| ep.profiles.contains(&p.name));
                }
            }
            Delta::ProfileRemoved(name) => {
                if self.profiles.remove(name).is_some() {
                    for dir in Direction::ALL {
                        self.remove_chain(&names::profile_chain(name, dir));
                    }
                    self.rerender_endpoints(|ep| ep.profiles.contains(name));
                }
            }
            Delta::EndpointUpdated(ep) => {
                if let Some(old) = self.endpoints.insert(ep.id.clone(), ep.clone())
                    && old.interface != ep.interface
                {
                    self.remove_endpoint_objects(&old.interface);
                }
                self.render_endpoint(ep);
            }
            Delta::EndpointRemoved(id) => {
                if let Some(old) = self.endpoints.remove(id) {
                    self.remove_endpoint_objects(&old.interface);
                }
            }
            Delta::RouteUpdated(_) | Delta::RouteRemoved(_) => {}
        }
    }

    fn set_info(&self, id: &IpSetId) -> Option<SetInfo> {
        self.ipsets.get(id).map(IpSet::info)
    }

    fn set_chain(&mut self, name: String, rules: Vec<String>) {
        if self.chains.get(&name) != Some(&rules) {
            self.dirty.chains.insert(name.clone());
            self.chains.insert(name, rules);
        }
    }

    fn remove_chain(&mut self, name: &str) {
        if self.chains.remove(name).is_some() {
            self.dirty.chains.insert(name.to_owned());
        }
    }

    fn render_policy(&mut self, id: &PolicyId) {
        let Some(p) = self.policies.get(id).cloned() else {
            return;
        };
        let label = names::policy_label(id);
        for dir in Direction::ALL {
            let owner = Owner::Policy {
                tier: &p.tier,
                label: &label,
            };
            let lookup = |s: &IpSetId| self.set_info(s);
            let rules =
                render::rules_chain(rules_of(&p.ingress, &p.egress, dir), owner, dir, &lookup);
            self.set_chain(names::policy_chain(id, dir), rules);
        }
    }

    fn render_profile(&mut self, name: &str) {
        let Some(p) = self.profiles.get(name).cloned() else {
            return;
        };
        for dir in Direction::ALL {
            let lookup = |s: &IpSetId| self.set_info(s);
            let rules = render::rules_chain(
                rules_of(&p.ingress, &p.egress, dir),
                Owner::Profile { name },
                dir,
                &lookup,
            );
            self.set_chain(names::profile_chain(name, dir), rules);
        }
    }

    fn render_endpoint(&mut self, ep: &EndpointOut) {
        let _span = tracing::debug_span!("endpoint", id = %ep.id, iface = %ep.interface).entered();
        for dir in Direction::ALL {
            let known = KnownIn {
                policies: &self.policies,
                profiles: &self.profiles,
            };
            let rules = render::endpoint_chain(ep, dir, &known);
            let chain = names::endpoint_chain(&ep.interface, dir);
            self.set_chain(chain.clone(), rules);
            let (map, dirty) = match dir {
                Direction::Ingress => (&mut self.to_wl, &mut self.dirty.to_wl),
                Direction::Egress => (&mut self.from_wl, &mut self.dirty.from_wl),
            };
            if map.get(&ep.interface) != Some(&chain) {
                map.insert(ep.interface.clone(), chain);
                dirty.insert(ep.interface.clone());
            }
        }
    }

    fn remove_endpoint_objects(&mut self, interface: &str) {
        for dir in Direction::ALL {
            self.remove_chain(&names::endpoint_chain(interface, dir));
        }
        if self.from_wl.remove(interface).is_some() {
            self.dirty.from_wl.insert(interface.to_owned());
        }
        if self.to_wl.remove(interface).is_some() {
            self.dirty.to_wl.insert(interface.to_owned());
        }
    }

    fn rerender_endpoints(&mut self, pick: impl Fn(&EndpointOut) -> bool) {
        let eps: Vec<Arc<EndpointOut>> = self
            .endpoints
            .values()
            .filter(|ep| pick(ep))
            .cloned()
            .collect();
        for ep in eps {
            self.render_endpoint(&ep);
        }
    }

    /// Policies and profiles whose rules name the set: their chains change when the set
    /// appears, goes, or gains or loses its prefixes part.
    fn rerender_users_of(&mut self, id: &IpSetId) {
        let policies: Vec<PolicyId> = self
            .policies
            .values()
            .filter(|p| refers_to(&p.ingress, id) || refers_to(&p.egress, id))
            .map(|p| p.id.clone())
            .collect();
        for p in policies {
            self.render_policy(&p);
        }
        let profiles: Vec<String> = self
            .profiles
            .values()
            .filter(|p| refers_to(&p.ingress, id) || refers_to(&p.egress, id))
            .map(|p| p.name.clone())
            .collect();
        for p in profiles {
            self.render_profile(&p);
        }
    }

    /// Brings the desired nft sets of one IP set in line with its members (all of them: used
    /// when a set appears or goes, or its networks change).
    fn sync_ipset(&mut self, id: &IpSetId) {
        let (decls, mut elements) = match self.ipsets.get(id) {
            Some(set) => set.render(id),
            None => (Vec::new(), sets::Elements::new()),
        };
        let wanted: BTreeSet<String> = decls.iter().map(|(n, _)| n.clone()).collect();
        // Every name this IP set could have, so that parts no longer needed are removed.
        let mut candidates = wanted.clone();
        for f in Family::ALL {
            for part in [SetPart::Hosts, SetPart::Prefixes, SetPart::NamedPorts] {
                candidates.insert(names::set_name(id, part, f));
            }
        }
        for name in candidates {
            if !wanted.contains(&name) && self.sets.remove(&name).is_some() {
                self.dirty.sets.insert(name.clone());
                self.pending.remove(&name);
                self.resets.insert(name);
            }
        }
        for (name, decl) in decls {
            let new_elements = elements.remove(&name).unwrap_or_default();
            let entry = self.sets.entry(name.clone()).or_default();
            if entry.decl != decl {
                entry.decl = decl;
                self.dirty.sets.insert(name.clone());
            }
            let added: Vec<String> = new_elements.difference(&entry.elements).cloned().collect();
            let removed: Vec<String> = entry.elements.difference(&new_elements).cloned().collect();
            for e in added {
                self.element_op(&name, e, true);
            }
            for e in removed {
                self.element_op(&name, e, false);
            }
        }
    }

    /// Records one element change of a desired set.
    fn element_op(&mut self, set: &str, element: String, add: bool) {
        let Some(s) = self.sets.get_mut(set) else {
            return;
        };
        let changed = if add {
            s.elements.insert(element.clone())
        } else {
            s.elements.remove(&element)
        };
        if !changed {
            return;
        }
        self.dirty.sets.insert(set.to_owned());
        let ops = self.pending.entry(set.to_owned()).or_default();
        // An add and a delete of the same element before a write cancel out.
        if add {
            if !ops.delete.remove(&element) {
                ops.add.insert(element);
            }
        } else if !ops.add.remove(&element) {
            ops.delete.insert(element);
        }
    }

    fn ipset_members(
        &mut self,
        id: &IpSetId,
        added: &[tabby_calc::IpSetMember],
        removed: &[tabby_calc::IpSetMember],
    ) {
        let Some(set) = self.ipsets.get_mut(id) else {
            tracing::warn!(set = %id, "members of an IP set that was never created; ignored");
            return;
        };
        let before = set.info();
        let mut ops = Vec::new();
        let mut networks_changed = false;
        for m in removed {
            if set.remove(m) {
                match sets::member_element(id, m) {
                    Some((name, e)) => ops.push((name, e, false)),
                    None => networks_changed = true,
                }
            }
        }
        for m in added {
            if set.add(*m) {
                match sets::member_element(id, m) {
                    Some((name, e)) => ops.push((name, e, true)),
                    None => networks_changed = true,
                }
            }
        }
        let after = set.info();
        for (name, e, add) in ops {
            self.element_op(&name, e, add);
        }
        if networks_changed {
            self.sync_ipset(id);
        }
        if before != after {
            self.rerender_users_of(id);
        }
    }

    /// Whether a write is due.
    pub fn has_pending(&self) -> bool {
        self.written.is_none()
            || !self.dirty.sets.is_empty()
            || !self.dirty.chains.is_empty()
            || !self.dirty.from_wl.is_empty()
            || !self.dirty.to_wl.is_empty()
    }

    /// The script that brings the kernel to the desired table: the full script the first time
    /// and after a failed write, else only the changes (`None` when nothing changed).
    pub fn pending_script(&self) -> Option<Script> {
        match &self.written {
            None => Some(Script {
                text: self.full_script(),
                full: true,
                netlink: false,
            }),
            Some(w) if self.has_pending() => Some(Script {
                text: script::incremental(self, w),
                full: false,
                netlink: false,
            }),
            Some(_) => None,
        }
    }

    /// The whole table in one transaction: creates the table if it is missing, deletes it
    /// (whatever an earlier agent left) and builds it again, so a take-over never shows a
    /// moment of open or closed traffic.
    pub fn full_script(&self) -> String {
        script::full(self)
    }

    /// Records that the script from [`NftTable::pending_script`] was written.
    pub fn mark_written(&mut self) {
        let d = std::mem::take(&mut self.dirty);
        let w = match self.written.take() {
            // After a full write everything desired is in the kernel.
            None => Written {
                sets: self
                    .sets
                    .iter()
                    .map(|(k, v)| (k.clone(), v.decl.clone()))
                    .collect(),
                chains: self.chains.clone(),
                from_wl: self.from_wl.clone(),
                to_wl: self.to_wl.clone(),
            },
            Some(mut w) => {
                for name in d.sets {
                    match self.sets.get(&name) {
                        Some(s) => w.sets.insert(name, s.decl.clone()),
                        None => w.sets.remove(&name),
                    };
                }
                for name in d.chains {
                    match self.chains.get(&name) {
                        Some(c) => w.chains.insert(name, c.clone()),
                        None => w.chains.remove(&name),
                    };
                }
                for (map, written, dirty) in [
                    (&self.from_wl, &mut w.from_wl, d.from_wl),
                    (&self.to_wl, &mut w.to_wl, d.to_wl),
                ] {
                    for k in dirty {
                        match map.get(&k) {
                            Some(v) => written.insert(k, v.clone()),
                            None => written.remove(&k),
                        };
                    }
                }
                w
            }
        };
        self.pending.clear();
        self.resets.clear();
        self.written = Some(w);
    }

    /// Forgets what was written, so the next script is a full one (after a failed write the
    /// kernel's state is not known without reading it back, which tabby never does).
    pub fn mark_unknown(&mut self) {
        self.written = None;
        self.dirty = Dirty::default();
        self.pending.clear();
        self.resets.clear();
    }

    /// Writes what is pending: element-only changes as one nfnetlink batch when `nft` offers
    /// that fast path, everything else as an `nft` script. Returns what was written. On
    /// failure the next call writes the full table (a batch, like a script, is one
    /// transaction: the kernel applied all of it or nothing, but which is not always known).
    pub fn sync(&mut self, nft: &mut dyn NftApply) -> Result<Option<Script>, NftError> {
        let Some(mut script) = self.pending_script() else {
            return Ok(None);
        };
        if !script.full
            && let Some(batch) = batch::element_batch(self)
            && let Some(writer) = nft.element_writer()
        {
            if batch.changes.is_empty() {
                // The pending changes cancelled out: nothing to tell the kernel.
                self.mark_written();
                return Ok(None);
            }
            script.netlink = true;
            let result = writer.write_elements(&batch);
            return self.finish_write(script, result);
        }
        let result = nft.apply(&script.text);
        self.finish_write(script, result)
    }

    fn finish_write(
        &mut self,
        script: Script,
        result: Result<(), NftError>,
    ) -> Result<Option<Script>, NftError> {
        match result {
            Ok(()) => {
                self.mark_written();
                Ok(Some(script))
            }
            Err(err) => {
                tracing::warn!(full = script.full, netlink = script.netlink, error = %err, "nft write failed; the next write replaces the whole table");
                self.mark_unknown();
                Err(err)
            }
        }
    }

    /// Numbers of desired objects, for metrics and logs.
    pub fn counts(&self) -> Counts {
        Counts {
            ip_sets: self.ipsets.len(),
            policies: self.policies.len(),
            profiles: self.profiles.len(),
            endpoints: self.endpoints.len(),
            nft_sets: self.sets.len(),
            nft_chains: self.chains.len(),
        }
    }
}

/// How much the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// IP sets from the engine.
    pub ip_sets: usize,
    /// Policies.
    pub policies: usize,
    /// Profiles.
    pub profiles: usize,
    /// Local endpoints.
    pub endpoints: usize,
    /// nft sets (an IP set has two or more).
    pub nft_sets: usize,
    /// Policy, profile and endpoint chains (the fixed chains not counted).
    pub nft_chains: usize,
}
