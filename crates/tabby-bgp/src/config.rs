//! Speaker and peer configuration, and the status the speaker reports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::error::PeerError;
use crate::wire::Family;

/// The whole speaker's settings.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Our AS number (Calico's default is 64512).
    pub asn: u32,
    /// Our BGP identifier (Calico uses the node's IPv4 address).
    pub router_id: Ipv4Addr,
    /// Set on a route reflector: the cluster ID (RFC 4456). Peers marked `rr_client` are then
    /// its clients. `None`: an ordinary speaker, which never passes iBGP routes to iBGP peers.
    pub cluster_id: Option<Ipv4Addr>,
    /// Hold time we propose, in seconds (default 90; 0 disables keepalives).
    pub hold_time: u16,
    /// Wait between outgoing connection attempts (default 5 s, as Calico's BIRD
    /// `connect retry time 5`).
    pub connect_retry: Duration,
    /// Damping of a flapping neighbour (RFC 4271 8.1.1, DampPeerOscillations): the first
    /// failure after a stable period restarts the session at once (the neighbour may be
    /// reconnecting already); each further one waits this long before trying or accepting
    /// again, doubling up to `idle_hold_max` (defaults 5 s and 30 s, as Calico's BIRD
    /// `error wait time 5,30`).
    pub idle_hold: Duration,
    /// Upper bound of the idle hold backoff.
    pub idle_hold_max: Duration,
    /// A session Established at least this long resets both backoffs (default 60 s).
    pub stable_after: Duration,
    /// How long a neighbour cut off for exceeding its prefix limit stays down before the
    /// session is tried again; doubles on each further cut-off up to `limit_hold_max`
    /// (defaults 60 s and 15 minutes). A changed limit lifts the hold at once.
    pub limit_hold: Duration,
    /// Upper bound of the prefix limit hold.
    pub limit_hold_max: Duration,
    /// Graceful restart we advertise (RFC 4724); `None` disables the capability, and with it
    /// stale-route retention for peers (which needs the peer's capability only, but BIRD and
    /// FRR expect both sides to send it).
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// How long stale routes of a re-established peer wait for its End-of-RIB (default 360 s).
    pub stale_time: Duration,
    /// Families we offer (default IPv4 and IPv6 unicast).
    pub families: Vec<Family>,
}

/// Our graceful restart capability.
#[derive(Debug, Clone, Copy)]
pub struct GracefulRestartConfig {
    /// Seconds peers should keep our routes after our session drops (default 120, BIRD's).
    pub restart_time: u16,
    /// We have just restarted (the Restart State bit) and the kernel still forwards with the
    /// routes of before (the Forwarding State bit on every family).
    pub restarting: bool,
}

impl Default for GracefulRestartConfig {
    fn default() -> Self {
        Self {
            restart_time: 120,
            restarting: false,
        }
    }
}

impl SpeakerConfig {
    /// Defaults for an AS and router ID.
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            asn,
            router_id,
            cluster_id: None,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_secs(5),
            idle_hold_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            limit_hold: Duration::from_secs(60),
            limit_hold_max: Duration::from_secs(15 * 60),
            graceful_restart: Some(GracefulRestartConfig::default()),
            stale_time: Duration::from_secs(360),
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        }
    }
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The neighbour's address (sessions are keyed by it).
    pub addr: IpAddr,
    /// The neighbour's AS; equal to ours makes it iBGP.
    pub asn: u32,
    /// TCP port to connect to (default 179).
    pub port: u16,
    /// Local address to connect from (default: the kernel's choice).
    pub local_addr: Option<IpAddr>,
    /// Only wait for the neighbour to connect.
    pub passive: bool,
    /// A route-reflector client of ours (meaningful when `cluster_id` is set).
    pub rr_client: bool,
    /// Cut the session (Cease, maximum number of prefixes reached, RFC 4486) when the
    /// neighbour announces more prefixes than this, and keep it down for
    /// [`SpeakerConfig::limit_hold`].
    pub max_prefixes: Option<u32>,
    /// Set ourselves as next hop on every route sent to this neighbour (Calico's
    /// `nextHopMode: Self`). Without it, iBGP keeps learned next hops and eBGP keeps those in
    /// `shared_subnets` (Calico's `Auto`, BIRD's behaviour).
    pub next_hop_self: bool,
    /// Keep learned next hops on routes sent to this eBGP neighbour too (Calico's
    /// `keepOriginalNextHop` / `nextHopMode: Keep`).
    pub next_hop_keep: bool,
    /// Directly connected subnets we share with the neighbour: an eBGP neighbour gets a
    /// learned route whose next hop is in one of them with that next hop (RFC 4271 5.1.3).
    pub shared_subnets: Vec<IpNet>,
    /// IPv4 next hop to use when the session runs over IPv6.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// IPv6 next hop to use when the session runs over IPv4 (needed to send IPv6 routes).
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Sign every TCP segment of the session with this key (RFC 2385, BGP's "password"); the
    /// driver sets it on the listening sockets for this address and on outgoing sockets.
    pub md5_key: Option<Md5Key>,
    /// Families offered to this neighbour; `None`: the speaker's. Calico runs one session
    /// per address family (BIRD's IPv4 and IPv6 instances), each carrying its own family.
    pub families: Option<Vec<Family>>,
}

/// A TCP MD5 key (1 to 80 bytes, `tabby_sys::TCP_MD5SIG_MAXKEYLEN`). Its `Debug` never shows
/// the bytes, so configurations can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Vec<u8>);

impl Md5Key {
    /// A key from the password's bytes; `None` when empty (no key) or longer than the kernel
    /// takes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (!bytes.is_empty() && bytes.len() <= tabby_sys::TCP_MD5SIG_MAXKEYLEN).then_some(Self(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5Key(<redacted>)")
    }
}

impl PeerConfig {
    /// Defaults for an address and AS.
    pub fn new(addr: IpAddr, asn: u32) -> Self {
        Self {
            addr,
            asn,
            port: 179,
            local_addr: None,
            passive: false,
            rr_client: false,
            max_prefixes: None,
            next_hop_self: false,
            next_hop_keep: false,
            shared_subnets: Vec::new(),
            next_hop_v4: None,
            next_hop_v6: None,
            md5_key: None,
            families: None,
        }
    }
}

/// RFC 4271 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Not trying: just configured, disabled, or waiting out the idle hold after an error.
    Idle,
    /// Connecting out.
    Connect,
    /// Waiting for the neighbour to connect (or for the next connect retry).
    Active,
    /// OPEN sent, waiting for the neighbour's.
    OpenSent,
    /// OPENs exchanged, waiting for a KEEPALIVE.
    OpenConfirm,
    /// Exchanging routes.
    Established,
}

/// What the speaker reports about one neighbour.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    /// Neighbour address.
    pub addr: IpAddr,
    /// Neighbour AS.
    pub asn: u32,
    /// Session state.
    pub state: SessionState,
    /// When the state was entered.
    pub since: Instant,
    /// The neighbour's BGP identifier, once its OPEN was accepted.
    pub router_id: Option<Ipv4Addr>,
    /// Families negotiated on the current session.
    pub families: Vec<Family>,
    /// Prefixes held from the neighbour (Adj-RIB-In, stale ones included).
    pub prefixes_received: usize,
    /// Of those, kept stale after the neighbour's session dropped (graceful restart).
    pub prefixes_stale: usize,
    /// Prefixes currently advertised to it (Adj-RIB-Out).
    pub prefixes_advertised: usize,
    /// Why the last session ended or failed.
    pub last_error: Option<PeerError>,
    /// Set while the session is held down (maximum prefix limit exceeded), until
    /// `retry_at`, a changed limit or [`crate::Speaker::reset_peer`].
    pub disabled: Option<PeerError>,
    /// When a session held down or damped (idle hold) is next tried.
    pub retry_at: Option<Instant>,
    /// The prefix limit in force.
    pub max_prefixes: Option<u32>,
    /// Sessions that went down after being Established.
    pub flaps: u32,
}
