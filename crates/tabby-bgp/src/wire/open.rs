//! OPEN and its capabilities (RFC 4271 4.2, RFC 5492).

use std::net::Ipv4Addr;

use super::{AS_TRANS, DecodeError, Family, HEADER_LEN, Reader, TooLong, code};

const PARAM_CAPABILITIES: u8 = 2;

const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_FOUR_OCTET_AS: u8 = 65;

/// An OPEN message (version 4 is implied: anything else is refused while decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field: the sender's AS, or AS_TRANS when it does not
    /// fit (the real one is then in [`Capability::FourOctetAs`]).
    pub my_as: u16,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// The sender's BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities, in the order received (all optional parameters of type 2, flattened).
    pub capabilities: Vec<Capability>,
}

/// A capability advertised in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions (RFC 4760): the sender carries this family.
    Multiprotocol(Family),
    /// Route refresh (RFC 2918).
    RouteRefresh,
    /// Graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// 4-octet AS numbers (RFC 6793), with the sender's real AS.
    FourOctetAs(u32),
    /// Any capability tabby does not use, kept so that it is visible in status and logs.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value, unparsed.
        value: Vec<u8>,
    },
}

/// The graceful restart capability (RFC 4724 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// Restart State bit: the sender has restarted and is recovering.
    pub restarting: bool,
    /// Notification bit (RFC 8538); kept, not acted on.
    pub notification: bool,
    /// Seconds the sender asks us to keep its routes after the session drops (12 bits).
    pub restart_time: u16,
    /// Families for which the sender keeps forwarding state across a restart.
    pub families: Vec<GrFamily>,
}

/// One family in the graceful restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrFamily {
    /// The family.
    pub family: Family,
    /// Forwarding State bit: forwarding was preserved across the restart.
    pub forwarding_preserved: bool,
}

impl Open {
    /// The sender's AS: from the 4-octet capability when present (RFC 6793 4.1), otherwise the
    /// 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or_else(|| u32::from(self.my_as))
    }

    /// The 2-octet field for an AS: itself, or AS_TRANS when it does not fit.
    pub fn two_octet(asn: u32) -> u16 {
        u16::try_from(asn).unwrap_or(AS_TRANS)
    }

    /// Families the sender carries: those of its multiprotocol capabilities, or IPv4 unicast
    /// alone when it sent none (RFC 4760 section 8).
    pub fn families(&self) -> Vec<Family> {
        let mp: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if mp.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            mp
        }
    }

    /// Whether the sender supports 4-octet AS numbers.
    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }

    /// Whether the sender supports route refresh.
    pub fn route_refresh(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::RouteRefresh))
    }

    /// The sender's graceful restart capability, if any.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    pub(super) fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let bad = |reason| DecodeError::new(code::OPEN, 0, reason);
        let mut r = Reader::new(body);
        let version = r.u8().ok_or_else(|| bad("truncated OPEN"))?;
        if version != 4 {
            // The data is the largest version we support (RFC 4271 6.2).
            return Err(DecodeError::new(
                code::OPEN,
                code::OPEN_BAD_VERSION,
                "unsupported version",
            )
            .with_data(vec![0, 4]));
        }
        let (Some(my_as), Some(hold_time), Some(id), Some(params_len)) =
            (r.u16(), r.u16(), r.u32(), r.u8())
        else {
            return Err(bad("truncated OPEN"));
        };
        if usize::from(params_len) != r.remaining() {
            return Err(bad("optional parameters length disagrees with the message"));
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let (Some(kind), Some(len)) = (r.u8(), r.u8()) else {
                return Err(bad("truncated optional parameter"));
            };
            let value = r
                .bytes(usize::from(len))
                .ok_or_else(|| bad("optional parameter overruns the message"))?;
            if kind != PARAM_CAPABILITIES {
                return Err(DecodeError::new(
                    code::OPEN,
                    code::OPEN_UNSUPPORTED_PARAM,
                    "unsupported optional parameter",
                ));
            }
            decode_capabilities(value, &mut capabilities)?;
        }
        Ok(Self {
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
        })
    }

    /// Fails when the capabilities do not fit the one-byte optional parameters length (RFC 9072
    /// extended parameters are not spoken).
    pub(super) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        out.push(4);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        // One capabilities parameter per capability, as GoBGP and FRR send them: no parameter
        // can overflow its one-byte length however many capabilities there are.
        let params_at = out.len();
        out.push(0);
        for cap in &self.capabilities {
            let mut value = Vec::new();
            let code = cap.encode_value(&mut value);
            // A capability value over 253 bytes cannot be framed; none of ours comes close and
            // unknown ones arrived in a frame of the same size, so truncating never happens.
            let len = value.len().min(253);
            out.push(PARAM_CAPABILITIES);
            out.push(u8::try_from(len + 2).unwrap_or(u8::MAX));
            out.push(code);
            out.push(u8::try_from(len).unwrap_or(u8::MAX));
            out.extend_from_slice(&value[..len]);
        }
        let params_len = out.len() - params_at - 1;
        out[params_at] = u8::try_from(params_len).map_err(|_| TooLong {
            len: HEADER_LEN + out.len(),
        })?;
        Ok(())
    }
}

impl Capability {
    /// Writes the value and returns the code.
    fn encode_value(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            Self::Multiprotocol(f) => {
                out.extend_from_slice(&f.afi.to_be_bytes());
                out.push(0);
                out.push(f.safi);
                CAP_MULTIPROTOCOL
            }
            Self::RouteRefresh => CAP_ROUTE_REFRESH,
            Self::GracefulRestart(gr) => {
                let flags = (u16::from(gr.restarting) << 15) | (u16::from(gr.notification) << 14);
                out.extend_from_slice(&(flags | (gr.restart_time & 0x0fff)).to_be_bytes());
                for f in &gr.families {
                    out.extend_from_slice(&f.family.afi.to_be_bytes());
                    out.push(f.family.safi);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
                CAP_GRACEFUL_RESTART
            }
            Self::FourOctetAs(asn) => {
                out.extend_from_slice(&asn.to_be_bytes());
                CAP_FOUR_OCTET_AS
            }
            Self::Unknown { code, value } => {
                out.extend_from_slice(value);
                *code
            }
        }
    }
}

fn decode_capabilities(mut buf: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    let bad = |reason| DecodeError::new(code::OPEN, 0, reason);
    while !buf.is_empty() {
        let mut r = Reader::new(buf);
        let (Some(code), Some(len)) = (r.u8(), r.u8()) else {
            return Err(bad("truncated capability"));
        };
        let value = r
            .bytes(usize::from(len))
            .ok_or_else(|| bad("capability overruns its parameter"))?;
        buf = r.rest();
        let mut v = Reader::new(value);
        let cap = match code {
            CAP_MULTIPROTOCOL => {
                let (Some(afi), Some(_reserved), Some(safi), true) =
                    (v.u16(), v.u8(), v.u8(), value.len() == 4)
                else {
                    return Err(bad("multiprotocol capability is not 4 bytes"));
                };
                Capability::Multiprotocol(Family { afi, safi })
            }
            // RFC 2918: the value is empty; a non-empty one is tolerated, as peers do.
            CAP_ROUTE_REFRESH => Capability::RouteRefresh,
            CAP_FOUR_OCTET_AS => {
                let (Some(asn), true) = (v.u32(), value.len() == 4) else {
                    return Err(bad("4-octet AS capability is not 4 bytes"));
                };
                Capability::FourOctetAs(asn)
            }
            CAP_GRACEFUL_RESTART => {
                let Some(head) = v.u16() else {
                    return Err(bad("graceful restart capability is too short"));
                };
                if !v.remaining().is_multiple_of(4) {
                    return Err(bad("graceful restart capability has a partial family"));
                }
                let mut families = Vec::new();
                while let (Some(afi), Some(safi), Some(flags)) = (v.u16(), v.u8(), v.u8()) {
                    families.push(GrFamily {
                        family: Family { afi, safi },
                        forwarding_preserved: flags & 0x80 != 0,
                    });
                }
                Capability::GracefulRestart(GracefulRestart {
                    restarting: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        out.push(cap);
    }
    Ok(())
}
