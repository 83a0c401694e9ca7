//! The sans-I/O speaker: neighbours' sessions and the RIBs together. Every method takes the
//! current time; what the speaker wants done comes out of [`Speaker::poll_action`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use tracing::{debug, info, info_span, warn};

use crate::config::{PeerConfig, PeerStatus, SessionState, SpeakerConfig};
use crate::error::PeerError;
use crate::export::{self, Exported, Target};
use crate::peer::{Peer, PeerEvent};
use crate::rib::{Interner, PeerInfo, Rib, RouteIn, Source, family_of};
use crate::wire::{
    self, AttrFault, Family, FaultAction, GracefulRestart, Notification, PathAttrs, Update, code,
};

#[cfg(test)]
mod tests;

/// Routes to announce to one neighbour, by family and next hop.
type Announcements = BTreeMap<(Family, IpAddr), Vec<(Arc<PathAttrs>, IpNet)>>;

/// Identifies one TCP connection between the speaker and its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the speaker asks its driver to do, or tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection, then call [`Speaker::connected`] or [`Speaker::connect_failed`].
    Connect {
        /// The id to report back.
        conn: ConnId,
        /// Neighbour address and port.
        remote: SocketAddr,
        /// Address to bind before connecting, if configured.
        local: Option<IpAddr>,
    },
    /// Write bytes to a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Encoded messages.
        data: Vec<u8>,
    },
    /// Close a connection once the bytes queued before this action are written.
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// The best learned route to a prefix changed: program it into the kernel, or remove it.
    Route(RouteChange),
}

/// A change of best learned route, for the agent to program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// The prefix is now reached through this route (new, or replacing the previous one).
    Learned(LearnedRoute),
    /// No learned route to the prefix any more (none left, or a local route took over).
    Withdrawn(IpNet),
    /// The neighbour has sent End-of-RIB for every family of its session: its initial table
    /// is complete (after the route changes it caused). A restarting agent waits for this
    /// from every neighbour before it drops routes its previous run left in the kernel.
    EndOfRib(IpAddr),
}

/// A best route learned from a neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoute {
    /// Destination.
    pub prefix: IpNet,
    /// Where to send traffic.
    pub next_hop: IpAddr,
    /// The neighbour it came from.
    pub peer: IpAddr,
    /// Its path attributes.
    pub attrs: Arc<PathAttrs>,
}

/// The speaker. See the crate documentation.
#[derive(Debug)]
pub struct Speaker {
    cfg: SpeakerConfig,
    peers: BTreeMap<IpAddr, Peer>,
    owners: HashMap<ConnId, IpAddr>,
    rib: Rib,
    /// Every attribute set the RIBs hold, once.
    interner: Interner,
    adj_out: HashMap<IpAddr, HashMap<IpNet, Exported>>,
    dirty: BTreeSet<IpNet>,
    next_id: u64,
    actions: VecDeque<Action>,
}

impl Speaker {
    /// A speaker with no neighbours and no routes.
    pub fn new(cfg: SpeakerConfig) -> Self {
        Self {
            cfg,
            peers: BTreeMap::new(),
            owners: HashMap::new(),
            rib: Rib::default(),
            interner: Interner::default(),
            adj_out: HashMap::new(),
            dirty: BTreeSet::new(),
            next_id: 0,
            actions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SpeakerConfig {
        &self.cfg
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::timeout`] must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(Peer::next_deadline).min()
    }

    // ===== configuration and local routes =====

    /// Adds a neighbour (replacing one at the same address) and starts its session. A
    /// neighbour whose settings differ only in the prefix limit keeps its session: the new
    /// limit applies to it at once, and one held down for the old limit is tried again.
    pub fn add_peer(&mut self, now: Instant, cfg: PeerConfig) {
        let addr = cfg.addr;
        if let Some(peer) = self.peers.get(&addr) {
            let limit_only = PeerConfig {
                max_prefixes: cfg.max_prefixes,
                ..peer.cfg.clone()
            } == cfg;
            if limit_only {
                self.set_limit(now, addr, cfg.max_prefixes);
                return;
            }
            self.remove_peer(now, addr);
        }
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        info!(asn = cfg.asn, "neighbour added");
        let mut peer = Peer::new(cfg, now);
        let mut out = Vec::new();
        peer.start(now, &self.cfg, &mut self.next_id, &mut out);
        self.peers.insert(addr, peer);
        self.absorb(addr, out);
    }

    /// Removes a neighbour: its session ends with Cease (peer de-configured) and its routes go.
    pub fn remove_peer(&mut self, now: Instant, addr: IpAddr) {
        let Some(mut peer) = self.peers.remove(&addr) else {
            return;
        };
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        let n = Notification::new(code::CEASE, code::CEASE_PEER_DECONFIGURED);
        peer.shutdown(n, PeerError::AdminShutdown, true, now, &self.cfg, &mut out);
        self.absorb(addr, out);
        self.adj_out.remove(&addr);
        self.dirty.extend(self.rib.remove_in(&addr, None, false));
        self.flush();
    }

    /// Restarts a neighbour held down (for instance after its prefix limit was exceeded).
    pub fn reset_peer(&mut self, now: Instant, addr: IpAddr) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        peer.reset(now, &self.cfg, &mut self.next_id, &mut out);
        self.absorb(addr, out);
    }

    fn set_limit(&mut self, now: Instant, addr: IpAddr, limit: Option<u32>) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        if peer.cfg.max_prefixes == limit {
            return;
        }
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        peer.set_limit(limit, now, &self.cfg, &mut self.next_id, &mut out);
        self.absorb(addr, out);
        self.enforce_limit(addr, Family::IPV4_UNICAST, now);
    }

    /// Originates a prefix (the agent's IPAM blocks), with optional communities.
    pub fn originate(&mut self, prefix: IpNet, communities: Vec<u32>) {
        self.set_origin([(prefix, Some(communities))]);
    }

    /// Stops originating a prefix.
    pub fn withdraw(&mut self, prefix: IpNet) {
        self.set_origin([(prefix, None)]);
    }

    /// Originates (`Some(communities)`) or stops originating (`None`) many prefixes, then
    /// updates neighbours once: the prefixes sharing attributes go out in full UPDATEs.
    pub fn set_origin(&mut self, changes: impl IntoIterator<Item = (IpNet, Option<Vec<u32>>)>) {
        for (prefix, communities) in changes {
            let prefix = prefix.trunc();
            let attrs = communities.map(|communities| {
                self.interner.intern(PathAttrs {
                    origin: Some(wire::Origin::Igp),
                    as_path: Some(wire::AsPath::default()),
                    communities,
                    ..PathAttrs::default()
                })
            });
            if self.rib.set_local(prefix, attrs) {
                self.dirty.insert(prefix);
            }
        }
        self.flush();
    }

    /// Prefixes we originate.
    pub fn originated(&self) -> Vec<IpNet> {
        self.rib.local_prefixes().copied().collect()
    }

    /// Asks a neighbour to send its routes of a family again (RFC 2918); false if it cannot.
    pub fn request_refresh(&mut self, addr: IpAddr, family: Family) -> bool {
        let Some(peer) = self.peers.get(&addr) else {
            return false;
        };
        let mut out = Vec::new();
        let sent = peer.request_refresh(family, &mut out);
        self.absorb(addr, out);
        sent
    }

    // ===== connections =====

    /// A neighbour connected to us. Returns the connection's id, or `None` to close it (not a
    /// configured neighbour, or its session refuses the connection).
    pub fn accept(&mut self, now: Instant, remote: IpAddr, local: IpAddr) -> Option<ConnId> {
        let Some(peer) = self.peers.get_mut(&remote) else {
            debug!(%remote, "connection from an unknown address refused");
            return None;
        };
        let _span = info_span!("bgp_peer", peer = %remote).entered();
        let mut out = Vec::new();
        let (conn, events) = peer.accept(local, now, &self.cfg, &mut self.next_id, &mut out);
        if let Some(id) = conn {
            self.owners.insert(id, remote);
        }
        self.absorb(remote, out);
        self.handle_events(remote, events, now);
        conn
    }

    /// An outgoing connection is up; `local` is our end's address.
    pub fn connected(&mut self, now: Instant, conn: ConnId, local: IpAddr) {
        let Some((addr, peer)) = self
            .owner(conn)
            .and_then(|a| Some((a, self.peers.get_mut(&a)?)))
        else {
            self.actions.push_back(Action::Close { conn });
            return;
        };
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        if !peer.connected(conn, local, now, &self.cfg, &mut out) {
            out.push(Action::Close { conn });
        }
        self.absorb(addr, out);
    }

    /// An outgoing connection attempt failed.
    pub fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        if let Some(addr) = self.owner(conn)
            && let Some(peer) = self.peers.get_mut(&addr)
        {
            let _span = info_span!("bgp_peer", peer = %addr).entered();
            debug!("connection attempt failed");
            peer.connect_failed(conn, now);
        }
        self.owners.remove(&conn);
    }

    /// Bytes arrived on a connection.
    pub fn received(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some((addr, peer)) = self
            .owner(conn)
            .and_then(|a| Some((a, self.peers.get_mut(&a)?)))
        else {
            return;
        };
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        let events = peer.received(conn, data, now, &self.cfg, &mut out);
        self.absorb(addr, out);
        self.handle_events(addr, events, now);
    }

    /// A connection was closed by the other end or failed.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        let Some((addr, peer)) = self
            .owner(conn)
            .and_then(|a| Some((a, self.peers.get_mut(&a)?)))
        else {
            return;
        };
        let _span = info_span!("bgp_peer", peer = %addr).entered();
        let mut out = Vec::new();
        let events = peer.closed(conn, now, &self.cfg, &mut out);
        self.absorb(addr, out);
        self.owners.remove(&conn);
        self.handle_events(addr, events, now);
    }

    /// Runs the timers due at `now`.
    pub fn timeout(&mut self, now: Instant) {
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            let Some(peer) = self.peers.get_mut(&addr) else {
                continue;
            };
            let _span = info_span!("bgp_peer", peer = %addr).entered();
            let mut out = Vec::new();
            let events = peer.poll_timers(now, &self.cfg, &mut self.next_id, &mut out);
            let restart_over = peer.gr_restart_at.is_some_and(|t| t <= now);
            let stale_over = peer.stale_until.is_some_and(|t| t <= now);
            if restart_over {
                peer.gr_restart_at = None;
            }
            if stale_over {
                peer.stale_until = None;
            }
            self.absorb(addr, out);
            if restart_over || stale_over {
                let gone = self.rib.remove_in(&addr, None, true);
                info!(
                    routes = gone.len(),
                    "graceful restart over: stale routes removed"
                );
                self.dirty.extend(gone);
            }
            self.handle_events(addr, events, now);
        }
        self.flush();
    }

    fn owner(&self, conn: ConnId) -> Option<IpAddr> {
        let addr = self.owners.get(&conn)?;
        self.peers.get(addr)?.owns(conn).then_some(*addr)
    }

    /// Queues a peer's actions, tracking which connections belong to it.
    fn absorb(&mut self, addr: IpAddr, out: Vec<Action>) {
        for action in out {
            match &action {
                Action::Connect { conn, .. } => {
                    self.owners.insert(*conn, addr);
                }
                Action::Close { conn } => {
                    self.owners.remove(conn);
                }
                _ => {}
            }
            self.actions.push_back(action);
        }
    }

    // ===== session events into the RIBs =====

    fn handle_events(&mut self, addr: IpAddr, events: Vec<PeerEvent>, now: Instant) {
        for event in events {
            match event {
                PeerEvent::Up => self.session_up(addr, now),
                PeerEvent::Down { graceful } => self.session_down(addr, graceful, now),
                PeerEvent::Update(update, faults) => self.import(addr, *update, &faults, now),
                PeerEvent::RouteRefresh(family) => {
                    if let Some(table) = self.adj_out.get_mut(&addr) {
                        table.retain(|p, _| family_of(p) != family);
                    }
                    let all: Vec<IpNet> = self
                        .rib
                        .loc_rib()
                        .map(|(p, _)| *p)
                        .filter(|p| family_of(p) == family)
                        .collect();
                    self.sync_peer(addr, all);
                }
            }
        }
        self.flush();
    }

    fn session_up(&mut self, addr: IpAddr, now: Instant) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(session) = peer.session.clone() else {
            return;
        };
        peer.end_of_rib.clear();
        info!(router_id = %session.router_id, families = ?session.families, "session established");
        self.rib.set_info(
            addr,
            PeerInfo {
                ebgp: peer.cfg.asn != self.cfg.asn,
                router_id: session.router_id,
                rr_client: peer.cfg.rr_client,
            },
        );
        peer.gr_restart_at = None;
        // Stale routes from before a graceful restart: families the neighbour no longer
        // preserves go now; the rest wait for its End-of-RIB (RFC 4724 4.2).
        if self.rib.stale_len(&addr) > 0 {
            let kept: Vec<Family> = session
                .peer_gr
                .iter()
                .flat_map(|gr| gr.families.iter())
                .filter(|f| f.forwarding_preserved)
                .map(|f| f.family)
                .collect();
            for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
                if !kept.contains(&family) {
                    let gone = self.rib.remove_in(&addr, Some(family), true);
                    self.dirty.extend(gone);
                }
            }
            peer.stale_until = Some(now + self.cfg.stale_time);
        }
        self.adj_out.insert(addr, HashMap::new());
        let all: Vec<IpNet> = self.rib.loc_rib().map(|(p, _)| *p).collect();
        self.flush();
        self.sync_peer(addr, all);
        // End-of-RIB after the initial table, for every family (RFC 4724 2).
        if let Some(peer) = self.peers.get(&addr) {
            let mut out = Vec::new();
            for &family in &session.families {
                if let Ok(data) = wire::encode(
                    &wire::Message::Update(Update::end_of_rib(family)),
                    session.ctx,
                ) {
                    peer.send_raw(data, &mut out);
                }
            }
            self.absorb(addr, out);
        }
    }

    fn session_down(&mut self, addr: IpAddr, graceful: Option<GracefulRestart>, now: Instant) {
        self.adj_out.remove(&addr);
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        peer.stale_until = None;
        match graceful {
            Some(gr) if gr.restart_time > 0 && self.rib.adj_in_len(&addr) > 0 => {
                self.rib.mark_stale(&addr);
                for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
                    if !gr.families.iter().any(|f| f.family == family) {
                        self.dirty
                            .extend(self.rib.remove_in(&addr, Some(family), false));
                    }
                }
                let secs = u64::from(gr.restart_time);
                peer.gr_restart_at = Some(now + std::time::Duration::from_secs(secs));
                info!(
                    restart_time = secs,
                    "neighbour may be restarting: routes kept as stale"
                );
            }
            _ => {
                let gone = self.rib.remove_in(&addr, None, false);
                self.dirty.extend(gone);
            }
        }
    }

    /// An UPDATE from an Established neighbour into its Adj-RIB-In.
    fn import(&mut self, addr: IpAddr, update: Update, faults: &[AttrFault], now: Instant) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(session) = peer.session.clone() else {
            return;
        };
        for f in faults {
            warn!(attr = f.code, action = ?f.action, reason = f.reason, "malformed attribute");
        }
        if let Some(family) = update.end_of_rib_family() {
            debug!(%family, "end-of-rib");
            if peer.stale_until.is_some() {
                let gone = self.rib.remove_in(&addr, Some(family), true);
                self.dirty.extend(gone);
                if self.rib.stale_len(&addr) == 0 {
                    peer.stale_until = None;
                }
            }
            if !peer.end_of_rib.contains(&family) {
                peer.end_of_rib.push(family);
                if session.families.iter().all(|f| peer.end_of_rib.contains(f)) {
                    // After the withdrawals the End-of-RIB caused.
                    self.flush();
                    self.actions
                        .push_back(Action::Route(RouteChange::EndOfRib(addr)));
                }
            }
            return;
        }
        let ebgp = peer.cfg.asn != self.cfg.asn;
        let mut withdrawn: Vec<IpNet> = update.withdrawn.iter().map(|&n| IpNet::V4(n)).collect();
        if let Some(u) = &update.mp_unreach {
            withdrawn.extend(u.withdrawn.iter().copied());
        }
        let mut announced: Vec<(IpNet, Option<IpAddr>)> = update
            .nlri
            .iter()
            .map(|&n| (IpNet::V4(n), update.attrs.next_hop.map(IpAddr::V4)))
            .collect();
        if let Some(m) = &update.mp_reach {
            announced.extend(m.nlri.iter().map(|&n| (n, Some(m.next_hop))));
        }
        let families = &session.families;
        announced.retain(|(p, _)| families.contains(&family_of(p)));
        withdrawn.retain(|p| families.contains(&family_of(p)));

        let mut attrs = update.attrs;
        let reject = if faults
            .iter()
            .any(|f| f.action == FaultAction::TreatAsWithdraw)
        {
            Some("treat-as-withdraw")
        } else {
            let path = attrs.as_path.clone().unwrap_or_default();
            if ebgp && path.contains(self.cfg.asn) {
                Some("AS path loop")
            } else if ebgp && path.first_as() != Some(peer.cfg.asn) {
                // RFC 4271 6.3 (RFC 7606 makes it treat-as-withdraw).
                Some("first AS is not the neighbour's")
            } else if !ebgp && attrs.originator_id == Some(self.cfg.router_id) {
                Some("ORIGINATOR_ID is ours")
            } else if !ebgp
                && attrs
                    .cluster_list
                    .contains(&self.cfg.cluster_id.unwrap_or(self.cfg.router_id))
            {
                Some("CLUSTER_LIST loop")
            } else {
                None
            }
        };
        if ebgp {
            // Attributes that only mean something inside one AS (RFC 7606 7.5, RFC 4456 8).
            attrs.local_pref = None;
            attrs.originator_id = None;
            attrs.cluster_list.clear();
        }
        attrs.next_hop = None;
        let attrs = self.interner.intern(attrs);
        for p in withdrawn {
            if self.rib.set_in(addr, p, None) {
                self.dirty.insert(p);
            }
        }
        for (p, nh) in announced {
            let bad_nh = nh.is_none_or(|nh| {
                nh.is_unspecified() || nh.is_multicast() || Some(nh) == session.local_addr
            });
            let route = match (reject, bad_nh, nh) {
                (None, false, Some(next_hop)) => Some(RouteIn {
                    attrs: attrs.clone(),
                    next_hop,
                    stale: false,
                }),
                _ => {
                    debug!(prefix = %p, reason = reject.unwrap_or("bad next hop"), "route not accepted");
                    None
                }
            };
            if self.rib.set_in(addr, p, route) {
                self.dirty.insert(p);
            }
        }
        let family = update
            .mp_reach
            .as_ref()
            .map_or(Family::IPV4_UNICAST, |m| m.family);
        self.enforce_limit(addr, family, now);
    }

    /// Cuts an Established neighbour off when it holds more prefixes than its limit; `family`
    /// is the one that went over, for the NOTIFICATION (RFC 4486 4).
    fn enforce_limit(&mut self, addr: IpAddr, family: Family, now: Instant) {
        let Some(peer) = self.peers.get_mut(&addr) else {
            return;
        };
        let received = self.rib.adj_in_len(&addr);
        let Some(limit) = peer.cfg.max_prefixes else {
            return;
        };
        if peer.session.is_none() || received <= usize::try_from(limit).unwrap_or(usize::MAX) {
            return;
        }
        let mut data = family.afi.to_be_bytes().to_vec();
        data.push(family.safi);
        data.extend_from_slice(&limit.to_be_bytes());
        let n = Notification {
            code: code::CEASE,
            subcode: code::CEASE_MAX_PREFIX,
            data,
        };
        let mut out = Vec::new();
        let reason = PeerError::MaxPrefixExceeded { limit, received };
        let events = peer.cut_off(n, reason, now, &self.cfg, &mut out);
        self.absorb(addr, out);
        self.handle_events(addr, events, now);
    }

    // ===== Loc-RIB to the agent and to Adj-RIBs-Out =====

    /// Reselects every dirty prefix, reports learned-route changes and updates every
    /// Established neighbour.
    fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut changed = Vec::new();
        for prefix in dirty {
            let Some((old, new)) = self.rib.reselect(prefix) else {
                continue;
            };
            changed.push(prefix);
            let was_learned = old.as_ref().is_some_and(|b| b.source != Source::Local);
            match new {
                Some(best) if best.source != Source::Local => {
                    if let (Source::Peer(peer), Some(next_hop)) = (best.source, best.next_hop) {
                        self.actions
                            .push_back(Action::Route(RouteChange::Learned(LearnedRoute {
                                prefix,
                                next_hop,
                                peer,
                                attrs: best.attrs,
                            })));
                    }
                }
                _ if was_learned => {
                    self.actions
                        .push_back(Action::Route(RouteChange::Withdrawn(prefix)));
                }
                _ => {}
            }
        }
        let established: Vec<IpAddr> = self.adj_out.keys().copied().collect();
        for addr in established {
            self.sync_peer(addr, changed.clone());
        }
    }

    /// Brings one neighbour's Adj-RIB-Out in line with the Loc-RIB for some prefixes and sends
    /// the difference.
    fn sync_peer(&mut self, addr: IpAddr, prefixes: Vec<IpNet>) {
        let Some(peer) = self.peers.get(&addr) else {
            return;
        };
        let Some(session) = &peer.session else {
            return;
        };
        let Some(table) = self.adj_out.get_mut(&addr) else {
            return;
        };
        let local = session.local_addr;
        let target = Target {
            addr,
            ibgp: peer.cfg.asn == self.cfg.asn,
            rr_client: peer.cfg.rr_client,
            next_hop_self: peer.cfg.next_hop_self,
            next_hop_keep: peer.cfg.next_hop_keep,
            shared_subnets: &peer.cfg.shared_subnets,
            self_v4: peer.cfg.next_hop_v4.or(match local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            self_v6: peer.cfg.next_hop_v6.or(match local {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            }),
            families: &session.families,
        };
        let mut announce: Announcements = BTreeMap::new();
        let mut withdraw: BTreeMap<Family, Vec<IpNet>> = BTreeMap::new();
        for prefix in prefixes {
            let desired = self.rib.best(&prefix).and_then(|best| {
                let from = match best.source {
                    Source::Peer(p) => self.rib.info(&p),
                    Source::Local => None,
                };
                export::export(&prefix, best, from, &target, &self.cfg)
            });
            if table.get(&prefix) == desired.as_ref() {
                continue;
            }
            match desired {
                Some(mut e) => {
                    e.attrs = self.interner.intern_arc(e.attrs);
                    announce
                        .entry((family_of(&prefix), e.next_hop))
                        .or_default()
                        .push((e.attrs.clone(), prefix));
                    table.insert(prefix, e);
                }
                None => {
                    if table.remove(&prefix).is_some() {
                        withdraw.entry(family_of(&prefix)).or_default().push(prefix);
                    }
                }
            }
        }
        let mut data = Vec::new();
        for (family, prefixes) in withdraw {
            for m in wire::encode_withdraw(family, &prefixes, session.ctx) {
                data.extend(m);
            }
        }
        for ((family, next_hop), mut routes) in announce {
            // Prefixes sharing attributes go in the same messages.
            routes.sort_by(|a, b| Arc::as_ptr(&a.0).cmp(&Arc::as_ptr(&b.0)));
            let mut groups: Vec<(Arc<PathAttrs>, Vec<IpNet>)> = Vec::new();
            for (attrs, prefix) in routes {
                match groups.iter_mut().find(|(a, _)| *a == attrs) {
                    Some((_, list)) => list.push(prefix),
                    None => groups.push((attrs, vec![prefix])),
                }
            }
            for (attrs, prefixes) in groups {
                match wire::encode_announce(family, &attrs, next_hop, None, &prefixes, session.ctx)
                {
                    Ok(msgs) => msgs.into_iter().for_each(|m| data.extend(m)),
                    Err(err) => warn!(%err, "routes too large to advertise"),
                }
            }
        }
        let mut out = Vec::new();
        peer.send_raw(data, &mut out);
        self.absorb(addr, out);
    }

    // ===== status =====

    /// Every neighbour's status.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(addr, p)| PeerStatus {
                addr: *addr,
                asn: p.cfg.asn,
                state: p.state(),
                since: p.since(),
                router_id: p.session.as_ref().map(|s| s.router_id),
                families: p
                    .session
                    .as_ref()
                    .map(|s| s.families.clone())
                    .unwrap_or_default(),
                prefixes_received: self.rib.adj_in_len(addr),
                prefixes_stale: self.rib.stale_len(addr),
                prefixes_advertised: self.adj_out.get(addr).map_or(0, HashMap::len),
                last_error: p.last_error.clone(),
                disabled: p.disabled.clone(),
                retry_at: p.retry_at(),
                max_prefixes: p.cfg.max_prefixes,
                flaps: p.flaps,
            })
            .collect()
    }

    /// The state of one neighbour's session.
    pub fn session_state(&self, addr: IpAddr) -> Option<SessionState> {
        self.peers.get(&addr).map(Peer::state)
    }

    /// Every best route learned from neighbours (what the agent should have in the kernel).
    pub fn learned_routes(&self) -> Vec<LearnedRoute> {
        let mut routes: Vec<LearnedRoute> = self
            .rib
            .loc_rib()
            .filter_map(|(prefix, best)| match (best.source, best.next_hop) {
                (Source::Peer(peer), Some(next_hop)) => Some(LearnedRoute {
                    prefix: *prefix,
                    next_hop,
                    peer,
                    attrs: best.attrs.clone(),
                }),
                _ => None,
            })
            .collect();
        routes.sort_by_key(|r| r.prefix);
        routes
    }
}
