//! [`Netlink`] on the `rtnetlink` crate.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rtnetlink::packet_route::route::RouteType;

use super::batch::Request;
use super::{Netlink, NetlinkError, Route, RouteSocket, RouteWrite, TABBY_ROUTE_PROTOCOL};
use crate::netns;

/// `ENODEV`, what the kernel answers for an unknown interface name.
const ENODEV: i32 = 19;
/// `ESRCH`, what the kernel answers when a route to delete is not there.
const ESRCH: i32 = 3;

/// Talks rtnetlink to the kernel of one network namespace.
#[derive(Debug, Clone)]
pub struct RtNetlink {
    handle: Handle,
    /// Batched route writes ([`Netlink::write_routes`]), opened in the same namespace.
    batch: Arc<Mutex<RouteSocket>>,
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
        let batch = RouteSocket::open().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            batch: Arc::new(Mutex::new(batch)),
        })
    }

    /// Connects in the namespace at `path`: the socket is opened on a thread inside it and
    /// keeps talking to that namespace. Must be called inside a tokio runtime.
    pub fn in_netns(path: &Path) -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Handle::current();
        let ((conn, handle, _), batch) = netns::run_in(path, move || {
            // The socket registers with the runtime's reactor as it is made.
            let _entered = rt.enter();
            Ok::<_, std::io::Error>((rtnetlink::new_connection()?, RouteSocket::open()?))
        })?
        .map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            batch: Arc::new(Mutex::new(batch)),
        })
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
        if route.is_blackhole() {
            b = b.kind(RouteType::BlackHole);
        }
        Ok(b.build())
    }

    /// `RTM_DELROUTE` for tabby's route to `dst` in the main table, whatever its next hop,
    /// scope or type: the kernel finds it without a dump.
    fn delete_message(dst: IpNet) -> Result<RouteMessage, NetlinkError> {
        let mut msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(invalid)?
            .protocol(RouteProtocol::from(TABBY_ROUTE_PROTOCOL))
            .build();
        // Wildcards for the kernel's match: any scope, any type.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unspec;
        Ok(msg)
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
            LinkAttribute::IfName(n) => Some(n),
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
        let mut message = LinkVeth::new(name, peer).build();
        // The peer is made in its namespace at once (IFLA_NET_NS_FD in the peer's own
        // message): moving it there afterwards costs the kernel an RCU grace period
        // (synchronize_net), about 17 ms here, most of a CNI ADD.
        let file = match peer_netns {
            Some(path) => Some(File::open(path).map_err(|error| netns::NetnsError::Io {
                path: path.to_owned(),
                step: "open",
                error,
            })?),
            None => None,
        };
        if let Some(file) = &file {
            for attr in &mut message.attributes {
                if let LinkAttribute::LinkInfo(infos) = attr {
                    for info in infos {
                        if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = info {
                            p.attributes.push(LinkAttribute::NetNsFd(file.as_raw_fd()));
                        }
                    }
                }
            }
        }
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(kernel("add veth", name))?;
        drop(file);
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

    async fn set_down(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(kernel("set link down", name))
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
        let mut request = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .replace();
        if addr.addr().is_ipv6() {
            // A workload's address is unique by IPAM: duplicate address detection would only
            // hold it tentative (unusable) for a second or two after it is added.
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
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
        let msg = Self::delete_message(dst)?;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(ESRCH) => Ok(()),
            Err(e) => Err(kernel("delete route", dst)(e)),
        }
    }

    async fn write_routes(
        &self,
        writes: &[RouteWrite],
    ) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        // Interface names are looked up once per batch, not once per route.
        let mut indexes: BTreeMap<&str, Option<u32>> = BTreeMap::new();
        for w in writes {
            if let RouteWrite::Replace(Route { dev: Some(dev), .. }) = w
                && !indexes.contains_key(dev.as_str())
            {
                indexes.insert(dev, self.link_index(dev).await?);
            }
        }
        // Requests that could not even be built are answered without asking the kernel.
        let mut answers: Vec<Option<Result<(), NetlinkError>>> = Vec::with_capacity(writes.len());
        let mut requests = Vec::with_capacity(writes.len());
        for w in writes {
            let req = match w {
                RouteWrite::Replace(route) => {
                    let index = match &route.dev {
                        Some(dev) => match indexes.get(dev.as_str()).copied().flatten() {
                            Some(i) => Ok(Some(i)),
                            None => Err(NetlinkError::NoSuchLink(dev.clone())),
                        },
                        None => Ok(None),
                    };
                    index
                        .and_then(|i| self.route_message(route, i))
                        .map(Request::Replace)
                }
                RouteWrite::Delete(dst) => Self::delete_message(*dst).map(Request::Delete),
            };
            match req {
                Ok(r) => {
                    requests.push(r);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let replies = {
            let mut socket = self
                .batch
                .lock()
                .map_err(|_| NetlinkError::Invalid("route socket poisoned".to_owned()))?;
            socket.exchange(requests).map_err(NetlinkError::Socket)?
        };
        let mut replies = replies.into_iter();
        let mut out = Vec::with_capacity(writes.len());
        for (w, answer) in writes.iter().zip(answers) {
            if let Some(a) = answer {
                out.push(a);
                continue;
            }
            let refusal = replies.next().flatten();
            out.push(match (w, refusal) {
                (_, None) => Ok(()),
                (RouteWrite::Delete(_), Some(e)) if e.raw_code() == -ESRCH => Ok(()),
                (RouteWrite::Delete(dst), Some(e)) => Err(kernel("delete route", dst)(
                    rtnetlink::Error::NetlinkError(e),
                )),
                (RouteWrite::Replace(r), Some(e)) => Err(kernel("replace route", r.dst)(
                    rtnetlink::Error::NetlinkError(e),
                )),
            });
        }
        Ok(out)
    }

    async fn tabby_routes(&self) -> Result<Vec<Route>, NetlinkError> {
        let mut out = Vec::new();
        // One lookup per interface, not per route.
        let mut names: BTreeMap<u32, Option<String>> = BTreeMap::new();
        for msg in self.dump_routes().await? {
            let Some(dst) = route_dst(&msg) else {
                continue;
            };
            let mut dev = None;
            let mut gateway = None;
            for a in &msg.attributes {
                match a {
                    RouteAttribute::Oif(i) => {
                        if !names.contains_key(i) {
                            names.insert(*i, self.link_name(*i).await);
                        }
                        dev = names.get(i).cloned().flatten();
                    }
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
