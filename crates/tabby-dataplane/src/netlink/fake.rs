//! An in-memory [`Netlink`] for tests: links, addresses, routes and neighbours in maps, with
//! the kernel's basic refusals (unknown interface, duplicate name).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use super::{Netlink, NetlinkError, Route, RouteWrite};

/// One fake interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeLink {
    /// Index.
    pub index: u32,
    /// Up or down.
    pub up: bool,
    /// MAC address, if set.
    pub mac: Option<[u8; 6]>,
    /// Addresses.
    pub addrs: Vec<IpNet>,
    /// The veth peer's name, and the namespace it was moved to.
    pub peer: Option<(String, Option<PathBuf>)>,
    /// The bridge it is attached to.
    pub master: Option<String>,
    /// Its MTU, if set.
    pub mtu: Option<u32>,
}

/// What the fake holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Interfaces by name.
    pub links: BTreeMap<String, FakeLink>,
    /// Tabby's routes by destination.
    pub routes: BTreeMap<IpNet, Route>,
    /// Neighbours by (interface, address).
    pub neighbours: BTreeMap<(String, IpAddr), [u8; 6]>,
    next_index: u32,
}

/// An in-memory [`Netlink`]; clones share their state.
#[derive(Debug, Clone, Default)]
pub struct FakeNetlink {
    state: Arc<Mutex<FakeState>>,
}

impl FakeNetlink {
    /// An empty fake (no interfaces at all, not even `lo`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The state, to assert on.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        // A panic in another test thread must not hide this test's own result.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an interface (as something outside tabby would have made it).
    pub fn add_link(&self, name: &str) {
        let mut s = self.state();
        s.next_index += 1;
        let index = s.next_index;
        s.links.insert(
            name.to_owned(),
            FakeLink {
                index,
                ..FakeLink::default()
            },
        );
    }

    fn with_link<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FakeLink) -> T,
    ) -> Result<T, NetlinkError> {
        let mut s = self.state();
        let link = s
            .links
            .get_mut(name)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
        Ok(f(link))
    }
}

impl Netlink for FakeNetlink {
    async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        Ok(self.state().links.get(name).map(|l| l.index))
    }

    async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: Option<&Path>,
    ) -> Result<(), NetlinkError> {
        if self.state().links.contains_key(name) {
            return Err(NetlinkError::Invalid(format!("interface {name} exists")));
        }
        self.add_link(name);
        self.with_link(name, |l| {
            l.peer = Some((peer.to_owned(), peer_netns.map(Path::to_owned)));
        })?;
        if peer_netns.is_none() {
            self.add_link(peer);
        }
        Ok(())
    }

    async fn add_bridge(&self, name: &str) -> Result<(), NetlinkError> {
        if self.state().links.contains_key(name) {
            return Err(NetlinkError::Invalid(format!("interface {name} exists")));
        }
        self.add_link(name);
        Ok(())
    }

    async fn set_master(&self, name: &str, bridge: &str) -> Result<(), NetlinkError> {
        if !self.state().links.contains_key(bridge) {
            return Err(NetlinkError::NoSuchLink(bridge.to_owned()));
        }
        self.with_link(name, |l| l.master = Some(bridge.to_owned()))
    }

    async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let mut s = self.state();
        let link = s
            .links
            .remove(name)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
        if let Some((peer, None)) = link.peer {
            s.links.remove(&peer);
        }
        // Like the kernel: routes and neighbours through a deleted interface go with it.
        s.routes.retain(|_, r| r.dev.as_deref() != Some(name));
        s.neighbours.retain(|(dev, _), _| dev != name);
        Ok(())
    }

    async fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        self.with_link(name, |l| l.up = true)
    }

    async fn set_down(&self, name: &str) -> Result<(), NetlinkError> {
        self.with_link(name, |l| l.up = false)
    }

    async fn set_mac(&self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.with_link(name, |l| l.mac = Some(mac))
    }

    async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.with_link(name, |l| l.mtu = Some(mtu))
    }

    async fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        let mut s = self.state();
        let link = s
            .links
            .remove(name)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
        s.links.insert(new_name.to_owned(), link);
        Ok(())
    }

    async fn add_address(&self, name: &str, addr: IpNet) -> Result<(), NetlinkError> {
        self.with_link(name, |l| {
            if !l.addrs.contains(&addr) {
                l.addrs.push(addr);
            }
        })
    }

    async fn replace_route(&self, route: &Route) -> Result<(), NetlinkError> {
        if let Some(dev) = &route.dev
            && !self.state().links.contains_key(dev)
        {
            return Err(NetlinkError::NoSuchLink(dev.clone()));
        }
        self.state().routes.insert(route.dst, route.clone());
        Ok(())
    }

    async fn delete_route(&self, dst: IpNet) -> Result<(), NetlinkError> {
        self.state().routes.remove(&dst);
        Ok(())
    }

    async fn write_routes(
        &self,
        writes: &[RouteWrite],
    ) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(match w {
                RouteWrite::Replace(r) => self.replace_route(r).await,
                RouteWrite::Delete(d) => self.delete_route(*d).await,
            });
        }
        Ok(out)
    }

    async fn tabby_routes(&self) -> Result<Vec<Route>, NetlinkError> {
        Ok(self.state().routes.values().cloned().collect())
    }

    async fn replace_neighbour(
        &self,
        dev: &str,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        if !self.state().links.contains_key(dev) {
            return Err(NetlinkError::NoSuchLink(dev.to_owned()));
        }
        self.state().neighbours.insert((dev.to_owned(), ip), mac);
        Ok(())
    }
}
