//! Handing out addresses: automatically from the node's blocks (claiming or borrowing when
//! they are full), or one given address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tabby_store::{Entry, Op};

use crate::pools::{Filter, Snapshot, node_labels};
use crate::records::{
    AFFINITY_KIND, Affinity, BLOCK_KIND, Block, Handle, IpamConfig, TakeError, affinity_key,
    block_key, config_key, handle_key,
};
use crate::{Attempt, Ipam, IpamError, decode, encode};

/// An automatic assignment of one address.
#[derive(Debug, Clone, Default)]
pub struct AssignRequest {
    /// The handle the address is held under (one per container interface).
    pub handle: String,
    /// The node asking; it claims blocks and is preferred.
    pub node: String,
    /// 4 or 6.
    pub family: u8,
    /// Owner attributes stored with the allocation.
    pub attrs: BTreeMap<String, String>,
    /// Only these pools (names or CIDRs); empty: every usable pool.
    pub pools: Vec<String>,
    /// The workload's namespace labels, for pools' `namespaceSelector`; `None` skips it.
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

/// An assignment of one given address.
#[derive(Debug, Clone, Default)]
pub struct AssignIpRequest {
    /// The address.
    pub ip: Option<IpAddr>,
    /// The handle it is held under.
    pub handle: String,
    /// The node asking (it claims the block if nobody has).
    pub node: String,
    /// Owner attributes.
    pub attrs: BTreeMap<String, String>,
}

/// An assignment decided but not yet written ([`Ipam::commit_planned`] writes it).
#[derive(Debug, Clone)]
pub struct Planned {
    /// What it gives.
    pub assigned: Assigned,
    /// The block (and affinity) writes.
    ops: Vec<Op>,
    /// The handle that holds one more address in the block, when the plan allocates one;
    /// the handle's record is written at commit time from one reading, so that several plans
    /// for one handle (dual stack) add up instead of overwriting each other.
    handle: Option<String>,
}

/// What an assignment gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The address.
    pub ip: IpAddr,
    /// Its block.
    pub block: IpNet,
    /// Its pool's name.
    pub pool: String,
    /// Whether the block belongs to another node (or none).
    pub borrowed: bool,
}

impl Ipam<'_> {
    /// Assigns one address of `req.family` to `req.handle`.
    pub fn auto_assign(&self, req: &AssignRequest) -> Result<Assigned, IpamError> {
        let _span =
            tracing::info_span!("ipam_assign", handle = %req.handle, node = %req.node).entered();
        let labels = node_labels(self.store, &req.node)?;
        self.retry(
            || format!("assigning an IPv{} address to {}", req.family, req.handle),
            || match self.assign_once(req, &labels)? {
                Attempt::Done(p) => match self.write_ops(std::slice::from_ref(&p))? {
                    Some(ops) => self.commit(&ops, p.assigned),
                    None => Ok(Attempt::Raced),
                },
                Attempt::Raced => Ok(Attempt::Raced),
            },
        )
    }

    /// Decides an automatic assignment from one reading, without writing it.
    pub fn plan_auto_assign(&self, req: &AssignRequest) -> Result<Planned, IpamError> {
        let labels = node_labels(self.store, &req.node)?;
        self.retry(
            || format!("planning an IPv{} address for {}", req.family, req.handle),
            || self.assign_once(req, &labels),
        )
    }

    /// Writes planned assignments (one per address of a workload) together with `extra`
    /// (the caller's record of what the addresses are for) as one commit. `Ok(false)`:
    /// another writer changed what a plan read (or what `extra` compares), or two plans took
    /// from the same block reading; nothing was written, plan again or take them one by one.
    pub fn commit_planned(&self, plans: &[Planned], extra: &[Op]) -> Result<bool, IpamError> {
        let Some(mut ops) = self.write_ops(plans)? else {
            return Ok(false);
        };
        ops.extend_from_slice(extra);
        if ops.is_empty() {
            return Ok(true);
        }
        match self.commit(&ops, ())? {
            Attempt::Done(()) => Ok(true),
            Attempt::Raced => Ok(false),
        }
    }

    /// The writes of `plans` as one commit; `None` when two plans write the same record (each
    /// planned from the same reading, so one would undo the other).
    fn write_ops(&self, plans: &[Planned]) -> Result<Option<Vec<Op>>, IpamError> {
        let mut ops: Vec<Op> = Vec::new();
        let mut held: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for p in plans {
            for op in &p.ops {
                if ops.iter().any(|o| o.key() == op.key()) {
                    return Ok(None);
                }
                ops.push(op.clone());
            }
            if let Some(handle) = &p.handle {
                held.entry(handle).or_default().push(p.assigned.block);
            }
        }
        for (handle, blocks) in held {
            ops.push(self.handle_op(handle, &blocks)?);
        }
        Ok(Some(ops))
    }

    fn assign_once(
        &self,
        req: &AssignRequest,
        node_labels: &BTreeMap<String, String>,
    ) -> Result<Attempt<Planned>, IpamError> {
        let snap = Snapshot::read(self.store)?;
        let candidates = snap.candidates(&Filter {
            family: req.family,
            node: &req.node,
            usage: "Workload",
            requested: &req.pools,
            node_labels,
            namespace_labels: req.namespace_labels.as_ref(),
        })?;
        let reserved = |ip: IpAddr| snap.reservation_of(ip).is_some();
        let pool_of = |cidr: IpNet| {
            candidates
                .iter()
                .find(|p| p.cidr.contains(&cidr.network()))
                .map(|p| p.name.clone())
        };

        // 1. The node's own blocks.
        let affinities = self.store.list(Some(AFFINITY_KIND), Some(&req.node))?;
        for e in &affinities.entries {
            let aff: Affinity = decode(e)?;
            let Some(pool) = pool_of(aff.cidr) else {
                continue;
            };
            let Some(entry) = self.store.get(&block_key(aff.cidr))? else {
                continue;
            };
            let mut block: Block = decode(&entry)?;
            let Some(ip) = block.allocate(&req.handle, &req.attrs, &reserved) else {
                continue;
            };
            let ops = vec![update(&entry, &block)];
            let done = Assigned {
                ip,
                block: block.cidr,
                pool,
                borrowed: false,
            };
            return Ok(Attempt::Done(Planned {
                ops,
                assigned: done,
                handle: Some(req.handle.clone()),
            }));
        }

        // 2. Claim a new block, unless the node holds as many as it may.
        let blocks = self.store.list(Some(BLOCK_KIND), None)?;
        let cap = snap.config.max_blocks_per_host;
        let owned = u32::try_from(affinities.entries.len()).unwrap_or(u32::MAX);
        if cap == 0 || owned < cap {
            let existing: Vec<IpNet> = blocks
                .entries
                .iter()
                .map(|e| decode::<Block>(e).map(|b| b.cidr))
                .collect::<Result<_, _>>()?;
            for pool in &candidates {
                for cidr in pool.blocks_from(&req.node) {
                    let overlaps = existing
                        .iter()
                        .any(|e| e.contains(&cidr.network()) || cidr.contains(&e.network()));
                    if overlaps {
                        continue;
                    }
                    let mut block = Block::new(cidr, Some(req.node.clone()));
                    let Some(ip) = block.allocate(&req.handle, &req.attrs, &reserved) else {
                        continue;
                    };
                    let ops = claim_ops(&req.node, &block);
                    tracing::info!(block = %cidr, pool = %pool.name, "claiming a block");
                    let done = Assigned {
                        ip,
                        block: cidr,
                        pool: pool.name.clone(),
                        borrowed: false,
                    };
                    return Ok(Attempt::Done(Planned {
                        ops,
                        assigned: done,
                        handle: Some(req.handle.clone()),
                    }));
                }
            }
        }

        // 3. Borrow from any block with room.
        if !snap.config.strict_affinity {
            for entry in &blocks.entries {
                let mut block: Block = decode(entry)?;
                if block.affinity.as_deref() == Some(req.node.as_str()) {
                    continue;
                }
                let Some(pool) = pool_of(block.cidr) else {
                    continue;
                };
                let Some(ip) = block.allocate(&req.handle, &req.attrs, &reserved) else {
                    continue;
                };
                let ops = vec![update(entry, &block)];
                tracing::info!(block = %block.cidr, owner = ?block.affinity, %ip, "borrowing an address");
                let done = Assigned {
                    ip,
                    block: block.cidr,
                    pool,
                    borrowed: true,
                };
                return Ok(Attempt::Done(Planned {
                    ops,
                    assigned: done,
                    handle: Some(req.handle.clone()),
                }));
            }
        }

        let mut hint = Vec::new();
        if cap != 0 && owned >= cap {
            hint.push(format!(
                "the node holds {owned} blocks, the most it may claim (maxBlocksPerHost)"
            ));
        }
        if snap.config.strict_affinity {
            hint.push("strict affinity forbids borrowing from other nodes' blocks".to_owned());
        }
        Err(IpamError::Exhausted {
            family: req.family,
            node: req.node.clone(),
            pools: candidates
                .iter()
                .map(|p| format!("{} ({})", p.name, p.cidr))
                .collect::<Vec<_>>()
                .join(", "),
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!(": {}", hint.join("; "))
            },
        })
    }

    /// Assigns one given address to `req.handle`. Assigning an address the handle already
    /// holds succeeds (a retried ADD).
    pub fn assign_ip(&self, req: &AssignIpRequest) -> Result<Assigned, IpamError> {
        let ip = req.ip.ok_or_else(|| IpamError::BadPool {
            pool: String::new(),
            reason: "no address given".to_owned(),
        })?;
        let _span =
            tracing::info_span!("ipam_assign_ip", handle = %req.handle, node = %req.node, %ip)
                .entered();
        self.retry(
            || format!("assigning {ip} to {}", req.handle),
            || match self.assign_ip_once(ip, req)? {
                Attempt::Done(p) => match self.write_ops(std::slice::from_ref(&p))? {
                    Some(ops) => self.commit(&ops, p.assigned),
                    None => Ok(Attempt::Raced),
                },
                Attempt::Raced => Ok(Attempt::Raced),
            },
        )
    }

    /// Decides the assignment of one given address from one reading, without writing it.
    pub fn plan_assign_ip(&self, req: &AssignIpRequest) -> Result<Planned, IpamError> {
        let ip = req.ip.ok_or_else(|| IpamError::BadPool {
            pool: String::new(),
            reason: "no address given".to_owned(),
        })?;
        self.retry(
            || format!("planning {ip} for {}", req.handle),
            || self.assign_ip_once(ip, req),
        )
    }

    fn assign_ip_once(
        &self,
        ip: IpAddr,
        req: &AssignIpRequest,
    ) -> Result<Attempt<Planned>, IpamError> {
        {
            {
                let snap = Snapshot::read(self.store)?;
                let pool = snap.pool_of(ip).ok_or_else(|| IpamError::OutsidePools {
                    ip,
                    pools: format!(" (pools: {})", snap.pool_names()),
                })?;
                if let Some(r) = snap.reservation_of(ip) {
                    return Err(IpamError::Reserved {
                        ip,
                        reservation: r.to_owned(),
                    });
                }
                let cidr = pool.block_of(ip);
                let done = |borrowed| Assigned {
                    ip,
                    block: cidr,
                    pool: pool.name.clone(),
                    borrowed,
                };
                match self.store.get(&block_key(cidr))? {
                    Some(entry) => {
                        let mut block: Block = decode(&entry)?;
                        match block.allocate_ip(ip, &req.handle, &req.attrs) {
                            Ok(()) => {}
                            Err(TakeError::Taken(a)) if a.handle == req.handle => {
                                return Ok(Attempt::Done(Planned {
                                    ops: Vec::new(),
                                    handle: None,
                                    assigned: done(
                                        block.affinity.as_deref() != Some(req.node.as_str()),
                                    ),
                                }));
                            }
                            Err(TakeError::Taken(a)) => {
                                return Err(IpamError::AlreadyAllocated {
                                    ip,
                                    handle: a.handle,
                                });
                            }
                            Err(TakeError::Outside) => {
                                return Err(IpamError::OutsidePools {
                                    ip,
                                    pools: String::new(),
                                });
                            }
                        }
                        let borrowed = block.affinity.as_deref() != Some(req.node.as_str());
                        let ops = vec![update(&entry, &block)];
                        Ok(Attempt::Done(Planned {
                            ops,
                            assigned: done(borrowed),
                            handle: Some(req.handle.clone()),
                        }))
                    }
                    None => {
                        let mut block = Block::new(cidr, Some(req.node.clone()));
                        if block.allocate_ip(ip, &req.handle, &req.attrs).is_err() {
                            return Err(IpamError::OutsidePools {
                                ip,
                                pools: String::new(),
                            });
                        }
                        let ops = claim_ops(&req.node, &block);
                        Ok(Attempt::Done(Planned {
                            ops,
                            assigned: done(false),
                            handle: Some(req.handle.clone()),
                        }))
                    }
                }
            }
        }
    }

    /// The write that records one more address of `handle` in each of `blocks`.
    fn handle_op(&self, handle: &str, blocks: &[IpNet]) -> Result<Op, IpamError> {
        let key = handle_key(handle);
        let stored = self.store.get(&key)?;
        let mut h = match &stored {
            Some(entry) => decode(entry)?,
            None => Handle {
                handle_id: handle.to_owned(),
                blocks: BTreeMap::new(),
            },
        };
        for cidr in blocks {
            *h.blocks.entry(cidr.to_string()).or_default() += 1;
        }
        let value = encode(&h);
        Ok(match stored {
            Some(entry) => Op::Update {
                key,
                value,
                expect: Some(entry.mod_revision),
            },
            None => Op::Create { key, value },
        })
    }

    /// The stored IPAM configuration (defaults when none is stored).
    pub fn config(&self) -> Result<IpamConfig, IpamError> {
        Ok(match self.store.get(&config_key())? {
            Some(e) => decode(&e)?,
            None => IpamConfig::default(),
        })
    }

    /// Stores the IPAM configuration.
    pub fn set_config(&self, config: &IpamConfig) -> Result<(), IpamError> {
        self.store.commit(&[Op::Put {
            key: config_key(),
            value: encode(config),
        }])?;
        Ok(())
    }
}

/// A compare-and-swap replace of a block read as `entry`.
pub(crate) fn update(entry: &Entry, block: &Block) -> Op {
    Op::Update {
        key: entry.key.clone(),
        value: encode(block),
        expect: Some(entry.mod_revision),
    }
}

/// The writes that claim a new block for `node` (holding its first allocation).
fn claim_ops(node: &str, block: &Block) -> Vec<Op> {
    let affinity = Affinity {
        cidr: block.cidr,
        node: node.to_owned(),
        state: "confirmed".to_owned(),
    };
    vec![
        Op::Create {
            key: block_key(block.cidr),
            value: encode(block),
        },
        // The block's create is what decides a race between nodes; the affinity is
        // overwritten so that a stale one cannot block the claim.
        Op::Put {
            key: affinity_key(node, block.cidr),
            value: encode(&affinity),
        },
    ]
}
