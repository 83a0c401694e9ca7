//! Conversion of a Kubernetes `networking.k8s.io/v1` NetworkPolicy into the Calico v3 policy
//! that Calico's own converter (`K8sNetworkPolicyToCalico`) makes of it: a namespaced policy in
//! the `default` tier at order 1000, one Allow rule per (protocol, peer), and selectors spelt
//! exactly as Calico spells them.
//!
//! It does no I/O: it maps one typed object to another. Anything the Kubernetes API server would
//! have refused (and Calico therefore never sees) is an error naming the field path.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::k8s::{K8sNetworkPolicySpec, LabelSelector, NetworkPolicyPeer, NetworkPolicyPort};
use crate::meta::ObjectMeta;
use crate::policy::{Action, EntityRule, PolicySpec, PolicyType, Rule};
use crate::resource::Object;
use crate::values::{IntOrString, PortSpec, label_key, label_value};

/// The term Calico puts in front of every pod selector, so that only Kubernetes pods match
/// (not host endpoints or network sets that happen to carry the same labels).
const ORCHESTRATOR_K8S: &str = "projectcalico.org/orchestrator == 'k8s'";

/// The tier Kubernetes NetworkPolicies land in.
const TIER: &str = "default";

/// The order Calico gives every Kubernetes NetworkPolicy.
const ORDER: f64 = 1000.0;

/// Why a Kubernetes NetworkPolicy cannot be converted. Each names the field path, for example
/// `spec.ingress[0].from[1].ipBlock.cidr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A label key, a label value or a requirement's values that Kubernetes would refuse.
    #[error("{path}: {reason}")]
    InvalidSelector {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A matchExpressions operator other than In, NotIn, Exists or DoesNotExist.
    #[error("{path}: {operator:?} is not one of In, NotIn, Exists, DoesNotExist")]
    UnknownOperator {
        /// Where.
        path: String,
        /// The operator as written.
        operator: String,
    },
    /// An ipBlock `cidr` or `except` entry that is not a CIDR.
    #[error("{path}: {cidr:?} is not a valid CIDR")]
    InvalidCidr {
        /// Where.
        path: String,
        /// The text as written.
        cidr: String,
    },
    /// A port protocol other than TCP, UDP or SCTP.
    #[error("{path}: unknown protocol {protocol:?}: use TCP, UDP or SCTP")]
    UnknownProtocol {
        /// Where.
        path: String,
        /// The protocol as written.
        protocol: String,
    },
    /// A port, port name or endPort that does not make a port or a range.
    #[error("{path}: {reason}")]
    InvalidPort {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A peer with none of podSelector, namespaceSelector, ipBlock, or ipBlock with a selector.
    #[error("{path}: {reason}")]
    InvalidPeer {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A policyTypes entry other than Ingress or Egress.
    #[error("{path}: {value:?} is not one of Ingress, Egress")]
    UnknownPolicyType {
        /// Where.
        path: String,
        /// The type as written.
        value: String,
    },
}

impl ConvertError {
    /// The field path the error is about.
    pub fn path(&self) -> &str {
        match self {
            Self::InvalidSelector { path, .. }
            | Self::UnknownOperator { path, .. }
            | Self::InvalidCidr { path, .. }
            | Self::UnknownProtocol { path, .. }
            | Self::InvalidPort { path, .. }
            | Self::InvalidPeer { path, .. }
            | Self::UnknownPolicyType { path, .. } => path,
        }
    }
}

/// The Calico form of a Kubernetes NetworkPolicy: a namespaced policy in the `default` tier,
/// order 1000, with the same name and namespace (labels and annotations are not carried over,
/// as Calico does not carry them).
///
/// The policy selector is `projectcalico.org/orchestrator == 'k8s'` ANDed with the podSelector;
/// the restriction to the policy's namespace is left to whoever evaluates namespaced policies,
/// as in Calico. Rules keep Calico's order: for each k8s rule, protocols sorted by name, and
/// for each protocol the peers in order.
pub fn convert(np: &Object<K8sNetworkPolicySpec>) -> Result<Object<PolicySpec>, ConvertError> {
    let spec = &np.spec;
    let selector = pod_selector_to_calico(Some(&spec.pod_selector), "spec.podSelector")?;
    let types = policy_types(spec)?;

    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let path = format!("spec.ingress[{i}]");
        ingress.extend(rule_to_calico(
            r.from.as_deref().unwrap_or_default(),
            &format!("{path}.from"),
            r.ports.as_deref().unwrap_or_default(),
            &format!("{path}.ports"),
            true,
        )?);
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let path = format!("spec.egress[{i}]");
        egress.extend(rule_to_calico(
            r.to.as_deref().unwrap_or_default(),
            &format!("{path}.to"),
            r.ports.as_deref().unwrap_or_default(),
            &format!("{path}.ports"),
            false,
        )?);
    }

    Ok(Object {
        metadata: ObjectMeta {
            name: np.metadata.name.clone(),
            namespace: np.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: PolicySpec {
            tier: Some(TIER.to_owned()),
            order: Some(ORDER),
            selector: Some(selector),
            types,
            ingress,
            egress,
            ..PolicySpec::default()
        },
        status: None,
    })
}

/// A Kubernetes label selector in Calico's selector language, spelt as Calico spells it:
/// `k == 'v'` per matchLabels entry (keys sorted), then per requirement `k in { 'a', 'b' }`,
/// `k not in { 'a' }`, `has(k)` or `! has(k)`, all joined with ` && `. An empty selector gives
/// `""`: what it means (every pod, every namespace) is for the caller to say.
///
/// Requirements with any other operator are skipped, as Calico skips them; [`convert`] refuses
/// such selectors before they get here.
pub fn label_selector_to_calico(sel: &LabelSelector) -> String {
    selector_terms(sel).join(" && ")
}

fn selector_terms(sel: &LabelSelector) -> Vec<String> {
    // Labels is a BTreeMap, so the keys come out sorted byte-wise, as Go's sort.Strings does.
    let mut terms: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k} == '{v}'"))
        .collect();
    for e in &sel.match_expressions {
        let values = e.values.join("', '");
        match e.operator.as_str() {
            "In" => terms.push(format!("{} in {{ '{values}' }}", e.key)),
            "NotIn" => terms.push(format!("{} not in {{ '{values}' }}", e.key)),
            "Exists" => terms.push(format!("has({})", e.key)),
            "DoesNotExist" => terms.push(format!("! has({})", e.key)),
            _ => {}
        }
    }
    terms
}

/// A pod selector (policy-level or in a peer): the orchestrator term first, so that an absent
/// or empty podSelector still matches only Kubernetes pods.
fn pod_selector_to_calico(sel: Option<&LabelSelector>, path: &str) -> Result<String, ConvertError> {
    let mut terms = vec![ORCHESTRATOR_K8S.to_owned()];
    if let Some(sel) = sel {
        check_label_selector(sel, path)?;
        terms.extend(selector_terms(sel));
    }
    Ok(terms.join(" && "))
}

/// A peer's namespaceSelector: present but empty means every namespace, which Calico writes
/// `all()` because its empty namespaceSelector means "the policy's own namespace".
fn namespace_selector_to_calico(sel: &LabelSelector, path: &str) -> Result<String, ConvertError> {
    check_label_selector(sel, path)?;
    let s = label_selector_to_calico(sel);
    Ok(if s.is_empty() { "all()".to_owned() } else { s })
}

/// Refuses what the API server would refuse. Valid Kubernetes keys and values only use
/// characters the selector language takes inside labels and quotes, so what passes here
/// always makes a selector that parses.
fn check_label_selector(sel: &LabelSelector, path: &str) -> Result<(), ConvertError> {
    let invalid = |path: String, reason: String| ConvertError::InvalidSelector { path, reason };
    for (k, v) in &sel.match_labels {
        if let Err(r) = label_key(k) {
            return Err(invalid(
                format!("{path}.matchLabels"),
                format!("label key {k:?} {r}"),
            ));
        }
        if let Err(r) = label_value(v) {
            return Err(invalid(
                format!("{path}.matchLabels"),
                format!("value {v:?} of label {k:?} {r}"),
            ));
        }
    }
    for (i, e) in sel.match_expressions.iter().enumerate() {
        let here = format!("{path}.matchExpressions[{i}]");
        if let Err(r) = label_key(&e.key) {
            return Err(invalid(
                format!("{here}.key"),
                format!("label key {:?} {r}", e.key),
            ));
        }
        match e.operator.as_str() {
            "In" | "NotIn" => {
                if e.values.is_empty() {
                    return Err(invalid(
                        format!("{here}.values"),
                        format!("operator {} needs at least one value", e.operator),
                    ));
                }
                for v in &e.values {
                    if let Err(r) = label_value(v) {
                        return Err(invalid(
                            format!("{here}.values"),
                            format!("value {v:?} {r}"),
                        ));
                    }
                }
            }
            "Exists" | "DoesNotExist" => {
                if !e.values.is_empty() {
                    return Err(invalid(
                        format!("{here}.values"),
                        format!("operator {} takes no values", e.operator),
                    ));
                }
            }
            other => {
                return Err(ConvertError::UnknownOperator {
                    path: format!("{here}.operator"),
                    operator: other.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Calico lists Ingress before Egress whatever order policyTypes gives, and lists each once.
fn policy_types(spec: &K8sNetworkPolicySpec) -> Result<Vec<PolicyType>, ConvertError> {
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in spec.effective_policy_types().iter().enumerate() {
        match t.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => {
                return Err(ConvertError::UnknownPolicyType {
                    path: format!("spec.policyTypes[{i}]"),
                    value: other.to_owned(),
                });
            }
        }
    }
    let mut types = Vec::new();
    if ingress {
        types.push(PolicyType::Ingress);
    }
    if egress {
        types.push(PolicyType::Egress);
    }
    Ok(types)
}

/// One k8s rule as Calico rules. Protocols are the outer loop and peers the inner one, because
/// that is the order Calico emits them in, and rule indices show up in explanations.
fn rule_to_calico(
    peers: &[NetworkPolicyPeer],
    peers_path: &str,
    ports: &[NetworkPolicyPort],
    ports_path: &str,
    ingress: bool,
) -> Result<Vec<Rule>, ConvertError> {
    let mut entities = peers
        .iter()
        .enumerate()
        .map(|(i, p)| peer_to_calico(p, &format!("{peers_path}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    if entities.is_empty() {
        // No peers means any peer: one rule without a source (or destination) restriction.
        entities.push(EntityRule::default());
    }
    let groups = group_ports(ports, ports_path)?;

    let mut rules = Vec::with_capacity(groups.len() * entities.len());
    for group in &groups {
        let ports: Vec<IntOrString> = group.ports.iter().map(port_value).collect();
        for peer in &entities {
            let (source, destination) = if ingress {
                let dst = EntityRule {
                    ports: ports.clone(),
                    ..EntityRule::default()
                };
                (peer.clone(), dst)
            } else {
                let dst = EntityRule {
                    ports: ports.clone(),
                    ..peer.clone()
                };
                (EntityRule::default(), dst)
            };
            rules.push(Rule {
                action: Action::Allow,
                ip_version: None,
                protocol: group.protocol.clone().map(IntOrString::String),
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source: non_empty(source),
                destination: non_empty(destination),
                http: None,
                metadata: None,
            });
        }
    }
    Ok(rules)
}

/// Calico always writes both entity rules, but an empty one restricts nothing; leaving it out
/// keeps "no restriction" one value.
fn non_empty(e: EntityRule) -> Option<EntityRule> {
    (e != EntityRule::default()).then_some(e)
}

fn peer_to_calico(p: &NetworkPolicyPeer, path: &str) -> Result<EntityRule, ConvertError> {
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return Err(ConvertError::InvalidPeer {
                path: path.to_owned(),
                reason: "ipBlock cannot be combined with podSelector or namespaceSelector".into(),
            });
        }
        let here = format!("{path}.ipBlock");
        let cidr = masked_cidr(&block.cidr, format!("{here}.cidr"))?;
        let except = block
            .except
            .iter()
            .enumerate()
            .map(|(i, e)| masked_cidr(e, format!("{here}.except[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(EntityRule {
            nets: vec![cidr],
            not_nets: except,
            ..EntityRule::default()
        });
    }
    if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        return Err(ConvertError::InvalidPeer {
            path: path.to_owned(),
            reason: "a peer needs podSelector, namespaceSelector or ipBlock".into(),
        });
    }
    let selector = pod_selector_to_calico(p.pod_selector.as_ref(), &format!("{path}.podSelector"))?;
    let namespace_selector = p
        .namespace_selector
        .as_ref()
        .map(|s| namespace_selector_to_calico(s, &format!("{path}.namespaceSelector")))
        .transpose()?;
    Ok(EntityRule {
        selector: Some(selector),
        namespace_selector,
        ..EntityRule::default()
    })
}

/// Kubernetes accepts host bits in ipBlock CIDRs and Calico masks them off; a bare address is
/// not a CIDR to either.
fn masked_cidr(s: &str, path: String) -> Result<String, ConvertError> {
    s.parse::<IpNet>()
        .map(|n| n.trunc().to_string())
        .map_err(|_| ConvertError::InvalidCidr {
            path,
            cidr: s.to_owned(),
        })
}

/// The ports of one protocol, which become one Calico rule per peer.
struct PortGroup {
    /// `None` only when the k8s rule lists no ports at all: any protocol.
    protocol: Option<String>,
    /// Empty means any port.
    ports: Vec<PortSpec>,
}

/// Ports per protocol, protocols sorted by name as Calico sorts them.
fn group_ports(ports: &[NetworkPolicyPort], path: &str) -> Result<Vec<PortGroup>, ConvertError> {
    if ports.is_empty() {
        return Ok(vec![PortGroup {
            protocol: None,
            ports: Vec::new(),
        }]);
    }
    // `None` marks "any port" for the protocol; it absorbs every port listed before or after.
    let mut by_protocol: BTreeMap<String, Option<Vec<PortSpec>>> = BTreeMap::new();
    for (i, p) in ports.iter().enumerate() {
        let here = format!("{path}[{i}]");
        // Kubernetes defaults a missing protocol to TCP, even on an entry with no port.
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            return Err(ConvertError::UnknownProtocol {
                path: format!("{here}.protocol"),
                protocol: protocol.to_owned(),
            });
        }
        let port = port_spec(p, &here)?;
        let entry = by_protocol
            .entry(protocol.to_owned())
            .or_insert_with(|| Some(Vec::new()));
        match port {
            None => *entry = None,
            Some(port) => {
                if let Some(list) = entry {
                    list.push(port);
                }
            }
        }
    }
    Ok(by_protocol
        .into_iter()
        .map(|(protocol, ports)| PortGroup {
            protocol: Some(protocol),
            ports: simplify_ports(ports.unwrap_or_default()),
        })
        .collect())
}

/// The port (or range) of one entry; `None` when the entry has no port (any port).
fn port_spec(p: &NetworkPolicyPort, path: &str) -> Result<Option<PortSpec>, ConvertError> {
    let invalid = |field: &str, reason: String| ConvertError::InvalidPort {
        path: format!("{path}.{field}"),
        reason,
    };
    let Some(port) = &p.port else {
        return match p.end_port {
            Some(_) => Err(invalid("endPort", "needs a numbered port".into())),
            None => Ok(None),
        };
    };
    let start = PortSpec::parse(port).map_err(|r| invalid("port", r))?;
    match start {
        PortSpec::Number(0) => {
            return Err(invalid("port", "port 0 is out of range 1-65535".into()));
        }
        // Kubernetes spells a range with endPort; `port` takes a number or a name only.
        PortSpec::Range(..) => {
            return Err(invalid(
                "port",
                format!(
                    "{:?} is neither a port number nor a port name (use endPort for a range)",
                    port.to_string()
                ),
            ));
        }
        PortSpec::Number(_) | PortSpec::Named(_) => {}
    }
    let Some(end) = p.end_port else {
        return Ok(Some(start));
    };
    let PortSpec::Number(lo) = start else {
        return Err(invalid(
            "endPort",
            format!("needs a numbered port, not {port}"),
        ));
    };
    match u16::try_from(end) {
        Ok(hi) if hi >= lo => Ok(Some(PortSpec::Range(lo, hi))),
        Ok(_) if end >= 1 => Err(invalid("endPort", format!("{end} is below port {lo}"))),
        _ => Err(invalid("endPort", format!("{end} is out of range 1-65535"))),
    }
}

/// Calico's `SimplifyPorts`: numbered ports and ranges are merged into the fewest ranges, in
/// ascending order, after the named ports (kept in their order). A list with at most one
/// numbered port is left exactly as given, as Calico leaves it.
fn simplify_ports(ports: Vec<PortSpec>) -> Vec<PortSpec> {
    let mut named = Vec::new();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for p in &ports {
        match p {
            PortSpec::Named(n) => named.push(PortSpec::Named(n.clone())),
            PortSpec::Number(n) => ranges.push((*n, *n)),
            PortSpec::Range(lo, hi) => ranges.push((*lo, *hi)),
        }
    }
    let numbered: u32 = ranges
        .iter()
        .map(|(lo, hi)| u32::from(*hi) - u32::from(*lo) + 1)
        .sum();
    if ports.len() <= 1 || numbered <= 1 {
        return ports;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    named.extend(merged.into_iter().map(|(lo, hi)| PortSpec::Range(lo, hi)));
    named
}

/// A single-port range is written as the number, as Calico writes it.
fn port_value(p: &PortSpec) -> IntOrString {
    match p {
        PortSpec::Number(n) => IntOrString::Int(i64::from(*n)),
        PortSpec::Range(lo, hi) if lo == hi => IntOrString::Int(i64::from(*lo)),
        PortSpec::Range(lo, hi) => IntOrString::String(format!("{lo}:{hi}")),
        PortSpec::Named(n) => IntOrString::String(n.clone()),
    }
}

#[cfg(test)]
mod tests;
