//! Address kinds: IPPool, IPReservation, GlobalNetworkSet and NetworkSet.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::check::Checker;
use crate::values::{check_enum, check_nets, check_selector, parse_masked_cidr};

/// Spec of an IPPool: a range workload addresses come from, cut into blocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPoolSpec {
    /// The pool's CIDR (host bits must be zero).
    #[serde(default)]
    pub cidr: String,
    /// Prefix length of the blocks the pool is cut into (default 26 for IPv4, 122 for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// IP-in-IP encapsulation: Never (default), Always or CrossSubnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    /// VXLAN encapsulation: Never (default), Always or CrossSubnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    /// Masquerade traffic from the pool to destinations outside all pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    /// No new addresses are handed out from a disabled pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Do not advertise the pool's routes over BGP.
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    /// Nodes that may take blocks from this pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Namespaces whose workloads may take addresses from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// What addresses are for: Workload, Tunnel, LoadBalancer (default Workload and Tunnel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    /// Automatic (default) or Manual (only on explicit request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<String>,
}

const ENCAP_MODES: [&str; 3] = ["Never", "Always", "CrossSubnet"];

impl IpPoolSpec {
    /// The parsed CIDR, when valid.
    pub fn network(&self) -> Option<IpNet> {
        parse_masked_cidr(&self.cidr).ok()
    }

    pub(crate) fn apply_defaults(&mut self) {
        let v6 = self.cidr.contains(':');
        self.block_size.get_or_insert(if v6 { 122 } else { 26 });
        self.ipip_mode.get_or_insert_with(|| "Never".to_owned());
        self.vxlan_mode.get_or_insert_with(|| "Never".to_owned());
        self.nat_outgoing.get_or_insert(false);
        self.node_selector.get_or_insert_with(|| "all()".to_owned());
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec!["Workload".to_owned(), "Tunnel".to_owned()];
        }
        self.assignment_mode
            .get_or_insert_with(|| "Automatic".to_owned());
    }

    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| self.check_spec(c));
    }

    fn check_spec(&self, c: &mut Checker) {
        let net = if self.cidr.is_empty() {
            c.error_at("cidr", "is required");
            None
        } else {
            match parse_masked_cidr(&self.cidr) {
                Ok(net) => Some(net),
                Err(e) => {
                    c.error_at("cidr", e);
                    None
                }
            }
        };
        if let Some(net) = net {
            let link_local: [IpNet; 2] = [
                "169.254.0.0/16".parse().expect("literal"),
                "fe80::/10".parse().expect("literal"),
            ];
            for ll in link_local {
                if ll.contains(&net.network()) || net.contains(&ll.network()) {
                    c.error_at("cidr", format!("{net} overlaps the link-local range {ll}"));
                }
            }
            let v6 = matches!(net, IpNet::V6(_));
            if let Some(bs) = self.block_size {
                let (lo, hi) = if v6 { (116, 128) } else { (20, 32) };
                if !(lo..=hi).contains(&bs) {
                    c.error_at(
                        "blockSize",
                        format!(
                            "{bs} is out of range {lo}-{hi} for an IPv{} pool",
                            if v6 { 6 } else { 4 }
                        ),
                    );
                } else if bs < net.prefix_len() {
                    c.error_at(
                        "blockSize",
                        format!(
                            "blocks of /{bs} are larger than the pool /{}",
                            net.prefix_len()
                        ),
                    );
                }
            }
            if v6 && self.ipip_mode.as_deref().is_some_and(|m| m != "Never") {
                c.error_at("ipipMode", "IP-in-IP is not available for IPv6 pools");
            }
        }
        if let Some(m) = &self.ipip_mode {
            check_enum(c, "ipipMode", m, &ENCAP_MODES);
        }
        if let Some(m) = &self.vxlan_mode {
            check_enum(c, "vxlanMode", m, &ENCAP_MODES);
        }
        let on = |m: &Option<String>| m.as_deref().is_some_and(|m| m != "Never");
        if on(&self.ipip_mode) && on(&self.vxlan_mode) {
            c.error("ipipMode and vxlanMode cannot both be enabled");
        }
        if let Some(s) = &self.node_selector {
            check_selector(c, "nodeSelector", s, false);
        }
        if let Some(s) = &self.namespace_selector {
            check_selector(c, "namespaceSelector", s, false);
        }
        c.each("allowedUses", &self.allowed_uses, |c, u| {
            if !["Workload", "Tunnel", "LoadBalancer"].contains(&u.as_str()) {
                c.error(format!(
                    "{u:?} is not one of Workload, Tunnel, LoadBalancer"
                ));
            }
        });
        if self.allowed_uses.iter().any(|u| u == "LoadBalancer") {
            if self.allowed_uses.len() > 1 {
                c.error_at(
                    "allowedUses",
                    "LoadBalancer cannot be combined with other uses",
                );
            }
            if on(&self.ipip_mode) || on(&self.vxlan_mode) {
                c.error("a LoadBalancer pool cannot use encapsulation");
            }
        }
        if let Some(m) = &self.assignment_mode {
            check_enum(c, "assignmentMode", m, &["Automatic", "Manual"]);
        }
    }
}

/// Spec of an IPReservation: addresses IPAM never hands out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpReservationSpec {
    /// Reserved CIDRs or addresses.
    #[serde(rename = "reservedCIDRs", default)]
    pub reserved_cidrs: Vec<String>,
}

impl IpReservationSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| {
            check_nets(c, "reservedCIDRs", &self.reserved_cidrs, usize::MAX);
        });
    }
}

/// Spec of a GlobalNetworkSet or NetworkSet: labelled CIDRs that rule selectors can match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSetSpec {
    /// Member CIDRs (or addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

impl NetworkSetSpec {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.field("spec", |c| check_nets(c, "nets", &self.nets, usize::MAX));
    }
}
