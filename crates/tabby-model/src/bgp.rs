//! BGP kinds: BGPConfiguration and BGPPeer.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::values::{
    AsNumber, Labels, check_duration, check_enum, check_selector, parse_masked_cidr, parse_net,
};

/// tabby's annotation on a BGPPeer: the most prefixes accepted from each session the BGPPeer
/// makes; past it the session is cut off (Cease, maximum number of prefixes reached). Calico's
/// BGPPeer has no such field, and an annotation keeps Calico manifests applying unchanged.
pub const ANNOTATION_MAX_PREFIXES: &str = "tabby.dev/max-prefixes";
/// The same for every node-to-node mesh session, on BGPConfiguration `default` (where Calico
/// keeps the other `nodeMesh...` settings).
pub const ANNOTATION_NODE_MESH_MAX_PREFIXES: &str = "tabby.dev/node-mesh-max-prefixes";

/// A prefix limit annotation's value, if the annotation is there: a positive integer up to
/// 4294967295. The error is the reason, to show beside the resource and annotation.
pub fn max_prefixes(annotations: &Labels, key: &str) -> Result<Option<u32>, String> {
    let Some(v) = annotations.get(key) else {
        return Ok(None);
    };
    match v.parse::<u32>() {
        Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(format!(
            "{v:?} is not a positive integer (the most prefixes accepted from each peer, 1 to \
             4294967295; remove the annotation for no limit)"
        )),
    }
}

/// Checks tabby's annotations on a BGP kind: the one that applies to it (`known`) must be
/// valid, and another `tabby.dev/` one is most likely a misspelling, so it is refused.
pub(crate) fn check_annotations(c: &mut Checker, annotations: &Labels, known: &str) {
    c.field("metadata", |c| {
        for key in annotations.keys().filter(|k| k.starts_with("tabby.dev/")) {
            let at = format!("annotations[{key:?}]");
            if key == known {
                if let Err(reason) = max_prefixes(annotations, key) {
                    c.error_at(&at, reason);
                }
            } else {
                c.error_at(
                    &at,
                    format!("is not a tabby annotation of this kind (it takes {known:?})"),
                );
            }
        }
    });
}

/// A reference to a key of a Kubernetes Secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    #[serde(default)]
    pub name: String,
    /// Key within the secret.
    #[serde(default)]
    pub key: String,
}

/// Where a BGP password comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    /// A key of a Secret holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A CIDR entry of the service address lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidrEntry {
    /// The CIDR.
    #[serde(default)]
    pub cidr: String,
}

/// A named BGP community.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    /// Name used in prefix advertisements.
    #[serde(default)]
    pub name: String,
    /// `aa:nn` (standard) or `aa:nn:mm` (large).
    #[serde(default)]
    pub value: String,
}

/// Communities attached to advertisements of a CIDR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    /// The CIDR.
    #[serde(default)]
    pub cidr: String,
    /// Community names or literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// Spec of BGPConfiguration (`default` for the cluster, `node.<name>` per node).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    /// Log level: Debug, Info (default), Warning, Error, Fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full iBGP mesh between nodes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's AS number (default 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// BGP port (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<i64>,
    /// None (listen on all addresses) or NodeIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    /// Service cluster IP ranges to advertise.
    #[serde(
        rename = "serviceClusterIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<CidrEntry>,
    /// Service external IP ranges to advertise.
    #[serde(
        rename = "serviceExternalIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<CidrEntry>,
    /// Service load-balancer IP ranges to advertise.
    #[serde(
        rename = "serviceLoadBalancerIPs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<CidrEntry>,
    /// Named communities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities per advertised CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Password for the node-to-node mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    /// Graceful-restart time for mesh peers (a duration such as 120s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// Interfaces whose routes are not exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    /// Enabled or Disabled aggregation of load-balancer service routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
}

fn check_community_value(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|p| p.parse::<u16>().is_ok()),
        3 => parts.iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

fn check_cidr_entries(c: &mut Checker, field: &str, entries: &[CidrEntry]) {
    c.each(field, entries, |c, e| {
        if let Err(err) = parse_masked_cidr(&e.cidr) {
            c.error_at("cidr", err);
        }
    });
}

impl BgpConfigurationSpec {
    pub(crate) fn apply_defaults(&mut self, name: &str) {
        // Only the cluster-wide resource carries defaults; per-node ones override selectively.
        if name == "default" {
            self.as_number.get_or_insert(AsNumber(64512));
            self.node_to_node_mesh_enabled.get_or_insert(true);
            self.log_severity_screen
                .get_or_insert_with(|| "Info".to_owned());
        }
    }

    /// tabby's annotations: the mesh prefix limit, read from `default` only.
    pub(crate) fn check_annotations(&self, c: &mut Checker, meta: &crate::ObjectMeta) {
        check_annotations(c, &meta.annotations, ANNOTATION_NODE_MESH_MAX_PREFIXES);
        if meta.name != "default"
            && meta
                .annotations
                .contains_key(ANNOTATION_NODE_MESH_MAX_PREFIXES)
        {
            c.field("metadata", |c| {
                c.field(&format!("annotations[{ANNOTATION_NODE_MESH_MAX_PREFIXES:?}]"), |c| {
                    c.warn("has no effect here: the mesh limit is read from BGPConfiguration \"default\" only");
                });
            });
        }
    }

    pub(crate) fn check(&self, c: &mut Checker, name: &str) {
        c.field("spec", |c| {
            if let Some(l) = &self.log_severity_screen {
                check_enum(c, "logSeverityScreen", l, &["Debug", "Info", "Warning", "Error", "Fatal"]);
            }
            if let Some(p) = self.listen_port
                && !(1..=65535).contains(&p) {
                    c.error_at("listenPort", format!("{p} is out of range 1-65535"));
                }
            if let Some(m) = &self.bind_mode {
                check_enum(c, "bindMode", m, &["None", "NodeIP"]);
            }
            check_cidr_entries(c, "serviceClusterIPs", &self.service_cluster_ips);
            check_cidr_entries(c, "serviceExternalIPs", &self.service_external_ips);
            check_cidr_entries(c, "serviceLoadBalancerIPs", &self.service_load_balancer_ips);
            if self.communities.len() > 500 {
                c.error_at("communities", "at most 500 communities are allowed");
            }
            c.each("communities", &self.communities, |c, comm| {
                if comm.name.is_empty() {
                    c.error_at("name", "is required");
                }
                if !check_community_value(&comm.value) {
                    c.error_at("value", format!("{:?} is not a community (aa:nn or aa:nn:mm)", comm.value));
                }
            });
            let names: Vec<&str> = self.communities.iter().map(|c| c.name.as_str()).collect();
            c.each("prefixAdvertisements", &self.prefix_advertisements, |c, pa| {
                if let Err(e) = parse_masked_cidr(&pa.cidr) {
                    c.error_at("cidr", e);
                }
                c.each("communities", &pa.communities, |c, v| {
                    if !names.contains(&v.as_str()) && !check_community_value(v) {
                        c.error(format!("{v:?} is neither a community named in spec.communities nor a value aa:nn or aa:nn:mm"));
                    }
                });
            });
            if let Some(t) = &self.node_mesh_max_restart_time {
                check_duration(c, "nodeMeshMaxRestartTime", t);
            }
            if let Some(a) = &self.service_load_balancer_aggregation {
                check_enum(c, "serviceLoadBalancerAggregation", a, &["Enabled", "Disabled"]);
            }
            if name != "default" && !name.starts_with("node.") {
                c.warn(format!(
                    "BGPConfiguration {name:?} has no effect: only \"default\" and \"node.<name>\" are read"
                ));
            }
        });
    }
}

/// Spec of a BGPPeer: who peers with whom beyond (or instead of) the mesh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// The node that peers (absent, with no nodeSelector, means every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Nodes that peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The peer's address, `ip`, `ip:port` or `[v6]:port`.
    #[serde(rename = "peerIP", default, skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// Peer with the tabby nodes this selects, instead of a fixed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// The peer's AS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Our AS number toward this peer, overriding the node's.
    #[serde(
        rename = "localASNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
    /// Deprecated form of nextHopMode Keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    /// Auto, Self or Keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    /// TCP MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    /// UseNodeIP (default) or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// Graceful-restart time (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Keepalive time (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// Number of times our AS may appear in a received path.
    #[serde(
        rename = "numAllowedLocalASNumbers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i64>,
    /// GTSM hop limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<i64>,
    /// Gateway through which the peer is reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// Names of BGPFilter resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
}

impl BgpPeerSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            if self.node.is_some() && self.node_selector.is_some() {
                c.error("give node or nodeSelector, not both");
            }
            if let Some(s) = &self.node_selector {
                check_selector(c, "nodeSelector", s, false);
            }
            if let Some(s) = &self.peer_selector {
                check_selector(c, "peerSelector", s, false);
            }
            match (&self.peer_ip, &self.peer_selector) {
                (Some(_), Some(_)) => c.error("give peerIP or peerSelector, not both"),
                (None, None) => c.error("give peerIP or peerSelector"),
                (Some(ip), None) => {
                    if parse_peer_ip(ip).is_none() {
                        c.error_at(
                            "peerIP",
                            format!("{ip:?} is not an address, ip:port or [v6]:port"),
                        );
                    }
                    if self.as_number.is_none() {
                        c.error_at("asNumber", "is required with peerIP");
                    }
                }
                (None, Some(_)) => {}
            }
            if let Some(m) = &self.next_hop_mode {
                check_enum(c, "nextHopMode", m, &["Auto", "Self", "Keep"]);
            }
            if let Some(s) = &self.source_address {
                check_enum(c, "sourceAddress", s, &["UseNodeIP", "None"]);
            }
            if let Some(t) = &self.max_restart_time {
                check_duration(c, "maxRestartTime", t);
            }
            if let Some(t) = &self.keepalive_time {
                check_duration(c, "keepaliveTime", t);
            }
            if let Some(t) = self.ttl_security
                && !(0..=255).contains(&t)
            {
                c.error_at("ttlSecurity", format!("{t} is out of range 0-255"));
            }
            if let Some(r) = &self.reachable_by
                && r.parse::<IpAddr>().is_err()
            {
                c.error_at("reachableBy", format!("{r:?} is not an IP address"));
            }
            if let Some(pw) = &self.password
                && pw.secret_key_ref.is_none()
            {
                c.error_at("password", "needs secretKeyRef");
            }
        });
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port`.
pub fn parse_peer_ip(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    s.parse::<SocketAddr>()
        .ok()
        .map(|sa| (sa.ip(), Some(sa.port())))
}

/// Checks an address in CIDR form as Node resources carry them (`10.0.0.1/24`).
pub(crate) fn check_addr_cidr(c: &mut Checker, field: &str, v: &str) {
    if !v.contains('/') || parse_net(v).is_err() {
        c.error_at(
            field,
            format!("{v:?} is not an address with prefix length (for example 10.0.0.1/24)"),
        );
    }
}
