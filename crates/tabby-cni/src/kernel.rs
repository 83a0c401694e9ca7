//! The real kernel side: `tabby_dataplane::workload` (the veth, addresses and routes inside,
//! shared with the lab), plus the host's /32 (/128) route to the workload (added once the
//! workload is recorded) so that its first packet need not wait for the agent, which owns and
//! reconciles that route afterwards.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use tabby_dataplane::workload::{self, NetnsSysctls, Workload};
use tabby_dataplane::{Netlink, NetlinkError, Route, RtNetlink};

use crate::plumbing::{Plumbing, WorkloadPlumb};

/// Plumbing through netlink in the host's namespace and the workload's.
#[derive(Debug, Default, Clone)]
pub struct KernelPlumbing {
    /// The host's network namespace; `None`: the caller's (a runtime runs the plugin on the
    /// host). The lab names its node's namespace here.
    pub host_netns: Option<PathBuf>,
}

impl KernelPlumbing {
    /// Netlink in the host's namespace.
    fn host(&self) -> Result<RtNetlink, String> {
        match &self.host_netns {
            Some(ns) => RtNetlink::in_netns(ns),
            None => RtNetlink::new(),
        }
        .map_err(|e| e.to_string())
    }

    /// Sysctls of the host's namespace.
    fn sysctls(&self) -> NetnsSysctls {
        NetnsSysctls(
            self.host_netns
                .clone()
                .unwrap_or_else(|| PathBuf::from("/proc/self/ns/net")),
        )
    }
}

/// A single-threaded runtime for one call: the plugin is a short-lived process and needs no
/// more.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the netlink runtime: {e}"))
}

fn host_route(interface: &str, ip: IpAddr) -> Route {
    Route {
        dst: IpNet::from(ip),
        dev: Some(interface.to_owned()),
        gateway: None,
        scope_link: true,
        onlink: false,
    }
}

/// A locally administered unicast MAC from the host interface's name (itself a hash of the
/// workload's identity), so it is unique per workload and stable across retries.
fn workload_mac(host_interface: &str) -> [u8; 6] {
    let h = host_interface
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let b = h.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

impl Plumbing for KernelPlumbing {
    fn netns_exists(&self, netns: &Path) -> bool {
        !netns.as_os_str().is_empty() && netns.exists()
    }

    fn add(&self, w: &WorkloadPlumb<'_>) -> Result<Option<String>, String> {
        runtime()?.block_on(async {
            let host = self.host()?;
            let inside = RtNetlink::in_netns(w.netns).map_err(|e| e.to_string())?;
            let sysctls = self.sysctls();
            workload::plumb(
                &host,
                &sysctls,
                &inside,
                &NetnsSysctls(w.netns.to_owned()),
                &Workload {
                    interface: w.host_interface,
                    netns: w.netns,
                    inside: w.ifname,
                    addresses: w.addresses,
                    mtu: w.mtu,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            // Runtimes read the workload interface's MAC from the result (podman refuses a
            // result without one); a fixed one derived from the host interface's name is known
            // without reading it back.
            let mac = workload_mac(w.host_interface);
            if let Err(e) = inside.set_mac(w.ifname, mac).await {
                let _ = workload::unplumb(&host, w.host_interface).await;
                return Err(e.to_string());
            }
            Ok(Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ))
        })
    }

    fn route(&self, w: &WorkloadPlumb<'_>) -> Result<(), String> {
        runtime()?.block_on(async {
            let host = self.host()?;
            for ip in w.addresses {
                host.replace_route(&host_route(w.host_interface, *ip))
                    .await
                    .map_err(|e| format!("host route to {ip}: {e}"))?;
            }
            Ok(())
        })
    }

    fn del(&self, host_interface: &str) -> Result<(), String> {
        runtime()?.block_on(async {
            let host = self.host()?;
            // The kernel drops the host routes with the device.
            workload::unplumb(&host, host_interface)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn del_while(&self, host_interface: &str, meanwhile: &mut dyn FnMut()) -> Result<(), String> {
        // Down first (a fraction of a millisecond): from then on the interface carries nothing
        // and the kernel has dropped the host routes through it, so its addresses may be
        // released. The delete itself then waits in the kernel for an RCU barrier
        // (`netdev_run_todo`, 15-20 ms here) with the netlink request blocking its thread;
        // the release runs beside it instead of after it.
        let present = runtime()?.block_on(async {
            match self.host()?.set_down(host_interface).await {
                Ok(()) => Ok(true),
                Err(NetlinkError::NoSuchLink(_)) => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })?;
        if !present {
            meanwhile();
            return Ok(());
        }
        std::thread::scope(|s| {
            let deleting = s.spawn(|| self.del(host_interface));
            meanwhile();
            deleting
                .join()
                .unwrap_or_else(|_| Err(format!("deleting {host_interface} panicked")))
        })
    }

    fn check(&self, w: &WorkloadPlumb<'_>) -> Result<(), String> {
        runtime()?.block_on(async {
            let host = self.host()?;
            if host
                .link_index(w.host_interface)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("host interface {} is missing", w.host_interface));
            }
            let inside = RtNetlink::in_netns(w.netns).map_err(|e| e.to_string())?;
            if inside
                .link_index(w.ifname)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("{} is missing in {}", w.ifname, w.netns.display()));
            }
            Ok(())
        })
    }
}
