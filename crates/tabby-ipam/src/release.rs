//! Giving addresses back: everything a handle holds (CNI DEL), or one address (the CLI), and
//! a node's empty blocks.

use std::net::IpAddr;

use ipnet::IpNet;
use tabby_store::Op;

use crate::assign::update;
use crate::records::{
    AFFINITY_KIND, Affinity, BLOCK_KIND, Block, Handle, ReleaseError, affinity_key, block_key,
    handle_key,
};
use crate::{Attempt, Ipam, IpamError, decode, encode};

/// What releasing one address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// It was allocated to this handle and is free now.
    Freed {
        /// The handle that held it.
        handle: String,
    },
    /// It was not allocated (nothing to do).
    NotAllocated,
}

impl Ipam<'_> {
    /// Frees every address `handle` holds and forgets the handle; returns the addresses.
    /// Releasing a handle that holds nothing succeeds with nothing (a repeated DEL).
    pub fn release_handle(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        self.release_handle_with(handle, &|| Ok(Vec::new()))
    }

    /// Like [`Ipam::release_handle`], writing `extra()` (read afresh on every attempt: the
    /// caller's record of what the addresses were for, taken away) in the same commit.
    pub fn release_handle_with(
        &self,
        handle: &str,
        extra: &dyn Fn() -> Result<Vec<Op>, IpamError>,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let _span = tracing::info_span!("ipam_release", %handle).entered();
        self.retry(
            || format!("releasing handle {handle}"),
            || {
                let extra = extra()?;
                let Some(h_entry) = self.store.get(&handle_key(handle))? else {
                    return self.commit(&extra, Vec::new());
                };
                let h: Handle = decode(&h_entry)?;
                let mut ops = Vec::new();
                let mut freed = Vec::new();
                for cidr in h.blocks.keys() {
                    let Ok(cidr) = cidr.parse::<IpNet>() else {
                        continue;
                    };
                    let Some(entry) = self.store.get(&block_key(cidr))? else {
                        continue;
                    };
                    let mut block: Block = decode(&entry)?;
                    let ips = block.release_handle(handle);
                    if ips.is_empty() {
                        continue;
                    }
                    freed.extend(ips);
                    ops.push(block_write(&entry, &block));
                }
                ops.push(Op::Delete {
                    key: h_entry.key.clone(),
                    expect: Some(h_entry.mod_revision),
                });
                ops.extend(extra);
                self.commit(&ops, freed.clone())
            },
        )
    }

    /// Frees one address; with `expect_sequence`, only if its allocation still has that
    /// sequence number (so that a release decided on an old reading cannot free a reuse).
    pub fn release_ip(
        &self,
        ip: IpAddr,
        expect_sequence: Option<u64>,
    ) -> Result<Released, IpamError> {
        let _span = tracing::info_span!("ipam_release_ip", %ip).entered();
        self.retry(
            || format!("releasing {ip}"),
            || {
                let blocks = self.store.list(Some(BLOCK_KIND), None)?;
                let mut found = None;
                for e in &blocks.entries {
                    let b: Block = decode(e)?;
                    if b.cidr.contains(&ip) {
                        found = Some((e, b));
                        break;
                    }
                }
                let Some((entry, mut block)) = found else {
                    return Ok(Attempt::Done(Released::NotAllocated));
                };
                let alloc = match block.release(ip, expect_sequence) {
                    Ok(a) => a,
                    Err(ReleaseError::NotAllocated) => {
                        return Ok(Attempt::Done(Released::NotAllocated));
                    }
                    Err(ReleaseError::BadSequence { expected, actual }) => {
                        return Err(IpamError::BadSequence {
                            ip,
                            expected,
                            actual,
                        });
                    }
                };
                let mut ops = vec![block_write(entry, &block)];
                if let Some(h_entry) = self.store.get(&handle_key(&alloc.handle))? {
                    let mut h: Handle = decode(&h_entry)?;
                    let name = block.cidr.to_string();
                    let left = h.blocks.get(&name).copied().unwrap_or(0).saturating_sub(1);
                    if left == 0 {
                        h.blocks.remove(&name);
                    } else {
                        h.blocks.insert(name, left);
                    }
                    ops.push(if h.blocks.is_empty() {
                        Op::Delete {
                            key: h_entry.key.clone(),
                            expect: Some(h_entry.mod_revision),
                        }
                    } else {
                        Op::Update {
                            key: h_entry.key.clone(),
                            value: encode(&h),
                            expect: Some(h_entry.mod_revision),
                        }
                    });
                }
                self.commit(
                    &ops,
                    Released::Freed {
                        handle: alloc.handle,
                    },
                )
            },
        )
    }

    /// Gives up `node`'s affinity to its empty blocks (a node leaving): the blocks and their
    /// affinities are deleted; blocks still in use are kept. Returns the released blocks.
    pub fn release_node_blocks(&self, node: &str) -> Result<Vec<IpNet>, IpamError> {
        let _span = tracing::info_span!("ipam_release_node", %node).entered();
        let affinities = self.store.list(Some(AFFINITY_KIND), Some(node))?;
        let mut released = Vec::new();
        for e in &affinities.entries {
            let aff: Affinity = decode(e)?;
            let done = self.retry(
                || format!("releasing block {} of {node}", aff.cidr),
                || {
                    let mut ops = vec![Op::Delete {
                        key: affinity_key(node, aff.cidr),
                        expect: None,
                    }];
                    if let Some(b) = self.store.get(&block_key(aff.cidr))? {
                        let block: Block = decode(&b)?;
                        if block.in_use() > 0 {
                            return Ok(Attempt::Done(false));
                        }
                        ops.push(Op::Delete {
                            key: b.key.clone(),
                            expect: Some(b.mod_revision),
                        });
                    }
                    self.commit(&ops, true)
                },
            )?;
            if done {
                released.push(aff.cidr);
            }
        }
        Ok(released)
    }
}

/// The write of a block after a release: an empty block nobody is affine to is deleted (its
/// addresses were borrowed), any other block is replaced.
fn block_write(entry: &tabby_store::Entry, block: &Block) -> Op {
    if block.affinity.is_none() && block.in_use() == 0 {
        Op::Delete {
            key: entry.key.clone(),
            expect: Some(entry.mod_revision),
        }
    } else {
        update(entry, block)
    }
}
