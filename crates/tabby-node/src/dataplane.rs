//! From deltas to the kernel: the `inet tabby` table through [`NftApply`] and routes to local
//! workloads through [`Netlink`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_calc::{Delta, RouteTarget};
use tabby_dataplane::{Config, Counts, Netlink, NetlinkError, NftApply, NftError, NftTable, Route};

/// A dataplane write failed; what was not written is written again on the next sync.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The nft script was refused or `nft` could not run; the next write is a full script.
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    /// A route could not be written; the next sync reconciles every route.
    #[error("routes: {0}")]
    Netlink(#[from] NetlinkError),
}

/// The table and routes one host wants, and the writers that put them in the kernel.
pub struct Dataplane<L> {
    config: Config,
    nft: Box<dyn NftApply + Send>,
    netlink: L,
    table: NftTable,
    /// Desired routes to local workloads.
    routes: BTreeMap<IpNet, Route>,
    /// Routes changed since the last successful write (`None`: delete).
    route_changes: BTreeMap<IpNet, Option<Route>>,
    /// The kernel's routes are not known (start-up, resync, failed write): reconcile them all.
    routes_unknown: bool,
}

impl<L> std::fmt::Debug for Dataplane<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("counts", &self.table.counts())
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

/// What one successful [`Dataplane::sync`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// An nft script was written (`Some(true)` when it replaced the whole table).
    pub nft_full: Option<bool>,
    /// Route writes (adds, replaces and deletes).
    pub route_ops: usize,
    /// How long it took.
    pub took: Duration,
}

impl<L: Netlink> Dataplane<L> {
    /// An empty dataplane: its first write replaces whatever table and tabby routes the kernel
    /// holds (an earlier agent's).
    pub fn new(config: Config, nft: Box<dyn NftApply + Send>, netlink: L) -> Self {
        Self {
            config,
            nft,
            netlink,
            table: NftTable::new(config),
            routes: BTreeMap::new(),
            route_changes: BTreeMap::new(),
            routes_unknown: true,
        }
    }

    /// Forgets the desired state, before the deltas of a resync (which describe everything
    /// from nothing). The kernel keeps the old state until the next write replaces it whole.
    pub fn reset(&mut self) {
        self.table = NftTable::new(self.config);
        self.routes.clear();
        self.route_changes.clear();
        self.routes_unknown = true;
    }

    /// Applies deltas, in order, to the desired state.
    pub fn apply(&mut self, deltas: &[Delta]) {
        for delta in deltas {
            match delta {
                Delta::RouteUpdated(r) => {
                    let RouteTarget::Local { interface } = &r.target else {
                        // Routes to other hosts' workloads need the BGP or overlay step,
                        // which is not wired into the agent yet.
                        tracing::debug!(dst = %r.dst, "remote route not programmed yet");
                        continue;
                    };
                    let route = Route {
                        dst: r.dst,
                        dev: Some(interface.clone()),
                        gateway: None,
                        scope_link: true,
                        onlink: false,
                    };
                    self.routes.insert(r.dst, route.clone());
                    self.route_changes.insert(r.dst, Some(route));
                }
                Delta::RouteRemoved(dst) => {
                    if self.routes.remove(dst).is_some() {
                        self.route_changes.insert(*dst, None);
                    }
                }
                other => self.table.apply(other),
            }
        }
    }

    /// Whether anything is still to be written.
    pub fn has_pending(&self) -> bool {
        self.table.has_pending() || self.routes_unknown || !self.route_changes.is_empty()
    }

    /// Writes what is pending: the nft script first (so a new workload's policy is in place
    /// before a route makes it reachable), then routes.
    pub async fn sync(&mut self) -> Result<Written, DataplaneError> {
        let start = Instant::now();
        // On failure the table already arranges a full script for the next attempt.
        let script = self.table.sync(self.nft.as_mut())?;
        let route_ops = match self.sync_routes().await {
            Ok(n) => n,
            Err(err) => {
                self.routes_unknown = true;
                return Err(err.into());
            }
        };
        Ok(Written {
            nft_full: script.map(|s| s.full),
            route_ops,
            took: start.elapsed(),
        })
    }

    async fn sync_routes(&mut self) -> Result<usize, NetlinkError> {
        let mut ops = 0;
        if self.routes_unknown {
            for old in self.netlink.tabby_routes().await? {
                // A desired route is replaced below, in place, with no moment without it.
                if !self.routes.contains_key(&old.dst) {
                    self.netlink.delete_route(old.dst).await?;
                    ops += 1;
                }
            }
            for route in self.routes.values() {
                self.netlink.replace_route(route).await?;
                ops += 1;
            }
            self.routes_unknown = false;
            self.route_changes.clear();
            return Ok(ops);
        }
        while let Some((dst, change)) = self.route_changes.pop_first() {
            let done = match &change {
                Some(route) => self.netlink.replace_route(route).await,
                None => self.netlink.delete_route(dst).await,
            };
            if let Err(err) = done {
                self.route_changes.insert(dst, change);
                return Err(err);
            }
            ops += 1;
        }
        Ok(ops)
    }

    /// Sizes of the desired table.
    pub fn counts(&self) -> Counts {
        self.table.counts()
    }

    /// Desired routes to local workloads.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }
}
