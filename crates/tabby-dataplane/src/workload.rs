//! Workload plumbing, Calico's model: one veth per workload. The host side (named by the
//! caller, `tb` + hash) has the fixed MAC [`WORKLOAD_HOST_MAC`], no address and proxy ARP on,
//! so the workload's gateway 169.254.1.1 is answered by the host whatever the host's own
//! addresses are. Inside, `eth0` holds the workload's /32 (/128) addresses, an on-link route
//! to 169.254.1.1 and the default route through it (IPv6: through the host side's link-local
//! address, derived from the fixed MAC).
//!
//! The host's route to the workload is not written here: the agent owns routes (it
//! reconciles every route with tabby's protocol number) and programs it from the endpoint.
//!
//! Shared by the CNI plugin and the lab, so that both make workloads the same way.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::netlink::{Netlink, NetlinkError, Route, WORKLOAD_HOST_MAC};
use crate::netns::{self, NetnsError};

/// The workload's IPv4 gateway, answered by the host side's proxy ARP.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The host side's IPv6 link-local address (EUI-64 of [`WORKLOAD_HOST_MAC`]).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The interface name inside the workload unless the caller names another (CNI_IFNAME).
pub const WORKLOAD_INTERFACE: &str = "eth0";

/// Writes sysctls of one namespace (`key` as in `net/ipv4/ip_forward`).
pub trait Sysctls {
    /// Writes one value.
    fn write(&self, key: &str, value: &str) -> Result<(), NetnsError>;
}

/// Sysctls of the namespace at a path (`/run/netns/NAME` or `/proc/PID/ns/net`).
#[derive(Debug, Clone)]
pub struct NetnsSysctls(pub PathBuf);

impl Sysctls for NetnsSysctls {
    fn write(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        netns::write_sysctl(&self.0, key, value)
    }
}

/// Plumbing a workload failed; nothing of it was left behind.
#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    /// A netlink request failed.
    #[error("workload {interface}: {error}")]
    Netlink {
        /// The host-side interface.
        interface: String,
        /// What failed.
        #[source]
        error: NetlinkError,
    },
    /// A sysctl could not be written.
    #[error("workload {interface}: {error}")]
    Sysctl {
        /// The host-side interface.
        interface: String,
        /// What failed.
        #[source]
        error: NetnsError,
    },
    /// The request itself is wrong.
    #[error("workload {interface}: {reason}")]
    Invalid {
        /// The host-side interface.
        interface: String,
        /// Why.
        reason: String,
    },
}

/// One workload to plumb.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// Host-side interface name (at most 15 bytes).
    pub interface: &'a str,
    /// The workload's namespace, where `eth0` goes.
    pub netns: &'a Path,
    /// The interface name inside ([`WORKLOAD_INTERFACE`] unless the runtime asks another).
    pub inside: &'a str,
    /// Its addresses (each becomes a /32 or /128 on the inside interface).
    pub addresses: &'a [IpAddr],
    /// MTU of both ends; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
}

/// Makes the veth pair and configures both ends. On failure the host side is deleted again
/// (which takes the workload side with it), so nothing half-made stays.
pub async fn plumb<L: Netlink>(
    host: &L,
    host_sysctls: &dyn Sysctls,
    inside: &L,
    inside_sysctls: &dyn Sysctls,
    w: &Workload<'_>,
) -> Result<(), PlumbError> {
    let interface = w.interface;
    for name in [interface, w.inside] {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            return Err(PlumbError::Invalid {
                interface: interface.to_owned(),
                reason: format!(
                    "interface name {name:?}: must be 1 to 15 bytes with no '/' or space"
                ),
            });
        }
    }
    if w.addresses.is_empty() {
        return Err(PlumbError::Invalid {
            interface: interface.to_owned(),
            reason: "a workload needs at least one address".to_owned(),
        });
    }
    let nl = |error| PlumbError::Netlink {
        interface: interface.to_owned(),
        error,
    };
    // The peer is created in the host namespace under a temporary name, so it must not
    // collide with another workload's peer there: derive it from the unique host name.
    let peer = format!("{}x", &interface[..interface.len().min(14)]);
    host.add_veth(interface, &peer, Some(w.netns))
        .await
        .map_err(nl)?;
    let made = configure(host, host_sysctls, inside, inside_sysctls, &peer, w).await;
    if made.is_err()
        && let Err(error) = host.delete_link(interface).await
    {
        tracing::warn!(%interface, %error, "could not remove a half-made workload veth");
    }
    made
}

async fn configure<L: Netlink>(
    host: &L,
    host_sysctls: &dyn Sysctls,
    inside: &L,
    inside_sysctls: &dyn Sysctls,
    peer: &str,
    w: &Workload<'_>,
) -> Result<(), PlumbError> {
    let interface = w.interface;
    let nl = |error| PlumbError::Netlink {
        interface: interface.to_owned(),
        error,
    };
    let sysctl = |error| PlumbError::Sysctl {
        interface: interface.to_owned(),
        error,
    };
    host.set_mac(interface, WORKLOAD_HOST_MAC)
        .await
        .map_err(nl)?;
    if let Some(mtu) = w.mtu {
        host.set_mtu(interface, mtu).await.map_err(nl)?;
        inside.set_mtu(peer, mtu).await.map_err(nl)?;
    }
    let ipv4 = [
        ("net/ipv4/conf/{}/proxy_arp", "1"),
        ("net/ipv4/neigh/{}/proxy_delay", "0"),
        ("net/ipv4/conf/{}/forwarding", "1"),
    ];
    // As Calico: no router advertisements taken from a workload, neighbour proxying on; and
    // no duplicate address detection, written before the link comes up, so that the
    // link-local address the workload routes through is usable at once instead of staying
    // tentative for a second or two after ADD.
    let ipv6 = [
        ("net/ipv6/conf/{}/accept_ra", "0"),
        ("net/ipv6/conf/{}/proxy_ndp", "1"),
        ("net/ipv6/conf/{}/accept_dad", "0"),
    ];
    let has_ipv6 = w.addresses.iter().any(IpAddr::is_ipv6);
    let sysctls = ipv4.iter().chain(if has_ipv6 { &ipv6[..] } else { &[] });
    for (key, value) in sysctls {
        host_sysctls
            .write(&key.replace("{}", interface), value)
            .map_err(sysctl)?;
    }
    host.set_up(interface).await.map_err(nl)?;

    let eth = w.inside;
    inside.rename(peer, eth).await.map_err(nl)?;
    if has_ipv6 {
        // As Calico: the workload's link-local address (the source of its neighbour
        // solicitations for the gateway) is usable at once too.
        inside_sysctls
            .write(&format!("net/ipv6/conf/{eth}/accept_dad"), "0")
            .map_err(sysctl)?;
    }
    inside.set_up("lo").await.map_err(nl)?;
    inside.set_up(eth).await.map_err(nl)?;
    for addr in w.addresses {
        inside
            .add_address(eth, IpNet::from(*addr))
            .await
            .map_err(nl)?;
    }
    let via = |dst: IpNet, gateway: Option<IpAddr>| Route {
        dst,
        dev: Some(eth.to_owned()),
        gateway,
        scope_link: gateway.is_none(),
        onlink: gateway.is_some(),
    };
    if w.addresses.iter().any(IpAddr::is_ipv4) {
        let gw = IpAddr::V4(GATEWAY_V4);
        inside
            .replace_route(&via(IpNet::from(gw), None))
            .await
            .map_err(nl)?;
        inside
            .replace_route(&via(default_route(false), Some(gw)))
            .await
            .map_err(nl)?;
    }
    if has_ipv6 {
        inside
            .replace_route(&via(default_route(true), Some(IpAddr::V6(GATEWAY_V6))))
            .await
            .map_err(nl)?;
    }
    tracing::debug!(%interface, addresses = ?w.addresses, "workload plumbed");
    Ok(())
}

fn default_route(v6: bool) -> IpNet {
    if v6 {
        IpNet::V6(Ipv6Net::default())
    } else {
        IpNet::V4(Ipv4Net::default())
    }
}

/// Removes a workload's veth from the host side; an interface already gone is not an error.
pub async fn unplumb<L: Netlink>(host: &L, interface: &str) -> Result<(), PlumbError> {
    match host.delete_link(interface).await {
        Ok(()) | Err(NetlinkError::NoSuchLink(_)) => Ok(()),
        Err(error) => Err(PlumbError::Netlink {
            interface: interface.to_owned(),
            error,
        }),
    }
}
