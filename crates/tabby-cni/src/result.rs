//! The CNI result: held in its 1.1.0 form and written in the version the configuration asks
//! (0.3.x/0.4.0 drop `mtu`, `pciID` and `socketPath` and add `ips[].version`; 1.0.0 and 1.1.0
//! differ only in `cniVersion`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::{CniError, code, version_at_least};

/// An interface in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU (1.0.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for a container interface; absent for a host interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// vhost-user socket (1.0.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// PCI ID (1.0.0 and later).
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into the interfaces (absent in an IPAM plugin's result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The address with its prefix length.
    pub address: String,
    /// The gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

impl IpConfig {
    /// The address, parsed.
    pub fn net(&self) -> Option<IpNet> {
        self.address.parse().ok()
    }
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// Destination.
    pub dst: String,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// MTU (1.1.0 fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl RouteConfig {
    /// The IPv4 default route.
    pub fn default_v4() -> Self {
        Self::to("0.0.0.0/0")
    }

    /// The IPv6 default route.
    pub fn default_v6() -> Self {
        Self::to("::/0")
    }

    fn to(dst: &str) -> Self {
        Self {
            dst: dst.to_owned(),
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A success result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// DNS.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any supported version (`prevResult`).
    pub fn from_value(v: &Value) -> Result<Self, CniError> {
        let mut v = v.clone();
        if let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut) {
            for ip in ips {
                if let Some(o) = ip.as_object_mut() {
                    o.remove("version");
                }
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("cniVersion");
        }
        serde_json::from_value(v).map_err(|e| {
            CniError::new(
                code::DECODING_FAILURE,
                format!("cannot read prevResult: {e}"),
            )
        })
    }

    /// The result as JSON text in `version`.
    pub fn to_json(&self, version: &str) -> Result<String, CniError> {
        self.to_value(version).map(|v| v.to_string())
    }

    /// The result as a JSON value in `version`.
    pub fn to_value(&self, version: &str) -> Result<Value, CniError> {
        if !version_at_least(version, "0.3.0") {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cannot write a result in CNI version {version:?}"),
            ));
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::from(version));
        let Ok(Value::Object(body)) = serde_json::to_value(self) else {
            return Ok(Value::Object(out));
        };
        out.extend(body);
        if !version_at_least(version, "1.0.0") {
            if let Some(ifaces) = out.get_mut("interfaces").and_then(Value::as_array_mut) {
                for i in ifaces.iter_mut().filter_map(Value::as_object_mut) {
                    i.remove("mtu");
                    i.remove("socketPath");
                    i.remove("pciID");
                }
            }
            if let Some(ips) = out.get_mut("ips").and_then(Value::as_array_mut) {
                for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                    let v6 = ip
                        .get("address")
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.contains(':'));
                    ip.insert("version".into(), Value::from(if v6 { "6" } else { "4" }));
                }
            }
            if let Some(routes) = out.get_mut("routes").and_then(Value::as_array_mut) {
                for r in routes.iter_mut().filter_map(Value::as_object_mut) {
                    r.retain(|k, _| k == "dst" || k == "gw");
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// The addresses (without prefix length) of the result.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.ips
            .iter()
            .filter_map(IpConfig::net)
            .map(|n| n.addr())
            .collect()
    }
}

#[cfg(test)]
mod tests;
