//! tabby's network configuration, Calico's CNI style:
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tabby",
//!  "datastore": "sqlite:/var/lib/tabby/tabby.db", "nodename": "node-1", "mtu": 1500,
//!  "ipam": {"type": "tabby-ipam", "ipv4_pools": ["default-ipv4"], "assign_ipv6": "false"}}
//! ```
//!
//! Calico's `datastore_type`, `kubernetes` and `log_level` keys are accepted and ignored, so
//! that a Calico configuration works once its types are renamed; `policy.type` is read as
//! Calico reads it (set: no network profile is made).

use serde_json::Value;

use crate::protocol::{CniError, NetConf, code};

/// The IPAM section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    /// `ipam.type`.
    pub plugin_type: String,
    /// `ipam.ipv4_pools`: pool names or CIDRs to take IPv4 addresses from.
    pub ipv4_pools: Vec<String>,
    /// `ipam.ipv6_pools`.
    pub ipv6_pools: Vec<String>,
    /// `ipam.assign_ipv4` (default true).
    pub assign_ipv4: bool,
    /// `ipam.assign_ipv6` (default false).
    pub assign_ipv6: bool,
}

/// The parts of the configuration tabby reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabbyConf {
    /// `datastore`: the datastore URL (default: `TABBY_DATASTORE`, then tabby's default).
    pub datastore: Option<String>,
    /// `nodename` (default: the host name).
    pub nodename: Option<String>,
    /// `mtu` of the workload interface.
    pub mtu: Option<u32>,
    /// `ipam`.
    pub ipam: IpamConf,
    /// `policy.type` (Calico's `k8s`): when set, policy comes from elsewhere and a workload
    /// outside Kubernetes gets no profile of its network made for it.
    pub policy_type: Option<String>,
}

fn bad(field: &str, value: &Value, reason: &str) -> CniError {
    CniError::new(
        code::INVALID_NETWORK_CONFIG,
        format!("network configuration field {field} = {value}: {reason}"),
    )
}

fn string(v: Option<&Value>, field: &str) -> Result<Option<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(field, other, "must be a string")),
    }
}

/// Calico writes booleans as the strings "true"/"false"; real booleans are accepted too.
fn flag(v: Option<&Value>, field: &str, default: bool) -> Result<bool, CniError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(bad(field, other, "must be true or false")),
    }
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(field, i, "must be a list of strings"))
            })
            .collect(),
        Some(other) => Err(bad(field, other, "must be a list of strings")),
    }
}

impl TabbyConf {
    /// Reads tabby's keys from a configuration.
    pub fn parse(conf: &NetConf) -> Result<Self, CniError> {
        let raw = &conf.raw;
        let mtu = match raw.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v
                    .as_u64()
                    .filter(|n| (68..=65535).contains(n))
                    .ok_or_else(|| bad("mtu", v, "must be a number from 68 to 65535"))?;
                Some(u32::try_from(n).unwrap_or(1500))
            }
        };
        let ipam = match raw.get("ipam") {
            Some(Value::Object(ipam)) => IpamConf {
                plugin_type: string(ipam.get("type"), "ipam.type")?.unwrap_or_default(),
                ipv4_pools: strings(ipam.get("ipv4_pools"), "ipam.ipv4_pools")?,
                ipv6_pools: strings(ipam.get("ipv6_pools"), "ipam.ipv6_pools")?,
                assign_ipv4: flag(ipam.get("assign_ipv4"), "ipam.assign_ipv4", true)?,
                assign_ipv6: flag(ipam.get("assign_ipv6"), "ipam.assign_ipv6", false)?,
            },
            None | Some(Value::Null) => {
                return Err(CniError::new(
                    code::INVALID_NETWORK_CONFIG,
                    "network configuration has no ipam section: add \"ipam\": {\"type\": \"tabby-ipam\"}",
                ));
            }
            Some(other) => return Err(bad("ipam", other, "must be an object")),
        };
        if !ipam.assign_ipv4 && !ipam.assign_ipv6 {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "ipam.assign_ipv4 and ipam.assign_ipv6 are both false: the workload would get no address",
            ));
        }
        let policy_type = match raw.get("policy") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => string(p.get("type"), "policy.type")?,
            Some(other) => return Err(bad("policy", other, "must be an object")),
        };
        Ok(Self {
            policy_type,
            datastore: string(raw.get("datastore"), "datastore")?,
            nodename: string(raw.get("nodename"), "nodename")?,
            mtu,
            ipam,
        })
    }
}
