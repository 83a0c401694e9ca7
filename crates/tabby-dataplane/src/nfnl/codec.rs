//! Encoding element batches and decoding the kernel's acknowledgements. Pure: no socket.
//!
//! Netlink headers and attribute headers are in host byte order; `nfgenmsg.res_id`, addresses
//! and ports in network byte order, as the kernel expects.

use std::fmt;
use std::net::IpAddr;

use crate::apply::NftError;

const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
/// In an acknowledgement: the original message's payload was left out (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// In an acknowledgement: extended-ack attributes follow (`NETLINK_EXT_ACK`).
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `NLMSG_MIN_TYPE` and the one after it.
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;
const NFNETLINK_V0: u8 = 0;

const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// One element key, as a set of the matching type holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementKey {
    /// An `ipv4_addr` or `ipv6_addr` element.
    Addr(IpAddr),
    /// An `ipv4_addr . inet_proto . inet_service` (or `ipv6_addr . ...`) element.
    AddrProtoPort {
        /// The address.
        addr: IpAddr,
        /// IP protocol number.
        protocol: u8,
        /// Port.
        port: u16,
    },
}

impl ElementKey {
    /// The key as the kernel compares it: each field of a concatenation starts a new 4-byte
    /// register and is zero-padded to it, so `inet_proto` takes 4 bytes and `inet_service`
    /// (big-endian) 4.
    pub fn bytes(&self) -> Vec<u8> {
        fn addr_bytes(out: &mut Vec<u8>, addr: &IpAddr) {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let mut out = Vec::with_capacity(24);
        match self {
            Self::Addr(a) => addr_bytes(&mut out, a),
            Self::AddrProtoPort {
                addr,
                protocol,
                port,
            } => {
                addr_bytes(&mut out, addr);
                out.extend_from_slice(&[*protocol, 0, 0, 0]);
                let p = port.to_be_bytes();
                out.extend_from_slice(&[p[0], p[1], 0, 0]);
            }
        }
        out
    }
}

/// Adding or deleting elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementOp {
    /// `NFT_MSG_NEWSETELEM` (an element already present is not an error, as `nft add element`).
    Add,
    /// `NFT_MSG_DELSETELEM` (an absent element fails the whole batch with `ENOENT`, as
    /// `nft delete element`).
    Delete,
}

impl fmt::Display for ElementOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "add",
            Self::Delete => "delete",
        })
    }
}

/// One message of a batch: elements of one set, all added or all deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    /// The set's name.
    pub set: String,
    /// What to do.
    pub op: ElementOp,
    /// The elements.
    pub keys: Vec<ElementKey>,
}

/// Element changes of sets in one `inet` table, written as one transaction in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementBatch {
    /// The table (family `inet`).
    pub table: String,
    /// One message each.
    pub changes: Vec<SetChange>,
}

impl ElementBatch {
    /// How many elements the batch changes.
    pub fn elements(&self) -> usize {
        self.changes.iter().map(|c| c.keys.len()).sum()
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn pad(out: &mut Vec<u8>) {
    out.resize(align4(out.len()), 0);
}

/// Writes a header whose length is patched by [`finish`].
fn begin_msg(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    // Port ID 0: the message is for the kernel.
    out.extend_from_slice(&0u32.to_ne_bytes());
    start
}

fn nfgenmsg(out: &mut Vec<u8>, family: u8, res_id: u16) {
    out.push(family);
    out.push(NFNETLINK_V0);
    out.extend_from_slice(&res_id.to_be_bytes());
}

/// Patches the 16-bit (attribute) or 32-bit (message) length at `start`.
fn finish_attr(out: &mut [u8], start: usize) {
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn finish_msg(out: &mut Vec<u8>, start: usize) {
    pad(out);
    let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn begin_attr(out: &mut Vec<u8>, kind: u16) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    start
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let start = begin_attr(out, kind);
    out.extend_from_slice(value);
    finish_attr(out, start);
    pad(out);
}

/// A NUL-terminated string attribute, as `nft` sends names.
fn attr_strz(out: &mut Vec<u8>, kind: u16, value: &str) {
    let start = begin_attr(out, kind);
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    finish_attr(out, start);
    pad(out);
}

fn batch_marker(out: &mut Vec<u8>, kind: u16, seq: u32) {
    let start = begin_msg(out, kind, NLM_F_REQUEST, seq);
    nfgenmsg(out, 0, NFNL_SUBSYS_NFTABLES);
    finish_msg(out, start);
}

/// The bytes of one batch: begin (sequence number `first_seq`), the changes in order (`first_seq
/// + 1 + i`, each asking for an acknowledgement), end.
pub fn encode(batch: &ElementBatch, first_seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.elements() * 36 + batch.changes.len() * 64);
    batch_marker(&mut out, NFNL_MSG_BATCH_BEGIN, first_seq);
    let mut seq = first_seq;
    for change in &batch.changes {
        seq = seq.wrapping_add(1);
        let (kind, flags) = match change.op {
            ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
            ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        let msg = begin_msg(&mut out, (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq);
        nfgenmsg(&mut out, NFPROTO_INET, 0);
        attr_strz(&mut out, NFTA_SET_ELEM_LIST_TABLE, &batch.table);
        attr_strz(&mut out, NFTA_SET_ELEM_LIST_SET, &change.set);
        let list = begin_attr(&mut out, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
        for key in &change.keys {
            let elem = begin_attr(&mut out, NFTA_LIST_ELEM | NLA_F_NESTED);
            let k = begin_attr(&mut out, NFTA_SET_ELEM_KEY | NLA_F_NESTED);
            attr(&mut out, NFTA_DATA_VALUE, &key.bytes());
            finish_attr(&mut out, k);
            finish_attr(&mut out, elem);
        }
        finish_attr(&mut out, list);
        finish_msg(&mut out, msg);
    }
    batch_marker(&mut out, NFNL_MSG_BATCH_END, seq.wrapping_add(1));
    out
}

/// One message from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `NLMSG_ERROR`: the answer to the request with sequence number `seq`; `errno` 0 is a
    /// plain acknowledgement.
    Ack {
        /// The request's sequence number.
        seq: u32,
        /// 0, or the (positive) error number.
        errno: i32,
        /// The kernel's extended-ack text, when it gave one.
        message: Option<String>,
    },
    /// Anything else (not expected on this socket).
    Other {
        /// Sequence number.
        seq: u32,
        /// Message type.
        kind: u16,
    },
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn ext_ack_message(buf: &[u8]) -> Option<String> {
    let mut at = 0;
    while at + NLA_HDRLEN <= buf.len() {
        let len = usize::from(u16_at(buf, at));
        let kind = u16_at(buf, at + 2) & !NLA_F_NESTED;
        if len < NLA_HDRLEN || at + len > buf.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &buf[at + NLA_HDRLEN..at + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += align4(len);
    }
    None
}

/// The messages of one datagram from the kernel.
pub fn parse_replies(buf: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(format!(
                "a reply claims {len} bytes at offset {at} of a {}-byte datagram",
                buf.len()
            ));
        }
        let kind = u16_at(buf, at + 4);
        let flags = u16_at(buf, at + 6);
        let seq = u32_at(buf, at + 8);
        if kind == NLMSG_ERROR {
            let body = at + NLMSG_HDRLEN;
            if len < NLMSG_HDRLEN + 4 + NLMSG_HDRLEN {
                return Err(format!("a {len}-byte error message is too short"));
            }
            let error =
                i32::from_ne_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]]);
            // The request's own header follows; its sequence number is what was answered.
            let orig = body + 4;
            let orig_len = u32_at(buf, orig) as usize;
            let answered = u32_at(buf, orig + 8);
            let mut tlvs = orig + NLMSG_HDRLEN;
            if flags & NLM_F_CAPPED == 0 {
                tlvs = orig + align4(orig_len.max(NLMSG_HDRLEN));
            }
            let message = if flags & NLM_F_ACK_TLVS != 0 && tlvs < at + len {
                ext_ack_message(&buf[tlvs..at + len])
            } else {
                None
            };
            out.push(Reply::Ack {
                seq: answered,
                errno: error.saturating_neg(),
                message,
            });
        } else {
            out.push(Reply::Other { seq, kind });
        }
        at += align4(len);
    }
    Ok(out)
}

fn reason(errno: i32, message: Option<&str>) -> String {
    let mut text = std::io::Error::from_raw_os_error(errno).to_string();
    if errno == 2 {
        text.push_str(" (the table or set is missing, or an element to delete is absent)");
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(m);
    }
    text
}

/// Whether the replies to the batch encoded with `first_seq` say it was applied: every change
/// acknowledged with 0 and no error anywhere. The first error is the one reported.
pub(crate) fn check_replies(
    batch: &ElementBatch,
    first_seq: u32,
    replies: &[Reply],
) -> Result<(), NftError> {
    let mut acked = vec![false; batch.changes.len()];
    for reply in replies {
        let Reply::Ack {
            seq,
            errno,
            message,
        } = reply
        else {
            continue;
        };
        let index = seq.wrapping_sub(first_seq).wrapping_sub(1) as usize;
        let change = batch.changes.get(index);
        if *errno == 0 {
            if let Some(a) = acked.get_mut(index) {
                *a = true;
            }
            continue;
        }
        return Err(match change {
            Some(c) => NftError::ElementsRejected {
                table: batch.table.clone(),
                set: c.set.clone(),
                op: c.op,
                count: c.keys.len(),
                errno: *errno,
                reason: reason(*errno, message.as_deref()),
            },
            None => NftError::BatchRejected {
                messages: batch.changes.len(),
                errno: *errno,
                reason: reason(*errno, message.as_deref()),
            },
        });
    }
    let missing = acked.iter().filter(|a| !**a).count();
    if missing > 0 {
        return Err(NftError::NetlinkReply(format!(
            "{missing} of {} messages of the batch were not acknowledged",
            batch.changes.len()
        )));
    }
    Ok(())
}
