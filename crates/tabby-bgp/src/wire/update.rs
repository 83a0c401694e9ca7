//! UPDATE (RFC 4271 4.3), MP_REACH_NLRI/MP_UNREACH_NLRI (RFC 4760) and End-of-RIB (RFC 4724 2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::attrs::{self, AttrFault, FaultAction, PathAttrs, attr_code};
use super::{Context, DecodeError, Family, HEADER_LEN, MAX_MESSAGE_LEN, Reader, TooLong, code};

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 prefixes.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes for `nlri` and `mp_reach`.
    pub attrs: PathAttrs,
    /// MP_REACH_NLRI (other families' announcements).
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI (other families' withdrawals).
    pub mp_unreach: Option<MpUnreach>,
    /// Announced IPv4 prefixes.
    pub nlri: Vec<Ipv4Net>,
}

/// MP_REACH_NLRI: a family, its next hop and prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    /// IPv4 or IPv6 unicast.
    pub family: Family,
    /// Next hop, of the family's address type.
    pub next_hop: IpAddr,
    /// For IPv6, the optional link-local next hop (32-byte next hop field).
    pub link_local: Option<Ipv6Addr>,
    /// Announced prefixes.
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI: a family and withdrawn prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    /// IPv4 or IPv6 unicast.
    pub family: Family,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<IpNet>,
}

fn mp_err(reason: &'static str) -> DecodeError {
    DecodeError::new(code::UPDATE, code::UPDATE_OPTIONAL_ATTR, reason)
}

/// Parses a run of (length, prefix) NLRI entries; `None` if any is malformed.
fn decode_prefixes(buf: &[u8], v6: bool) -> Option<Vec<IpNet>> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    let max = if v6 { 128 } else { 32 };
    while !r.is_empty() {
        let len = r.u8()?;
        if len > max {
            return None;
        }
        let bytes = r.bytes(usize::from(len).div_ceil(8))?;
        // Bits past the length are ignored (RFC 4271 4.3), so the prefix is truncated.
        let net = if v6 {
            let mut a = [0u8; 16];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).ok()?.trunc())
        } else {
            let mut a = [0u8; 4];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).ok()?.trunc())
        };
        out.push(net);
    }
    Some(out)
}

fn decode_v4_prefixes(buf: &[u8]) -> Option<Vec<Ipv4Net>> {
    decode_prefixes(buf, false).map(|nets| {
        nets.into_iter()
            .filter_map(|n| match n {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            })
            .collect()
    })
}

fn encode_prefix(out: &mut Vec<u8>, net: IpNet) {
    let len = net.prefix_len();
    out.push(len);
    let n = usize::from(len).div_ceil(8);
    match net.network() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
    }
}

fn prefix_len_on_wire(net: IpNet) -> usize {
    1 + usize::from(net.prefix_len()).div_ceil(8)
}

fn is_v6(family: Family) -> bool {
    family.afi == Family::IPV6_UNICAST.afi
}

impl MpReach {
    /// `Ok(None)` for a family tabby does not carry (the attribute is discarded); an error when
    /// the attribute is malformed (RFC 7606 7.11: session reset).
    pub(super) fn decode(value: &[u8]) -> Result<Option<Self>, DecodeError> {
        let mut r = Reader::new(value);
        let (Some(afi), Some(safi), Some(nh_len)) = (r.u16(), r.u8(), r.u8()) else {
            return Err(mp_err("truncated MP_REACH_NLRI"));
        };
        let family = Family { afi, safi };
        let nh = r
            .bytes(usize::from(nh_len))
            .ok_or_else(|| mp_err("MP_REACH_NLRI next hop overruns the attribute"))?;
        // The reserved octet (formerly the SNPA count) is ignored.
        r.u8().ok_or_else(|| mp_err("truncated MP_REACH_NLRI"))?;
        if !family.is_supported() {
            return Ok(None);
        }
        let (next_hop, link_local) = match (is_v6(family), nh.len()) {
            (false, 4) => (IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])), None),
            (true, 16 | 32) => {
                let mut g = [0u8; 16];
                g.copy_from_slice(&nh[..16]);
                let ll = (nh.len() == 32).then(|| {
                    let mut l = [0u8; 16];
                    l.copy_from_slice(&nh[16..]);
                    Ipv6Addr::from(l)
                });
                (IpAddr::V6(Ipv6Addr::from(g)), ll)
            }
            _ => return Err(mp_err("MP_REACH_NLRI next hop has a bad length")),
        };
        let nlri = decode_prefixes(r.rest(), is_v6(family))
            .ok_or_else(|| mp_err("malformed prefix in MP_REACH_NLRI"))?;
        Ok(Some(Self {
            family,
            next_hop,
            link_local,
            nlri,
        }))
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        match (self.next_hop, self.link_local) {
            (IpAddr::V4(a), _) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            (IpAddr::V6(a), None) => {
                out.push(16);
                out.extend_from_slice(&a.octets());
            }
            (IpAddr::V6(a), Some(ll)) => {
                out.push(32);
                out.extend_from_slice(&a.octets());
                out.extend_from_slice(&ll.octets());
            }
        }
        out.push(0);
        for &net in &self.nlri {
            encode_prefix(out, net);
        }
    }
}

impl MpUnreach {
    pub(super) fn decode(value: &[u8]) -> Result<Option<Self>, DecodeError> {
        let mut r = Reader::new(value);
        let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
            return Err(mp_err("truncated MP_UNREACH_NLRI"));
        };
        let family = Family { afi, safi };
        if !family.is_supported() {
            return Ok(None);
        }
        let withdrawn = decode_prefixes(r.rest(), is_v6(family))
            .ok_or_else(|| mp_err("malformed prefix in MP_UNREACH_NLRI"))?;
        Ok(Some(Self { family, withdrawn }))
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        for &net in &self.withdrawn {
            encode_prefix(out, net);
        }
    }
}

impl Update {
    /// The End-of-RIB marker for a family (RFC 4724 2).
    pub fn end_of_rib(family: Family) -> Self {
        if family == Family::IPV4_UNICAST {
            return Self::default();
        }
        Self {
            mp_unreach: Some(MpUnreach {
                family,
                withdrawn: Vec::new(),
            }),
            ..Self::default()
        }
    }

    /// The family this UPDATE marks the End-of-RIB of, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        let no_attrs = self.attrs == PathAttrs::default() && self.mp_reach.is_none();
        if !no_attrs || !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    pub(super) fn decode(body: &[u8], ctx: Context) -> Result<(Self, Vec<AttrFault>), DecodeError> {
        let list =
            |reason| DecodeError::new(code::UPDATE, code::UPDATE_MALFORMED_ATTR_LIST, reason);
        let mut r = Reader::new(body);
        let withdrawn_len = r.u16().ok_or_else(|| list("truncated UPDATE"))?;
        let withdrawn = r
            .bytes(usize::from(withdrawn_len))
            .ok_or_else(|| list("withdrawn routes length overruns the message"))?;
        let attrs_len = r.u16().ok_or_else(|| list("truncated UPDATE"))?;
        let attrs = r
            .bytes(usize::from(attrs_len))
            .ok_or_else(|| list("total path attribute length overruns the message"))?;
        let invalid_net =
            |reason| DecodeError::new(code::UPDATE, code::UPDATE_INVALID_NETWORK, reason);
        let withdrawn = decode_v4_prefixes(withdrawn)
            .ok_or_else(|| invalid_net("malformed withdrawn prefix"))?;
        let nlri = decode_v4_prefixes(r.rest()).ok_or_else(|| invalid_net("malformed NLRI"))?;
        let decoded = attrs::decode(attrs, ctx)?;
        let mut faults = decoded.faults;
        let update = Self {
            withdrawn,
            attrs: decoded.attrs,
            mp_reach: decoded.mp_reach,
            mp_unreach: decoded.mp_unreach,
            nlri,
        };
        // RFC 7606 3(d): a missing well-known mandatory attribute means treat-as-withdraw. Only
        // an UPDATE that announces something needs them.
        let announces =
            !update.nlri.is_empty() || update.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        if announces {
            let a = &update.attrs;
            let mut missing = |absent: bool, code| {
                if absent {
                    faults.push(AttrFault {
                        code,
                        action: FaultAction::TreatAsWithdraw,
                        reason: "missing well-known mandatory attribute",
                    });
                }
            };
            missing(a.origin.is_none(), attr_code::ORIGIN);
            missing(a.as_path.is_none(), attr_code::AS_PATH);
            missing(
                !update.nlri.is_empty() && a.next_hop.is_none(),
                attr_code::NEXT_HOP,
            );
        }
        Ok((update, faults))
    }

    pub(super) fn encode_body(&self, out: &mut Vec<u8>, ctx: Context) {
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        for &net in &self.withdrawn {
            encode_prefix(out, IpNet::V4(net));
        }
        let wlen = u16::try_from(out.len() - at - 2).unwrap_or(u16::MAX);
        out[at..at + 2].copy_from_slice(&wlen.to_be_bytes());
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        // MP attributes first, as RFC 7606 5.1 recommends, so a receiver finds them even when a
        // later attribute is malformed.
        let opt = attrs::attr_flag::OPTIONAL;
        if let Some(m) = &self.mp_reach {
            let mut v = Vec::new();
            m.encode_value(&mut v);
            push_mp(out, opt, attr_code::MP_REACH, &v);
        }
        if let Some(m) = &self.mp_unreach {
            let mut v = Vec::new();
            m.encode_value(&mut v);
            push_mp(out, opt, attr_code::MP_UNREACH, &v);
        }
        self.attrs.encode(out, ctx);
        let alen = u16::try_from(out.len() - at - 2).unwrap_or(u16::MAX);
        out[at..at + 2].copy_from_slice(&alen.to_be_bytes());
        for &net in &self.nlri {
            encode_prefix(out, IpNet::V4(net));
        }
    }
}

/// MP attributes always use the extended length, so the size of a message being filled with
/// prefixes grows by exactly the prefixes' bytes.
fn push_mp(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    out.push(flags | attrs::attr_flag::EXTENDED_LENGTH);
    out.push(code);
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

fn split(prefixes: &[IpNet], budget: usize) -> Vec<&[IpNet]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, &p) in prefixes.iter().enumerate() {
        let n = prefix_len_on_wire(p);
        if used + n > budget && i > start {
            chunks.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < prefixes.len() {
        chunks.push(&prefixes[start..]);
    }
    chunks
}

fn v4s(nets: &[IpNet]) -> Vec<Ipv4Net> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// Encodes announcements of `prefixes` (all of `family`) with one set of attributes, split into
/// as many UPDATEs as the size limit needs. IPv4 goes in the classic NLRI with NEXT_HOP; IPv6 in
/// MP_REACH_NLRI. Fails when the attributes alone do not fit in a message.
pub fn encode_announce(
    family: Family,
    attrs: &PathAttrs,
    next_hop: IpAddr,
    link_local: Option<Ipv6Addr>,
    prefixes: &[IpNet],
    ctx: Context,
) -> Result<Vec<Vec<u8>>, TooLong> {
    let mut template = Update {
        attrs: attrs.clone(),
        ..Update::default()
    };
    if family == Family::IPV4_UNICAST
        && let IpAddr::V4(nh) = next_hop
    {
        template.attrs.next_hop = Some(nh);
    } else {
        template.attrs.next_hop = None;
        template.mp_reach = Some(MpReach {
            family,
            next_hop,
            link_local,
            nlri: Vec::new(),
        });
    }
    let base = super::encode(&super::Message::Update(template.clone()), ctx)?.len();
    let budget = MAX_MESSAGE_LEN.saturating_sub(base);
    if budget < 17 {
        return Err(TooLong { len: base + 17 });
    }
    split(prefixes, budget)
        .into_iter()
        .map(|chunk| {
            let mut u = template.clone();
            match &mut u.mp_reach {
                Some(m) => m.nlri = chunk.to_vec(),
                None => u.nlri = v4s(chunk),
            }
            super::encode(&super::Message::Update(u), ctx)
        })
        .collect()
}

/// Encodes withdrawals of `prefixes` (all of `family`), split to fit the size limit.
pub fn encode_withdraw(family: Family, prefixes: &[IpNet], ctx: Context) -> Vec<Vec<u8>> {
    // Header, two length fields and (for MP) the MP_UNREACH header with extended length.
    let base = HEADER_LEN + 4 + if family == Family::IPV4_UNICAST { 0 } else { 7 };
    split(prefixes, MAX_MESSAGE_LEN - base)
        .into_iter()
        .filter_map(|chunk| {
            let u = if family == Family::IPV4_UNICAST {
                Update {
                    withdrawn: v4s(chunk),
                    ..Update::default()
                }
            } else {
                Update {
                    mp_unreach: Some(MpUnreach {
                        family,
                        withdrawn: chunk.to_vec(),
                    }),
                    ..Update::default()
                }
            };
            // Withdrawals carry no attributes, so the computed split always fits.
            super::encode(&super::Message::Update(u), ctx).ok()
        })
        .collect()
}
