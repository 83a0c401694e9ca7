//! The reference evaluator: a deliberately plain reading of Calico's policy semantics that
//! answers "is this connection allowed, and which tier, policy and rule decided". It is the
//! oracle the incremental engine is tested against and what `tabby policy` reports, so it
//! favours obviousness over speed: it walks every tier and policy for every question.

use std::fmt;
use std::net::IpAddr;

use tabby_model::policy::{Action, PolicyType};
use tabby_model::selector::{Labels as SelectorLabels, Selector};
use tabby_model::values::{Labels, PortSpec, Protocol};

use crate::cluster::{Cluster, Endpoint, EndpointId, LABEL_NAME};
use crate::compile::{CompiledEntity, CompiledPolicy, CompiledRule, NamespaceScope};

/// One side of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    /// A workload tabby knows.
    Endpoint(&'a Endpoint),
    /// An address outside the cluster's endpoints (no policy of its own applies to it).
    External(IpAddr),
}

impl Peer<'_> {
    fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::External(_) => None,
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Endpoint(e) => e.ips.first().copied(),
            Self::External(ip) => Some(*ip),
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Endpoint(e) => e.id.to_string(),
            Self::External(ip) => ip.to_string(),
        }
    }
}

/// What is being asked about: the first packet of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// IP protocol.
    pub protocol: Protocol,
    /// Destination port (TCP, UDP, SCTP).
    pub port: Option<u16>,
    /// Source port; unknown (an ephemeral port) unless given, so rules on source ports do not
    /// match.
    pub source_port: Option<u16>,
    /// ICMP type and code, for ICMP queries.
    pub icmp: Option<(u8, Option<u8>)>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "TCP".to_owned(),
            Protocol::Udp => "UDP".to_owned(),
            Protocol::Sctp => "SCTP".to_owned(),
            Protocol::Icmp => "ICMP".to_owned(),
            Protocol::IcmpV6 => "ICMPv6".to_owned(),
            Protocol::UdpLite => "UDPLite".to_owned(),
            Protocol::Number(n) => format!("protocol {n}"),
        };
        match self.port {
            Some(p) => write!(f, "{proto}/{p}"),
            None => f.write_str(&proto),
        }
    }
}

/// A rule that decided, or that logged.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRef {
    /// Tier of the policy.
    pub tier: String,
    /// `Kind "ns/name"` of the policy.
    pub policy: String,
    /// Rule index within the direction's rules.
    pub rule: usize,
    /// The rule's action.
    pub action: Action,
}

/// How one direction was decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A policy rule allowed.
    AllowedByRule(RuleRef),
    /// A policy rule denied.
    DeniedByRule(RuleRef),
    /// Policies of the tier selected the endpoint but none decided; the tier's default is Deny.
    DeniedByTierDefault {
        /// The tier.
        tier: String,
        /// The policies that selected the endpoint in it.
        policies: Vec<String>,
    },
    /// No policy decided; a profile rule allowed.
    AllowedByProfile {
        /// The profile.
        profile: String,
        /// The rule's index.
        rule: usize,
    },
    /// No policy decided; a profile rule denied.
    DeniedByProfile {
        /// The profile.
        profile: String,
        /// The rule's index.
        rule: usize,
    },
    /// A profile the endpoint names does not exist (fail closed).
    DeniedMissingProfile {
        /// The profile.
        profile: String,
    },
    /// No policy decided and no profile allowed.
    DeniedNoProfileAllowed {
        /// The endpoint's profiles.
        profiles: Vec<String>,
    },
    /// This side is not a tabby endpoint, so no policy applies to it here.
    NotPoliced,
}

impl Decision {
    /// Whether the direction lets the packet through.
    pub fn allowed(&self) -> bool {
        matches!(
            self,
            Self::AllowedByRule(_) | Self::AllowedByProfile { .. } | Self::NotPoliced
        )
    }
}

/// The verdict for one direction at one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionVerdict {
    /// Egress (at the source) or ingress (at the destination).
    pub direction: PolicyType,
    /// The endpoint whose policy this is.
    pub endpoint: String,
    /// What decided.
    pub decision: Decision,
    /// Tiers that handed the decision on with Pass (a rule or the tier default).
    pub passed: Vec<String>,
    /// Log rules that matched on the way.
    pub logged: Vec<RuleRef>,
}

/// The verdict for a connection: egress at the source, then ingress at the destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// At the source.
    pub egress: DirectionVerdict,
    /// At the destination.
    pub ingress: DirectionVerdict,
}

impl Verdict {
    /// Whether the connection is allowed: both directions must allow.
    pub fn allowed(&self) -> bool {
        self.egress.decision.allowed() && self.ingress.decision.allowed()
    }
}

/// Evaluates a connection from `src` to `dst`.
pub fn evaluate(cluster: &Cluster, src: Peer<'_>, dst: Peer<'_>, q: &Query) -> Verdict {
    Verdict {
        egress: direction(cluster, PolicyType::Egress, src, src, dst, q),
        ingress: direction(cluster, PolicyType::Ingress, dst, src, dst, q),
    }
}

fn rule_ref(p: &CompiledPolicy, r: &CompiledRule) -> RuleRef {
    RuleRef {
        tier: p.tier.clone(),
        policy: p.describe(),
        rule: r.index,
        action: r.action,
    }
}

fn direction(
    cluster: &Cluster,
    dir: PolicyType,
    at: Peer<'_>,
    src: Peer<'_>,
    dst: Peer<'_>,
    q: &Query,
) -> DirectionVerdict {
    let mut verdict = DirectionVerdict {
        direction: dir,
        endpoint: at.name(),
        decision: Decision::NotPoliced,
        passed: Vec::new(),
        logged: Vec::new(),
    };
    let Some(ep) = at.endpoint() else {
        return verdict;
    };
    'tiers: for tier in &cluster.tiers {
        let applicable: Vec<&CompiledPolicy> = cluster
            .policies
            .iter()
            .filter(|p| p.tier == tier.name && p.types.contains(&dir) && policy_selects(p, ep))
            .collect();
        if applicable.is_empty() {
            continue;
        }
        for p in &applicable {
            for r in p.rules(dir) {
                if !rule_matches(cluster, r, src, dst, q) {
                    continue;
                }
                match r.action {
                    Action::Allow => {
                        verdict.decision = Decision::AllowedByRule(rule_ref(p, r));
                        return verdict;
                    }
                    Action::Deny => {
                        verdict.decision = Decision::DeniedByRule(rule_ref(p, r));
                        return verdict;
                    }
                    Action::Pass => {
                        verdict.passed.push(tier.name.clone());
                        continue 'tiers;
                    }
                    Action::Log => verdict.logged.push(rule_ref(p, r)),
                }
            }
        }
        if tier.default_action == Action::Pass {
            verdict.passed.push(tier.name.clone());
            continue;
        }
        verdict.decision = Decision::DeniedByTierDefault {
            tier: tier.name.clone(),
            policies: applicable.iter().map(|p| p.describe()).collect(),
        };
        return verdict;
    }
    verdict.decision = profiles(cluster, dir, ep, src, dst, q, &mut verdict.logged);
    verdict
}

fn profiles(
    cluster: &Cluster,
    dir: PolicyType,
    ep: &Endpoint,
    src: Peer<'_>,
    dst: Peer<'_>,
    q: &Query,
    logged: &mut Vec<RuleRef>,
) -> Decision {
    for name in &ep.profiles {
        let Some(profile) = cluster.profiles.get(name) else {
            return Decision::DeniedMissingProfile {
                profile: name.clone(),
            };
        };
        let rules = match dir {
            PolicyType::Ingress => &profile.ingress,
            PolicyType::Egress => &profile.egress,
        };
        for r in rules {
            if !rule_matches(cluster, r, src, dst, q) {
                continue;
            }
            match r.action {
                Action::Allow => {
                    return Decision::AllowedByProfile {
                        profile: name.clone(),
                        rule: r.index,
                    };
                }
                Action::Deny => {
                    return Decision::DeniedByProfile {
                        profile: name.clone(),
                        rule: r.index,
                    };
                }
                // After the profiles there is nothing to pass to: try the next profile.
                Action::Pass => break,
                Action::Log => logged.push(RuleRef {
                    tier: String::new(),
                    policy: format!("Profile {name:?}"),
                    rule: r.index,
                    action: Action::Log,
                }),
            }
        }
    }
    Decision::DeniedNoProfileAllowed {
        profiles: ep.profiles.clone(),
    }
}

/// An entity's labels inherited under a prefix (`pcns.` from its namespace, `pcsa.` from its
/// service account), read without the prefix: what namespace and service account selectors
/// match, as in Calico, where they are rewritten onto the prefixed labels.
struct Inherited<'a> {
    labels: &'a Labels,
    prefix: &'static str,
}

impl SelectorLabels for Inherited<'_> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.labels
            .get(&format!("{}{key}", self.prefix))
            .map(String::as_str)
    }
}

fn namespace_labels(labels: &Labels) -> Inherited<'_> {
    Inherited {
        labels,
        prefix: "pcns.",
    }
}

fn service_account_labels(labels: &Labels) -> Inherited<'_> {
    Inherited {
        labels,
        prefix: "pcsa.",
    }
}

/// Whether a policy applies to an endpoint (for the directions in its types).
fn policy_selects(p: &CompiledPolicy, ep: &Endpoint) -> bool {
    if let Some(ns) = &p.namespace
        && ep.id.namespace != *ns
    {
        return false;
    }
    if !p.selector.matches(&ep.labels) {
        return false;
    }
    if let Some(ns_sel) = &p.namespace_selector
        && (ep.id.namespace.is_empty() || !ns_sel.matches(&namespace_labels(&ep.labels)))
    {
        return false;
    }
    if let Some(sa_sel) = &p.service_account_selector
        && !sa_sel.matches(&service_account_labels(&ep.labels))
    {
        return false;
    }
    true
}

fn rule_matches(
    cluster: &Cluster,
    r: &CompiledRule,
    src: Peer<'_>,
    dst: Peer<'_>,
    q: &Query,
) -> bool {
    if let Some(p) = r.protocol
        && p != q.protocol
    {
        return false;
    }
    if r.not_protocol == Some(q.protocol) {
        return false;
    }
    if let Some(v) = r.ip_version {
        let version = dst
            .ip()
            .or_else(|| src.ip())
            .map(|ip| if ip.is_ipv4() { 4 } else { 6 });
        if version != Some(v) {
            return false;
        }
    }
    if let Some(m) = r.icmp
        && !icmp_matches(m, q)
    {
        return false;
    }
    if let Some(m) = r.not_icmp
        && icmp_matches(m, q)
    {
        return false;
    }
    entity_matches(cluster, &r.source, src, q.source_port, q)
        && entity_matches(cluster, &r.destination, dst, q.port, q)
}

fn icmp_matches((t, c): (Option<u8>, Option<u8>), q: &Query) -> bool {
    let Some((qt, qc)) = q.icmp else {
        return false;
    };
    t.is_none_or(|t| t == qt) && c.is_none_or(|c| Some(c) == qc)
}

fn scope_admits(scope: &NamespaceScope, ns: &str, labels: &Labels) -> bool {
    match scope {
        NamespaceScope::Any => true,
        NamespaceScope::Own(own) => ns == own,
        NamespaceScope::Global => ns.is_empty(),
        NamespaceScope::AllNamespaced => !ns.is_empty(),
        NamespaceScope::Matching(sel) => !ns.is_empty() && sel.matches(&namespace_labels(labels)),
    }
}

/// What a selector of an entity rule asks of one endpoint or network set.
struct SetQuery<'a> {
    selector: Option<&'a Selector>,
    scope: &'a NamespaceScope,
    service_account_names: &'a [String],
    service_account_selector: Option<&'a Selector>,
}

impl SetQuery<'_> {
    fn admits(&self, ns: &str, labels: &Labels) -> bool {
        let sa = service_account_labels(labels);
        scope_admits(self.scope, ns, labels)
            && self.selector.is_none_or(|s| s.matches(labels))
            && (self.service_account_names.is_empty()
                || sa
                    .get_label(LABEL_NAME)
                    .is_some_and(|n| self.service_account_names.iter().any(|x| x == n)))
            && self.service_account_selector.is_none_or(|s| s.matches(&sa))
    }
}

/// Whether the peer is in the set a rule's selector names: an endpoint that matches, or an
/// address inside a network set that matches. Every condition holds of the same entity.
fn in_selected_set(cluster: &Cluster, q: &SetQuery<'_>, peer: Peer<'_>) -> bool {
    if let Some(ep) = peer.endpoint()
        && q.admits(&ep.id.namespace, &ep.labels)
    {
        return true;
    }
    let Some(ip) = peer.ip() else {
        return false;
    };
    cluster.network_sets.iter().any(|set| {
        set.nets.iter().any(|n| n.contains(&ip)) && q.admits(&set.namespace, &set.labels)
    })
}

/// A named port resolves on the endpoint itself, and only when the endpoint is one the rule
/// selects (`selected`), not merely inside a selected network set: network sets have no ports.
fn port_matches(
    spec: &PortSpec,
    port: u16,
    peer: Peer<'_>,
    protocol: Protocol,
    selected: Option<&SetQuery<'_>>,
) -> bool {
    match spec {
        PortSpec::Number(n) => *n == port,
        PortSpec::Range(lo, hi) => (*lo..=*hi).contains(&port),
        PortSpec::Named(name) => peer.endpoint().is_some_and(|ep| {
            selected.is_none_or(|q| q.admits(&ep.id.namespace, &ep.labels))
                && ep
                    .ports
                    .iter()
                    .any(|p| p.name == *name && p.protocol == protocol && p.port == port)
        }),
    }
}

fn entity_matches(
    cluster: &Cluster,
    e: &CompiledEntity,
    peer: Peer<'_>,
    port: Option<u16>,
    q: &Query,
) -> bool {
    if e.services {
        return false;
    }
    let ip = peer.ip();
    if !e.nets.is_empty() && !ip.is_some_and(|ip| e.nets.iter().any(|n| n.contains(&ip))) {
        return false;
    }
    if ip.is_some_and(|ip| e.not_nets.iter().any(|n| n.contains(&ip))) {
        return false;
    }
    let selected = SetQuery {
        selector: e.selector.as_ref(),
        scope: &e.scope,
        service_account_names: &e.service_account_names,
        service_account_selector: e.service_account_selector.as_ref(),
    };
    if e.has_selector() && !in_selected_set(cluster, &selected, peer) {
        return false;
    }
    if let Some(not) = &e.not_selector {
        let excluded = SetQuery {
            selector: Some(not),
            scope: &e.scope,
            service_account_names: &[],
            service_account_selector: None,
        };
        if in_selected_set(cluster, &excluded, peer) {
            return false;
        }
    }
    if !e.ports.is_empty()
        && !port.is_some_and(|p| {
            e.ports.iter().any(|s| {
                port_matches(
                    s,
                    p,
                    peer,
                    q.protocol,
                    Some(&selected).filter(|_| e.has_selector()),
                )
            })
        })
    {
        return false;
    }
    if port.is_some_and(|p| {
        e.not_ports
            .iter()
            .any(|s| port_matches(s, p, peer, q.protocol, None))
    }) {
        return false;
    }
    true
}

/// Who can reach whom: every ordered pair of endpoints (the diagonal included).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Endpoints, in row and column order.
    pub endpoints: Vec<EndpointId>,
    /// `allowed[from][to]`.
    pub allowed: Vec<Vec<bool>>,
}

/// Computes the matrix for one kind of connection.
pub fn matrix(cluster: &Cluster, q: &Query) -> Matrix {
    let eps: Vec<&Endpoint> = cluster.endpoints.values().collect();
    let allowed = eps
        .iter()
        .map(|from| {
            eps.iter()
                .map(|to| evaluate(cluster, Peer::Endpoint(from), Peer::Endpoint(to), q).allowed())
                .collect()
        })
        .collect();
    Matrix {
        endpoints: eps.iter().map(|e| e.id.clone()).collect(),
        allowed,
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tier.is_empty() {
            write!(f, "{} rule {} ({:?})", self.policy, self.rule, self.action)
        } else {
            write!(
                f,
                "tier {:?}, {} rule {} ({:?})",
                self.tier, self.policy, self.rule, self.action
            )
        }
    }
}

impl fmt::Display for DirectionVerdict {
    /// A sentence or two a person can act on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dir, prep) = match self.direction {
            PolicyType::Egress => ("egress", "from"),
            PolicyType::Ingress => ("ingress", "to"),
        };
        let verdict = if self.decision.allowed() {
            "allowed"
        } else {
            "denied"
        };
        writeln!(f, "{dir} {prep} {}: {verdict}", self.endpoint)?;
        for tier in &self.passed {
            writeln!(f, "  tier {tier:?} passed the decision on to the next tier")?;
        }
        for log in &self.logged {
            writeln!(f, "  logged by {log}")?;
        }
        match &self.decision {
            Decision::AllowedByRule(r) => writeln!(f, "  allowed by {r}"),
            Decision::DeniedByRule(r) => writeln!(f, "  denied by {r}"),
            Decision::DeniedByTierDefault { tier, policies } => writeln!(
                f,
                "  tier {tier:?}: {} select{} {} for {dir} but no rule matched; the tier's default action is Deny \
                 (add an Allow or Pass rule to one of them, or a policy in an earlier tier)",
                policies.join(", "),
                if policies.len() == 1 { "s" } else { "" },
                self.endpoint
            ),
            Decision::AllowedByProfile { profile, rule } => writeln!(
                f,
                "  no policy selects {} for {dir}; profile {profile:?} allows it (rule {rule})",
                self.endpoint
            ),
            Decision::DeniedByProfile { profile, rule } => writeln!(
                f,
                "  no policy decided; profile {profile:?} denies it (rule {rule})"
            ),
            Decision::DeniedMissingProfile { profile } => writeln!(
                f,
                "  no policy decided and the endpoint's profile {profile:?} does not exist, so it is denied (fail closed)"
            ),
            Decision::DeniedNoProfileAllowed { profiles } => writeln!(
                f,
                "  no policy decided and none of its profiles ({}) allows it",
                if profiles.is_empty() {
                    "none".to_owned()
                } else {
                    profiles.join(", ")
                }
            ),
            Decision::NotPoliced => {
                writeln!(f, "  not a tabby endpoint: no policy applies on this side")
            }
        }
    }
}
