use std::net::IpAddr;

use tabby_store::{Key, StoreError};

/// Why an IPAM operation failed. Every message names the address, pool, node or handle
/// concerned and what a person can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The datastore failed (unreachable, locked, refused a write).
    #[error("datastore: {0}")]
    Store(#[from] StoreError),

    /// No pool can serve the request at all.
    #[error("no usable IPv{family} pool for node {node:?}: {why}")]
    NoPool {
        /// 4 or 6.
        family: u8,
        /// The requesting node.
        node: String,
        /// Which pools exist and why each was passed over.
        why: String,
    },

    /// Every usable pool is full (or the node may not claim more blocks and may not borrow).
    #[error("IPv{family} pools {pools} have no free address for node {node:?}{hint}")]
    Exhausted {
        /// 4 or 6.
        family: u8,
        /// The requesting node.
        node: String,
        /// The pools tried.
        pools: String,
        /// What limited the search (block cap, strict affinity).
        hint: String,
    },

    /// A requested address lies in no pool.
    #[error("{ip} is outside every IP pool{pools}; ask for an address inside a pool")]
    OutsidePools {
        /// The address.
        ip: IpAddr,
        /// The pools that exist, for the message.
        pools: String,
    },

    /// A requested address is reserved by an IPReservation.
    #[error("{ip} is reserved by IPReservation {reservation:?}")]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// The reservation's name.
        reservation: String,
    },

    /// A requested address is held by another handle.
    #[error("{ip} is already allocated to handle {handle:?}")]
    AlreadyAllocated {
        /// The address.
        ip: IpAddr,
        /// Its holder.
        handle: String,
    },

    /// A release named an allocation that has since been released and handed out again.
    #[error(
        "{ip} was reallocated since it was read (sequence number {actual}, expected {expected}); not released"
    )]
    BadSequence {
        /// The address.
        ip: IpAddr,
        /// The sequence number the caller expected.
        expected: u64,
        /// The allocation's current one.
        actual: u64,
    },

    /// A pool named in the request does not exist or cannot be used.
    #[error("pool {pool:?} {reason}")]
    BadPool {
        /// The pool name or CIDR as given.
        pool: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A stored IPAM record cannot be read.
    #[error("{key} cannot be read: {reason}")]
    Corrupt {
        /// The record.
        key: Key,
        /// What is wrong.
        reason: String,
    },

    /// Compare-and-swap kept losing: other writers changed the same records every time.
    #[error("{what}: gave up after {attempts} attempts that all raced with other writers")]
    Contended {
        /// The operation.
        what: String,
        /// How often it tried.
        attempts: u32,
    },
}
