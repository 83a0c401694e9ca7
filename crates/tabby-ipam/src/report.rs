//! What `tabby ipam show` and `tabby ipam check` report: usage per pool and block, one
//! address's owner, and inconsistencies (leaks, blocks of nodes that are gone, conflicts).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use tabby_model::{Kind, Resource};

use crate::pools::{Snapshot, read_kind};
use crate::records::{AFFINITY_KIND, Affinity, BLOCK_KIND, Block, HANDLE_KIND, Handle};
use crate::{Ipam, IpamError, decode};

/// Usage of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub name: String,
    /// Its CIDR.
    pub cidr: String,
    /// Addresses in the pool.
    pub size: u128,
    /// Addresses allocated.
    pub in_use: usize,
    /// Blocks claimed or created in it.
    pub blocks: usize,
    /// Whether it is disabled.
    pub disabled: bool,
}

/// Usage of one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockUsage {
    /// Block CIDR.
    pub cidr: String,
    /// The pool holding it, if any still does.
    pub pool: Option<String>,
    /// The node it is affine to.
    pub affinity: Option<String>,
    /// Addresses in the block.
    pub size: u32,
    /// Addresses allocated.
    pub in_use: usize,
    /// Allocated addresses held by other nodes' workloads.
    pub borrowed: usize,
}

/// Usage of every pool and block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Per pool.
    pub pools: Vec<PoolUsage>,
    /// Per block.
    pub blocks: Vec<BlockUsage>,
}

/// Everything known about one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpInfo {
    /// The address.
    pub ip: IpAddr,
    /// Its pool.
    pub pool: Option<String>,
    /// Its block, if one exists.
    pub block: Option<String>,
    /// The block's node.
    pub affinity: Option<String>,
    /// The reservation holding it.
    pub reserved_by: Option<String>,
    /// The handle holding it.
    pub handle: Option<String>,
    /// The allocation's sequence number (for `release --sequence`).
    pub sequence: Option<u64>,
    /// Owner attributes.
    pub attrs: BTreeMap<String, String>,
}

/// An allocation that no workload uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leak {
    /// The address.
    pub ip: IpAddr,
    /// Its handle.
    pub handle: String,
    /// The allocation's sequence number.
    pub sequence: u64,
    /// Why it counts as leaked.
    pub reason: String,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Allocations checked.
    pub allocations: usize,
    /// Workload endpoints checked.
    pub endpoints: usize,
    /// Allocations whose workload endpoint is gone or does not hold the address.
    pub leaked: Vec<Leak>,
    /// Allocations without their endpoint yet, made less than [`crate::LEAK_GRACE`] ago: an
    /// ADD in flight, not a leak.
    pub pending: Vec<Leak>,
    /// Blocks affine to nodes that no longer exist: `(block, node)`.
    pub orphaned_blocks: Vec<(String, String)>,
    /// Anything else inconsistent: one line each.
    pub conflicts: Vec<String>,
}

impl CheckReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.leaked.is_empty() && self.orphaned_blocks.is_empty() && self.conflicts.is_empty()
    }
}

/// Every block, decoded.
fn blocks(ipam: &Ipam<'_>) -> Result<Vec<Block>, IpamError> {
    ipam.store
        .list(Some(BLOCK_KIND), None)?
        .entries
        .iter()
        .map(decode)
        .collect()
}

impl Ipam<'_> {
    /// Usage per pool and per block.
    pub fn usage(&self) -> Result<Usage, IpamError> {
        let snap = Snapshot::read(self.store)?;
        let blocks = blocks(self)?;
        let mut pools = Vec::new();
        for p in &snap.pools {
            let mine: Vec<&Block> = blocks
                .iter()
                .filter(|b| {
                    snap.pool_of(b.cidr.network())
                        .is_some_and(|q| q.name == p.name)
                })
                .collect();
            let bits = u32::from(p.cidr.max_prefix_len() - p.cidr.prefix_len());
            pools.push(PoolUsage {
                name: p.name.clone(),
                cidr: p.cidr.to_string(),
                size: 1u128.checked_shl(bits).unwrap_or(u128::MAX),
                in_use: mine.iter().map(|b| b.in_use()).sum(),
                blocks: mine.len(),
                disabled: p.disabled,
            });
        }
        let blocks = blocks
            .iter()
            .map(|b| BlockUsage {
                cidr: b.cidr.to_string(),
                pool: snap.pool_of(b.cidr.network()).map(|p| p.name.clone()),
                affinity: b.affinity.clone(),
                size: b.size(),
                in_use: b.in_use(),
                borrowed: b
                    .allocations
                    .values()
                    .filter(|a| {
                        a.attrs
                            .get("node")
                            .is_some_and(|n| Some(n) != b.affinity.as_ref())
                    })
                    .count(),
            })
            .collect();
        Ok(Usage { pools, blocks })
    }

    /// Everything known about one address.
    pub fn lookup(&self, ip: IpAddr) -> Result<IpInfo, IpamError> {
        let snap = Snapshot::read(self.store)?;
        let block = blocks(self)?.into_iter().find(|b| b.cidr.contains(&ip));
        let alloc = block
            .as_ref()
            .and_then(|b| b.ordinal_of(ip).and_then(|o| b.allocations.get(&o)));
        Ok(IpInfo {
            ip,
            pool: snap.pool_of(ip).map(|p| p.name.clone()),
            block: block.as_ref().map(|b| b.cidr.to_string()),
            affinity: block.as_ref().and_then(|b| b.affinity.clone()),
            reserved_by: snap.reservation_of(ip).map(str::to_owned),
            handle: alloc.map(|a| a.handle.clone()),
            sequence: alloc.map(|a| a.sequence),
            attrs: alloc.map(|a| a.attrs.clone()).unwrap_or_default(),
        })
    }

    /// Finds leaked addresses, blocks of nodes that are gone, and conflicts.
    ///
    /// An allocation is leaked when its `workloadEndpoint` attribute (`namespace/name`) names
    /// an endpoint (a WorkloadEndpoint, or a Pod with its addresses in its status) that does
    /// not exist or does not hold the address, and it was made (its `timestamp` attribute)
    /// at least [`crate::LEAK_GRACE`] ago or at an unknown time; a younger one is pending. An allocation without
    /// that attribute is assumed valid, as Calico's GC assumes.
    pub fn check(&self) -> Result<CheckReport, IpamError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(now)
    }

    /// [`Ipam::check`] as of `now` (Unix seconds): allocations younger than
    /// [`crate::LEAK_GRACE`] without their endpoint are pending, not leaked.
    pub fn check_at(&self, now: u64) -> Result<CheckReport, IpamError> {
        let snap = Snapshot::read(self.store)?;
        let blocks = blocks(self)?;
        let mut report = CheckReport::default();

        // Endpoints and the addresses they hold.
        let mut wep_ips: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut ip_weps: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for r in read_kind(self.store, Kind::WorkloadEndpoint)? {
            if let Resource::WorkloadEndpoint(o) = &r {
                let name = format!("{}/{}", r.namespace(), r.name());
                let ips: BTreeSet<IpAddr> = o
                    .spec
                    .ip_networks
                    .iter()
                    .filter_map(|n| tabby_model::values::parse_net(n).ok())
                    .map(|n| n.addr())
                    .collect();
                for ip in &ips {
                    ip_weps.entry(*ip).or_default().push(name.clone());
                }
                wep_ips.insert(name, ips);
            }
        }
        // Pods hold addresses too: a Pod that records its own (Calico's Kubernetes-datastore
        // way, which tabby's CNI follows when the datastore has the Pod) is the endpoint of
        // that name, so an allocation made for it is not leaked.
        for r in read_kind(self.store, Kind::Pod)? {
            let Some(status) = r.pod_status() else {
                continue;
            };
            let name = format!("{}/{}", r.namespace(), r.name());
            let mut ips: BTreeSet<IpAddr> = status
                .pod_ips
                .iter()
                .filter_map(|p| p.ip.parse().ok())
                .collect();
            ips.extend(
                status
                    .pod_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
            let held = wep_ips.entry(name.clone()).or_default();
            for ip in ips {
                if held.insert(ip) {
                    ip_weps.entry(ip).or_default().push(name.clone());
                }
            }
        }
        report.endpoints = wep_ips.len();
        for (ip, weps) in &ip_weps {
            if weps.len() > 1 {
                report.conflicts.push(format!(
                    "{ip} is used by several workload endpoints: {}",
                    weps.join(", ")
                ));
            }
        }

        let nodes: BTreeSet<String> = read_kind(self.store, Kind::Node)?
            .iter()
            .map(|r| r.name().to_owned())
            .collect();

        let mut held: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        let mut allocated: BTreeSet<IpAddr> = BTreeSet::new();
        for (i, b) in blocks.iter().enumerate() {
            for other in &blocks[i + 1..] {
                if b.cidr.contains(&other.cidr.network()) || other.cidr.contains(&b.cidr.network())
                {
                    report
                        .conflicts
                        .push(format!("blocks {} and {} overlap", b.cidr, other.cidr));
                }
            }
            if snap.pool_of(b.cidr.network()).is_none() {
                report.conflicts.push(format!(
                    "block {} is in no pool (was its pool deleted?)",
                    b.cidr
                ));
            }
            if let Some(node) = &b.affinity
                && !nodes.contains(node)
            {
                report
                    .orphaned_blocks
                    .push((b.cidr.to_string(), node.clone()));
            }
            for (ordinal, a) in &b.allocations {
                let ip = b.ip_at(*ordinal);
                report.allocations += 1;
                allocated.insert(ip);
                *held
                    .entry(a.handle.clone())
                    .or_default()
                    .entry(b.cidr.to_string())
                    .or_default() += 1;
                if let Some(r) = snap.reservation_of(ip) {
                    report.conflicts.push(format!(
                        "{ip} is allocated but reserved by IPReservation {r:?}"
                    ));
                }
                if let Some(wep) = a.attrs.get("workloadEndpoint") {
                    let reason = match wep_ips.get(wep) {
                        None => Some(format!("workload endpoint {wep} does not exist")),
                        Some(ips) if !ips.contains(&ip) => {
                            Some(format!("workload endpoint {wep} does not hold it"))
                        }
                        Some(_) => None,
                    };
                    if let Some(reason) = reason {
                        let leak = Leak {
                            ip,
                            handle: a.handle.clone(),
                            sequence: a.sequence,
                            reason,
                        };
                        let made = a
                            .attrs
                            .get(crate::ATTR_TIMESTAMP)
                            .and_then(|t| t.parse::<u64>().ok());
                        match made {
                            Some(t) if now.saturating_sub(t) < crate::LEAK_GRACE.as_secs() => {
                                report.pending.push(leak);
                            }
                            _ => report.leaked.push(leak),
                        }
                    }
                }
            }
        }
        for (ip, weps) in &ip_weps {
            if snap.pool_of(*ip).is_some() && !allocated.contains(ip) {
                report.conflicts.push(format!(
                    "{ip} is used by {} but not allocated: IPAM may hand it out again",
                    weps.join(", ")
                ));
            }
        }

        // Handles against what the blocks say.
        let handles = self.store.list(Some(HANDLE_KIND), None)?;
        let mut recorded: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for e in &handles.entries {
            let h: Handle = decode(e)?;
            recorded.insert(h.handle_id, h.blocks);
        }
        for (id, blocks) in &held {
            if recorded.get(id) != Some(blocks) {
                report.conflicts.push(format!(
                    "handle {id} holds {blocks:?} in the blocks but its record says {:?}",
                    recorded.get(id)
                ));
            }
        }
        for id in recorded.keys() {
            if !held.contains_key(id) {
                report
                    .conflicts
                    .push(format!("handle {id} is recorded but holds no address"));
            }
        }

        // Affinities against blocks.
        let affinities = self.store.list(Some(AFFINITY_KIND), None)?;
        let by_cidr: BTreeMap<IpNet, &Block> = blocks.iter().map(|b| (b.cidr, b)).collect();
        for e in &affinities.entries {
            let a: Affinity = decode(e)?;
            match by_cidr.get(&a.cidr) {
                None => report.conflicts.push(format!(
                    "node {} is affine to block {} which does not exist",
                    a.node, a.cidr
                )),
                Some(b) if b.affinity.as_deref() != Some(a.node.as_str()) => {
                    report.conflicts.push(format!(
                        "node {} is affine to block {} but the block names {:?}",
                        a.node, a.cidr, b.affinity
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(report)
    }
}
