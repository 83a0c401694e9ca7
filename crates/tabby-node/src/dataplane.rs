//! From deltas to the kernel: the `inet tabby` table through [`NftApply`] and routes to local
//! workloads (through their interface) and to other nodes' workloads (through those nodes'
//! addresses) through [`Netlink`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_calc::{Delta, RouteTarget};
use tabby_dataplane::{
    Config, Counts, Netlink, NetlinkError, NftApply, NftError, NftTable, Route, RouteWrite,
};

/// Route writes handed to the kernel at once (the netlink layer sends them in smaller chunks).
const WRITE_SLICE: usize = 4096;

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
    /// Desired routes to workloads, local and remote.
    routes: BTreeMap<IpNet, Route>,
    /// Routes changed since the last successful write (`None`: delete).
    route_changes: BTreeMap<IpNet, Option<Route>>,
    /// The kernel's routes are not known (start-up, resync, failed write): reconcile them all.
    routes_unknown: bool,
    /// Routes learned by BGP. A destination's route is the engine's route to a local workload,
    /// else the learned one, else (datastore routing only) the engine's remote one.
    /// Only the next hop is kept (the route is built when written): 100,000 learned routes
    /// are a fifth of the agent's memory otherwise.
    learned: BTreeMap<IpNet, IpAddr>,
    /// Whether the engine's routes to other nodes' workloads are programmed (datastore
    /// routing) or left to BGP.
    remote_from_datastore: bool,
    /// Learned routes the kernel refused (a next hop it cannot reach); retried by
    /// [`Dataplane::retry_learned`] instead of holding up every other route.
    learned_failed: BTreeSet<IpNet>,
    /// Blackhole routes for this node's own IPAM blocks (while BGP advertises them), so
    /// traffic to a block address with no workload behind it stops here.
    blackholes: BTreeMap<IpNet, Route>,
    /// While set, full reconciles keep tabby's gateway routes nobody wants yet (the routes an
    /// earlier run of the agent learned by BGP), so forwarding goes on through a restart; the
    /// set holds the ones kept, deleted by [`Dataplane::release_stale`] unless learned again.
    stale: Option<BTreeSet<IpNet>>,
}

impl<L> std::fmt::Debug for Dataplane<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("counts", &self.table.counts())
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

/// How many workload routes the dataplane wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// To workloads on this host, through their interfaces.
    pub local: usize,
    /// To workloads on other hosts, through those hosts' addresses.
    pub remote: usize,
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
            learned: BTreeMap::new(),
            remote_from_datastore: true,
            learned_failed: BTreeSet::new(),
            blackholes: BTreeMap::new(),
            stale: None,
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
                    let route = match &r.target {
                        RouteTarget::Local { interface } => Route {
                            dst: r.dst,
                            dev: Some(interface.clone()),
                            gateway: None,
                            scope_link: true,
                            onlink: false,
                        },
                        // Datastore routing: the other node is on this host's L2 segment, so
                        // the kernel finds the interface from its connected route.
                        RouteTarget::Remote { via, .. } => Route {
                            dst: r.dst,
                            dev: None,
                            gateway: Some(*via),
                            scope_link: false,
                            onlink: false,
                        },
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

    /// The route to program for `dst`, by precedence (see the `learned` field).
    /// A local workload's route first, then this node's block blackhole, then the remote
    /// route (datastore routing) or the learned one.
    fn effective(&self, dst: &IpNet) -> Option<Cow<'_, Route>> {
        match self.routes.get(dst) {
            Some(r) if r.gateway.is_none() => Some(Cow::Borrowed(r)),
            _ if self.blackholes.contains_key(dst) => self.blackholes.get(dst).map(Cow::Borrowed),
            Some(r) if self.remote_from_datastore => Some(Cow::Borrowed(r)),
            _ => self
                .learned
                .get(dst)
                .map(|&gw| Cow::Owned(learned_route(*dst, gw))),
        }
    }

    /// What to write for `dst`: its effective route, or its absence.
    fn write_for(&self, dst: IpNet) -> RouteWrite {
        match self.effective(&dst) {
            Some(r) => RouteWrite::Replace(r.into_owned()),
            None => RouteWrite::Delete(dst),
        }
    }

    /// Writes a batch and sorts the answers: a learned route the kernel refuses is set
    /// aside (retried later) rather than failing the whole write; any other refusal puts its
    /// destination back into `route_changes` and is returned (the first one) after the rest
    /// of the batch has been accounted for. When the channel fails, every destination of the
    /// batch goes back.
    async fn write_batch(&mut self, writes: Vec<RouteWrite>) -> Result<usize, NetlinkError> {
        let answers = match self.netlink.write_routes(&writes).await {
            Ok(a) => a,
            Err(err) => {
                // Which writes happened is unknown: all of them are written again.
                for w in &writes {
                    self.route_changes.insert(w.dst(), None);
                }
                return Err(err);
            }
        };
        let mut first_err = None;
        let mut ops = 0;
        for (w, answer) in writes.into_iter().zip(answers) {
            let dst = w.dst();
            match (answer, w) {
                (Ok(()), _) => {
                    self.learned_failed.remove(&dst);
                    ops += 1;
                }
                (Err(err), RouteWrite::Replace(route))
                    if self
                        .learned
                        .get(&dst)
                        .is_some_and(|&gw| learned_route(dst, gw) == route) =>
                {
                    tracing::warn!(%dst, error = %err, "learned route refused by the kernel; retrying later");
                    self.learned_failed.insert(dst);
                }
                (Err(err), _) => {
                    self.route_changes.insert(dst, None);
                    first_err.get_or_insert(err);
                }
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(ops),
        }
    }

    async fn sync_routes(&mut self) -> Result<usize, NetlinkError> {
        if self.routes_unknown {
            let wanted: BTreeSet<IpNet> = self
                .routes
                .keys()
                .chain(self.learned.keys())
                .chain(self.blackholes.keys())
                .filter(|d| self.effective(d).is_some())
                .copied()
                .collect();
            // A desired route is replaced, in place, with no moment without it.
            let mut writes = Vec::new();
            for old in self.netlink.tabby_routes().await? {
                if wanted.contains(&old.dst) {
                    continue;
                }
                match &mut self.stale {
                    // Through a gateway: learned (the kernel reports the interface too).
                    Some(stale) if old.gateway.is_some() => {
                        stale.insert(old.dst);
                    }
                    _ => writes.push(RouteWrite::Delete(old.dst)),
                }
            }
            if let Some(stale) = &self.stale
                && !stale.is_empty()
            {
                tracing::info!(
                    routes = stale.len(),
                    "keeping learned routes of the previous run until BGP has resynchronised"
                );
            }
            writes.extend(wanted.into_iter().map(|dst| self.write_for(dst)));
            self.route_changes.clear();
            let ops = self.write_batch(writes).await?;
            self.routes_unknown = false;
            return Ok(ops);
        }
        // The change's value is where the engine's route went; what is written is looked up
        // again, since a learned route may stand in for it.
        // In slices, so a burst of 100,000 learned routes never holds 100,000 requests.
        let mut ops = 0;
        while !self.route_changes.is_empty() {
            let mut writes = Vec::with_capacity(WRITE_SLICE.min(self.route_changes.len()));
            while writes.len() < WRITE_SLICE
                && let Some((dst, _)) = self.route_changes.pop_first()
            {
                writes.push(self.write_for(dst));
            }
            ops += self.write_batch(writes).await?;
        }
        Ok(ops)
    }

    /// Sets (`Some(next hop)`) or removes the route BGP learned to `dst`.
    pub fn set_learned(&mut self, dst: IpNet, next_hop: Option<IpAddr>) {
        let changed = match next_hop {
            Some(gw) => self.learned.insert(dst, gw) != Some(gw),
            None => self.learned.remove(&dst).is_some(),
        };
        if changed {
            self.route_changes.insert(dst, None);
        }
    }

    /// Sets the blocks that get a blackhole route (this node's own, while it advertises them).
    pub fn set_blackholes(&mut self, blocks: &BTreeSet<IpNet>) {
        let gone: Vec<IpNet> = self
            .blackholes
            .keys()
            .filter(|b| !blocks.contains(b))
            .copied()
            .collect();
        for b in gone {
            self.blackholes.remove(&b);
            self.route_changes.insert(b, None);
        }
        for b in blocks {
            if !self.blackholes.contains_key(b) {
                self.blackholes.insert(*b, Route::blackhole(*b));
                self.route_changes.insert(*b, None);
            }
        }
    }

    /// Keeps the gateway routes an earlier run left in the kernel (learned by BGP) through
    /// full reconciles until [`Dataplane::release_stale`]: BGP graceful restart's restarting
    /// side, so a restarted agent forwards as before while its sessions come back.
    pub fn hold_stale(&mut self) {
        self.stale.get_or_insert_with(BTreeSet::new);
    }

    /// Stops keeping stale routes: those not learned again are deleted by the next write.
    pub fn release_stale(&mut self) {
        if let Some(stale) = self.stale.take() {
            for dst in stale {
                self.route_changes.insert(dst, None);
            }
        }
    }

    /// How many stale routes are kept (see [`Dataplane::hold_stale`]).
    pub fn stale_routes(&self) -> usize {
        self.stale.as_ref().map_or(0, BTreeSet::len)
    }

    /// Forgets every learned route (the speaker stopped).
    pub fn clear_learned(&mut self) {
        for dst in std::mem::take(&mut self.learned).into_keys() {
            self.route_changes.insert(dst, None);
        }
    }

    /// Datastore routing (`true`, the default) or BGP routing (`false`) for routes to other
    /// nodes' workloads.
    pub fn set_remote_from_datastore(&mut self, on: bool) {
        if self.remote_from_datastore != on {
            self.remote_from_datastore = on;
            let remote: Vec<IpNet> = self
                .routes
                .iter()
                .filter(|(_, r)| r.gateway.is_some())
                .map(|(d, _)| *d)
                .collect();
            for dst in remote {
                self.route_changes.insert(dst, None);
            }
        }
    }

    /// Queues the learned routes the kernel refused for another attempt.
    pub fn retry_learned(&mut self) {
        for dst in std::mem::take(&mut self.learned_failed) {
            self.route_changes.insert(dst, None);
        }
    }

    /// Routes learned by BGP.
    pub fn learned_routes(&self) -> usize {
        self.learned.len()
    }

    /// Sizes of the desired table.
    pub fn counts(&self) -> Counts {
        self.table.counts()
    }

    /// Desired routes to workloads from the engine: local ones, and remote ones while they
    /// are programmed (datastore routing; under BGP learned routes stand in for them).
    pub fn routes(&self) -> RouteCounts {
        let local = self.routes.values().filter(|r| r.gateway.is_none()).count();
        RouteCounts {
            local,
            remote: if self.remote_from_datastore {
                self.routes.len() - local
            } else {
                0
            },
        }
    }
}

/// The kernel route for a destination BGP learned through `gateway`.
fn learned_route(dst: IpNet, gateway: IpAddr) -> Route {
    Route {
        dst,
        dev: None,
        gateway: Some(gateway),
        scope_link: false,
        onlink: false,
    }
}
