//! Errors: why a session ended, and why the driver could not run.

use std::net::IpAddr;

use crate::wire::{DecodeError, Notification};

/// Why a session failed or ended; shown in peer status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The neighbour sent a message we could not accept; we sent the NOTIFICATION inside.
    #[error("bad message from peer: {0}")]
    Decode(DecodeError),
    /// The neighbour's OPEN names another AS than configured.
    #[error("peer AS is {got}, configured {expected}")]
    BadPeerAs {
        /// Configured.
        expected: u32,
        /// Received.
        got: u32,
    },
    /// The neighbour's OPEN is not acceptable for another reason (hold time, identifier).
    #[error("unacceptable OPEN: {0}")]
    BadOpen(Notification),
    /// The neighbour sent a NOTIFICATION.
    #[error("notification received: {0}")]
    NotificationReceived(Notification),
    /// A message arrived in a state where it is not allowed.
    #[error("unexpected message: {0}")]
    Fsm(Notification),
    /// No KEEPALIVE or UPDATE within the hold time.
    #[error("hold timer expired")]
    HoldTimerExpired,
    /// The TCP connection closed or failed.
    #[error("connection closed")]
    ConnectionClosed,
    /// An outgoing connection got no answer before the connect retry timer. With TCP MD5 this
    /// is how a password mismatch looks: the kernel drops badly signed segments silently.
    #[error("{}", if *md5 {
        "no answer from peer; TCP MD5 password configured: check it matches the peer's"
    } else {
        "no answer from peer"
    })]
    NoAnswer {
        /// A TCP MD5 key is configured for the peer.
        md5: bool,
    },
    /// The neighbour announced more prefixes than allowed: we sent Cease (maximum number of
    /// prefixes reached) and hold the session down for a while.
    #[error("sent {received} prefixes, limit {limit}: session closed")]
    MaxPrefixExceeded {
        /// The configured limit.
        limit: u32,
        /// Prefixes held from the neighbour when it was cut off.
        received: usize,
    },
    /// This connection lost a collision with another to the same neighbour (RFC 4271 6.8); the
    /// other one carries on.
    #[error("connection collision resolved")]
    Collision,
    /// The peer was removed or shut down by the operator.
    #[error("administratively shut down")]
    AdminShutdown,
}

/// Errors of the tokio driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}:{port}")]
    Listen {
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// The OS error.
        #[source]
        err: std::io::Error,
    },
    /// The driver task is gone (the speaker stopped).
    #[error("the BGP speaker has stopped")]
    Stopped,
}
