//! BGP in the agent: which sessions to run ([`peers`], from Node, BGPConfiguration and BGPPeer
//! resources), the speaker on its own thread (`run`), what it originates (this node's
//! workload routes, taken from the engine's deltas) and where learned routes go (the
//! dataplane's route reconciler, with tabby's route protocol).
//!
//! Routing mode ([`Routing`]): with BGP, routes to other nodes' workloads come only from BGP
//! and the engine's datastore-derived remote routes are not programmed, so the two never
//! fight over a prefix; with datastore routing no speaker runs. `Auto` (the default) follows
//! Calico: BGP on a node whose Node resource has `spec.bgp`.
//!
//! What a node originates, as Calico does: each block it holds a confirmed affinity for
//! (tabby-ipam's `BlockAffinity` records, read by the syncer), with a blackhole route for the
//! block in its own kernel so that traffic to an address with no workload behind it stops
//! here; and a /32 (/128) for each local workload address that none of its own blocks covers.
//! That is an address borrowed from another node's block (the more specific route wins over
//! that node's block everywhere, that node included), or one that came from outside IPAM
//! (hand-written WorkloadEndpoints, lab pods without IPAM): with no block to carry it, its
//! /32 is the only way the network learns of it. Local workload addresses are the engine's
//! `RouteUpdated` with a local target.

pub mod peers;
mod run;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_bgp::RouteChange;
use tabby_calc::{Delta, RouteTarget};
use tabby_dataplane::Netlink;

pub use self::peers::{BgpInputs, Desired, PeerKind, Unavailable};
pub use self::run::BgpError;
use self::run::Running;
pub use self::status::{BgpStatus, NodeStatus, PeerReport, StatusBoard};
use crate::dataplane::Dataplane;

/// After a failed start (the port is taken, say), the next attempt waits this long.
const RESTART_DELAY: Duration = Duration::from_secs(5);
/// Learned routes the kernel refused are tried again this often.
const LEARNED_RETRY: Duration = Duration::from_secs(5);

/// Who programs routes to other nodes' workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// BGP when this node's Node resource has `spec.bgp`, else the datastore.
    #[default]
    Auto,
    /// Routes from the datastore: other nodes are on this host's L2 segment.
    Datastore,
    /// Routes learned by BGP.
    Bgp,
}

/// The agent's BGP part. See the module header.
#[derive(Debug)]
pub struct Bgp {
    host: String,
    mode: Routing,
    /// The inputs' generation last derived from.
    seen: Option<u64>,
    running: Option<Running>,
    /// Destinations of routes to local workloads.
    local: BTreeSet<IpNet>,
    /// This node's confirmed blocks, while the speaker runs (advertised, blackholed).
    blocks: BTreeSet<IpNet>,
    /// What the speaker was told to originate.
    originated: BTreeSet<IpNet>,
    board: Arc<StatusBoard>,
    retry_at: Option<Instant>,
    learned_retry_at: Instant,
    /// No speaker has started in this process yet: the first one announces itself as
    /// restarting (graceful restart), as Calico starts BIRD with `-R`.
    first_start: bool,
    /// After the first start: the neighbours whose End-of-RIB the dataplane's stale routes
    /// wait for, and the latest moment they wait.
    restart: Option<(BTreeSet<std::net::IpAddr>, Instant)>,
    /// Where BGP password Secrets are read (Calico: calico-node's own namespace).
    secret_namespace: String,
}

impl Bgp {
    /// BGP for `host`, reporting on `board`.
    pub fn new(host: impl Into<String>, mode: Routing, board: Arc<StatusBoard>) -> Self {
        Self {
            host: host.into(),
            mode,
            seen: None,
            running: None,
            local: BTreeSet::new(),
            blocks: BTreeSet::new(),
            originated: BTreeSet::new(),
            board,
            retry_at: None,
            learned_retry_at: Instant::now(),
            first_start: true,
            restart: None,
            secret_namespace: peers::DEFAULT_SECRET_NAMESPACE.to_owned(),
        }
    }

    /// Reads BGP password Secrets from `namespace` instead of
    /// [`peers::DEFAULT_SECRET_NAMESPACE`].
    #[must_use]
    pub fn with_secret_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.secret_namespace = namespace.into();
        self
    }

    /// Whether the speaker runs.
    pub fn running(&self) -> bool {
        self.running.is_some()
    }

    /// Follows the engine's routes to local workloads; `full` when `deltas` describe
    /// everything from nothing (a resync).
    pub fn observe(&mut self, deltas: &[Delta], full: bool) {
        let mut changed = full;
        if full {
            self.local.clear();
        }
        for d in deltas {
            match d {
                Delta::RouteUpdated(r) => {
                    if matches!(r.target, RouteTarget::Local { .. }) {
                        self.local.insert(r.dst);
                    } else {
                        self.local.remove(&r.dst);
                    }
                    changed = true;
                }
                Delta::RouteRemoved(dst) => {
                    self.local.remove(dst);
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.refresh_origin();
        }
    }

    /// What to originate: the blocks, and local addresses none of them covers.
    fn wanted_origin(&self) -> BTreeSet<IpNet> {
        let mut out = self.blocks.clone();
        out.extend(
            self.local
                .iter()
                .filter(|l| !self.blocks.iter().any(|b| b.contains(*l))),
        );
        out
    }

    /// Tells the speaker what changed in [`Bgp::wanted_origin`].
    fn refresh_origin(&mut self) {
        let Some(run) = &self.running else {
            self.originated.clear();
            return;
        };
        let want = self.wanted_origin();
        for gone in self.originated.difference(&want) {
            run.withdraw(*gone);
        }
        for new in want.difference(&self.originated) {
            run.originate(*new);
        }
        self.originated = want;
    }

    /// Follows this node's confirmed blocks (nothing while the speaker is stopped): the
    /// blackhole routes and what is originated.
    fn refresh_blocks<L: Netlink>(&mut self, inputs: &BgpInputs, dp: &mut Dataplane<L>) {
        let blocks = if self.running.is_some() {
            inputs.blocks_of(&self.host)
        } else {
            BTreeSet::new()
        };
        if blocks != self.blocks {
            tracing::info!(node = %self.host, blocks = ?blocks, "advertised blocks changed");
            self.blocks = blocks;
            dp.set_blackholes(&self.blocks);
            self.refresh_origin();
        }
    }

    /// Brings the speaker and the dataplane's routing mode in line with the resources, when
    /// they changed; then hands learned route changes to the dataplane.
    pub fn reconcile<L: Netlink>(&mut self, inputs: &BgpInputs, dp: &mut Dataplane<L>) {
        let now = Instant::now();
        let retry_due = self.retry_at.is_some_and(|t| now >= t);
        if self.seen != Some(inputs.generation()) || retry_due {
            self.seen = Some(inputs.generation());
            self.retry_at = None;
            self.apply_inputs(inputs, dp);
            self.refresh_blocks(inputs, dp);
        }
        if let Some(run) = &mut self.running {
            for change in run.drain() {
                match change {
                    // A route to the next hop's own network (a peer exporting its
                    // connected subnet) would replace the connected route the next hop is
                    // reached by and cut off everything learned through it.
                    RouteChange::Learned(r) if r.prefix.contains(&r.next_hop) => {
                        tracing::debug!(prefix = %r.prefix, next_hop = %r.next_hop, "not programming a route that covers its own next hop");
                        dp.set_learned(r.prefix, None);
                    }
                    RouteChange::Learned(r) => dp.set_learned(r.prefix, Some(r.next_hop)),
                    RouteChange::Withdrawn(p) => dp.set_learned(p, None),
                    RouteChange::EndOfRib(peer) => {
                        if let Some((waiting, _)) = &mut self.restart {
                            waiting.remove(&peer);
                        }
                    }
                }
            }
            if let Some((waiting, until)) = &self.restart {
                let peers = self.running.as_ref().map(|r| &r.peers);
                let left = waiting
                    .iter()
                    .filter(|a| peers.is_some_and(|p| p.contains_key(a)))
                    .count();
                if left == 0 || now >= *until {
                    tracing::info!(node = %self.host, stale = dp.stale_routes(), waited_for = left, "graceful restart done: dropping routes not learned again");
                    dp.release_stale();
                    self.restart = None;
                }
            }
            if now >= self.learned_retry_at {
                dp.retry_learned();
                self.learned_retry_at = now + LEARNED_RETRY;
            }
        }
        self.board
            .set_counts(self.originated.len(), dp.learned_routes());
    }

    fn apply_inputs<L: Netlink>(&mut self, inputs: &BgpInputs, dp: &mut Dataplane<L>) {
        let bgp = match self.mode {
            Routing::Bgp => true,
            Routing::Datastore => false,
            Routing::Auto => inputs.has_bgp_spec(&self.host),
        };
        dp.set_remote_from_datastore(!bgp);
        let desired = if bgp {
            inputs
                .desired_with_secrets(&self.host, &self.secret_namespace)
                .map(Some)
        } else {
            Ok(None)
        };
        if !matches!(desired, Ok(Some(_))) {
            // No speaker to resynchronise with: stale routes go with the first write.
            self.restart = None;
            dp.release_stale();
        }
        let (desired, note) = match desired {
            Ok(d) => (d, None),
            Err(why) => {
                tracing::warn!(node = %self.host, reason = %why, "BGP routing without a speaker");
                (None, Some(why.to_string()))
            }
        };
        // A changed identity, AS, cluster or port needs a new speaker.
        let restart = match (&self.running, &desired) {
            (Some(run), Some(d)) => run.settings != d.speaker,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if restart && let Some(run) = self.running.take() {
            self.board.set_speaker(None);
            run.stop();
            dp.clear_learned();
            self.originated.clear();
        }
        let mut note = note;
        if let Some(d) = desired {
            if self.running.is_none() {
                match Running::start(d.speaker.clone(), self.first_start) {
                    Ok(run) => {
                        if std::mem::take(&mut self.first_start) {
                            let until = Instant::now()
                                + Duration::from_secs(u64::from(d.speaker.restart_time));
                            self.restart = Some((d.peers.keys().copied().collect(), until));
                        }
                        self.running = Some(run);
                        self.originated.clear();
                        self.refresh_origin();
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.host, error = %err, retry_in = ?RESTART_DELAY, "BGP speaker did not start");
                        note = Some(err.to_string());
                        self.retry_at = Some(Instant::now() + RESTART_DELAY);
                    }
                }
            }
            if let Some(run) = &mut self.running {
                run.set_peers(&d.peers);
                self.board.set_speaker(Some((
                    run.handle.clone(),
                    run.settings.clone(),
                    run.peers.clone(),
                )));
            }
        }
        self.board.set_mode(bgp, note);
    }

    /// Stops the speaker (its sessions end with a Cease).
    pub fn stop(&mut self) {
        if let Some(run) = self.running.take() {
            self.board.set_speaker(None);
            run.stop();
        }
        self.originated.clear();
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        self.stop();
    }
}
