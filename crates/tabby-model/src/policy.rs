//! Policy kinds: Tier, GlobalNetworkPolicy, NetworkPolicy, their staged forms, Profile, and the
//! rule language they share (Calico `projectcalico.org/v3` field names).

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::values::{
    IntOrString, Labels, PortSpec, Protocol, check_enum, check_labels, check_nets, check_selector,
    dns_subdomain, parse_net,
};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Accept in this direction; later tiers and profiles are skipped.
    Allow,
    /// Drop.
    Deny,
    /// Log the packet and go on to the next rule.
    Log,
    /// Skip the rest of this tier and continue with the next.
    Pass,
}

/// A direction of traffic relative to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic arriving at the endpoint.
    Ingress,
    /// Traffic leaving the endpoint.
    Egress,
}

/// ICMP type and code match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpMatch {
    /// ICMP type, 0-254.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    /// ICMP code, 0-255; requires a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// Match on the Kubernetes service account of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    /// Service account names (ORed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A selector on the service accounts' labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Match on a Kubernetes Service's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Service namespace (defaults to the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The source or destination of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// CIDRs, ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// CIDRs that must all not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// Endpoints (and network sets) whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Anything that is not an endpoint matching this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// Namespaces whose labels match (`global()` for non-namespaced entities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Ports: numbers, ranges `lo:hi` or named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<IntOrString>,
    /// Ports that must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<IntOrString>,
    /// Service-account match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kubernetes Service match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
}

/// HTTP match (carried for compatibility; enforced by an L7 proxy, not the kernel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    /// HTTP methods, ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths, ORed; each entry has exactly one of `exact` or `prefix`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

/// One HTTP path match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPath {
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Rule metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    /// Annotations, shown in rule comments.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
}

/// One rule of a policy or profile. All criteria are ANDed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// What to do on a match.
    pub action: Action,
    /// 4 or 6: restrict the rule to one IP version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    /// Protocol name or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<IntOrString>,
    /// Protocol that must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<IntOrString>,
    /// ICMP match (protocol ICMP or ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    /// ICMP that must not match.
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    /// Source match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EntityRule>,
    /// Destination match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<EntityRule>,
    /// HTTP match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// Where a rule stands, which changes what it may say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleContext {
    /// Whether the rule's direction is ingress.
    pub(crate) ingress: bool,
}

const MAX_RULES: usize = 1024;
const MAX_NETS: usize = 256;
const MAX_PORTS: usize = 50;

pub(crate) fn check_rules(c: &mut Checker, field: &str, rules: &[Rule], ingress: bool) {
    c.field(field, |c| {
        if rules.len() > MAX_RULES {
            c.error(format!(
                "has {} rules; at most {MAX_RULES} are allowed",
                rules.len()
            ));
        }
    });
    c.each(field, rules, |c, r| {
        check_rule(c, r, RuleContext { ingress })
    });
}

fn check_rule(c: &mut Checker, rule: &Rule, ctx: RuleContext) {
    if let Some(v) = rule.ip_version
        && v != 4
        && v != 6
    {
        c.error_at("ipVersion", format!("{v} is not an IP version: use 4 or 6"));
    }
    let protocol = parse_protocol(c, "protocol", rule.protocol.as_ref());
    parse_protocol(c, "notProtocol", rule.not_protocol.as_ref());
    for (field, icmp) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
        if let Some(icmp) = icmp {
            c.field(field, |c| check_icmp(c, icmp, protocol, rule.ip_version));
        }
    }
    for (field, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        if let Some(e) = entity {
            c.field(field, |c| {
                check_entity(c, e, protocol, rule.ip_version, ctx)
            });
        }
    }
    if let Some(http) = &rule.http {
        c.field("http", |c| {
            if rule.action != Action::Allow {
                c.error("an HTTP match is only allowed in Allow rules");
            }
            if protocol.is_some_and(|p| p != Protocol::Tcp) {
                c.error("an HTTP match needs protocol TCP");
            }
            c.each("methods", &http.methods, |c, m| {
                if m.is_empty() {
                    c.error("method is empty");
                }
            });
            c.each("paths", &http.paths, |c, p| {
                if p.exact.is_some() == p.prefix.is_some() {
                    c.error("give exactly one of exact or prefix");
                }
            });
        });
    }
}

fn parse_protocol(c: &mut Checker, field: &str, v: Option<&IntOrString>) -> Option<Protocol> {
    let v = v?;
    match Protocol::parse(v) {
        Ok(p) => Some(p),
        Err(e) => {
            c.error_at(field, e);
            None
        }
    }
}

fn check_icmp(
    c: &mut Checker,
    icmp: &IcmpMatch,
    protocol: Option<Protocol>,
    ip_version: Option<i64>,
) {
    match protocol {
        Some(Protocol::Icmp) if ip_version == Some(6) => {
            c.error("protocol ICMP does not match ipVersion 6 (use ICMPv6)");
        }
        Some(Protocol::IcmpV6) if ip_version == Some(4) => {
            c.error("protocol ICMPv6 does not match ipVersion 4 (use ICMP)");
        }
        Some(Protocol::Icmp | Protocol::IcmpV6) => {}
        _ => c.error("an ICMP match needs protocol ICMP or ICMPv6"),
    }
    if let Some(t) = icmp.icmp_type
        && !(0..=254).contains(&t)
    {
        c.error_at("type", format!("ICMP type {t} is out of range 0-254"));
    }
    if let Some(code) = icmp.code {
        if !(0..=255).contains(&code) {
            c.error_at("code", format!("ICMP code {code} is out of range 0-255"));
        }
        if icmp.icmp_type.is_none() {
            c.error_at("code", "an ICMP code needs an ICMP type");
        }
    }
}

fn check_entity(
    c: &mut Checker,
    e: &EntityRule,
    protocol: Option<Protocol>,
    ip_version: Option<i64>,
    ctx: RuleContext,
) {
    for (field, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
        check_nets(c, field, nets, MAX_NETS);
        if let Some(v) = ip_version {
            c.each(field, nets, |c, n| {
                if let Ok(net) = parse_net(n)
                    && (v == 4) != matches!(net, ipnet::IpNet::V4(_))
                {
                    c.error(format!("{n} does not match ipVersion {v}"));
                }
            });
        }
    }
    // Calico forbids global() only in policy-level selectors; in a rule it simply matches.
    if let Some(s) = &e.selector {
        check_selector(c, "selector", s, true);
    }
    if let Some(s) = &e.not_selector {
        check_selector(c, "notSelector", s, true);
    }
    if let Some(s) = &e.namespace_selector {
        check_selector(c, "namespaceSelector", s, true);
    }
    for (field, ports) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
        if ports.is_empty() {
            continue;
        }
        c.field(field, |c| {
            if ports.len() > MAX_PORTS {
                c.error(format!(
                    "has {} entries; at most {MAX_PORTS} are allowed",
                    ports.len()
                ));
            }
            if !protocol
                .is_some_and(|p| matches!(p, Protocol::Tcp | Protocol::Udp | Protocol::Sctp))
            {
                c.error("ports need the rule's protocol to be TCP, UDP or SCTP");
            }
        });
        c.each(field, ports, |c, p| {
            if let Err(reason) = PortSpec::parse(p) {
                c.error(reason);
            }
        });
    }
    if let Some(sa) = &e.service_accounts {
        c.field("serviceAccounts", |c| {
            c.each("names", &sa.names, |c, n| {
                if let Err(r) = dns_subdomain(n) {
                    c.error(format!("service account name {n:?} {r}"));
                }
            });
            if let Some(s) = &sa.selector {
                check_selector(c, "selector", s, false);
            }
        });
    }
    if let Some(svc) = &e.services {
        c.field("services", |c| {
            if svc.name.is_empty() {
                c.error_at("name", "a service match needs the service's name");
            }
            let combined = e.selector.is_some()
                || e.not_selector.is_some()
                || e.namespace_selector.is_some()
                || !e.nets.is_empty()
                || !e.not_nets.is_empty()
                || e.service_accounts.is_some();
            if combined {
                c.error(
                    "services cannot be combined with selector, notSelector, \
                     namespaceSelector, nets, notNets or serviceAccounts",
                );
            }
            if !ctx.ingress && (!e.ports.is_empty() || !e.not_ports.is_empty()) {
                c.error("ports cannot be combined with services in an egress rule: the service's own ports apply");
            }
        });
    }
}

/// Spec of GlobalNetworkPolicy, NetworkPolicy and their staged forms. Fields that only some of
/// these kinds allow are checked per kind, so a misplaced field is an error, never ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Tier the policy belongs to (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Order within the tier; lower first; absent means last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (`all()` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Further restricts the endpoints by service account labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Global policies only: restricts the endpoints by namespace labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Directions the policy governs; defaulted from the rules when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Global policies only: stateless (untracked) policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_track: Option<bool>,
    /// Global policies only: applied before DNAT.
    #[serde(rename = "preDNAT", default, skip_serializing_if = "Option::is_none")]
    pub pre_dnat: Option<bool>,
    /// Global policies only: also applies to forwarded traffic through host endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
    /// Programming hints; never change enforcement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
    /// Staged kinds only: what enforcing this staged policy would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<String>,
}

/// Which of the four policy kinds a [`PolicySpec`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyFlavor {
    pub(crate) global: bool,
    pub(crate) staged: bool,
}

impl PolicySpec {
    /// The directions this policy governs, with Calico's defaulting applied when `types` is
    /// empty: Ingress unless there are only egress rules, Egress when there are egress rules.
    pub fn effective_types(&self) -> Vec<PolicyType> {
        if !self.types.is_empty() {
            return self.types.clone();
        }
        let mut types = Vec::new();
        if !self.ingress.is_empty() || self.egress.is_empty() {
            types.push(PolicyType::Ingress);
        }
        if !self.egress.is_empty() {
            types.push(PolicyType::Egress);
        }
        types
    }

    pub(crate) fn apply_defaults(&mut self) {
        if self.tier.is_none() {
            self.tier = Some("default".to_owned());
        }
        if self.types.is_empty() {
            self.types = self.effective_types();
        }
    }

    pub(crate) fn check(&self, c: &mut Checker, flavor: PolicyFlavor) {
        c.field("spec", |c| self.check_spec(c, flavor));
    }

    fn check_spec(&self, c: &mut Checker, flavor: PolicyFlavor) {
        if let Some(tier) = &self.tier
            && let Err(r) = dns_subdomain(tier)
        {
            c.error_at("tier", format!("tier name {tier:?} {r}"));
        }
        if let Some(order) = self.order
            && !order.is_finite()
        {
            c.error_at("order", "must be a finite number");
        }
        if let Some(s) = &self.selector {
            check_selector(c, "selector", s, false);
        }
        if let Some(s) = &self.service_account_selector {
            check_selector(c, "serviceAccountSelector", s, false);
        }
        if !flavor.global {
            let only_global = [
                ("namespaceSelector", self.namespace_selector.is_some()),
                ("doNotTrack", self.do_not_track.is_some()),
                ("preDNAT", self.pre_dnat.is_some()),
                ("applyOnForward", self.apply_on_forward.is_some()),
            ];
            for (field, present) in only_global {
                if present {
                    c.error_at(
                        field,
                        "is only valid on global policies (a namespaced policy applies within its own namespace)",
                    );
                }
            }
        } else if let Some(s) = &self.namespace_selector {
            check_selector(c, "namespaceSelector", s, false);
        }
        let mut seen = Vec::new();
        c.each("types", &self.types, |c, t| {
            if seen.contains(t) {
                c.error(format!("{t:?} is listed twice"));
            }
            seen.push(*t);
        });
        if !self.types.is_empty() {
            if !self.ingress.is_empty() && !self.types.contains(&PolicyType::Ingress) {
                c.error_at(
                    "ingress",
                    "has rules but types does not include Ingress, so they would never apply",
                );
            }
            if !self.egress.is_empty() && !self.types.contains(&PolicyType::Egress) {
                c.error_at(
                    "egress",
                    "has rules but types does not include Egress, so they would never apply",
                );
            }
        }
        check_rules(c, "ingress", &self.ingress, true);
        check_rules(c, "egress", &self.egress, false);
        let pre_dnat = self.pre_dnat.unwrap_or(false);
        let untracked = self.do_not_track.unwrap_or(false);
        let on_forward = self.apply_on_forward.unwrap_or(false);
        if pre_dnat && untracked {
            c.error_at("preDNAT", "preDNAT and doNotTrack cannot both be set");
        }
        if pre_dnat && (!self.egress.is_empty() || self.types.contains(&PolicyType::Egress)) {
            c.error_at("preDNAT", "a preDNAT policy has ingress rules only");
        }
        if (pre_dnat || untracked) && !on_forward {
            c.error_at(
                "applyOnForward",
                "must be true when preDNAT or doNotTrack is set",
            );
        }
        c.each("performanceHints", &self.performance_hints, |c, h| {
            if h != "AssumeNeededOnEveryNode" {
                c.error(format!(
                    "{h:?} is not a known hint (AssumeNeededOnEveryNode)"
                ));
            }
        });
        match (&self.staged_action, flavor.staged) {
            (Some(a), true) => {
                check_enum(c, "stagedAction", a, &["Set", "Delete", "Learn", "Ignore"])
            }
            (Some(_), false) => c.error_at("stagedAction", "is only valid on staged policies"),
            (None, _) => {}
        }
    }
}

/// Spec of a Tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Order among tiers; lower first; absent means last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens at the end of the tier when a policy in it selected the endpoint and none
    /// decided: `Deny` (default) or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

/// Tiers whose names and orders Calico reserves.
pub const RESERVED_TIERS: [(&str, f64, Action); 3] = [
    ("kube-admin", 1_000.0, Action::Pass),
    ("default", 1_000_000.0, Action::Deny),
    ("kube-baseline", 10_000_000.0, Action::Pass),
];

impl TierSpec {
    pub(crate) fn apply_defaults(&mut self, name: &str) {
        if let Some((_, order, action)) = RESERVED_TIERS.iter().find(|(n, ..)| *n == name) {
            self.order.get_or_insert(*order);
            self.default_action.get_or_insert(*action);
        }
        self.default_action.get_or_insert(Action::Deny);
    }

    pub(crate) fn check(&self, c: &mut Checker, name: &str) {
        c.field("spec", |c| {
            if let Some(order) = self.order {
                if !order.is_finite() {
                    c.error_at("order", "must be a finite number");
                }
                if let Some((_, fixed, _)) = RESERVED_TIERS.iter().find(|(n, ..)| *n == name)
                    && order != *fixed
                {
                    c.error_at(
                        "order",
                        format!("tier {name:?} is reserved with order {fixed}"),
                    );
                }
            }
            if let Some(a) = self.default_action
                && !matches!(a, Action::Deny | Action::Pass)
            {
                c.error_at(
                    "defaultAction",
                    format!("{a:?} is not allowed: use Deny or Pass"),
                );
            }
        });
    }
}

/// Spec of a Profile: rules and labels inherited by the endpoints that name it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels the endpoints inherit (their own labels win).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels_to_apply: Labels,
}

impl ProfileSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            check_rules(c, "ingress", &self.ingress, true);
            check_rules(c, "egress", &self.egress, false);
            check_labels(c, "labelsToApply", &self.labels_to_apply);
        });
    }
}
