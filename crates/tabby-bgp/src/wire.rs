//! The BGP-4 message codec (RFC 4271 section 4), with the extensions tabby speaks: capabilities
//! (RFC 5492), multiprotocol IPv4/IPv6 unicast (RFC 4760), 4-octet AS numbers (RFC 6793),
//! route refresh (RFC 2918), graceful restart (RFC 4724) and revised UPDATE error handling
//! (RFC 7606).
//!
//! Decoding never panics: every read is bounds-checked and every fault maps to either a
//! [`DecodeError`] (which names the NOTIFICATION to send before closing) or, for UPDATE
//! attributes RFC 7606 lets us survive, an [`AttrFault`] returned beside the message.

use std::fmt;

mod attrs;
mod open;
mod update;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop_tests;

pub use attrs::{
    Aggregator, AsPath, AttrFault, FaultAction, Origin, PathAttrs, RawAttr, Segment, SegmentType,
    attr_code, attr_flag,
};
pub use open::{Capability, GrFamily, GracefulRestart, Open};
pub use update::{MpReach, MpUnreach, Update, encode_announce, encode_withdraw};

/// Length of the fixed header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows (we do not negotiate RFC 8654 extended messages).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The 2-octet stand-in for a 4-octet AS number (RFC 6793).
pub const AS_TRANS: u16 = 23456;

const MARKER: [u8; 16] = [0xff; 16];

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

/// An address family and subsequent address family (RFC 4760), kept as the raw numbers so that
/// families we do not speak survive a round trip through capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address Family Identifier (1 = IPv4, 2 = IPv6).
    pub afi: u16,
    /// Subsequent AFI (1 = unicast).
    pub safi: u8,
}

impl Family {
    /// IPv4 unicast.
    pub const IPV4_UNICAST: Self = Self { afi: 1, safi: 1 };
    /// IPv6 unicast.
    pub const IPV6_UNICAST: Self = Self { afi: 2, safi: 1 };

    /// Whether tabby carries routes of this family.
    pub fn is_supported(self) -> bool {
        self == Self::IPV4_UNICAST || self == Self::IPV6_UNICAST
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Self::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Self { afi, safi } => write!(f, "afi {afi}/safi {safi}"),
        }
    }
}

/// What was negotiated in the OPEN exchange that changes how UPDATEs are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-byte numbers and
    /// AS4_PATH/AS4_AGGREGATOR are not used.
    pub four_octet_as: bool,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            four_octet_as: true,
        }
    }
}

/// A BGP message.
#[expect(
    clippy::large_enum_variant,
    reason = "messages are decoded one at a time and moved once; boxing UPDATE buys nothing"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (type 1).
    Open(Open),
    /// UPDATE (type 2).
    Update(Update),
    /// NOTIFICATION (type 3).
    Notification(Notification),
    /// KEEPALIVE (type 4).
    Keepalive,
    /// ROUTE-REFRESH (type 5, RFC 2918).
    RouteRefresh(Family),
}

/// A NOTIFICATION: an error code, a subcode and data whose meaning depends on both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code (see [`code`]).
    pub code: u8,
    /// Error subcode (see [`code`]).
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

/// NOTIFICATION error codes and subcodes (RFC 4271 section 4.5, RFC 4486, RFC 7313).
pub mod code {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// Header: Connection Not Synchronized.
    pub const HEADER_NOT_SYNC: u8 = 1;
    /// Header: Bad Message Length.
    pub const HEADER_BAD_LENGTH: u8 = 2;
    /// Header: Bad Message Type.
    pub const HEADER_BAD_TYPE: u8 = 3;

    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// OPEN: Unsupported Version Number.
    pub const OPEN_BAD_VERSION: u8 = 1;
    /// OPEN: Bad Peer AS.
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    /// OPEN: Bad BGP Identifier.
    pub const OPEN_BAD_BGP_ID: u8 = 3;
    /// OPEN: Unsupported Optional Parameter.
    pub const OPEN_UNSUPPORTED_PARAM: u8 = 4;
    /// OPEN: Unacceptable Hold Time.
    pub const OPEN_BAD_HOLD_TIME: u8 = 6;

    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// UPDATE: Malformed Attribute List.
    pub const UPDATE_MALFORMED_ATTR_LIST: u8 = 1;
    /// UPDATE: Unrecognized Well-known Attribute.
    pub const UPDATE_UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    /// UPDATE: Optional Attribute Error.
    pub const UPDATE_OPTIONAL_ATTR: u8 = 9;
    /// UPDATE: Invalid Network Field.
    pub const UPDATE_INVALID_NETWORK: u8 = 10;

    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// FSM: Receive Unexpected Message in OpenSent State (RFC 6608).
    pub const FSM_IN_OPEN_SENT: u8 = 1;
    /// FSM: Receive Unexpected Message in OpenConfirm State.
    pub const FSM_IN_OPEN_CONFIRM: u8 = 2;
    /// FSM: Receive Unexpected Message in Established State.
    pub const FSM_IN_ESTABLISHED: u8 = 3;

    /// Cease (RFC 4486 subcodes).
    pub const CEASE: u8 = 6;
    /// Cease: Maximum Number of Prefixes Reached.
    pub const CEASE_MAX_PREFIX: u8 = 1;
    /// Cease: Administrative Shutdown.
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    /// Cease: Peer De-configured.
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    /// Cease: Connection Rejected.
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    /// Cease: Connection Collision Resolution.
    pub const CEASE_COLLISION: u8 = 7;

    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
}

impl Notification {
    /// A NOTIFICATION without data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.code, self.subcode) {
            (1, 1) => "message header error: connection not synchronized",
            (1, 2) => "message header error: bad message length",
            (1, 3) => "message header error: bad message type",
            (1, _) => "message header error",
            (2, 1) => "open message error: unsupported version number",
            (2, 2) => "open message error: bad peer AS",
            (2, 3) => "open message error: bad BGP identifier",
            (2, 4) => "open message error: unsupported optional parameter",
            (2, 6) => "open message error: unacceptable hold time",
            (2, 7) => "open message error: unsupported capability",
            (2, _) => "open message error",
            (3, 1) => "update message error: malformed attribute list",
            (3, 2) => "update message error: unrecognized well-known attribute",
            (3, 3) => "update message error: missing well-known attribute",
            (3, 4) => "update message error: attribute flags error",
            (3, 5) => "update message error: attribute length error",
            (3, 9) => "update message error: optional attribute error",
            (3, 10) => "update message error: invalid network field",
            (3, 11) => "update message error: malformed AS_PATH",
            (3, _) => "update message error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 1) => "cease: maximum number of prefixes reached",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 5) => "cease: connection rejected",
            (6, 6) => "cease: other configuration change",
            (6, 7) => "cease: connection collision resolution",
            (6, 8) => "cease: out of resources",
            (6, 9) => "cease: hard reset",
            (6, _) => "cease",
            (7, _) => "route-refresh message error",
            _ => "unknown error",
        };
        write!(f, "{name} ({}/{})", self.code, self.subcode)
    }
}

/// A message that cannot be accepted: the session must be closed with this NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {notification}")]
pub struct DecodeError {
    /// What to send the peer before closing.
    pub notification: Notification,
    /// What was wrong, for logs and status.
    pub reason: &'static str,
}

impl DecodeError {
    pub(crate) fn new(code: u8, subcode: u8, reason: &'static str) -> Self {
        Self {
            notification: Notification::new(code, subcode),
            reason,
        }
    }

    pub(crate) fn with_data(mut self, data: Vec<u8>) -> Self {
        self.notification.data = data;
        self
    }
}

/// A message that does not fit: over the 4096-byte limit, or OPEN capabilities over the
/// 255-byte optional parameters limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encoded message is {len} bytes, over the size limit")]
pub struct TooLong {
    /// The length the message would have had.
    pub len: usize,
}

// ===== framing =====

/// Looks at the start of a receive buffer: `Ok(None)` while the header or body is incomplete,
/// `Ok(Some(len))` when a whole message of `len` bytes is there, an error when the header is bad
/// (the caller must send the NOTIFICATION and close; the stream cannot be resynchronised).
pub fn frame(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != MARKER {
        return Err(DecodeError::new(
            code::HEADER,
            code::HEADER_NOT_SYNC,
            "marker is not all ones",
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let kind = buf[18];
    let bad_len = || {
        DecodeError::new(code::HEADER, code::HEADER_BAD_LENGTH, "bad message length")
            .with_data(buf[16..18].to_vec())
    };
    let min = match kind {
        TYPE_OPEN => HEADER_LEN + 10,
        TYPE_UPDATE => HEADER_LEN + 4,
        TYPE_NOTIFICATION => HEADER_LEN + 2,
        TYPE_KEEPALIVE => HEADER_LEN,
        TYPE_ROUTE_REFRESH => HEADER_LEN + 4,
        _ => {
            return Err(DecodeError::new(
                code::HEADER,
                code::HEADER_BAD_TYPE,
                "unknown message type",
            )
            .with_data(vec![kind]));
        }
    };
    if len < min || len > MAX_MESSAGE_LEN {
        return Err(bad_len());
    }
    // KEEPALIVE and ROUTE-REFRESH have a fixed length.
    if (kind == TYPE_KEEPALIVE || kind == TYPE_ROUTE_REFRESH) && len != min {
        return Err(bad_len());
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes one whole message (as delimited by [`frame`]). UPDATE attribute faults that RFC 7606
/// lets the session survive come back beside the message; the caller applies them.
pub fn decode(msg: &[u8], ctx: Context) -> Result<(Message, Vec<AttrFault>), DecodeError> {
    let Some(len) = frame(msg)? else {
        return Err(DecodeError::new(
            code::HEADER,
            code::HEADER_BAD_LENGTH,
            "truncated message",
        ));
    };
    if len != msg.len() {
        return Err(DecodeError::new(
            code::HEADER,
            code::HEADER_BAD_LENGTH,
            "length field disagrees with the message",
        )
        .with_data(msg[16..18].to_vec()));
    }
    let body = &msg[HEADER_LEN..];
    let message = match msg[18] {
        TYPE_OPEN => Message::Open(Open::decode(body)?),
        TYPE_UPDATE => {
            let (update, faults) = Update::decode(body, ctx)?;
            return Ok((Message::Update(update), faults));
        }
        TYPE_NOTIFICATION => Message::Notification(Notification {
            code: body[0],
            subcode: body[1],
            data: body[2..].to_vec(),
        }),
        TYPE_KEEPALIVE => Message::Keepalive,
        // frame() admitted only the five types, with ROUTE-REFRESH exactly 4 bytes of body.
        _ => Message::RouteRefresh(Family {
            afi: u16::from_be_bytes([body[0], body[1]]),
            safi: body[3],
        }),
    };
    Ok((message, Vec::new()))
}

/// Encodes a message. Only an UPDATE can exceed the size limit; use [`encode_announce`] and
/// [`encode_withdraw`] to split many prefixes into messages that fit.
pub fn encode(message: &Message, ctx: Context) -> Result<Vec<u8>, TooLong> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0, 0]);
    let kind = match message {
        Message::Open(open) => {
            open.encode_body(&mut out)?;
            TYPE_OPEN
        }
        Message::Update(update) => {
            update.encode_body(&mut out, ctx);
            TYPE_UPDATE
        }
        Message::Notification(n) => {
            out.push(n.code);
            out.push(n.subcode);
            out.extend_from_slice(&n.data);
            TYPE_NOTIFICATION
        }
        Message::Keepalive => TYPE_KEEPALIVE,
        Message::RouteRefresh(family) => {
            out.extend_from_slice(&family.afi.to_be_bytes());
            out.push(0);
            out.push(family.safi);
            TYPE_ROUTE_REFRESH
        }
    };
    finish(out, kind)
}

/// Fills in the header's length and type.
fn finish(mut out: Vec<u8>, kind: u8) -> Result<Vec<u8>, TooLong> {
    let len = out.len();
    // A NOTIFICATION's data is ours to bound, so only an UPDATE or OPEN can get here too long.
    let Ok(len16) = u16::try_from(len) else {
        return Err(TooLong { len });
    };
    if len > MAX_MESSAGE_LEN {
        return Err(TooLong { len });
    }
    out[16..18].copy_from_slice(&len16.to_be_bytes());
    out[18] = kind;
    Ok(out)
}

// ===== a bounds-checked reader =====

/// Reads big-endian fields from a slice; every method returns `None` instead of panicking when
/// the slice is too short.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}
