//! What an allocation reads before it writes: pools, reservations, the node's labels and the
//! IPAM configuration, and which pools may serve a request.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tabby_model::selector::Selector;
use tabby_model::{Kind, Resource, stored};
use tabby_store::Datastore;

use crate::IpamError;
use crate::records::{IpamConfig, config_key};

/// A usable view of one IPPool.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) cidr: IpNet,
    pub(crate) block_size: u8,
    pub(crate) disabled: bool,
    node_selector: Option<Selector>,
    namespace_selector: Option<Selector>,
    allowed_uses: Vec<String>,
    manual: bool,
}

impl Pool {
    /// The block of this pool that holds `ip`.
    pub(crate) fn block_of(&self, ip: IpAddr) -> IpNet {
        IpNet::new(ip, self.block_size)
            .map(|n| n.trunc())
            .unwrap_or(self.cidr)
    }

    /// Every block of the pool, starting at an offset derived from the node's name, so that
    /// nodes claiming at the same time try different blocks first.
    pub(crate) fn blocks_from(&self, node: &str) -> impl Iterator<Item = IpNet> + '_ {
        let bits = u32::from(self.block_size - self.cidr.prefix_len());
        let count: u64 = 1u64.checked_shl(bits.min(32)).unwrap_or(u64::MAX);
        let start = fnv(node) % count;
        let base = self.cidr.network();
        let step = u32::from(self.cidr.max_prefix_len() - self.block_size);
        (0..count).map(move |i| {
            let index = (start + i) % count;
            let addr = match base {
                IpAddr::V4(n) => {
                    let off = (index << step) as u32;
                    IpAddr::V4((u32::from(n).wrapping_add(off)).into())
                }
                IpAddr::V6(n) => {
                    let off = u128::from(index) << step;
                    IpAddr::V6((u128::from(n).wrapping_add(off)).into())
                }
            };
            IpNet::new(addr, self.block_size).unwrap_or(self.cidr)
        })
    }
}

/// FNV-1a: a stable hash (std's is randomised per process, and every CNI call is a process).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A reservation: name and networks.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub(crate) name: String,
    pub(crate) nets: Vec<IpNet>,
}

/// Everything an allocation consults, read once per attempt.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) config: IpamConfig,
    pub(crate) pools: Vec<Pool>,
    pub(crate) reservations: Vec<Reservation>,
}

impl Snapshot {
    pub(crate) fn read(store: &dyn Datastore) -> Result<Self, IpamError> {
        let config = match store.get(&config_key())? {
            Some(e) => serde_json::from_str(&e.value).map_err(|err| IpamError::Corrupt {
                key: e.key.clone(),
                reason: err.to_string(),
            })?,
            None => IpamConfig::default(),
        };
        let mut pools = Vec::new();
        for mut r in read_kind(store, Kind::IpPool)? {
            r.apply_defaults();
            if let Resource::IpPool(o) = r {
                let Some(cidr) = o.spec.network() else {
                    continue;
                };
                let v6 = cidr.addr().is_ipv6();
                pools.push(Pool {
                    name: o.metadata.name.clone(),
                    cidr,
                    block_size: o.spec.block_size.unwrap_or(if v6 { 122 } else { 26 }),
                    disabled: o.spec.disabled == Some(true),
                    node_selector: o
                        .spec
                        .node_selector
                        .as_deref()
                        .and_then(|s| Selector::parse(s).ok()),
                    namespace_selector: o
                        .spec
                        .namespace_selector
                        .as_deref()
                        .filter(|s| !s.trim().is_empty())
                        .and_then(|s| Selector::parse(s).ok()),
                    allowed_uses: o.spec.allowed_uses.clone(),
                    manual: o.spec.assignment_mode.as_deref() == Some("Manual"),
                });
            }
        }
        let mut reservations = Vec::new();
        for r in read_kind(store, Kind::IpReservation)? {
            if let Resource::IpReservation(o) = r {
                reservations.push(Reservation {
                    name: o.metadata.name.clone(),
                    nets: o
                        .spec
                        .reserved_cidrs
                        .iter()
                        .filter_map(|c| tabby_model::values::parse_net(c).ok())
                        .collect(),
                });
            }
        }
        Ok(Self {
            config,
            pools,
            reservations,
        })
    }

    /// The reservation holding `ip`, if any.
    pub(crate) fn reservation_of(&self, ip: IpAddr) -> Option<&str> {
        self.reservations
            .iter()
            .find(|r| r.nets.iter().any(|n| n.contains(&ip)))
            .map(|r| r.name.as_str())
    }

    /// The pool holding `ip` (the most specific, when pools overlap).
    pub(crate) fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.pools
            .iter()
            .filter(|p| p.cidr.contains(&ip))
            .max_by_key(|p| p.cidr.prefix_len())
    }

    /// The pools that may serve an automatic request, or why none may.
    pub(crate) fn candidates(&self, req: &Filter<'_>) -> Result<Vec<&Pool>, IpamError> {
        for wanted in req.requested {
            let found = self
                .pools
                .iter()
                .any(|p| &p.name == wanted || p.cidr.to_string() == *wanted);
            if !found {
                return Err(IpamError::BadPool {
                    pool: wanted.clone(),
                    reason: format!("does not exist (pools: {})", self.pool_names()),
                });
            }
        }
        let mut out = Vec::new();
        let mut why = Vec::new();
        for p in &self.pools {
            if p.cidr.addr().is_ipv6() != (req.family == 6) {
                continue;
            }
            let named = req
                .requested
                .iter()
                .any(|w| *w == p.name || *w == p.cidr.to_string());
            let reason = if !req.requested.is_empty() && !named {
                Some("not among the requested pools")
            } else if p.disabled {
                Some("disabled")
            } else if !p.allowed_uses.iter().any(|u| u == req.usage) {
                Some("allowedUses does not include this use")
            } else if p.manual && !named {
                Some("assignmentMode Manual and not requested by name")
            } else if !p
                .node_selector
                .as_ref()
                .is_none_or(|s| s.matches(req.node_labels))
            {
                Some("nodeSelector does not match the node")
            } else if let (Some(s), Some(labels)) = (&p.namespace_selector, req.namespace_labels)
                && !s.matches(labels)
            {
                Some("namespaceSelector does not match the namespace")
            } else {
                None
            };
            match reason {
                Some(r) => why.push(format!("{} ({}): {r}", p.name, p.cidr)),
                None => out.push(p),
            }
        }
        if out.is_empty() {
            let why = if why.is_empty() {
                "there is none; create an IPPool (tabby apply -f pool.yaml)".to_owned()
            } else {
                why.join("; ")
            };
            return Err(IpamError::NoPool {
                family: req.family,
                node: req.node.to_owned(),
                why,
            });
        }
        Ok(out)
    }

    pub(crate) fn pool_names(&self) -> String {
        if self.pools.is_empty() {
            return "none".to_owned();
        }
        self.pools
            .iter()
            .map(|p| format!("{} {}", p.name, p.cidr))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What narrows the pools of an automatic request.
#[derive(Debug)]
pub(crate) struct Filter<'a> {
    pub(crate) family: u8,
    pub(crate) node: &'a str,
    pub(crate) usage: &'a str,
    pub(crate) requested: &'a [String],
    pub(crate) node_labels: &'a BTreeMap<String, String>,
    pub(crate) namespace_labels: Option<&'a BTreeMap<String, String>>,
}

/// Every stored object of a kind, decoded; objects that do not decode are skipped (the
/// writer validated them; a newer writer's fields are not ours to judge).
pub(crate) fn read_kind(store: &dyn Datastore, kind: Kind) -> Result<Vec<Resource>, IpamError> {
    let listing = store.list(Some(kind.info().store_name), None)?;
    Ok(listing
        .entries
        .iter()
        .filter_map(|e| stored::decode(&e.key.kind, &e.value, e.mod_revision).ok())
        .collect())
}

/// A node's labels (empty when the Node is not stored).
pub(crate) fn node_labels(
    store: &dyn Datastore,
    node: &str,
) -> Result<BTreeMap<String, String>, IpamError> {
    let key = tabby_store::Key::new(Kind::Node.info().store_name, "", node);
    Ok(store
        .get(&key)?
        .and_then(|e| stored::decode(&e.key.kind, &e.value, e.mod_revision).ok())
        .map(|r| r.meta().labels.clone())
        .unwrap_or_default())
}
