//! A cluster's policy-relevant state, built from resources: endpoints with their effective
//! labels, namespaces, service accounts, network sets, tiers, policies and profiles, each in
//! the form the evaluator reads. Building it applies Calico's conventions (implicit labels,
//! `kns.`/`ksa.` profiles, the default tier, Kubernetes NetworkPolicy conversion) and records a
//! note for everything it had to fail closed on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use tabby_model::k8s::{PodSpec, PodStatus};
use tabby_model::network::NetworkSetSpec;
use tabby_model::node::WorkloadEndpointSpec;
use tabby_model::policy::{Action, PolicySpec, ProfileSpec, Rule, TierSpec};
use tabby_model::values::{IntOrString, Labels, Protocol, parse_net};
use tabby_model::{Kind, Object, Resource};

use crate::compile::{CompiledPolicy, CompiledRule, compile_policy, compile_rules};

/// Label Calico sets on namespaced endpoints: their namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Label Calico sets on Kubernetes endpoints.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// Label Calico sets on endpoints with a service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Label carrying a namespace's or service account's own name in its profile labels.
pub const LABEL_NAME: &str = "projectcalico.org/name";

/// Names an endpoint: `namespace/name`, or `name` when cluster-scoped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId {
    /// Namespace ("" for none).
    pub namespace: String,
    /// Name (the pod's name for pods).
    pub name: String,
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A named port an endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// Port name.
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

/// A workload as policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Its name.
    pub id: EndpointId,
    /// Labels selectors match: its own, the implicit ones, and those inherited from profiles
    /// (its own win).
    pub labels: Labels,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Named ports.
    pub ports: Vec<NamedPort>,
    /// Profiles, applied in order when no policy decides.
    pub profiles: Vec<String>,
    /// Kubernetes service account, if any.
    pub service_account: Option<String>,
    /// Node it runs on, if known.
    pub node: Option<String>,
    /// Host-side interface name.
    pub interface: String,
}

/// A tier, with Calico's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TierInfo {
    /// Name.
    pub name: String,
    /// Order (None sorts last).
    pub order: Option<f64>,
    /// Deny or Pass at the end of the tier.
    pub default_action: Action,
    /// True when no Tier resource exists and policies name it: it then sorts after every real
    /// tier and denies, so that a missing tier never opens traffic.
    pub missing: bool,
}

/// A profile's rules and inherited labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileInfo {
    /// Name.
    pub name: String,
    /// Compiled ingress rules.
    pub ingress: Vec<CompiledRule>,
    /// Compiled egress rules.
    pub egress: Vec<CompiledRule>,
    /// Labels endpoints inherit.
    pub labels_to_apply: Labels,
}

/// A labelled set of networks that rule selectors can match.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSetInfo {
    /// Namespace ("" for a GlobalNetworkSet).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels, with the implicit namespace label for namespaced sets.
    pub labels: Labels,
    /// Member networks.
    pub nets: Vec<IpNet>,
}

/// Everything the evaluator needs.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Endpoints by name.
    pub endpoints: BTreeMap<EndpointId, Endpoint>,
    /// Namespace labels (with `projectcalico.org/name`), by namespace.
    pub namespaces: BTreeMap<String, Labels>,
    /// Service account labels (with `projectcalico.org/name`), by (namespace, name).
    pub service_accounts: BTreeMap<(String, String), Labels>,
    /// Network sets.
    pub network_sets: Vec<NetworkSetInfo>,
    /// Tiers, sorted as they are evaluated.
    pub tiers: Vec<TierInfo>,
    /// Enforced policies, sorted by tier then policy order.
    pub policies: Vec<CompiledPolicy>,
    /// Profiles by name.
    pub profiles: BTreeMap<String, ProfileInfo>,
    /// What had to be assumed or refused while building, for people to read.
    pub notes: Vec<String>,
}

impl Cluster {
    /// Builds the cluster from resources of any kinds (others are ignored).
    pub fn from_resources<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut b = Builder::default();
        for r in resources {
            b.add(r);
        }
        b.finish()
    }

    /// The tier a policy belongs to.
    pub fn tier(&self, name: &str) -> Option<&TierInfo> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// Finds an endpoint by `namespace/name` (or `name`).
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        let (namespace, name) = name.split_once('/').unwrap_or(("", name));
        self.endpoints.get(&EndpointId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

#[derive(Default)]
struct Builder {
    pods: Vec<Object<PodSpec>>,
    weps: Vec<Object<WorkloadEndpointSpec>>,
    namespaces: BTreeMap<String, Labels>,
    service_accounts: BTreeMap<(String, String), Labels>,
    network_sets: Vec<NetworkSetInfo>,
    tiers: BTreeMap<String, TierInfo>,
    policies: Vec<(Kind, Object<PolicySpec>)>,
    profiles: BTreeMap<String, ProfileInfo>,
    notes: Vec<String>,
}

pub(crate) fn with_name(labels: &Labels, name: &str) -> Labels {
    let mut l = labels.clone();
    l.insert(LABEL_NAME.to_owned(), name.to_owned());
    l
}

fn prefixed(prefix: &str, labels: &Labels) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect()
}

fn allow_all() -> Vec<CompiledRule> {
    let rule = Rule {
        action: Action::Allow,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: None,
        destination: None,
        http: None,
        metadata: None,
    };
    compile_rules(&[rule], None, &mut Vec::new())
}

impl Builder {
    fn add(&mut self, r: &Resource) {
        match r {
            Resource::Pod(o) => {
                if o.spec.host_network == Some(true) {
                    self.notes.push(format!(
                        "pod {}: host network, not a workload endpoint",
                        r.describe()
                    ));
                } else {
                    self.pods.push(o.clone());
                }
            }
            Resource::WorkloadEndpoint(o) => self.weps.push(o.clone()),
            Resource::Namespace(o) => {
                self.namespaces
                    .insert(o.metadata.name.clone(), namespace_labels(&o.metadata));
            }
            Resource::ServiceAccount(sa) => {
                let ns = sa.metadata.namespace.clone().unwrap_or_default();
                self.service_accounts.insert(
                    (ns, sa.metadata.name.clone()),
                    with_name(&sa.metadata.labels, &sa.metadata.name),
                );
            }
            Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => {
                self.network_sets.push(network_set_info(o));
            }
            Resource::Tier(o) => {
                self.tiers.insert(o.metadata.name.clone(), tier_info(o));
            }
            Resource::Profile(o) => {
                let mut notes = Vec::new();
                self.profiles
                    .insert(o.metadata.name.clone(), profile_info(o, &mut notes));
                self.notes
                    .extend(notes.into_iter().map(|n| format!("{}: {n}", r.describe())));
            }
            _ => {
                if let Some((kind, policy, note)) = enforced_policy(r) {
                    self.notes.extend(note);
                    self.policies.push((kind, policy));
                }
            }
        }
    }

    fn finish(mut self) -> Cluster {
        // Namespaces that pods live in always exist in Kubernetes; a file that lists pods but
        // not their namespaces gets them with only the label the API server sets itself.
        let pod_namespaces: Vec<String> = self
            .pods
            .iter()
            .filter_map(|p| p.metadata.namespace.clone())
            .filter(|ns| !self.namespaces.contains_key(ns))
            .collect();
        for ns in pod_namespaces {
            if !self.namespaces.contains_key(&ns) {
                self.notes.push(format!(
                    "namespace {ns:?} is not in the input; assumed with only its kubernetes.io/metadata.name label"
                ));
                self.namespaces
                    .insert(ns.clone(), assumed_namespace_labels(&ns));
            }
        }
        // Likewise every pod's service account exists in Kubernetes; dumps rarely list them.
        for pod in &self.pods {
            let (ns, sa) = pod_namespace_and_account(pod);
            self.service_accounts
                .entry((ns, sa.clone()))
                .or_insert_with(|| assumed_service_account_labels(&sa));
        }
        self.synthesize_profiles();
        // Namespaced network sets inherit their namespace's labels as endpoints do, so that
        // namespace selectors reach them.
        for set in &mut self.network_sets {
            if let Some(p) = self.profiles.get(&format!("kns.{}", set.namespace)) {
                for (k, v) in &p.labels_to_apply {
                    set.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        let tiers = self.resolve_tiers();
        let mut cluster = Cluster {
            namespaces: self.namespaces,
            service_accounts: self.service_accounts,
            network_sets: self.network_sets,
            tiers,
            profiles: self.profiles,
            notes: self.notes,
            ..Cluster::default()
        };
        for pod in &self.pods {
            let ep = pod_endpoint(pod.clone());
            cluster.endpoints.insert(ep.id.clone(), ep);
        }
        for wep in &self.weps {
            let ep = wep_endpoint(wep.clone());
            cluster.endpoints.insert(ep.id.clone(), ep);
        }
        let profiles = cluster.profiles.clone();
        for ep in cluster.endpoints.values_mut() {
            inherit_profile_labels(ep, &profiles);
        }
        let mut policies = Vec::new();
        for (kind, p) in &self.policies {
            let mut notes = Vec::new();
            policies.push(compile_policy(*kind, p, &mut notes));
            let who = tabby_model::describe(
                *kind,
                p.metadata.namespace.as_deref().unwrap_or(""),
                &p.metadata.name,
            );
            cluster
                .notes
                .extend(notes.into_iter().map(|n| format!("{who}: {n}")));
        }
        let tier_rank = |name: &str| {
            cluster
                .tiers
                .iter()
                .position(|t| t.name == name)
                .unwrap_or(usize::MAX)
        };
        policies.sort_by(|a, b| {
            tier_rank(&a.tier)
                .cmp(&tier_rank(&b.tier))
                .then(order_key(a.order).total_cmp(&order_key(b.order)))
                .then_with(|| a.sort_name.cmp(&b.sort_name))
        });
        cluster.policies = policies;
        cluster
    }

    /// Calico's Kubernetes conventions: every namespace has a `kns.<ns>` profile that allows
    /// everything and carries the namespace's labels (`pcns.` prefix); every service account a
    /// `ksa.<ns>.<sa>` profile with its labels (`pcsa.` prefix) and no rules.
    fn synthesize_profiles(&mut self) {
        for (ns, labels) in &self.namespaces {
            self.profiles
                .entry(format!("kns.{ns}"))
                .or_insert_with(|| namespace_profile(ns, labels));
        }
        for ((ns, sa), labels) in &self.service_accounts {
            self.profiles
                .entry(format!("ksa.{ns}.{sa}"))
                .or_insert_with(|| service_account_profile(ns, sa, labels));
        }
    }

    fn resolve_tiers(&mut self) -> Vec<TierInfo> {
        self.tiers
            .entry("default".to_owned())
            .or_insert_with(default_tier);
        for (kind, p) in &self.policies {
            let tier = p.spec.tier.clone().unwrap_or_else(|| "default".to_owned());
            if !self.tiers.contains_key(&tier) {
                self.notes.push(format!(
                    "{}: its tier {tier:?} does not exist; the policy is evaluated after every other tier \
                     and anything it does not allow is denied",
                    tabby_model::describe(*kind, p.metadata.namespace.as_deref().unwrap_or(""), &p.metadata.name)
                ));
                self.tiers.insert(tier.clone(), missing_tier(&tier));
            }
        }
        let mut tiers: Vec<TierInfo> = self.tiers.values().cloned().collect();
        tiers.sort_by(tier_cmp);
        tiers
    }
}

/// How tiers are evaluated: by order (absent last), then name; tiers that do not exist after
/// every real one.
pub(crate) fn tier_cmp(a: &TierInfo, b: &TierInfo) -> std::cmp::Ordering {
    a.missing
        .cmp(&b.missing)
        .then(order_key(a.order).total_cmp(&order_key(b.order)))
        .then_with(|| a.name.cmp(&b.name))
}

/// The stand-in for a tier that policies name but that does not exist.
pub(crate) fn missing_tier(name: &str) -> TierInfo {
    TierInfo {
        name: name.to_owned(),
        order: None,
        default_action: Action::Deny,
        missing: true,
    }
}

/// The `default` tier when no Tier resource defines it.
pub(crate) fn default_tier() -> TierInfo {
    TierInfo {
        name: "default".to_owned(),
        order: Some(1_000_000.0),
        default_action: Action::Deny,
        missing: false,
    }
}

/// A namespace's labels as profiles carry them (with `projectcalico.org/name`).
pub(crate) fn namespace_labels(meta: &tabby_model::ObjectMeta) -> Labels {
    with_name(&meta.labels, &meta.name)
}

/// Labels of a namespace that pods live in but that is not known: the one the API server
/// always sets.
pub(crate) fn assumed_namespace_labels(ns: &str) -> Labels {
    let mut labels = Labels::new();
    labels.insert("kubernetes.io/metadata.name".to_owned(), ns.to_owned());
    with_name(&labels, ns)
}

/// Labels of a service account that pods use but that is not known.
pub(crate) fn assumed_service_account_labels(sa: &str) -> Labels {
    with_name(&Labels::new(), sa)
}

/// Calico's `kns.<ns>` profile: allows everything and carries the namespace's labels under
/// `pcns.`.
pub(crate) fn namespace_profile(ns: &str, labels: &Labels) -> ProfileInfo {
    ProfileInfo {
        name: format!("kns.{ns}"),
        ingress: allow_all(),
        egress: allow_all(),
        labels_to_apply: prefixed("pcns.", labels),
    }
}

/// Calico's `ksa.<ns>.<sa>` profile: no rules, the service account's labels under `pcsa.`.
pub(crate) fn service_account_profile(ns: &str, sa: &str, labels: &Labels) -> ProfileInfo {
    ProfileInfo {
        name: format!("ksa.{ns}.{sa}"),
        ingress: Vec::new(),
        egress: Vec::new(),
        labels_to_apply: prefixed("pcsa.", labels),
    }
}

pub(crate) fn tier_info(o: &Object<TierSpec>) -> TierInfo {
    TierInfo {
        name: o.metadata.name.clone(),
        order: o.spec.order,
        default_action: o.spec.default_action.unwrap_or(Action::Deny),
        missing: false,
    }
}

pub(crate) fn profile_info(o: &Object<ProfileSpec>, notes: &mut Vec<String>) -> ProfileInfo {
    ProfileInfo {
        name: o.metadata.name.clone(),
        ingress: compile_rules(&o.spec.ingress, None, notes),
        egress: compile_rules(&o.spec.egress, None, notes),
        labels_to_apply: o.spec.labels_to_apply.clone(),
    }
}

pub(crate) fn network_set_info(o: &Object<NetworkSetSpec>) -> NetworkSetInfo {
    let namespace = o.metadata.namespace.clone().unwrap_or_default();
    let mut labels = o.metadata.labels.clone();
    if !namespace.is_empty() {
        labels.insert(LABEL_NAMESPACE.to_owned(), namespace.clone());
    }
    let nets = o
        .spec
        .nets
        .iter()
        .filter_map(|n| parse_net(n).ok())
        .map(|n| n.trunc())
        .collect();
    NetworkSetInfo {
        namespace,
        name: o.metadata.name.clone(),
        labels,
        nets,
    }
}

/// A policy that is enforced (global, namespaced or Kubernetes), in Calico's form, with a note
/// when it had to be replaced by a fail-closed stand-in. Staged policies and other kinds give
/// `None`.
pub(crate) fn enforced_policy(r: &Resource) -> Option<(Kind, Object<PolicySpec>, Option<String>)> {
    match r {
        Resource::GlobalNetworkPolicy(o) => Some((Kind::GlobalNetworkPolicy, o.clone(), None)),
        Resource::NetworkPolicy(o) => Some((Kind::NetworkPolicy, o.clone(), None)),
        Resource::K8sNetworkPolicy(o) => Some(match tabby_model::k8s_convert::convert(o) {
            Ok(p) => (Kind::K8sNetworkPolicy, p, None),
            Err(e) => (
                Kind::K8sNetworkPolicy,
                k8s_deny_stand_in(o),
                Some(format!(
                    "{}: cannot be converted ({e}); it denies everything on the pods it selects instead",
                    r.describe()
                )),
            ),
        }),
        _ => None,
    }
}

/// Leaving out a Kubernetes policy that cannot be converted would take away the isolation it
/// gives its pods; instead they get a policy with no rules (the tier default denies). When even
/// its podSelector is unusable, every pod of the namespace is isolated.
fn k8s_deny_stand_in(np: &Object<tabby_model::k8s::K8sNetworkPolicySpec>) -> Object<PolicySpec> {
    let terms = tabby_model::k8s_convert::label_selector_to_calico(&np.spec.pod_selector);
    let pods = format!("{LABEL_ORCHESTRATOR} == 'k8s'");
    let candidate = if terms.is_empty() {
        pods.clone()
    } else {
        format!("{pods} && {terms}")
    };
    let selector = if tabby_model::selector::Selector::parse(&candidate).is_ok() {
        candidate
    } else {
        pods
    };
    let types = np
        .spec
        .effective_policy_types()
        .iter()
        .filter_map(|t| match t.as_str() {
            "Ingress" => Some(tabby_model::policy::PolicyType::Ingress),
            "Egress" => Some(tabby_model::policy::PolicyType::Egress),
            _ => None,
        })
        .collect();
    Object {
        metadata: tabby_model::ObjectMeta {
            name: np.metadata.name.clone(),
            namespace: np.metadata.namespace.clone(),
            ..Default::default()
        },
        spec: PolicySpec {
            tier: Some("default".to_owned()),
            order: Some(1000.0),
            selector: Some(selector),
            types,
            ..Default::default()
        },
        status: None,
    }
}

/// Absent orders sort last.
pub(crate) fn order_key(order: Option<f64>) -> f64 {
    order.unwrap_or(f64::INFINITY)
}

fn protocol_of(p: Option<&str>) -> Protocol {
    p.and_then(|p| Protocol::parse(&IntOrString::String(p.to_owned())).ok())
        .unwrap_or(Protocol::Tcp)
}

/// A pod's namespace and service account, with Kubernetes' defaults.
fn pod_namespace_and_account(pod: &Object<PodSpec>) -> (String, String) {
    let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "default".to_owned());
    (
        or_default(&pod.metadata.namespace),
        or_default(&pod.spec.service_account_name),
    )
}

pub(crate) fn pod_endpoint(mut pod: Object<PodSpec>) -> Endpoint {
    let (namespace, sa) = pod_namespace_and_account(&pod);
    let mut labels = std::mem::take(&mut pod.metadata.labels);
    labels.insert(LABEL_NAMESPACE.to_owned(), namespace.clone());
    labels.insert(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned());
    labels.insert(LABEL_SERVICE_ACCOUNT.to_owned(), sa.clone());
    let ips = pod_ips(pod.status.as_ref());
    let ports = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let name = p.name.clone()?;
            Some(NamedPort {
                name,
                protocol: protocol_of(p.protocol.as_deref()),
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    Endpoint {
        id: EndpointId {
            namespace: namespace.clone(),
            name: pod.metadata.name.clone(),
        },
        labels,
        ips,
        ports,
        profiles: vec![format!("kns.{namespace}"), format!("ksa.{namespace}.{sa}")],
        service_account: Some(sa),
        node: pod.spec.node_name.clone(),
        interface: tabby_model::node::workload_interface_name(&namespace, &pod.metadata.name),
    }
}

/// A pod's addresses from its status (`podIPs`, else `podIP`).
fn pod_ips(status: Option<&serde_json::Value>) -> Vec<IpAddr> {
    let Some(typed) = status.and_then(|s| serde_json::from_value::<PodStatus>(s.clone()).ok())
    else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = typed
        .pod_ips
        .iter()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(typed.pod_ip.and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    ips
}

pub(crate) fn wep_endpoint(mut wep: Object<WorkloadEndpointSpec>) -> Endpoint {
    let namespace = wep.metadata.namespace.take().unwrap_or_default();
    let mut labels = std::mem::take(&mut wep.metadata.labels);
    let spec = &wep.spec;
    if !namespace.is_empty() {
        labels.insert(LABEL_NAMESPACE.to_owned(), namespace.clone());
    }
    if let Some(o) = &spec.orchestrator {
        labels.insert(LABEL_ORCHESTRATOR.to_owned(), o.clone());
    }
    if let Some(sa) = &spec.service_account_name {
        labels.insert(LABEL_SERVICE_ACCOUNT.to_owned(), sa.clone());
    }
    let ips = spec
        .ip_networks
        .iter()
        .filter_map(|n| parse_net(n).ok())
        .map(|n| n.addr())
        .collect();
    let ports = spec
        .ports
        .iter()
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone(),
                protocol: p
                    .protocol
                    .as_ref()
                    .map_or(Some(Protocol::Tcp), |v| Protocol::parse(v).ok())?,
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Endpoint {
        id: EndpointId {
            namespace,
            name: spec
                .pod
                .clone()
                .unwrap_or_else(|| wep.metadata.name.clone()),
        },
        labels,
        ips,
        ports,
        profiles: spec.profiles.clone(),
        service_account: spec.service_account_name.clone(),
        node: Some(spec.node.clone()),
        interface: spec.interface_name.clone(),
    }
}

/// Profiles' labels go under the endpoint's own, in profile order (earlier profiles win).
fn inherit_profile_labels(ep: &mut Endpoint, profiles: &BTreeMap<String, ProfileInfo>) {
    for name in &ep.profiles {
        if let Some(p) = profiles.get(name) {
            for (k, v) in &p.labels_to_apply {
                ep.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
