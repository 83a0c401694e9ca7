//! Host and endpoint kinds: Node, HostEndpoint, WorkloadEndpoint and FelixConfiguration.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bgp::check_addr_cidr;
use crate::check::Checker;
use crate::values::{
    AsNumber, IntOrString, Protocol, check_duration, check_enum, check_nets, check_port_name,
    dns_subdomain, parse_net,
};

/// BGP settings of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's AS number (default: the cluster's).
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// The node's IPv4 address with prefix length (the prefix gives its subnet).
    #[serde(
        rename = "ipv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 address with prefix length.
    #[serde(
        rename = "ipv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// IP-in-IP tunnel address.
    #[serde(
        rename = "ipv4IPIPTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// When set, the node is a route reflector with this cluster ID (an IPv4-shaped ID).
    #[serde(
        rename = "routeReflectorClusterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// A reference to the orchestrator's name for a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    /// Name in the orchestrator.
    #[serde(default)]
    pub node_name: String,
    /// The orchestrator (k8s, ...).
    #[serde(default)]
    pub orchestrator: String,
}

/// A node address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    /// The address (may carry a prefix length).
    #[serde(default)]
    pub address: String,
    /// CalicoNodeIP, InternalIP, ExternalIP.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A host interface and its addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInterface {
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// Its addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// WireGuard settings of a node (carried; this machine has no WireGuard).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWireguard {
    /// IPv4 address of the WireGuard interface.
    #[serde(
        rename = "interfaceIPv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    /// IPv6 address of the WireGuard interface.
    #[serde(
        rename = "interfaceIPv6Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

/// Spec of a Node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    /// VXLAN tunnel address (IPv4).
    #[serde(
        rename = "ipv4VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// VXLAN tunnel MAC (IPv4).
    #[serde(
        rename = "vxlanTunnelMACAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// VXLAN tunnel address (IPv6).
    #[serde(
        rename = "ipv6VXLANTunnelAddr",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// VXLAN tunnel MAC (IPv6).
    #[serde(
        rename = "vxlanTunnelMACAddrV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// Names of this node in orchestrators.
    #[serde(rename = "orchRefs", default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    /// Node addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// Host interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
    /// WireGuard settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguard>,
}

fn check_ip(c: &mut Checker, field: &str, v: &str) {
    if v.parse::<IpAddr>().is_err() {
        c.error_at(field, format!("{v:?} is not an IP address"));
    }
}

fn check_mac(c: &mut Checker, field: &str, v: &str) {
    let parts: Vec<&str> = v.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    if !ok {
        c.error_at(
            field,
            format!("{v:?} is not a MAC address (xx:xx:xx:xx:xx:xx)"),
        );
    }
}

impl NodeSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            if let Some(bgp) = &self.bgp {
                c.field("bgp", |c| {
                    if let Some(a) = &bgp.ipv4_address {
                        check_addr_cidr(c, "ipv4Address", a);
                    }
                    if let Some(a) = &bgp.ipv6_address {
                        check_addr_cidr(c, "ipv6Address", a);
                    }
                    if let Some(a) = &bgp.ipv4_ipip_tunnel_addr {
                        check_ip(c, "ipv4IPIPTunnelAddr", a);
                    }
                    if let Some(id) = &bgp.route_reflector_cluster_id
                        && id.parse::<std::net::Ipv4Addr>().is_err()
                    {
                        c.error_at(
                            "routeReflectorClusterID",
                            format!("{id:?} is not an IPv4-shaped cluster ID"),
                        );
                    }
                });
            }
            if let Some(a) = &self.ipv4_vxlan_tunnel_addr {
                check_ip(c, "ipv4VXLANTunnelAddr", a);
            }
            if let Some(a) = &self.ipv6_vxlan_tunnel_addr {
                check_ip(c, "ipv6VXLANTunnelAddr", a);
            }
            if let Some(m) = &self.vxlan_tunnel_mac_addr {
                check_mac(c, "vxlanTunnelMACAddr", m);
            }
            if let Some(m) = &self.vxlan_tunnel_mac_addr_v6 {
                check_mac(c, "vxlanTunnelMACAddrV6", m);
            }
            c.each("addresses", &self.addresses, |c, a| {
                if parse_net(&a.address).is_err() {
                    c.error_at("address", format!("{:?} is not an address", a.address));
                }
            });
        });
    }
}

/// A named port of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    /// Port name, as rules refer to it.
    #[serde(default)]
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<IntOrString>,
    /// Port number.
    #[serde(default)]
    pub port: i64,
    /// Host port mapped to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// Host address of the host port.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

fn check_endpoint_ports(c: &mut Checker, ports: &[EndpointPort]) {
    c.each("ports", ports, |c, p| {
        if !p.name.is_empty()
            && let Err(e) = check_port_name(&p.name)
        {
            c.error_at("name", e);
        }
        if !(1..=65535).contains(&p.port) {
            c.error_at("port", format!("{} is out of range 1-65535", p.port));
        }
        if let Some(proto) = &p.protocol {
            match Protocol::parse(proto) {
                Ok(Protocol::Tcp | Protocol::Udp | Protocol::Sctp) => {}
                Ok(_) => c.error_at("protocol", "must be TCP, UDP or SCTP"),
                Err(e) => c.error_at("protocol", e),
            }
        }
        if let Some(hp) = p.host_port
            && !(1..=65535).contains(&hp)
        {
            c.error_at("hostPort", format!("{hp} is out of range 1-65535"));
        }
        if let Some(ip) = &p.host_ip {
            check_ip(c, "hostIP", ip);
        }
    });
}

/// Spec of a HostEndpoint: a host interface under policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    /// The node the interface is on.
    #[serde(default)]
    pub node: String,
    /// Interface name, `*` for all host traffic, or empty to match by expectedIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Addresses of the interface (used for selector IP sets).
    #[serde(rename = "expectedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    /// Profiles applied after policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl HostEndpointSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            if self.node.is_empty() {
                c.error_at("node", "is required");
            }
            if self.interface_name.as_deref().unwrap_or("").is_empty()
                && self.expected_ips.is_empty()
            {
                c.error("give interfaceName or expectedIPs");
            }
            c.each("expectedIPs", &self.expected_ips, |c, ip| {
                if ip.parse::<IpAddr>().is_err() {
                    c.error(format!("{ip:?} is not an IP address"));
                }
            });
            check_profile_names(c, &self.profiles);
            check_endpoint_ports(c, &self.ports);
        });
    }
}

fn check_profile_names(c: &mut Checker, profiles: &[String]) {
    c.each("profiles", profiles, |c, p| {
        if p.is_empty() {
            c.error("profile name is empty");
        }
    });
}

/// A floating IP of a workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpNat {
    /// The workload's own address.
    #[serde(rename = "internalIP", default)]
    pub internal_ip: String,
    /// The address it is reachable at.
    #[serde(rename = "externalIP", default)]
    pub external_ip: String,
}

/// Quality-of-service limits of a workload (carried; not enforced yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QosControls {
    /// Ingress bandwidth, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_bandwidth: Option<i64>,
    /// Egress bandwidth, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bandwidth: Option<i64>,
    /// Ingress burst, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<i64>,
    /// Egress burst, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<i64>,
    /// Ingress packet rate, packets/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_rate: Option<i64>,
    /// Egress packet rate, packets/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_rate: Option<i64>,
    /// Ingress connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_max_connections: Option<i64>,
    /// Egress connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_connections: Option<i64>,
}

/// The host-side interface name of a workload's veth: `tb` + the first 11 hex digits of
/// SHA-256 of `namespace.pod` (Calico does the same with `cali` and SHA-1). Unique per pod, at
/// most 13 characters (Linux allows 15), and the same wherever it is computed: the CNI plugin
/// creates the interface and the agent finds it by this name.
pub fn workload_interface_name(namespace: &str, pod: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{namespace}.{pod}").as_bytes());
    let mut name = String::from("tb");
    for b in digest.iter().take(6) {
        name.push_str(&format!("{b:02x}"));
    }
    name.truncate(13);
    name
}

/// Spec of a WorkloadEndpoint: one interface of a container, VM or pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// Orchestrator (k8s, cni, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// Workload name in the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The node the workload runs on.
    #[serde(default)]
    pub node: String,
    /// Container ID.
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Interface name inside the workload (eth0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Kubernetes service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The workload's addresses as CIDRs (/32, /128).
    #[serde(rename = "ipNetworks", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// Floating IPs.
    #[serde(rename = "ipNATs", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    /// IPv4 gateway the workload uses.
    #[serde(
        rename = "ipv4Gateway",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_gateway: Option<String>,
    /// IPv6 gateway the workload uses.
    #[serde(
        rename = "ipv6Gateway",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_gateway: Option<String>,
    /// Profiles applied after policy (`kns.<ns>`, `ksa.<ns>.<sa>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Host-side interface name.
    #[serde(default)]
    pub interface_name: String,
    /// The workload interface's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
    /// Source prefixes the workload may send from besides its own addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    /// QoS limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<QosControls>,
}

impl WorkloadEndpointSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            if self.node.is_empty() {
                c.error_at("node", "is required");
            } else if let Err(r) = dns_subdomain(&self.node) {
                c.error_at("node", format!("node name {:?} {r}", self.node));
            }
            if self.interface_name.is_empty() {
                c.error_at("interfaceName", "is required");
            } else if self.interface_name.len() > 15 || self.interface_name.contains(['/', ' ']) {
                c.error_at(
                    "interfaceName",
                    format!(
                        "{:?} is not a valid Linux interface name",
                        self.interface_name
                    ),
                );
            }
            check_nets(c, "ipNetworks", &self.ip_networks, usize::MAX);
            c.each("ipNATs", &self.ip_nats, |c, n| {
                check_ip(c, "internalIP", &n.internal_ip);
                check_ip(c, "externalIP", &n.external_ip);
            });
            if let Some(g) = &self.ipv4_gateway {
                check_ip(c, "ipv4Gateway", g);
            }
            if let Some(g) = &self.ipv6_gateway {
                check_ip(c, "ipv6Gateway", g);
            }
            if let Some(m) = &self.mac {
                check_mac(c, "mac", m);
            }
            check_profile_names(c, &self.profiles);
            check_endpoint_ports(c, &self.ports);
            check_nets(
                c,
                "allowSpoofedSourcePrefixes",
                &self.allow_spoofed_source_prefixes,
                usize::MAX,
            );
        });
    }
}

/// A failsafe port: host traffic that policy can never block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoPort {
    /// TCP, UDP or SCTP.
    #[serde(default)]
    pub protocol: String,
    /// Port number.
    #[serde(default)]
    pub port: i64,
    /// Optional CIDR the exception is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

/// Spec of FelixConfiguration (`default`, `node.<name>`): the per-host agent's settings. The
/// fields tabby acts on are typed; other Calico fields are accepted with a warning that they
/// have no effect in tabby; anything else is an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Log level: Debug, Info, Warning, Error, Fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// What happens to traffic from a workload to its own host: Drop (default), Accept, Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    /// Inbound host ports that policy can never block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Outbound host ports that policy can never block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// Serve /livez and /readyz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    /// Address the health endpoints listen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    /// Port of the health endpoints (default 9099).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<i64>,
    /// Serve Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    /// Address the metrics endpoint listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_host: Option<String>,
    /// Port of the metrics endpoint (default 9091).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i64>,
    /// How often routes are re-checked against the kernel (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// Enable VXLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    /// VXLAN UDP port (default 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i64>,
    /// VXLAN network identifier (default 4096).
    #[serde(rename = "vxlanVNI", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i64>,
    /// MTU of the VXLAN device.
    #[serde(rename = "vxlanMTU", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i64>,
    /// Enable IPv6 policy and routes.
    #[serde(
        rename = "ipv6Support",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    /// Route protocol number for workload routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<i64>,
    /// Remove routes tabby did not make from its interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_external_routes: Option<bool>,
    /// Flow log flush interval (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_flush_interval: Option<String>,
    /// Other Calico fields, accepted with a warning (see the type's docs).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Calico FelixConfiguration fields that tabby accepts but does not act on.
const FELIX_FIELDS_WITHOUT_EFFECT: &[&str] = &[
    "allowIPIPPacketsFromWorkloads",
    "allowVXLANPacketsFromWorkloads",
    "awsSrcDstCheck",
    "bpfEnabled",
    "bpfExternalServiceMode",
    "bpfKubeProxyIptablesCleanupEnabled",
    "bpfLogLevel",
    "chainInsertMode",
    "dataplaneWatchdogTimeout",
    "endpointReportingEnabled",
    "featureDetectOverride",
    "floatingIPs",
    "genericXDPEnabled",
    "interfaceExclude",
    "interfacePrefix",
    "ipipEnabled",
    "ipipMTU",
    "ipsetsRefreshInterval",
    "iptablesBackend",
    "iptablesFilterAllowAction",
    "iptablesMarkMask",
    "iptablesRefreshInterval",
    "kubeNodePortRanges",
    "logFilePath",
    "logSeverityFile",
    "logSeveritySys",
    "mtuIfacePattern",
    "natOutgoingAddress",
    "natPortRange",
    "netlinkTimeout",
    "nftablesMode",
    "policySyncPathPrefix",
    "reportingInterval",
    "reportingTTL",
    "routeSource",
    "routeTableRange",
    "serviceLoopPrevention",
    "usageReportingEnabled",
    "wireguardEnabled",
    "wireguardEnabledV6",
    "wireguardInterfaceName",
    "wireguardListeningPort",
    "wireguardMTU",
    "xdpEnabled",
    "xdpRefreshInterval",
];

impl FelixConfigurationSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            for (field, value) in &self.other {
                if FELIX_FIELDS_WITHOUT_EFFECT.contains(&field.as_str()) {
                    c.field(field, |c| {
                        c.warn("accepted, but tabby does not act on this Calico setting")
                    });
                } else {
                    c.error_at(field, format!("unknown field (value {value})"));
                }
            }
            if let Some(l) = &self.log_severity_screen {
                check_enum(
                    c,
                    "logSeverityScreen",
                    l,
                    &["Debug", "Info", "Warning", "Error", "Fatal"],
                );
            }
            if let Some(a) = &self.default_endpoint_to_host_action {
                check_enum(
                    c,
                    "defaultEndpointToHostAction",
                    a,
                    &["Drop", "Accept", "Return"],
                );
            }
            for (field, ports) in [
                (
                    "failsafeInboundHostPorts",
                    &self.failsafe_inbound_host_ports,
                ),
                (
                    "failsafeOutboundHostPorts",
                    &self.failsafe_outbound_host_ports,
                ),
            ] {
                if let Some(ports) = ports {
                    c.each(field, ports, |c, p| {
                        check_enum(
                            c,
                            "protocol",
                            &p.protocol.to_ascii_uppercase(),
                            &["TCP", "UDP", "SCTP"],
                        );
                        if !(1..=65535).contains(&p.port) {
                            c.error_at("port", format!("{} is out of range 1-65535", p.port));
                        }
                        if let Some(n) = &p.net
                            && let Err(e) = parse_net(n)
                        {
                            c.error_at("net", e);
                        }
                    });
                }
            }
            for (field, port) in [
                ("healthPort", self.health_port),
                ("prometheusMetricsPort", self.prometheus_metrics_port),
                ("vxlanPort", self.vxlan_port),
            ] {
                if let Some(p) = port
                    && !(1..=65535).contains(&p)
                {
                    c.error_at(field, format!("{p} is out of range 1-65535"));
                }
            }
            if let Some(vni) = self.vxlan_vni
                && !(1..=16_777_215).contains(&vni)
            {
                c.error_at("vxlanVNI", format!("{vni} is out of range 1-16777215"));
            }
            if let Some(mtu) = self.vxlan_mtu
                && !(576..=65535).contains(&mtu)
            {
                c.error_at("vxlanMTU", format!("{mtu} is out of range 576-65535"));
            }
            if let Some(p) = self.device_route_protocol
                && !(0..=255).contains(&p)
            {
                c.error_at("deviceRouteProtocol", format!("{p} is out of range 0-255"));
            }
            for (field, d) in [
                ("routeRefreshInterval", &self.route_refresh_interval),
                ("flowLogsFlushInterval", &self.flow_logs_flush_interval),
            ] {
                if let Some(d) = d {
                    check_duration(c, field, d);
                }
            }
        });
    }
}
