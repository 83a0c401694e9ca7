//! The speaker on a thread of its own: the agent loop blocks on the datastore, while BGP
//! timers and sockets need a runtime that is always polled. The thread is spawned from the
//! agent's thread, so its sockets live in the agent's network namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tabby_bgp::driver::{self, DriverConfig, Handle};
use tabby_bgp::{GracefulRestartConfig, RouteChange, Speaker, SpeakerConfig};
use tokio::sync::mpsc;

use crate::bgp::peers::{SpeakerSettings, WantedPeer};

/// Calico's BIRD `connect retry time 5` is the speaker's default; the mesh's `connect delay
/// time 2` has no counterpart, so the first attempt goes out at once.
const HOLD_TIME: u16 = 90;

/// Why the speaker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// The driver could not bind its listener or the thread could not start.
    #[error("BGP speaker: {0}")]
    Start(String),
}

/// A running speaker and the neighbours configured on it.
pub(crate) struct Running {
    pub(crate) settings: SpeakerSettings,
    pub(crate) handle: Handle,
    routes: mpsc::UnboundedReceiver<RouteChange>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) peers: BTreeMap<IpAddr, WantedPeer>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("settings", &self.settings)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Starts a speaker with no neighbours and no routes.
    /// With `restarting`, the OPEN carries graceful restart's Restart State bit and the
    /// Forwarding State bit for every family: peers keep the routes they had from us until
    /// our End-of-RIB, since the kernel still forwards with what the previous run wrote.
    pub(crate) fn start(settings: SpeakerSettings, restarting: bool) -> Result<Self, BgpError> {
        let mut cfg = SpeakerConfig::new(settings.asn, settings.router_id);
        cfg.cluster_id = settings.cluster_id;
        cfg.hold_time = HOLD_TIME;
        cfg.graceful_restart = Some(GracefulRestartConfig {
            restart_time: settings.restart_time,
            restarting,
        });
        let listen = vec![settings.listen];
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tabby-bgp".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = tx.send(Err(err.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    match driver::start(Speaker::new(cfg), DriverConfig { listen }).await {
                        Ok((handle, routes, task)) => {
                            let _ = tx.send(Ok((handle, routes)));
                            let _ = task.await;
                            // Let the writers flush the Cease messages of a shutdown.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(err) => {
                            let _ = tx.send(Err(format!(
                                "{err}: {}",
                                std::error::Error::source(&err)
                                    .map(ToString::to_string)
                                    .unwrap_or_default()
                            )));
                        }
                    }
                });
            })
            .map_err(|e| BgpError::Start(e.to_string()))?;
        let started = rx
            .recv()
            .map_err(|_| BgpError::Start("the speaker thread ended".to_owned()))
            .and_then(|r| r.map_err(BgpError::Start));
        let (handle, routes) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        tracing::info!(asn = settings.asn, router_id = %settings.router_id, listen = %settings.listen, "BGP speaker started");
        Ok(Self {
            settings,
            handle,
            routes,
            thread: Some(thread),
            peers: BTreeMap::new(),
        })
    }

    /// Brings the neighbours to `want`: removed, added, or replaced when their settings changed.
    pub(crate) fn set_peers(&mut self, want: &BTreeMap<IpAddr, WantedPeer>) {
        let gone: Vec<IpAddr> = self
            .peers
            .keys()
            .filter(|a| !want.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            tracing::info!(peer = %addr, "BGP neighbour removed");
            let _ = self.handle.remove_peer(addr);
            self.peers.remove(&addr);
        }
        for (addr, peer) in want {
            if self.peers.get(addr) != Some(peer) {
                if let Some(why) = &peer.refused {
                    tracing::warn!(peer = %addr, name = %peer.name, reason = %why, "BGP neighbour not started");
                    let _ = self.handle.remove_peer(*addr);
                } else {
                    tracing::info!(peer = %addr, name = %peer.name, kind = peer.kind.as_str(), asn = peer.config.asn, "BGP neighbour configured");
                    let _ = self.handle.add_peer(peer.config.clone());
                }
                self.peers.insert(*addr, peer.clone());
            }
        }
    }

    pub(crate) fn originate(&self, prefix: IpNet) {
        let _ = self.handle.originate(prefix, Vec::new());
    }

    pub(crate) fn withdraw(&self, prefix: IpNet) {
        let _ = self.handle.withdraw(prefix);
    }

    /// Best-route changes since the last call, in order.
    pub(crate) fn drain(&mut self) -> Vec<RouteChange> {
        let mut out = Vec::new();
        while let Ok(c) = self.routes.try_recv() {
            out.push(c);
        }
        out
    }

    /// Ends every session and waits for the thread, so the port is free again.
    pub(crate) fn stop(mut self) {
        let _ = self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::info!("BGP speaker stopped");
    }
}
