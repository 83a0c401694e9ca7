//! [`Netlink`] on the `rtnetlink` crate.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{Netlink, NetlinkError, Route, TABBY_ROUTE_PROTOCOL};
use crate::netns;

/// `ENODEV`, what the kernel answers for an unknown interface name.
const ENODEV: i32 = 19;
/// `ESRCH`, what the kernel answers when a route to delete is not there.
const ESRCH: i32 = 3;

/// Talks rtnetlink to the kernel of one network namespace.
#[derive(Debug, Clone)]
pub struct RtNetlink {
    handle: Handle,
}

fn kernel(
    op: &'static str,
    target: impl ToString,
) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |error| NetlinkError::Kernel {
        op,
        target: target.to_string(),
        error,
    }
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

fn invalid(e: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Invalid(e.to_string())
}

impl RtNetlink {
    /// Connects in the caller's namespace. Must be called inside a tokio runtime, which then
    /// drives the connection.
    pub fn new() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Connects in the namespace at `path`: the socket is opened on a thread inside it and
    /// keeps talking to that namespace. Must be called inside a tokio runtime.
    pub fn in_netns(path: &Path) -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = netns::run_in(path, move || {
            // The socket registers with the runtime's reactor as it is made.
            let _entered = rt.enter();
            rtnetlink::new_connection()
        })?
        .map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn index(&self, name: &str) -> Result<u32, NetlinkError> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    fn route_message(
        &self,
        route: &Route,
        index: Option<u32>,
    ) -> Result<RouteMessage, NetlinkError> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.addr(), route.dst.prefix_len())
            .map_err(invalid)?
            .protocol(RouteProtocol::from(TABBY_ROUTE_PROTOCOL));
        if let Some(gw) = route.gateway {
            b = b.gateway(gw).map_err(invalid)?;
        }
        if let Some(i) = index {
            b = b.output_interface(i);
        }
        if route.scope_link {
            b = b.scope(RouteScope::Link);
        }
        if route.onlink {
            b = b.onlink();
        }
        Ok(b.build())
    }

    async fn dump_routes(&self) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(r) = routes
                .try_next()
                .await
                .map_err(kernel("list routes", "main table"))?
            {
                if r.header.protocol == RouteProtocol::from(TABBY_ROUTE_PROTOCOL) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    async fn link_name(&self, index: u32) -> Option<String> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let msg = links.try_next().await.ok().flatten()?;
        msg.attributes.into_iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n),
            _ => None,
        })
    }
}

fn route_dst(msg: &RouteMessage) -> Option<IpNet> {
    let len = msg.header.destination_prefix_length;
    let addr = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    });
    let addr = addr.unwrap_or(match msg.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    IpNet::new(addr, len).ok()
}

impl Netlink for RtNetlink {
    async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(msg) => Ok(msg.map(|m| m.header.index)),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(kernel("look up link", name)(e)),
        }
    }

    async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> Result<(), NetlinkError> {
        tracing::debug!(iface = %name, %peer, "adding veth");
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(kernel("add veth", name))?;
        if let Some(path) = peer_netns {
            let file = File::open(path).map_err(|error| netns::NetnsError::Io {
                path: path.to_owned(),
                step: "open",
                error,
            })?;
            let index = self.index(peer).await?;
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .setns_by_fd(file.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .map_err(kernel("move veth peer", peer))?;
        }
        Ok(())
    }

    async fn add_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(kernel("add bridge", name))
    }

    async fn set_master(&self, name: &str, bridge: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        let master = self.index(bridge).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(master).build())
            .execute()
            .await
            .map_err(kernel("attach to bridge", format!("{name} to {bridge}")))
    }

    async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(kernel("delete link", name))
    }

    async fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(kernel("set link up", name))
    }

    async fn set_mac(&self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(kernel("set MAC", name))
    }

    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(kernel("set MTU", name))
    }

    async fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).name(new_name).build())
            .execute()
            .await
            .map_err(kernel("rename link", name))
    }

    async fn add_address(&self, name: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(kernel("add address", format!("{addr} on {name}")))
    }

    async fn replace_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let index = match &route.dev {
            Some(dev) => Some(self.index(dev).await?),
            None => None,
        };
        let msg = self.route_message(route, index)?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(kernel("replace route", route.dst))
    }

    async fn delete_route(&self, dst: IpNet) -> Result<(), NetlinkError> {
        for msg in self.dump_routes().await? {
            if route_dst(&msg) != Some(dst) {
                continue;
            }
            match self.handle.route().del(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(ESRCH) => {}
                Err(e) => return Err(kernel("delete route", dst)(e)),
            }
        }
        Ok(())
    }

    async fn tabby_routes(&self) -> Result<Vec<Route>, NetlinkError> {
        let mut out = Vec::new();
        for msg in self.dump_routes().await? {
            let Some(dst) = route_dst(&msg) else {
                continue;
            };
            let mut dev = None;
            let mut gateway = None;
            for a in &msg.attributes {
                match a {
                    RouteAttribute::Oif(i) => dev = self.link_name(*i).await,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                        gateway = Some(IpAddr::V4(*g));
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => {
                        gateway = Some(IpAddr::V6(*g));
                    }
                    _ => {}
                }
            }
            out.push(Route {
                dst,
                dev,
                gateway,
                scope_link: msg.header.scope == RouteScope::Link,
                onlink: msg.header.flags.contains(RouteFlags::Onlink),
            });
        }
        Ok(out)
    }

    async fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        let index = self.index(dev).await?;
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(kernel("replace neighbour", format!("{ip} on {dev}")))
    }
}
