//! The incremental per-host engine: fed a snapshot, an in-sync mark and then updates, it emits
//! ordered [`Delta`]s for one host.
//!
//! Every resource is seen, but only what touches this host's endpoints is expanded: policies
//! are matched against local endpoints only, and only the rules of policies and profiles that
//! apply to a local endpoint become IP sets, whose members come from every endpoint and
//! network set in the cluster. Both matchings go through a [`label_index`] so that a change
//! costs about the number of selectors that could plausibly care.
//!
//! Updates only mark what they touch as dirty; [`Engine::flush`] recomputes those outputs from
//! the current inputs and emits what differs from what it emitted before. So the output is a
//! function of the current input alone, whatever order the updates came in.

mod fast_hash;
mod flush;
mod inputs;
mod ipsets;
mod label_index;
mod labels;
mod output;
mod rules;

use crate::engine::fast_hash::{FastMap, FastSet};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tabby_model::policy::PolicySpec;
use tabby_model::values::Labels;
use tabby_model::{Kind, Object, Resource};

use self::ipsets::IpSets;
use self::label_index::{ItemId, LabelIndex};
use self::labels::{Interner, LabelSet};
pub use self::output::{
    Delta, EndpointOut, EntityOut, IcmpMatch, IpSetId, IpSetKind, IpSetMember, PolicyId, PolicyOut,
    PortRange, ProfileOut, RouteOut, RouteTarget, RuleOut, TierOut,
};
use self::rules::SetNeeds;
use crate::cluster::{Endpoint, EndpointId, NamedPort, NetworkSetInfo, ProfileInfo, TierInfo};
use crate::compile::CompiledPolicy;

/// Names a resource: kind, namespace ("" for cluster-wide kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, "" when cluster-wide.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ResourceKey {
    /// The key of a resource.
    pub fn of(r: &Resource) -> Self {
        Self {
            kind: r.kind(),
            namespace: r.namespace().to_owned(),
            name: r.name().to_owned(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&tabby_model::describe(
            self.kind,
            &self.namespace,
            &self.name,
        ))
    }
}

/// One change to the engine's input.
#[derive(Debug, Clone)]
pub enum Update {
    /// A resource was created or changed (boxed: resources are large, keys small).
    Upsert(Box<Resource>),
    /// A resource was deleted.
    Remove(ResourceKey),
}

impl Update {
    /// A resource created or changed.
    pub fn upsert(r: Resource) -> Self {
        Self::Upsert(Box::new(r))
    }
}

/// Something labelled that rule selectors can match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ItemKey {
    Endpoint(EndpointId),
    NetworkSet(String, String),
}

/// Small integer handles for items, reused after removal.
#[derive(Debug, Default)]
struct ItemIds {
    ids: FastMap<ItemKey, ItemId>,
    keys: Vec<Option<ItemKey>>,
    free: Vec<ItemId>,
    next: ItemId,
}

impl ItemIds {
    fn get_or_alloc(&mut self, key: &ItemKey) -> ItemId {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.ids.insert(key.clone(), id);
        let slot = id as usize;
        if self.keys.len() <= slot {
            self.keys.resize(slot + 1, None);
        }
        self.keys[slot] = Some(key.clone());
        id
    }

    fn release(&mut self, key: &ItemKey) {
        if let Some(id) = self.ids.remove(key) {
            self.keys[id as usize] = None;
            self.free.push(id);
        }
    }

    fn key_of(&self, id: ItemId) -> Option<&ItemKey> {
        self.keys.get(id as usize).and_then(Option::as_ref)
    }
}

/// An endpoint as the engine keeps it: labels interned, nothing it does not use.
#[derive(Debug, PartialEq)]
struct EndpointData {
    id: EndpointId,
    labels: LabelSet,
    ips: Vec<IpAddr>,
    ports: Vec<NamedPort>,
    profiles: Vec<String>,
    node: Option<String>,
    interface: String,
}

impl EndpointData {
    fn new(ep: Endpoint, interner: &mut Interner) -> Self {
        Self {
            labels: LabelSet::from_labels(interner, &ep.labels),
            id: ep.id,
            ips: ep.ips,
            ports: ep.ports,
            profiles: ep.profiles,
            node: ep.node,
            interface: ep.interface,
        }
    }
}

#[derive(Debug)]
struct EndpointRecord {
    item: ItemId,
    endpoint: Arc<EndpointData>,
    local: bool,
}

#[derive(Debug)]
struct PolicyRecord {
    compiled: CompiledPolicy,
    /// Its rules in dataplane form, made when it first applies to a local endpoint.
    out: Option<(Arc<PolicyOut>, SetNeeds)>,
}

/// Addresses of a node, for routes to its workloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NodeAddrs {
    v4: Option<IpAddr>,
    v6: Option<IpAddr>,
}

/// What the dataplane has been told.
#[derive(Debug, Default)]
struct Emitted {
    endpoints: FastMap<EndpointId, Arc<EndpointOut>>,
    policies: FastMap<PolicyId, (Arc<PolicyOut>, Vec<IpSetId>)>,
    profiles: FastMap<String, (Arc<ProfileOut>, Vec<IpSetId>)>,
    routes: FastMap<IpNet, RouteTarget>,
    /// How many emitted endpoints list each profile.
    profile_users: FastMap<String, u32>,
}

/// The per-host calculation engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    host: String,
    in_sync: bool,
    interner: Interner,

    tiers: FastMap<String, TierInfo>,
    policies: FastMap<PolicyId, PolicyRecord>,
    staged: BTreeMap<ResourceKey, Object<PolicySpec>>,
    explicit_profiles: FastMap<String, Arc<ProfileInfo>>,
    namespaces: FastMap<String, Labels>,
    service_accounts: FastMap<(String, String), Labels>,
    pod_namespaces: FastMap<String, u32>,
    pod_service_accounts: FastMap<(String, String), u32>,
    pods: FastMap<EndpointId, Arc<EndpointData>>,
    weps: FastMap<(String, String), Arc<EndpointData>>,
    /// WorkloadEndpoint names per endpoint, sorted (a pod may have several interfaces).
    weps_by_endpoint: FastMap<EndpointId, Vec<String>>,
    network_sets: FastMap<(String, String), NetworkSetInfo>,
    nodes: FastMap<String, NodeAddrs>,
    notes: BTreeMap<ResourceKey, Vec<String>>,

    items: ItemIds,
    endpoints: FastMap<EndpointId, EndpointRecord>,
    profile_users: FastMap<String, FastSet<ItemId>>,
    profile_labels: FastMap<String, Option<Arc<LabelSet>>>,
    endpoints_by_node: FastMap<String, FastSet<ItemId>>,
    ipsets: IpSets,
    local_policies: LabelIndex<PolicyId>,
    local_by_item: FastMap<ItemId, EndpointId>,
    route_claims: FastMap<IpNet, BTreeMap<EndpointId, RouteTarget>>,

    relabel: BTreeSet<ItemKey>,
    dirty_endpoints: FastSet<EndpointId>,
    dirty_policies: FastSet<PolicyId>,
    dirty_profiles: FastSet<String>,
    dirty_routes: FastSet<IpNet>,

    emitted: Emitted,
}

/// Sizes of the engine's state, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Endpoints in the cluster.
    pub endpoints: usize,
    /// Endpoints on this host.
    pub local_endpoints: usize,
    /// Enforced policies in the cluster.
    pub policies: usize,
    /// Policies that apply to a local endpoint.
    pub active_policies: usize,
    /// IP sets this host needs.
    pub ip_sets: usize,
    /// Routes this host needs.
    pub routes: usize,
}

impl Engine {
    /// An engine for the host called `host` (a Node's name, as workloads' `nodeName` and
    /// WorkloadEndpoints' `node` spell it).
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            in_sync: false,
            interner: Interner::default(),
            tiers: FastMap::default(),
            policies: FastMap::default(),
            staged: BTreeMap::new(),
            explicit_profiles: FastMap::default(),
            namespaces: FastMap::default(),
            service_accounts: FastMap::default(),
            pod_namespaces: FastMap::default(),
            pod_service_accounts: FastMap::default(),
            pods: FastMap::default(),
            weps: FastMap::default(),
            weps_by_endpoint: FastMap::default(),
            network_sets: FastMap::default(),
            nodes: FastMap::default(),
            notes: BTreeMap::new(),
            items: ItemIds::default(),
            endpoints: FastMap::default(),
            profile_users: FastMap::default(),
            profile_labels: FastMap::default(),
            endpoints_by_node: FastMap::default(),
            ipsets: IpSets::default(),
            local_policies: LabelIndex::default(),
            local_by_item: FastMap::default(),
            route_claims: FastMap::default(),
            relabel: BTreeSet::new(),
            dirty_endpoints: FastSet::default(),
            dirty_policies: FastSet::default(),
            dirty_profiles: FastSet::default(),
            dirty_routes: FastSet::default(),
            emitted: Emitted::default(),
        }
    }

    /// The host this engine computes for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Applies one change. Nothing is emitted until [`Engine::flush`].
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Upsert(r) => self.upsert(*r),
            Update::Remove(key) => self.remove(&key),
        }
        self.process_relabels();
    }

    /// Marks the end of the initial snapshot: from now on [`Engine::flush`] emits deltas. The
    /// first flush after it emits the whole state.
    pub fn set_in_sync(&mut self) {
        self.in_sync = true;
    }

    /// Whether the snapshot has been completed.
    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// Everything that changed since the last flush, in dependency order; nothing before the
    /// in-sync mark.
    pub fn flush(&mut self) -> Vec<Delta> {
        if !self.in_sync {
            return Vec::new();
        }
        self.compute_deltas()
    }

    /// What the engine had to assume or refuse, per resource, for people to read.
    pub fn notes(&self) -> impl Iterator<Item = (&ResourceKey, &[String])> {
        self.notes.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// Staged policies: carried, never enforced.
    pub fn staged_policies(&self) -> impl Iterator<Item = (&ResourceKey, &Object<PolicySpec>)> {
        self.staged.iter()
    }

    /// Sizes of the current state.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            endpoints: self.endpoints.len(),
            local_endpoints: self.local_by_item.len(),
            policies: self.policies.len(),
            active_policies: self.emitted.policies.len(),
            ip_sets: self.ipsets.len(),
            routes: self.emitted.routes.len(),
        }
    }

    /// Members of an IP set as the engine has them (for tests and diagnostics).
    pub fn ip_set_members(&self, id: &IpSetId) -> BTreeSet<IpSetMember> {
        self.ipsets.members(id).into_iter().collect()
    }

    /// Drops interned label strings that no endpoint uses any more. Call now and then after
    /// heavy churn.
    pub fn collect_garbage(&mut self) {
        self.interner.collect_garbage();
    }
}
