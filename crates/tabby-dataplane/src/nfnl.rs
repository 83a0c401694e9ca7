//! The fast path for set-element changes: one nfnetlink transaction written straight to the
//! kernel on a `NETLINK_NETFILTER` socket, without starting `nft` (which costs a process start
//! and a dump of every table, chain and set before it writes a single element).
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_DELSETELEM` or `NFT_MSG_NEWSETELEM` per set
//! and operation, and `NFNL_MSG_BATCH_END`: the kernel applies all of it or nothing, and
//! acknowledges every message (`NLM_F_ACK`), so success is known per message. Only element
//! keys this module encodes exactly as `nft` does are written here: single addresses
//! (`ipv4_addr`, `ipv6_addr` hash sets) and `addr . inet_proto . inet_service` triples, each
//! field in its own 4-byte register. Interval sets (which need start and end elements and the
//! kernel's overlap rules) stay with `nft -f`.
//!
//! Attribute and message numbers are those of the kernel's uapi headers
//! `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`.

mod codec;
mod socket;

#[cfg(test)]
mod tests;

pub use codec::{ElementBatch, ElementKey, ElementOp, Reply, SetChange, encode, parse_replies};
pub use socket::NfSetWriter;
