//! The IPAM's own records in the datastore: blocks, block affinities, handles and the IPAM
//! configuration. They are internal kinds (not Calico v3 resources a person applies), stored
//! as JSON under [`Key`]s of their own kinds, so the agent's syncer skips them as kinds it does
//! not know.
//!
//! - `IPAMBlock` (cluster-scoped, named after its CIDR): which ordinals are allocated, to which
//!   handle, at which sequence number, and the FIFO of free ordinals.
//! - `BlockAffinity` (namespace = the node, named after the block): the node owns the block.
//!   Keyed by node so that a node lists its own blocks in one read.
//! - `IPAMHandle` (cluster-scoped, named by handle ID): how many addresses the handle holds in
//!   which block, so that a release reads only those blocks.
//! - `IPAMConfig` `default`: strict affinity and the cap on blocks per host.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tabby_store::Key;

/// Store kind of blocks.
pub const BLOCK_KIND: &str = "IPAMBlock";
/// Store kind of block affinities.
pub const AFFINITY_KIND: &str = "BlockAffinity";
/// Store kind of handles.
pub const HANDLE_KIND: &str = "IPAMHandle";
/// Store kind of the IPAM configuration (one object, `default`).
pub const CONFIG_KIND: &str = "IPAMConfig";

/// Calico's default cap on the blocks one host claims.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

/// A block's name in keys: its CIDR with `.`, `:` and `/` as `-` (`10-244-0-64-26`).
pub fn block_name(cidr: IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// Where a block is stored.
pub fn block_key(cidr: IpNet) -> Key {
    Key::new(BLOCK_KIND, "", block_name(cidr))
}

/// Where node `node`'s affinity to block `cidr` is stored.
pub fn affinity_key(node: &str, cidr: IpNet) -> Key {
    Key::new(AFFINITY_KIND, node, block_name(cidr))
}

/// Where a handle is stored.
pub fn handle_key(handle: &str) -> Key {
    Key::new(HANDLE_KIND, "", handle)
}

/// Where the IPAM configuration is stored.
pub fn config_key() -> Key {
    Key::new(CONFIG_KIND, "", "default")
}

/// Serialises a network as its text, so stored records read like Calico's.
mod net_text {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One allocated address of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The handle that holds it.
    pub handle: String,
    /// Owner attributes (`namespace`, `pod`, `node`, `workloadEndpoint`, `containerID`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// The block's sequence number when this allocation was made: a release that names
    /// another number is about an earlier use of the address and is refused.
    pub sequence: u64,
}

/// A block of a pool: the unit of affinity and of compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    /// The block's network.
    #[serde(with = "net_text")]
    pub cidr: IpNet,
    /// The node the block is affine to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Allocated ordinals (offsets from the block's first address).
    #[serde(default)]
    pub allocations: BTreeMap<u32, Allocation>,
    /// Free ordinals, longest free first: a released address goes to the back, so it is the
    /// last to be handed out again.
    #[serde(default)]
    pub unallocated: VecDeque<u32>,
    /// Bumped on every write of the block.
    #[serde(default)]
    pub sequence_number: u64,
}

/// An address could not be taken from a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeError {
    /// The address is not in the block.
    Outside,
    /// Another handle holds it.
    Taken(Allocation),
}

/// A release was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// The address is not allocated.
    NotAllocated,
    /// The allocation has another sequence number than the release expected: the address was
    /// released and handed out again since the caller looked.
    BadSequence {
        /// The number the caller expected.
        expected: u64,
        /// The allocation's number.
        actual: u64,
    },
}

impl Block {
    /// An empty block, every ordinal free in address order.
    pub fn new(cidr: IpNet, affinity: Option<String>) -> Self {
        let cidr = cidr.trunc();
        Self {
            cidr,
            affinity,
            allocations: BTreeMap::new(),
            unallocated: (0..Self::size_of(cidr)).collect(),
            sequence_number: 0,
        }
    }

    /// The number of addresses in a block of this network (capped: blocks are /20 at most).
    pub fn size_of(cidr: IpNet) -> u32 {
        let bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        1u32.checked_shl(bits).unwrap_or(u32::MAX)
    }

    /// The number of addresses.
    pub fn size(&self) -> u32 {
        Self::size_of(self.cidr)
    }

    /// The ordinal of an address, if it is in the block.
    pub fn ordinal_of(&self, ip: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        let offset = match (ip, self.cidr.network()) {
            (IpAddr::V4(a), IpAddr::V4(n)) => u128::from(u32::from(a) - u32::from(n)),
            (IpAddr::V6(a), IpAddr::V6(n)) => u128::from(a) - u128::from(n),
            _ => return None,
        };
        u32::try_from(offset).ok()
    }

    /// The address at an ordinal.
    pub fn ip_at(&self, ordinal: u32) -> IpAddr {
        match self.cidr.network() {
            IpAddr::V4(n) => IpAddr::V4((u32::from(n) + ordinal).into()),
            IpAddr::V6(n) => IpAddr::V6((u128::from(n) + u128::from(ordinal)).into()),
        }
    }

    /// Addresses in use.
    pub fn in_use(&self) -> usize {
        self.allocations.len()
    }

    /// Free ordinals whose address is not reserved.
    pub fn free(&self, reserved: &dyn Fn(IpAddr) -> bool) -> usize {
        self.unallocated
            .iter()
            .filter(|o| !reserved(self.ip_at(**o)))
            .count()
    }

    /// Takes the free address that has been free longest and is not reserved.
    pub fn allocate(
        &mut self,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        reserved: &dyn Fn(IpAddr) -> bool,
    ) -> Option<IpAddr> {
        let pos = self
            .unallocated
            .iter()
            .position(|o| !reserved(self.ip_at(*o)))?;
        let ordinal = self.unallocated.remove(pos)?;
        self.record(ordinal, handle, attrs);
        Some(self.ip_at(ordinal))
    }

    /// Takes one given address.
    pub fn allocate_ip(
        &mut self,
        ip: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), TakeError> {
        let ordinal = self.ordinal_of(ip).ok_or(TakeError::Outside)?;
        if let Some(a) = self.allocations.get(&ordinal) {
            return Err(TakeError::Taken(a.clone()));
        }
        self.unallocated.retain(|o| *o != ordinal);
        self.record(ordinal, handle, attrs);
        Ok(())
    }

    fn record(&mut self, ordinal: u32, handle: &str, attrs: &BTreeMap<String, String>) {
        self.sequence_number += 1;
        self.allocations.insert(
            ordinal,
            Allocation {
                handle: handle.to_owned(),
                attrs: attrs.clone(),
                sequence: self.sequence_number,
            },
        );
    }

    /// Frees one address; with `expect`, only if its allocation has that sequence number.
    pub fn release(&mut self, ip: IpAddr, expect: Option<u64>) -> Result<Allocation, ReleaseError> {
        let ordinal = self.ordinal_of(ip).ok_or(ReleaseError::NotAllocated)?;
        let current = self
            .allocations
            .get(&ordinal)
            .ok_or(ReleaseError::NotAllocated)?;
        if let Some(expected) = expect
            && expected != current.sequence
        {
            return Err(ReleaseError::BadSequence {
                expected,
                actual: current.sequence,
            });
        }
        let freed = self
            .allocations
            .remove(&ordinal)
            .ok_or(ReleaseError::NotAllocated)?;
        self.unallocated.push_back(ordinal);
        self.sequence_number += 1;
        Ok(freed)
    }

    /// Frees every address `handle` holds; returns them.
    pub fn release_handle(&mut self, handle: &str) -> Vec<IpAddr> {
        let ordinals: Vec<u32> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.handle == handle)
            .map(|(o, _)| *o)
            .collect();
        if ordinals.is_empty() {
            return Vec::new();
        }
        for o in &ordinals {
            self.allocations.remove(o);
            self.unallocated.push_back(*o);
        }
        self.sequence_number += 1;
        ordinals.into_iter().map(|o| self.ip_at(o)).collect()
    }

    /// The addresses held by `handle`.
    pub fn ips_of(&self, handle: &str) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .filter(|(_, a)| a.handle == handle)
            .map(|(o, _)| self.ip_at(*o))
            .collect()
    }
}

/// A node's claim on a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    /// The block.
    #[serde(with = "net_text")]
    pub cidr: IpNet,
    /// The node.
    pub node: String,
    /// `confirmed`. Calico writes `pending` first and confirms once the block exists; here the
    /// affinity and its block are created in one datastore commit, so a claim is confirmed
    /// when it becomes visible and there is no pending state to clean up after a crash.
    pub state: String,
}

/// The addresses one handle (one container interface) holds, by block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handle {
    /// The handle ID.
    pub handle_id: String,
    /// Block CIDR to the number of addresses held in it.
    #[serde(default)]
    pub blocks: BTreeMap<String, u32>,
}

/// Cluster-wide IPAM settings (Calico's IPAMConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// Never borrow from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    /// The most blocks one host claims (0: no cap).
    #[serde(default = "default_max_blocks")]
    pub max_blocks_per_host: u32,
}

fn default_max_blocks() -> u32 {
    DEFAULT_MAX_BLOCKS_PER_HOST
}

impl Default for IpamConfig {
    fn default() -> Self {
        Self {
            strict_affinity: false,
            max_blocks_per_host: DEFAULT_MAX_BLOCKS_PER_HOST,
        }
    }
}

#[cfg(test)]
mod tests;
