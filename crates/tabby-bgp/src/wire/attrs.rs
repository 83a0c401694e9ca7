//! Path attributes (RFC 4271 4.3 and 5, RFC 1997, RFC 4456, RFC 6793) and their RFC 7606
//! error handling.

use std::net::Ipv4Addr;

use super::update::{MpReach, MpUnreach};
use super::{AS_TRANS, Context, DecodeError, Reader, code};

/// Attribute flag bits.
pub mod attr_flag {
    /// Optional (not well-known).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: some speaker on the path did not recognise this optional transitive attribute.
    pub const PARTIAL: u8 = 0x20;
    /// The length field is two octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes.
pub mod attr_code {
    /// ORIGIN.
    pub const ORIGIN: u8 = 1;
    /// AS_PATH.
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP.
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC.
    pub const MED: u8 = 4;
    /// LOCAL_PREF.
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE.
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH: u8 = 15;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;

    /// Whether tabby parses this attribute itself.
    pub fn is_known(code: u8) -> bool {
        matches!(code, 1..=10 | 14 | 15 | 17 | 18)
    }
}

use attr_code as c;
use attr_flag as f;

/// ORIGIN values; lower is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Origin {
    /// Learned from an interior protocol (or originated locally).
    #[default]
    Igp = 0,
    /// Learned by EGP.
    Egp = 1,
    /// Learned some other way.
    Incomplete = 2,
}

/// AS_PATH segment types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    /// AS_SET (1): unordered; counts as one AS for path length.
    Set = 1,
    /// AS_SEQUENCE (2).
    Sequence = 2,
    /// AS_CONFED_SEQUENCE (3, RFC 5065): does not count for path length.
    ConfedSequence = 3,
    /// AS_CONFED_SET (4, RFC 5065): does not count for path length.
    ConfedSet = 4,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Segment type.
    pub kind: SegmentType,
    /// AS numbers, always held as 4-octet values.
    pub asns: Vec<u32>,
}

/// An AS_PATH, always with 4-octet AS numbers (2-octet peers are translated on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    /// Segments, leftmost (most recently added) first.
    pub segments: Vec<Segment>,
}

impl AsPath {
    /// A path of one sequence.
    pub fn sequence(asns: Vec<u32>) -> Self {
        if asns.is_empty() {
            return Self::default();
        }
        Self {
            segments: vec![Segment {
                kind: SegmentType::Sequence,
                asns,
            }],
        }
    }

    /// Path length for best-path selection: each AS of a sequence counts, a set counts once,
    /// confederation segments do not count (RFC 4271 9.1.2.2 a, RFC 5065 5.3).
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// Whether the path has no AS.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.asns.is_empty())
    }

    /// The neighbouring AS (the first AS of a leading sequence), used to compare MEDs.
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(s) if s.kind == SegmentType::Sequence => s.asns.first().copied(),
            _ => None,
        }
    }

    /// Whether the AS appears anywhere in the path (loop detection).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// Prepends an AS as eBGP export does (RFC 4271 5.1.2).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentType::Sequence && s.asns.len() < 255 => {
                s.asns.insert(0, asn);
            }
            _ => self.segments.insert(
                0,
                Segment {
                    kind: SegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    fn has_wide(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// Encodes with 2- or 4-octet numbers; 4-octet numbers become AS_TRANS in 2-octet form.
    fn encode(&self, out: &mut Vec<u8>, four_octet: bool, skip_confed: bool) {
        for seg in &self.segments {
            let confed = matches!(
                seg.kind,
                SegmentType::ConfedSequence | SegmentType::ConfedSet
            );
            if skip_confed && confed {
                continue;
            }
            // A segment holds at most 255 numbers; longer ones are split (same meaning for a
            // sequence; a set that large never comes from tabby).
            for chunk in seg.asns.chunks(255) {
                out.push(seg.kind as u8);
                out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                for &asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let two = u16::try_from(asn).unwrap_or(AS_TRANS);
                        out.extend_from_slice(&two.to_be_bytes());
                    }
                }
            }
        }
    }

    fn decode(value: &[u8], four_octet: bool) -> Option<Self> {
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = match r.u8()? {
                1 => SegmentType::Set,
                2 => SegmentType::Sequence,
                3 => SegmentType::ConfedSequence,
                4 => SegmentType::ConfedSet,
                _ => return None,
            };
            let count = r.u8()?;
            // RFC 7606 7.2: a zero-length segment is malformed.
            if count == 0 {
                return None;
            }
            let mut asns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                asns.push(if four_octet {
                    r.u32()?
                } else {
                    u32::from(r.u16()?)
                });
            }
            segments.push(Segment { kind, asns });
        }
        Some(Self { segments })
    }

    /// Rebuilds the true path from a 2-octet AS_PATH and an AS4_PATH (RFC 6793 4.2.3).
    fn merge_as4(self, as4: Self) -> Self {
        let (n, n4) = (self.len(), as4.len());
        if n < n4 {
            // The AS4_PATH is longer than the path it should describe: ignore it.
            return self;
        }
        let mut need = n - n4;
        let mut segments = Vec::new();
        for seg in self.segments {
            match seg.kind {
                SegmentType::ConfedSequence | SegmentType::ConfedSet => segments.push(seg),
                _ if need == 0 => break,
                SegmentType::Set => {
                    need -= 1;
                    segments.push(seg);
                }
                SegmentType::Sequence => {
                    let take = need.min(seg.asns.len());
                    need -= take;
                    segments.push(Segment {
                        kind: seg.kind,
                        asns: seg.asns[..take].to_vec(),
                    });
                }
            }
        }
        segments.extend(as4.segments);
        Self { segments }
    }
}

/// The AGGREGATOR attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// AS of the aggregating speaker (4-octet).
    pub asn: u32,
    /// BGP identifier of the aggregating speaker.
    pub addr: Ipv4Addr,
}

/// An attribute tabby does not interpret, kept to be passed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttr {
    /// Flags as received (the extended-length bit is recomputed on encoding).
    pub flags: u8,
    /// Type code.
    pub code: u8,
    /// Value.
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE, except MP_REACH/MP_UNREACH (which carry prefixes, so
/// [`super::Update`] holds them). Well-known attributes are `Option` so that "absent" and
/// "present" stay distinct, as error handling needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttrs {
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// AS_PATH (merged with AS4_PATH when the peer is a 2-octet speaker).
    pub as_path: Option<AsPath>,
    /// NEXT_HOP (IPv4 NLRI only).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE.
    pub atomic_aggregate: bool,
    /// AGGREGATOR (merged with AS4_AGGREGATOR when the peer is a 2-octet speaker).
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES; empty means absent (an empty attribute is malformed).
    pub communities: Vec<u32>,
    /// ORIGINATOR_ID.
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST; empty means absent.
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unrecognised optional transitive attributes (non-transitive ones are dropped on receipt).
    pub unknown: Vec<RawAttr>,
}

/// What RFC 7606 says to do about an attribute that could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Handle every prefix of the UPDATE as withdrawn (RFC 7606 2).
    TreatAsWithdraw,
    /// Drop the attribute and use the rest of the UPDATE.
    Discard,
}

/// A malformed attribute the session survives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrFault {
    /// The attribute's type code (0 when the attribute list itself was cut short).
    pub code: u8,
    /// What to do.
    pub action: FaultAction,
    /// What was wrong.
    pub reason: &'static str,
}

/// Everything found in an attribute list.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    pub(super) attrs: PathAttrs,
    pub(super) mp_reach: Option<MpReach>,
    pub(super) mp_unreach: Option<MpUnreach>,
    pub(super) faults: Vec<AttrFault>,
    /// Whether any attribute at all was present.
    pub(super) any: bool,
}

/// The (optional, transitive) bits each known attribute must carry.
fn expected_flags(code: u8) -> u8 {
    match code {
        c::ORIGIN | c::AS_PATH | c::NEXT_HOP | c::LOCAL_PREF | c::ATOMIC_AGGREGATE => f::TRANSITIVE,
        c::MED | c::ORIGINATOR_ID | c::CLUSTER_LIST | c::MP_REACH | c::MP_UNREACH => f::OPTIONAL,
        _ => f::OPTIONAL | f::TRANSITIVE,
    }
}

/// How a malformed known attribute is handled (RFC 7606 section 7).
fn fault_action(code: u8) -> FaultAction {
    match code {
        c::ATOMIC_AGGREGATE | c::AGGREGATOR | c::AS4_PATH | c::AS4_AGGREGATOR => {
            FaultAction::Discard
        }
        _ => FaultAction::TreatAsWithdraw,
    }
}

fn ipv4(value: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from)
}

fn u32_of(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

fn words(value: &[u8]) -> Option<Vec<u32>> {
    if value.is_empty() || !value.len().is_multiple_of(4) {
        return None;
    }
    Some(
        value
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect(),
    )
}

fn aggregator(value: &[u8], four_octet: bool) -> Option<Aggregator> {
    let mut r = Reader::new(value);
    let asn = if four_octet {
        r.u32()?
    } else {
        u32::from(r.u16()?)
    };
    let addr = Ipv4Addr::from(r.u32()?);
    r.is_empty().then_some(Aggregator { asn, addr })
}

/// Parses the path attribute list of an UPDATE.
pub(super) fn decode(buf: &[u8], ctx: Context) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    let mut seen = [false; 256];
    let mut as4_path = None;
    let mut as4_aggregator = None;
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        out.any = true;
        let (Some(flags), Some(code)) = (r.u8(), r.u8()) else {
            out.faults.push(AttrFault {
                code: 0,
                action: FaultAction::TreatAsWithdraw,
                reason: "attribute list ends inside an attribute header",
            });
            break;
        };
        let len = if flags & f::EXTENDED_LENGTH != 0 {
            r.u16().map(usize::from)
        } else {
            r.u8().map(usize::from)
        };
        // RFC 7606 4: an attribute overrunning the list makes the UPDATE treat-as-withdraw
        // (the total attribute length still locates the NLRI), unless the MP attributes were
        // among those read, in which case their prefixes are in doubt and the session resets.
        let Some(value) = len.and_then(|len| r.bytes(len)) else {
            if out.mp_reach.is_some() || out.mp_unreach.is_some() {
                return Err(DecodeError::new(
                    code::UPDATE,
                    code::UPDATE_MALFORMED_ATTR_LIST,
                    "attribute overruns the list after MP_REACH/MP_UNREACH",
                ));
            }
            out.faults.push(AttrFault {
                code,
                action: FaultAction::TreatAsWithdraw,
                reason: "attribute overruns the attribute list",
            });
            break;
        };
        if seen[usize::from(code)] {
            if code == c::MP_REACH || code == c::MP_UNREACH {
                return Err(DecodeError::new(
                    code::UPDATE,
                    code::UPDATE_MALFORMED_ATTR_LIST,
                    "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                ));
            }
            // RFC 7606 3(g): keep the first, discard the repeats.
            out.faults.push(AttrFault {
                code,
                action: FaultAction::Discard,
                reason: "attribute appears twice",
            });
            continue;
        }
        seen[usize::from(code)] = true;

        if !c::is_known(code) {
            if flags & f::OPTIONAL == 0 {
                // An unknown well-known attribute still resets the session (RFC 4271 6.3).
                let mut data = vec![flags, code];
                data.extend_from_slice(value);
                return Err(DecodeError::new(
                    code::UPDATE,
                    code::UPDATE_UNRECOGNIZED_WELL_KNOWN,
                    "unrecognized well-known attribute",
                )
                .with_data(data));
            }
            if flags & f::TRANSITIVE != 0 {
                out.attrs.unknown.push(RawAttr {
                    flags: flags & !f::EXTENDED_LENGTH,
                    code,
                    value: value.to_vec(),
                });
            }
            continue;
        }

        let fault = |reason| AttrFault {
            code,
            action: fault_action(code),
            reason,
        };
        if flags & (f::OPTIONAL | f::TRANSITIVE) != expected_flags(code) {
            if code == c::MP_REACH || code == c::MP_UNREACH {
                return Err(DecodeError::new(
                    code::UPDATE,
                    code::UPDATE_OPTIONAL_ATTR,
                    "MP_REACH_NLRI or MP_UNREACH_NLRI has wrong flags",
                ));
            }
            out.faults
                .push(fault("attribute flags conflict with its type"));
            continue;
        }
        let a = &mut out.attrs;
        let ok = match code {
            c::ORIGIN => match value {
                [0] => Some(Origin::Igp),
                [1] => Some(Origin::Egp),
                [2] => Some(Origin::Incomplete),
                _ => None,
            }
            .map(|o| a.origin = Some(o)),
            c::AS_PATH => AsPath::decode(value, ctx.four_octet_as).map(|p| a.as_path = Some(p)),
            c::NEXT_HOP => ipv4(value).map(|n| a.next_hop = Some(n)),
            c::MED => u32_of(value).map(|m| a.med = Some(m)),
            c::LOCAL_PREF => u32_of(value).map(|l| a.local_pref = Some(l)),
            c::ATOMIC_AGGREGATE => value.is_empty().then(|| a.atomic_aggregate = true),
            c::AGGREGATOR => aggregator(value, ctx.four_octet_as).map(|g| a.aggregator = Some(g)),
            c::COMMUNITIES => words(value).map(|w| a.communities = w),
            c::ORIGINATOR_ID => ipv4(value).map(|o| a.originator_id = Some(o)),
            c::CLUSTER_LIST => {
                words(value).map(|w| a.cluster_list = w.into_iter().map(Ipv4Addr::from).collect())
            }
            c::MP_REACH => match MpReach::decode(value)? {
                Some(m) => {
                    out.mp_reach = Some(m);
                    Some(())
                }
                None => {
                    out.faults.push(AttrFault {
                        code,
                        action: FaultAction::Discard,
                        reason: "MP_REACH_NLRI for a family that was not negotiated",
                    });
                    Some(())
                }
            },
            c::MP_UNREACH => match MpUnreach::decode(value)? {
                Some(m) => {
                    out.mp_unreach = Some(m);
                    Some(())
                }
                None => {
                    out.faults.push(AttrFault {
                        code,
                        action: FaultAction::Discard,
                        reason: "MP_UNREACH_NLRI for a family that was not negotiated",
                    });
                    Some(())
                }
            },
            c::AS4_PATH => AsPath::decode(value, true).map(|p| as4_path = Some(p)),
            _ => aggregator(value, true).map(|g| as4_aggregator = Some(g)),
        };
        if ok.is_none() {
            out.faults.push(fault("malformed attribute value"));
        }
    }

    // RFC 6793 4.2.3: a 2-octet peer passes 4-octet numbers in AS4_PATH/AS4_AGGREGATOR; a
    // 4-octet peer must not send them, and if it does they are ignored.
    if ctx.four_octet_as {
        for (present, code) in [
            (as4_path.is_some(), c::AS4_PATH),
            (as4_aggregator.is_some(), c::AS4_AGGREGATOR),
        ] {
            if present {
                out.faults.push(AttrFault {
                    code,
                    action: FaultAction::Discard,
                    reason: "AS4 attribute from a 4-octet AS speaker",
                });
            }
        }
    } else {
        let a = &mut out.attrs;
        // An AGGREGATOR that names a real 2-octet AS means the AS4 attributes are stale.
        let stale = matches!(a.aggregator, Some(g) if g.asn != u32::from(AS_TRANS));
        if !stale {
            if let Some(g) = as4_aggregator {
                a.aggregator = Some(g);
            }
            if let Some(p4) = as4_path
                && let Some(path) = a.as_path.take()
            {
                a.as_path = Some(path.merge_as4(p4));
            }
        }
    }
    Ok(out)
}

fn push_attr(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | f::EXTENDED_LENGTH);
        out.push(code);
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(flags & !f::EXTENDED_LENGTH);
        out.push(code);
        out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    }
    out.extend_from_slice(value);
}

impl PathAttrs {
    /// Appends the encoded attributes (all but MP_REACH/MP_UNREACH) in type-code order.
    pub(super) fn encode(&self, out: &mut Vec<u8>, ctx: Context) {
        let wk = f::TRANSITIVE;
        let ot = f::OPTIONAL | f::TRANSITIVE;
        if let Some(o) = self.origin {
            push_attr(out, wk, c::ORIGIN, &[o as u8]);
        }
        if let Some(path) = &self.as_path {
            let mut v = Vec::new();
            path.encode(&mut v, ctx.four_octet_as, false);
            push_attr(out, wk, c::AS_PATH, &v);
        }
        if let Some(nh) = self.next_hop {
            push_attr(out, wk, c::NEXT_HOP, &nh.octets());
        }
        if let Some(med) = self.med {
            push_attr(out, f::OPTIONAL, c::MED, &med.to_be_bytes());
        }
        if let Some(lp) = self.local_pref {
            push_attr(out, wk, c::LOCAL_PREF, &lp.to_be_bytes());
        }
        if self.atomic_aggregate {
            push_attr(out, wk, c::ATOMIC_AGGREGATE, &[]);
        }
        if let Some(g) = self.aggregator {
            let mut v = Vec::new();
            if ctx.four_octet_as {
                v.extend_from_slice(&g.asn.to_be_bytes());
            } else {
                v.extend_from_slice(&u16::try_from(g.asn).unwrap_or(AS_TRANS).to_be_bytes());
            }
            v.extend_from_slice(&g.addr.octets());
            push_attr(out, ot, c::AGGREGATOR, &v);
        }
        if !self.communities.is_empty() {
            let v: Vec<u8> = self
                .communities
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            push_attr(out, ot, c::COMMUNITIES, &v);
        }
        if let Some(o) = self.originator_id {
            push_attr(out, f::OPTIONAL, c::ORIGINATOR_ID, &o.octets());
        }
        if !self.cluster_list.is_empty() {
            let v: Vec<u8> = self.cluster_list.iter().flat_map(|c| c.octets()).collect();
            push_attr(out, f::OPTIONAL, c::CLUSTER_LIST, &v);
        }
        if !ctx.four_octet_as {
            // A 2-octet peer gets the true numbers in AS4_PATH/AS4_AGGREGATOR, only when needed.
            if let Some(path) = &self.as_path
                && path.has_wide()
            {
                let mut v = Vec::new();
                path.encode(&mut v, true, true);
                push_attr(out, ot, c::AS4_PATH, &v);
            }
            if let Some(g) = self.aggregator
                && g.asn > u32::from(u16::MAX)
            {
                let mut v = g.asn.to_be_bytes().to_vec();
                v.extend_from_slice(&g.addr.octets());
                push_attr(out, ot, c::AS4_AGGREGATOR, &v);
            }
        }
        for raw in &self.unknown {
            push_attr(out, raw.flags, raw.code, &raw.value);
        }
    }
}
