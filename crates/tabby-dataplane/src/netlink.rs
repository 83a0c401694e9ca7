//! Links, addresses, routes and neighbours: the [`Netlink`] trait, the real [`RtNetlink`] (on
//! the `rtnetlink` crate) and the in-memory [`FakeNetlink`].
//!
//! Routes tabby writes carry [`TABBY_ROUTE_PROTOCOL`], so a restarted agent can tell its own
//! routes from everyone else's without remembering anything.

mod batch;
mod fake;
mod rt;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

pub use fake::{FakeLink, FakeNetlink};
pub use rt::RtNetlink;

use batch::RouteSocket;

/// The route protocol number on every route tabby writes (`proto 116` in `ip route`; free in
/// iproute2's `rt_protos`, unlike Calico's 80 or BIRD's 12, so they never mix).
pub const TABBY_ROUTE_PROTOCOL: u8 = 116;

/// The MAC of every workload veth's host side (Calico's convention: the workload's default
/// gateway always resolves to it, whatever the host).
pub const WORKLOAD_HOST_MAC: [u8; 6] = [0xee; 6];

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// No interface has that name.
    #[error("no interface {0}")]
    NoSuchLink(String),
    /// The kernel refused the request.
    #[error("{op} {target}: {error}")]
    Kernel {
        /// What was asked (add veth, add route, ...).
        op: &'static str,
        /// The interface, address or route concerned.
        target: String,
        /// What the kernel said.
        #[source]
        error: rtnetlink::Error,
    },
    /// The netlink socket could not be opened.
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// Entering a namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// A bad request (for example a route with a gateway of the other family).
    #[error("{0}")]
    Invalid(String),
}

/// A route in the main table. With neither `dev` nor `gateway` it is a blackhole route
/// ([`Route::blackhole`]): traffic to the destination is dropped here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Out through this interface.
    pub dev: Option<String>,
    /// Through this next hop.
    pub gateway: Option<IpAddr>,
    /// Scope link (the destination is directly on `dev`), as a workload's /32 route.
    pub scope_link: bool,
    /// The gateway is on `dev` even though no address of `dev` covers it (a workload's
    /// default route via 169.254.1.1).
    pub onlink: bool,
}

impl Route {
    /// A blackhole route: what a node holds for its own IPAM blocks, so that traffic to an
    /// address of its block with no workload behind it stops here rather than following a
    /// default route back out.
    pub fn blackhole(dst: IpNet) -> Self {
        Self {
            dst,
            dev: None,
            gateway: None,
            scope_link: false,
            onlink: false,
        }
    }

    /// Whether this is a blackhole route.
    pub fn is_blackhole(&self) -> bool {
        self.dev.is_none() && self.gateway.is_none()
    }
}

/// One write of a batch ([`Netlink::write_routes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteWrite {
    /// Adds or replaces the route, marked as tabby's.
    Replace(Route),
    /// Deletes tabby's route to this destination; one that is not there is not an error.
    Delete(IpNet),
}

impl RouteWrite {
    /// The destination written.
    pub fn dst(&self) -> IpNet {
        match self {
            Self::Replace(r) => r.dst,
            Self::Delete(d) => *d,
        }
    }
}

/// Kernel writes and reads of links, addresses, routes and neighbours. Names are interface
/// names in the namespace the implementation talks to.
pub trait Netlink {
    /// The index of an interface, `None` when it does not exist.
    fn link_index(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<u32>, NetlinkError>> + Send;

    /// Creates a veth pair; with `peer_netns`, the peer end is moved into that namespace.
    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Creates a bridge (a lab's L2 fabric).
    fn add_bridge(&self, name: &str) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Attaches an interface to a bridge.
    fn set_master(
        &self,
        name: &str,
        bridge: &str,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Deletes an interface (a veth takes its peer with it).
    fn delete_link(&self, name: &str) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Sets an interface up.
    fn set_up(&self, name: &str) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Sets an interface down: it carries nothing and the kernel drops the routes through it.
    fn set_down(&self, name: &str) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Sets an interface's MAC address.
    fn set_mac(
        &self,
        name: &str,
        mac: [u8; 6],
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Sets an interface's MTU.
    fn set_mtu(
        &self,
        name: &str,
        mtu: u32,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Renames an interface (it must be down).
    fn rename(
        &self,
        name: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Adds an address to an interface (replacing it if present).
    fn add_address(
        &self,
        name: &str,
        addr: IpNet,
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Adds or replaces a route, marked as tabby's.
    fn replace_route(&self, route: &Route)
    -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Deletes tabby's route to `dst`; deleting a route that is not there is not an error.
    fn delete_route(&self, dst: IpNet) -> impl Future<Output = Result<(), NetlinkError>> + Send;

    /// Writes routes in order, in as few kernel round trips as the implementation can, and
    /// answers each write in the same order. The outer `Err` means the channel to the kernel
    /// failed: which of the writes happened is then unknown.
    fn write_routes(
        &self,
        writes: &[RouteWrite],
    ) -> impl Future<Output = Result<Vec<Result<(), NetlinkError>>, NetlinkError>> + Send;

    /// Tabby's routes in the main table (those with [`TABBY_ROUTE_PROTOCOL`]).
    fn tabby_routes(&self) -> impl Future<Output = Result<Vec<Route>, NetlinkError>> + Send;

    /// Adds or replaces a permanent neighbour entry.
    fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> impl Future<Output = Result<(), NetlinkError>> + Send;
}
