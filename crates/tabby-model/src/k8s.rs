//! Kubernetes input kinds: `networking.k8s.io/v1` NetworkPolicy and `v1` Namespace, Pod and
//! ServiceAccount, as `kubectl get -o yaml` prints them. Pods, namespaces and service accounts
//! carry many fields tabby has no use for; those are kept verbatim (never dropped) and returned
//! as they came.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::check::Checker;
use crate::values::{IntOrString, Labels, check_port_name, label_key, label_value, parse_net};

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    /// Set-based matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key.
    #[serde(default)]
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    #[serde(default)]
    pub operator: String,
    /// Values for In and NotIn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    fn check(&self, c: &mut Checker) {
        c.field("matchLabels", |c| {
            for (k, v) in &self.match_labels {
                if let Err(r) = label_key(k) {
                    c.error(format!("label key {k:?} {r}"));
                }
                if let Err(r) = label_value(v) {
                    c.error(format!("value {v:?} of label {k:?} {r}"));
                }
            }
        });
        c.each("matchExpressions", &self.match_expressions, |c, e| {
            if let Err(r) = label_key(&e.key) {
                c.error_at("key", format!("label key {:?} {r}", e.key));
            }
            match e.operator.as_str() {
                "In" | "NotIn" => {
                    if e.values.is_empty() {
                        c.error_at(
                            "values",
                            format!("operator {} needs at least one value", e.operator),
                        );
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !e.values.is_empty() {
                        c.error_at("values", format!("operator {} takes no values", e.operator));
                    }
                }
                other => c.error_at(
                    "operator",
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                ),
            }
        });
    }
}

/// An ipBlock peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    /// The CIDR (host bits are masked, as Kubernetes accepts them).
    #[serde(default)]
    pub cidr: String,
    /// CIDRs inside `cidr` that are excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A peer of a NetworkPolicy rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    /// Pods (in the policy's namespace unless namespaceSelector is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces (`{}` means all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A port of a NetworkPolicy rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A number or a named port; absent means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// End of a numbered range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// An ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    /// Peers allowed to connect (absent or empty: anyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<NetworkPolicyPeer>>,
    /// Ports (absent or empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

/// An egress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    /// Peers that may be connected to (absent or empty: anyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<NetworkPolicyPeer>>,
    /// Ports (absent or empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

/// Spec of a Kubernetes NetworkPolicy. `ingress`/`egress` keep the difference between absent
/// and empty, which decides the defaulting of `policyTypes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sNetworkPolicySpec {
    /// Pods the policy applies to (`{}`: all in the namespace).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Ingress, Egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    /// Ingress rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<NetworkPolicyIngressRule>>,
    /// Egress rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<NetworkPolicyEgressRule>>,
}

impl K8sNetworkPolicySpec {
    /// The policy types, defaulted as the Kubernetes API server does: Ingress always, plus
    /// Egress when `spec.egress` is present.
    pub fn effective_policy_types(&self) -> Vec<String> {
        match &self.policy_types {
            Some(t) if !t.is_empty() => t.clone(),
            _ => {
                let mut t = vec!["Ingress".to_owned()];
                if self.egress.is_some() {
                    t.push("Egress".to_owned());
                }
                t
            }
        }
    }

    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            c.field("podSelector", |c| self.pod_selector.check(c));
            if let Some(types) = &self.policy_types {
                c.each("policyTypes", types, |c, t| {
                    if t != "Ingress" && t != "Egress" {
                        c.error(format!("{t:?} is not one of Ingress, Egress"));
                    }
                });
            }
            if let Some(rules) = &self.ingress {
                c.each("ingress", rules, |c, r| {
                    if let Some(peers) = &r.from {
                        c.each("from", peers, check_peer);
                    }
                    if let Some(ports) = &r.ports {
                        c.each("ports", ports, check_port);
                    }
                });
            }
            if let Some(rules) = &self.egress {
                c.each("egress", rules, |c, r| {
                    if let Some(peers) = &r.to {
                        c.each("to", peers, check_peer);
                    }
                    if let Some(ports) = &r.ports {
                        c.each("ports", ports, check_port);
                    }
                });
            }
        });
    }
}

fn check_peer(c: &mut Checker, p: &NetworkPolicyPeer) {
    if let Some(b) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            c.error("ipBlock cannot be combined with podSelector or namespaceSelector");
        }
        c.field("ipBlock", |c| match parse_net(&b.cidr) {
            Ok(net) if b.cidr.contains('/') => {
                let net = net.trunc();
                c.each("except", &b.except, |c, e| match parse_net(e) {
                    Ok(ex) if e.contains('/') => {
                        if !net.contains(&ex.trunc()) {
                            c.error(format!("{e} is not inside cidr {}", b.cidr));
                        }
                    }
                    _ => c.error(format!("{e:?} is not a valid CIDR")),
                });
            }
            _ => c.error_at("cidr", format!("{:?} is not a valid CIDR", b.cidr)),
        });
    } else if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        c.error("a peer needs podSelector, namespaceSelector or ipBlock");
    }
    if let Some(s) = &p.pod_selector {
        c.field("podSelector", |c| s.check(c));
    }
    if let Some(s) = &p.namespace_selector {
        c.field("namespaceSelector", |c| s.check(c));
    }
}

fn check_port(c: &mut Checker, p: &NetworkPolicyPort) {
    if let Some(proto) = &p.protocol
        && !["TCP", "UDP", "SCTP"].contains(&proto.as_str())
    {
        c.error_at(
            "protocol",
            format!("{proto:?} is not one of TCP, UDP, SCTP"),
        );
    }
    let start = match &p.port {
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                c.error_at("port", format!("{n} is out of range 1-65535"));
            }
            Some(*n)
        }
        Some(IntOrString::String(s)) => {
            if let Err(e) = check_port_name(s) {
                c.error_at("port", e);
            }
            None
        }
        None => None,
    };
    if let Some(end) = p.end_port {
        match start {
            Some(start) if end < start => {
                c.error_at("endPort", format!("{end} is below port {start}"));
            }
            Some(_) if end > 65535 => {
                c.error_at("endPort", format!("{end} is out of range 1-65535"))
            }
            Some(_) => {}
            None => c.error_at("endPort", "needs a numbered port"),
        }
    }
}

/// A container port of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port name, as policies refer to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    #[serde(default)]
    pub container_port: i64,
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Other fields, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A container of a pod (only what networking needs is typed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Declared ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Other fields, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A pod's spec (only what networking needs is typed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Uses the host's network namespace (not networked by tabby).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Other fields, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One pod address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodIp {
    /// The address.
    #[serde(default)]
    pub ip: String,
}

/// A pod's status (only what networking needs is typed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Primary address.
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// All addresses.
    #[serde(rename = "podIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    /// Other fields, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PodSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            c.each("containers", &self.containers, |c, ctr| {
                c.each("ports", &ctr.ports, |c, p| {
                    if !(1..=65535).contains(&p.container_port) {
                        c.error_at(
                            "containerPort",
                            format!("{} is out of range 1-65535", p.container_port),
                        );
                    }
                    if let Some(name) = &p.name
                        && let Err(e) = check_port_name(name)
                    {
                        c.error_at("name", e);
                    }
                    if let Some(proto) = &p.protocol
                        && !["TCP", "UDP", "SCTP"].contains(&proto.as_str())
                    {
                        c.error_at(
                            "protocol",
                            format!("{proto:?} is not one of TCP, UDP, SCTP"),
                        );
                    }
                });
            });
        });
    }
}

impl PodStatus {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("status", |c| {
            if let Some(ip) = &self.pod_ip
                && ip.parse::<std::net::IpAddr>().is_err()
            {
                c.error_at("podIP", format!("{ip:?} is not an IP address"));
            }
            c.each("podIPs", &self.pod_ips, |c, p| {
                if p.ip.parse::<std::net::IpAddr>().is_err() {
                    c.error_at("ip", format!("{:?} is not an IP address", p.ip));
                }
            });
        });
    }
}
