//! How each kind of resource changes the engine's inputs, and the bookkeeping that follows:
//! effective labels (own over inherited), membership in the label indexes, route claims, and
//! what becomes dirty.

use crate::engine::fast_hash::FastMap;
use std::sync::Arc;

use tabby_model::node::NodeSpec;
use tabby_model::values::parse_net;
use tabby_model::{Kind, Object, Resource};

use super::ipsets::{ItemAddrs, host_net};
use super::label_index::{ItemId, MatchChange};
use super::labels::LabelSet;
use super::rules::policy_endpoint_selector;
use super::{
    EndpointData, EndpointRecord, Engine, ItemKey, NodeAddrs, PolicyId, PolicyRecord, ResourceKey,
    RouteTarget,
};
use crate::cluster::{
    EndpointId, assumed_namespace_labels, assumed_service_account_labels, enforced_policy,
    namespace_labels, namespace_profile, network_set_info, pod_endpoint, profile_info,
    service_account_profile, tier_info, wep_endpoint, with_name,
};
use crate::compile::compile_policy;
use crate::{ProfileInfo, TierInfo};

fn node_addrs(spec: &NodeSpec) -> NodeAddrs {
    let parse = |v: &Option<String>| {
        v.as_deref().and_then(|a| {
            parse_net(a)
                .ok()
                .map(|n| n.addr())
                .or_else(|| a.parse().ok())
        })
    };
    let bgp = spec.bgp.as_ref();
    let mut addrs = NodeAddrs {
        v4: bgp.and_then(|b| parse(&b.ipv4_address)),
        v6: bgp.and_then(|b| parse(&b.ipv6_address)),
    };
    for a in &spec.addresses {
        if let Some(ip) = parse(&Some(a.address.clone())) {
            let slot = if ip.is_ipv4() {
                &mut addrs.v4
            } else {
                &mut addrs.v6
            };
            slot.get_or_insert(ip);
        }
    }
    addrs
}

impl Engine {
    pub(super) fn upsert(&mut self, r: Resource) {
        let key = ResourceKey::of(&r);
        self.notes.remove(&key);
        match r {
            Resource::Pod(o) => {
                if o.spec.host_network == Some(true) {
                    self.remove_pod(&key);
                    self.note(&key, "host network: not a workload endpoint".to_owned());
                    return;
                }
                let ep = EndpointData::new(pod_endpoint(o), &mut self.interner);
                let id = ep.id.clone();
                // The new references first, so a namespace or service account in use by both
                // versions never flaps.
                self.pod_refs(&id.namespace, &pod_service_account(&ep), true);
                if let Some(old) = self.pods.insert(id.clone(), Arc::new(ep)) {
                    self.pod_refs(&id.namespace, &pod_service_account(&old), false);
                }
                self.refresh_endpoint(id);
            }
            Resource::WorkloadEndpoint(o) => {
                let ep = EndpointData::new(wep_endpoint(o), &mut self.interner);
                let id = ep.id.clone();
                let name = key.name.clone();
                if let Some(old) = self.weps.insert((key.namespace, key.name), Arc::new(ep))
                    && old.id != id
                {
                    self.forget_wep_name(&old.id, &name);
                    self.relabel.insert(ItemKey::Endpoint(old.id.clone()));
                }
                let names = match self.weps_by_endpoint.get_mut(&id) {
                    Some(names) => names,
                    None => self.weps_by_endpoint.entry(id.clone()).or_default(),
                };
                if let Err(at) = names.binary_search(&name) {
                    names.insert(at, name);
                }
                self.refresh_endpoint(id);
            }
            Resource::Namespace(o) => {
                self.namespaces
                    .insert(o.metadata.name.clone(), namespace_labels(&o.metadata));
                self.profile_changed(&format!("kns.{}", o.metadata.name));
            }
            Resource::ServiceAccount(o) => {
                self.service_accounts.insert(
                    (key.namespace.clone(), key.name.clone()),
                    with_name(&o.metadata.labels, &key.name),
                );
                self.profile_changed(&format!("ksa.{}.{}", key.namespace, key.name));
            }
            Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => {
                let info = network_set_info(&o);
                let k = (info.namespace.clone(), info.name.clone());
                self.relabel
                    .insert(ItemKey::NetworkSet(k.0.clone(), k.1.clone()));
                self.network_sets.insert(k, info);
            }
            Resource::Tier(o) => {
                self.tiers.insert(key.name.clone(), tier_info(&o));
                self.tiers_changed();
            }
            Resource::Profile(o) => {
                let mut notes = Vec::new();
                let info = profile_info(&o, &mut notes);
                for n in notes {
                    self.note(&key, n);
                }
                self.explicit_profiles
                    .insert(key.name.clone(), Arc::new(info));
                self.profile_changed(&key.name);
            }
            Resource::StagedNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
                self.staged.insert(key, o);
            }
            Resource::Node(o) => {
                let addrs = node_addrs(&o.spec);
                if self.nodes.get(&key.name) != Some(&addrs) {
                    self.nodes.insert(key.name.clone(), addrs);
                    self.node_changed(&key.name);
                }
            }
            other => {
                if let Some((kind, policy, note)) = enforced_policy(&other) {
                    if let Some(n) = note {
                        self.note(&key, n);
                    }
                    self.upsert_policy(&key, kind, &policy);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, key: &ResourceKey) {
        self.notes.remove(key);
        match key.kind {
            Kind::Pod => self.remove_pod(key),
            Kind::WorkloadEndpoint => self.remove_wep(key),
            Kind::Namespace => {
                self.namespaces.remove(&key.name);
                self.profile_changed(&format!("kns.{}", key.name));
            }
            Kind::ServiceAccount => {
                self.service_accounts
                    .remove(&(key.namespace.clone(), key.name.clone()));
                self.profile_changed(&format!("ksa.{}.{}", key.namespace, key.name));
            }
            Kind::GlobalNetworkSet | Kind::NetworkSet => {
                let ns = if key.kind == Kind::NetworkSet {
                    key.namespace.clone()
                } else {
                    String::new()
                };
                self.network_sets.remove(&(ns.clone(), key.name.clone()));
                self.relabel
                    .insert(ItemKey::NetworkSet(ns, key.name.clone()));
            }
            Kind::Tier => {
                self.tiers.remove(&key.name);
                self.tiers_changed();
            }
            Kind::Profile => {
                self.explicit_profiles.remove(&key.name);
                self.profile_changed(&key.name);
            }
            Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy => {
                self.staged.remove(key);
            }
            Kind::Node if self.nodes.remove(&key.name).is_some() => {
                self.node_changed(&key.name);
            }
            Kind::GlobalNetworkPolicy | Kind::NetworkPolicy | Kind::K8sNetworkPolicy => {
                self.remove_policy(&policy_id(key));
            }
            _ => {}
        }
    }

    fn note(&mut self, key: &ResourceKey, note: String) {
        tracing::warn!(resource = %key, "{note}");
        self.notes.entry(key.clone()).or_default().push(note);
    }

    fn remove_pod(&mut self, key: &ResourceKey) {
        let id = EndpointId {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        if let Some(old) = self.pods.remove(&id) {
            self.pod_refs(&id.namespace, &pod_service_account(&old), false);
            self.relabel.insert(ItemKey::Endpoint(id));
        }
    }

    fn remove_wep(&mut self, key: &ResourceKey) {
        let k = (key.namespace.clone(), key.name.clone());
        if let Some(old) = self.weps.remove(&k) {
            self.forget_wep_name(&old.id, &key.name);
            self.relabel.insert(ItemKey::Endpoint(old.id.clone()));
        }
    }

    fn forget_wep_name(&mut self, id: &EndpointId, name: &str) {
        if let Some(names) = self.weps_by_endpoint.get_mut(id) {
            names.retain(|n| n != name);
            if names.is_empty() {
                self.weps_by_endpoint.remove(id);
            }
        }
    }

    /// Pods keep their namespace and service account alive even when those resources are not
    /// in the datastore (as in Kubernetes, where they always exist).
    fn pod_refs(&mut self, ns: &str, sa: &str, add: bool) {
        let crossed = |n: &mut u32| {
            if add {
                *n += 1;
                *n == 1
            } else {
                *n -= 1;
                *n == 0
            }
        };
        let n = self.pod_namespaces.entry(ns.to_owned()).or_default();
        if crossed(n) {
            if *n == 0 {
                self.pod_namespaces.remove(ns);
            }
            self.profile_changed(&format!("kns.{ns}"));
        }
        let k = (ns.to_owned(), sa.to_owned());
        let n = self.pod_service_accounts.entry(k.clone()).or_default();
        if crossed(n) {
            if *n == 0 {
                self.pod_service_accounts.remove(&k);
            }
            self.profile_changed(&format!("ksa.{ns}.{sa}"));
        }
    }

    /// The profile a name resolves to: a Profile resource, else the synthesized `kns.`/`ksa.`
    /// profile of a known (or pod-implied) namespace or service account.
    pub(super) fn resolve_profile(&self, name: &str) -> Option<Arc<ProfileInfo>> {
        if let Some(p) = self.explicit_profiles.get(name) {
            return Some(p.clone());
        }
        if let Some(ns) = name.strip_prefix("kns.") {
            let labels = match self.namespaces.get(ns) {
                Some(l) => l.clone(),
                None if self.pod_namespaces.contains_key(ns) => assumed_namespace_labels(ns),
                None => return None,
            };
            return Some(Arc::new(namespace_profile(ns, &labels)));
        }
        if let Some((ns, sa)) = name.strip_prefix("ksa.").and_then(|r| r.split_once('.')) {
            let k = (ns.to_owned(), sa.to_owned());
            let labels = match self.service_accounts.get(&k) {
                Some(l) => l.clone(),
                None if self.pod_service_accounts.contains_key(&k) => {
                    assumed_service_account_labels(sa)
                }
                None => return None,
            };
            return Some(Arc::new(service_account_profile(ns, sa, &labels)));
        }
        None
    }

    fn profile_labels(&mut self, name: &str) -> Option<Arc<LabelSet>> {
        if let Some(cached) = self.profile_labels.get(name) {
            return cached.clone();
        }
        let labels = self.resolve_profile(name).map(|p| {
            Arc::new(LabelSet::from_labels(
                &mut self.interner,
                &p.labels_to_apply,
            ))
        });
        self.profile_labels.insert(name.to_owned(), labels.clone());
        labels
    }

    fn profile_changed(&mut self, name: &str) {
        self.profile_labels.remove(name);
        self.dirty_profiles.insert(name.to_owned());
        if let Some(users) = self.profile_users.get(name) {
            let items = &self.items;
            self.relabel
                .extend(users.iter().filter_map(|i| items.key_of(*i)).cloned());
        }
    }

    fn tiers_changed(&mut self) {
        self.dirty_endpoints
            .extend(self.local_by_item.values().cloned());
    }

    fn node_changed(&mut self, node: &str) {
        if let Some(eps) = self.endpoints_by_node.get(node) {
            let items = &self.items;
            self.relabel
                .extend(eps.iter().filter_map(|i| items.key_of(*i)).cloned());
        }
    }

    fn upsert_policy(
        &mut self,
        key: &ResourceKey,
        kind: Kind,
        policy: &Object<tabby_model::policy::PolicySpec>,
    ) {
        let mut notes = Vec::new();
        let compiled = compile_policy(kind, policy, &mut notes);
        for n in notes {
            self.note(key, n);
        }
        let id = policy_id(key);
        let selector = policy_endpoint_selector(&compiled);
        // Endpoints it applied to see its new order, tier or types even if the match holds.
        self.dirty_endpoints.extend(
            self.local_policies
                .matches_of(&id)
                .filter_map(|item| self.local_by_item.get(&item).cloned()),
        );
        let mut changes = Vec::new();
        self.local_policies
            .upsert_selector(id.clone(), selector, &mut changes);
        self.local_matches_changed(changes);
        self.dirty_policies.insert(id.clone());
        self.policies.insert(
            id,
            PolicyRecord {
                compiled,
                out: None,
            },
        );
    }

    fn remove_policy(&mut self, id: &PolicyId) {
        if self.policies.remove(id).is_none() {
            return;
        }
        let mut changes = Vec::new();
        self.local_policies.remove_selector(id, &mut changes);
        self.local_matches_changed(changes);
        self.dirty_policies.insert(id.clone());
    }

    fn local_matches_changed(&mut self, changes: Vec<MatchChange<PolicyId>>) {
        for c in changes {
            if let Some(ep) = self.local_by_item.get(&c.item) {
                self.dirty_endpoints.insert(ep.clone());
            }
            self.dirty_policies.insert(c.selector);
        }
    }

    pub(super) fn process_relabels(&mut self) {
        while let Some(key) = self.relabel.pop_first() {
            match key {
                ItemKey::Endpoint(id) => self.refresh_endpoint(id),
                ItemKey::NetworkSet(ns, name) => self.refresh_network_set(ns, name),
            }
        }
    }

    /// Which resource speaks for an endpoint: a WorkloadEndpoint (the first by name when a
    /// pod has several) over the Pod.
    fn resolve_endpoint(&self, id: &EndpointId) -> Option<&Arc<EndpointData>> {
        if let Some(name) = self
            .weps_by_endpoint
            .get(id)
            .and_then(|names| names.first())
        {
            return self.weps.get(&(id.namespace.clone(), name.clone()));
        }
        self.pods.get(id)
    }

    fn effective_labels(&mut self, own: &LabelSet, profiles: &[String]) -> LabelSet {
        let inherited: Vec<Arc<LabelSet>> = profiles
            .iter()
            .filter_map(|p| self.profile_labels(p))
            .collect();
        own.layered(&inherited)
    }

    fn set_profile_users(&mut self, item: ItemId, profiles: &[String], add: bool) {
        for p in profiles {
            if add {
                match self.profile_users.get_mut(p) {
                    Some(users) => users.insert(item),
                    None => self
                        .profile_users
                        .entry(p.clone())
                        .or_default()
                        .insert(item),
                };
            } else if let Some(users) = self.profile_users.get_mut(p) {
                users.remove(&item);
                if users.is_empty() {
                    self.profile_users.remove(p);
                }
            }
        }
    }

    fn route_target(&self, ep: &EndpointData, ip: std::net::IpAddr) -> Option<RouteTarget> {
        let node = ep.node.as_deref()?;
        if node == self.host {
            return Some(RouteTarget::Local {
                interface: ep.interface.clone(),
            });
        }
        let addrs = self.nodes.get(node)?;
        let via = if ip.is_ipv4() { addrs.v4 } else { addrs.v6 }?;
        Some(RouteTarget::Remote {
            node: node.to_owned(),
            via,
        })
    }

    fn claim_routes(&mut self, id: &EndpointId, ep: &EndpointData, claim: bool) {
        for ip in &ep.ips {
            let dst = host_net(*ip);
            let target = self.route_target(ep, *ip).filter(|_| claim);
            if let Some(t) = target {
                let claims = self.route_claims.entry(dst).or_default();
                if claims.get(id) != Some(&t) {
                    claims.insert(id.clone(), t);
                    self.dirty_routes.insert(dst);
                }
            } else if let Some(claims) = self.route_claims.get_mut(&dst)
                && claims.remove(id).is_some()
            {
                if claims.is_empty() {
                    self.route_claims.remove(&dst);
                }
                self.dirty_routes.insert(dst);
            }
        }
    }

    fn refresh_endpoint(&mut self, id: EndpointId) {
        let key = ItemKey::Endpoint(id.clone());
        let new = self.resolve_endpoint(&id).cloned();
        let old = self.endpoints.remove(&id);
        // What hangs off the old version and not the new one is let go; what is shared
        // stays (most updates change labels only).
        let same = |f: fn(&EndpointData) -> &[String]| matches!((&old, &new), (Some(o), Some(n)) if f(&o.endpoint) == f(n));
        let same_profiles = same(|e| &e.profiles);
        let same_node = matches!((&old, &new), (Some(o), Some(n)) if o.endpoint.node == n.node);
        if let Some(old) = &old {
            self.claim_routes(&id, &old.endpoint, false);
            if !same_profiles {
                self.set_profile_users(old.item, &old.endpoint.profiles, false);
            }
            if !same_node
                && let Some(node) = &old.endpoint.node
                && let Some(set) = self.endpoints_by_node.get_mut(node)
            {
                set.remove(&old.item);
                if set.is_empty() {
                    self.endpoints_by_node.remove(node);
                }
            }
        }
        let was_local = old.as_ref().is_some_and(|o| o.local);
        let Some(ep) = new else {
            if let Some(old) = old {
                self.ipsets.remove_item(old.item);
                if old.local {
                    self.local_by_item.remove(&old.item);
                    let mut changes = Vec::new();
                    self.local_policies.remove_item(old.item, &mut changes);
                    self.local_matches_changed(changes);
                    self.dirty_endpoints.insert(id);
                }
                self.items.release(&key);
            }
            return;
        };
        let item = match &old {
            Some(o) => o.item,
            None => self.items.get_or_alloc(&key),
        };
        let labels = self.effective_labels(&ep.labels, &ep.profiles);
        let addrs = ItemAddrs {
            nets: ep.ips.iter().map(|ip| host_net(*ip)).collect(),
            ports: ep.ports.clone(),
        };
        let local = ep.node.as_deref() == Some(self.host.as_str());
        if local {
            self.local_by_item.insert(item, id.clone());
            let mut changes = Vec::new();
            self.local_policies
                .upsert_item(item, labels.clone(), &mut changes);
            self.local_matches_changed(changes);
            self.dirty_endpoints.insert(id.clone());
        } else if was_local {
            self.local_by_item.remove(&item);
            let mut changes = Vec::new();
            self.local_policies.remove_item(item, &mut changes);
            self.local_matches_changed(changes);
            self.dirty_endpoints.insert(id.clone());
        }
        self.ipsets.upsert_item(item, labels, addrs);
        self.claim_routes(&id, &ep, true);
        if !same_profiles {
            self.set_profile_users(item, &ep.profiles, true);
        }
        if !same_node && let Some(node) = &ep.node {
            match self.endpoints_by_node.get_mut(node) {
                Some(set) => set.insert(item),
                None => self
                    .endpoints_by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(item),
            };
        }
        self.endpoints.insert(
            id,
            EndpointRecord {
                item,
                endpoint: ep,
                local,
            },
        );
    }

    fn refresh_network_set(&mut self, ns: String, name: String) {
        let key = ItemKey::NetworkSet(ns.clone(), name.clone());
        let profile = (!ns.is_empty()).then(|| vec![format!("kns.{ns}")]);
        let profiles = profile.unwrap_or_default();
        let Some(info) = self.network_sets.get(&(ns.clone(), name.clone())).cloned() else {
            if let Some(item) = self.items.ids.get(&key).copied() {
                self.set_profile_users(item, &profiles, false);
                self.ipsets.remove_item(item);
                self.items.release(&key);
            }
            return;
        };
        let item = self.items.get_or_alloc(&key);
        let own = LabelSet::from_labels(&mut self.interner, &info.labels);
        let labels = self.effective_labels(&own, &profiles);
        let addrs = ItemAddrs {
            nets: info.nets.clone(),
            ports: Vec::new(),
        };
        self.ipsets.upsert_item(item, labels, addrs);
        self.set_profile_users(item, &profiles, true);
    }
}

/// A pod's service account, from its `ksa.<ns>.<sa>` profile.
fn pod_service_account(ep: &EndpointData) -> String {
    let prefix = format!("ksa.{}.", ep.id.namespace);
    ep.profiles
        .iter()
        .find_map(|p| p.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

/// The policy a resource key names.
pub(super) fn policy_id(key: &ResourceKey) -> PolicyId {
    PolicyId {
        kind: key.kind,
        namespace: if key.kind == Kind::GlobalNetworkPolicy {
            String::new()
        } else {
            key.namespace.clone()
        },
        name: key.name.clone(),
    }
}

/// The tier a policy names, as it is evaluated.
pub(super) fn tier_for(tiers: &FastMap<String, TierInfo>, name: &str) -> TierInfo {
    match tiers.get(name) {
        Some(t) => t.clone(),
        None if name == "default" => crate::cluster::default_tier(),
        None => crate::cluster::missing_tier(name),
    }
}
