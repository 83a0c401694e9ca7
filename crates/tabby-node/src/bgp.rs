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
//! Until block IPAM exists, a node originates one /32 (/128) per local workload address; the
//! engine's `RouteUpdated` with a local target is exactly that set.

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
    /// Destinations of routes to local workloads (what we originate while running).
    local: BTreeSet<IpNet>,
    board: Arc<StatusBoard>,
    retry_at: Option<Instant>,
    learned_retry_at: Instant,
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
            board,
            retry_at: None,
            learned_retry_at: Instant::now(),
        }
    }

    /// Whether the speaker runs.
    pub fn running(&self) -> bool {
        self.running.is_some()
    }

    /// Follows the engine's routes to local workloads; `full` when `deltas` describe
    /// everything from nothing (a resync).
    pub fn observe(&mut self, deltas: &[Delta], full: bool) {
        let mut local = if full {
            BTreeSet::new()
        } else {
            self.local.clone()
        };
        for d in deltas {
            match d {
                Delta::RouteUpdated(r) => {
                    if matches!(r.target, RouteTarget::Local { .. }) {
                        local.insert(r.dst);
                    } else {
                        local.remove(&r.dst);
                    }
                }
                Delta::RouteRemoved(dst) => {
                    local.remove(dst);
                }
                _ => {}
            }
        }
        if let Some(run) = &self.running {
            for gone in self.local.difference(&local) {
                run.withdraw(*gone);
            }
            for new in local.difference(&self.local) {
                run.originate(*new);
            }
        }
        self.local = local;
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
                }
            }
            if now >= self.learned_retry_at {
                dp.retry_learned();
                self.learned_retry_at = now + LEARNED_RETRY;
            }
        }
        self.board.set_counts(
            if self.running.is_some() {
                self.local.len()
            } else {
                0
            },
            dp.learned_routes(),
        );
    }

    fn apply_inputs<L: Netlink>(&mut self, inputs: &BgpInputs, dp: &mut Dataplane<L>) {
        let bgp = match self.mode {
            Routing::Bgp => true,
            Routing::Datastore => false,
            Routing::Auto => inputs.has_bgp_spec(&self.host),
        };
        dp.set_remote_from_datastore(!bgp);
        let desired = if bgp {
            inputs.desired(&self.host).map(Some)
        } else {
            Ok(None)
        };
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
        }
        let mut note = note;
        if let Some(d) = desired {
            if self.running.is_none() {
                match Running::start(d.speaker.clone()) {
                    Ok(run) => {
                        for p in &self.local {
                            run.originate(*p);
                        }
                        self.running = Some(run);
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
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        self.stop();
    }
}
