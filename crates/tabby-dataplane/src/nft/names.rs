//! Names of tabby's nftables objects, and the text of comments.
//!
//! nft identifiers must start with a letter and hold only letters, digits and `_` (a few more
//! characters parse, but some spellings collide with keywords, `fwd` for one). Calico's IDs
//! (`s:<base64url>`), policy names and profile names do not fit, so objects are named by a
//! short hash of what they stand for, and the readable name goes in a comment. The hash is
//! stable across restarts and versions, so a new agent's names match an old agent's table.

use std::fmt::Write as _;

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use tabby_calc::{IpSetId, PolicyId};
use tabby_model::Kind;

/// The table tabby owns, in family `inet` (one table for IPv4 and IPv6).
pub const TABLE: &str = "tabby";

/// Prefix of the host side of every workload veth (DESIGN.md, workload plumbing).
pub const WORKLOAD_IFACE_PREFIX: &str = "tb";

/// Longest comment nft keeps (`NFTNL_UDATA_COMMENT_MAXLEN` is 128 with the final NUL).
const COMMENT_MAX: usize = 127;

/// An IP address family: nft sets hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both, IPv4 first.
    pub const ALL: [Self; 2] = [Self::V4, Self::V6];

    /// The family of a network.
    pub fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }

    /// The payload keyword for addresses (`ip saddr`, `ip6 saddr`).
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }

    /// `meta nfproto` value.
    pub(crate) fn nfproto(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }

    /// The nft data type of an address.
    pub(crate) fn addr_type(self) -> &'static str {
        match self {
            Self::V4 => "ipv4_addr",
            Self::V6 => "ipv6_addr",
        }
    }

    fn digit(self) -> char {
        match self {
            Self::V4 => '4',
            Self::V6 => '6',
        }
    }
}

/// What part of an IP set an nft set holds: tabby splits each IP set by family and, for
/// address sets, into host addresses (a hash set, cheap to update) and wider networks (an
/// interval set; see the crate header for why they are kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetPart {
    /// Single addresses (/32, /128).
    Hosts,
    /// Networks wider than one address.
    Prefixes,
    /// Address, protocol, port triples of a named-port set.
    NamedPorts,
}

/// A hex digest of `text`, 16 characters (64 bits: collisions among a host's few thousand
/// objects are out of reach).
fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The nft set holding one part of one IP set in one family: `s4_<hash>` (hosts), `p4_<hash>`
/// (prefixes), `n4_<hash>` (named ports).
pub fn set_name(id: &IpSetId, part: SetPart, family: Family) -> String {
    let letter = match part {
        SetPart::Hosts => 's',
        SetPart::Prefixes => 'p',
        SetPart::NamedPorts => 'n',
    };
    format!("{letter}{}_{}", family.digit(), short_hash(id))
}

/// Which way a chain polices, seen from the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic to the workload.
    Ingress,
    /// Traffic from the workload.
    Egress,
}

impl Direction {
    /// Both.
    pub const ALL: [Self; 2] = [Self::Ingress, Self::Egress];

    pub(crate) fn word(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// Calico's short kind names, used in policy IDs and comments.
fn short_kind(kind: Kind) -> String {
    match kind {
        Kind::GlobalNetworkPolicy => "gnp".to_owned(),
        Kind::NetworkPolicy => "np".to_owned(),
        Kind::K8sNetworkPolicy => "knp".to_owned(),
        Kind::StagedNetworkPolicy => "snp".to_owned(),
        Kind::StagedGlobalNetworkPolicy => "sgnp".to_owned(),
        other => other.to_string(),
    }
}

/// `gnp/name` or `np/namespace/name`: how comments name a policy.
pub fn policy_label(id: &PolicyId) -> String {
    let kind = short_kind(id.kind);
    if id.namespace.is_empty() {
        format!("{kind}/{}", id.name)
    } else {
        format!("{kind}/{}/{}", id.namespace, id.name)
    }
}

/// A policy's chain for one direction: `pi_<hash>` (ingress), `po_<hash>` (egress), as
/// Calico's `cali-pi-`/`cali-po-`.
pub fn policy_chain(id: &PolicyId, dir: Direction) -> String {
    let prefix = match dir {
        Direction::Ingress => "pi",
        Direction::Egress => "po",
    };
    format!("{prefix}_{}", short_hash(&policy_label(id)))
}

/// A profile's chain for one direction: `pri_<hash>`, `pro_<hash>`.
pub fn profile_chain(name: &str, dir: Direction) -> String {
    let prefix = match dir {
        Direction::Ingress => "pri",
        Direction::Egress => "pro",
    };
    format!("{prefix}_{}", short_hash(name))
}

/// An endpoint's chain: `tw_<iface>` (to the workload: its ingress policy) or `fw_<iface>`
/// (from it: egress), named after the interface when the name is a plain identifier (so
/// `nft list` reads well), else after its hash.
pub fn endpoint_chain(interface: &str, dir: Direction) -> String {
    let prefix = match dir {
        Direction::Ingress => "tw",
        Direction::Egress => "fw",
    };
    let plain = !interface.is_empty()
        && interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        format!("{prefix}_{interface}")
    } else {
        format!("{prefix}_h{}", short_hash(interface))
    }
}

/// A double-quoted nft string: nft strings cannot hold `"` or `\`, and comments are capped, so
/// anything else is replaced and a long text is cut (keeping a hash of the whole, so two
/// long names stay distinct).
pub fn quoted(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= COMMENT_MAX {
        return format!("\"{clean}\"");
    }
    let hash = short_hash(text);
    let keep = COMMENT_MAX - hash.len() - 1;
    format!("\"{}~{hash}\"", &clean[..keep])
}

/// An interface name as an nft string, for map keys (interface names are at most 15 bytes and
/// hold no quotes, but they come from outside).
pub fn iface_key(interface: &str) -> String {
    quoted(interface)
}
