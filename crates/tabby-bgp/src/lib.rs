//! tabby's BGP speaker.
//!
//! Owns the BGP-4 protocol: the message codec ([`wire`]), the per-peer finite state machine
//! with its timers, the RIBs (Adj-RIB-In per peer, Loc-RIB with best-path selection,
//! Adj-RIB-Out with iBGP and route-reflection export rules) and a thin tokio driver.
//!
//! Must not: program routes or read clocks in the core. The core is sans-I/O: the caller
//! passes in bytes, connection events and the current time, and gets back actions (bytes to
//! send, connections to open or close) and best-route changes, which the agent programs into
//! the kernel. Only `driver` touches sockets.
//!
//! Key types: [`Speaker`] (the core: call its methods with the current time, then drain
//! [`Speaker::poll_action`]), [`SpeakerConfig`] and [`PeerConfig`], [`Action`] and
//! [`RouteChange`] (what comes out), [`PeerStatus`] (what an operator sees), and
//! [`driver::Driver`] (sockets and timers on tokio).
//!
//! TCP MD5 signatures (RFC 2385) are the driver's: a [`PeerConfig::md5_key`] goes on the
//! listening sockets (per peer address) and on outgoing sockets before the SYN, through
//! `tabby-sys`, the workspace's one crate with `unsafe`. The core only reports a connection
//! that gets no answer ([`PeerError::NoAnswer`]), which is how a key mismatch shows.
//!
//! Not implemented: ADD-PATH, confederations, extended messages, and selection
//! deferral as a restarting speaker (we only advertise the restart bit and send End-of-RIB).

mod config;
pub mod driver;
mod error;
mod export;
mod peer;
mod rib;
mod speaker;
pub mod wire;

pub use config::{
    GracefulRestartConfig, Md5Key, PeerConfig, PeerStatus, SessionState, SpeakerConfig,
};
pub use error::{DriverError, PeerError};
pub use export::{NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED};
pub use rib::{DEFAULT_LOCAL_PREF, Source};
pub use speaker::{Action, ConnId, LearnedRoute, RouteChange, Speaker};
/// The longest TCP MD5 key Linux takes, in bytes.
pub use tabby_sys::TCP_MD5SIG_MAXKEYLEN as MD5_MAX_KEY_LEN;
