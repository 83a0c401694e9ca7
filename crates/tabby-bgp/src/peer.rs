//! One neighbour's session: the RFC 4271 section 8 finite state machine, with its timers,
//! connection collision detection (6.8), capability negotiation and idle-hold backoff.
//!
//! RFC 4271 describes one state machine per TCP connection; a neighbour can briefly have two
//! (ours and theirs) until collision detection keeps one. So a [`Peer`] holds up to two
//! [`Conn`]s, and its reported state is that of the most advanced one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::config::{PeerConfig, SessionState, SpeakerConfig};
use crate::error::PeerError;
use crate::wire::{
    self, AttrFault, Capability, Context, DecodeError, Family, GrFamily, GracefulRestart, Message,
    Notification, Open, Update, code,
};
use crate::{Action, ConnId};

#[cfg(test)]
mod collision_tests;
#[cfg(test)]
mod tests;

/// RFC 4271 8: the hold time used until OPENs are exchanged ("a large value", 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ConnState {
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    outbound: bool,
    state: ConnState,
    buf: Vec<u8>,
    local: Option<IpAddr>,
    open: Option<Open>,
    hold: Duration,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
}

/// What was negotiated on the Established connection.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) conn: ConnId,
    pub(crate) ctx: Context,
    pub(crate) families: Vec<Family>,
    pub(crate) router_id: Ipv4Addr,
    pub(crate) local_addr: Option<IpAddr>,
    pub(crate) route_refresh: bool,
    /// The neighbour's graceful restart capability on this session.
    pub(crate) peer_gr: Option<GracefulRestart>,
}

/// What a session tells the speaker.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    /// The session reached Established.
    Up,
    /// The Established session ended. `graceful`: the neighbour's graceful restart capability,
    /// when RFC 4724 says to keep its routes as stale (the connection dropped without a
    /// NOTIFICATION).
    Down { graceful: Option<GracefulRestart> },
    /// An UPDATE arrived.
    Update(Box<Update>, Vec<AttrFault>),
    /// A ROUTE-REFRESH arrived.
    RouteRefresh(Family),
}

/// One configured neighbour.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) cfg: PeerConfig,
    state: SessionState,
    since: Instant,
    conns: Vec<Conn>,
    connect_retry_at: Option<Instant>,
    idle_until: Option<Instant>,
    /// Sessions failed since the last stable one (damping).
    failures: u32,
    established_at: Option<Instant>,
    pub(crate) session: Option<Session>,
    /// Graceful restart (receiving side): when the neighbour's restart time runs out while it
    /// is down, its stale routes go.
    pub(crate) gr_restart_at: Option<Instant>,
    /// Graceful restart: when stale routes of the re-established neighbour go if its
    /// End-of-RIB has not come.
    pub(crate) stale_until: Option<Instant>,
    /// Families of the current session whose End-of-RIB has come.
    pub(crate) end_of_rib: Vec<Family>,
    pub(crate) last_error: Option<PeerError>,
    pub(crate) disabled: Option<PeerError>,
    /// When a session held down for its prefix limit is tried again.
    disabled_until: Option<Instant>,
    /// Prefix limit cut-offs since the last stable session (their hold doubles).
    cutoffs: u32,
    pub(crate) flaps: u32,
    /// When the peer was configured and how many timers it has jittered: with our router ID,
    /// the seed of the jitter.
    epoch: Instant,
    draws: u64,
}

fn send(out: &mut Vec<Action>, conn: ConnId, msg: &Message, ctx: Context) {
    match wire::encode(msg, ctx) {
        Ok(data) => out.push(Action::Send { conn, data }),
        // Only an OPEN with absurdly many capabilities could fail; ours has at most six.
        Err(err) => warn!(%err, "message not sent"),
    }
}

impl Peer {
    pub(crate) fn new(cfg: PeerConfig, now: Instant) -> Self {
        Self {
            cfg,
            state: SessionState::Idle,
            since: now,
            conns: Vec::new(),
            connect_retry_at: None,
            idle_until: None,
            failures: 0,
            established_at: None,
            session: None,
            gr_restart_at: None,
            stale_until: None,
            end_of_rib: Vec::new(),
            last_error: None,
            disabled: None,
            disabled_until: None,
            cutoffs: 0,
            flaps: 0,
            epoch: now,
            draws: 0,
        }
    }

    /// RFC 4271 10: a timer shortened by up to a quarter, so that two speakers that failed
    /// together do not retry together (and collide again). There is no random source in the
    /// sans-I/O core: the factor comes from our router ID, the neighbour and the time.
    fn jittered(&mut self, d: Duration, now: Instant, sc: &SpeakerConfig) -> Duration {
        let mut h = DefaultHasher::new();
        (sc.router_id, self.cfg.addr, self.draws).hash(&mut h);
        now.saturating_duration_since(self.epoch).hash(&mut h);
        self.draws += 1;
        let draw = u32::try_from(h.finish() % 1024).unwrap_or(0);
        d.mul_f64(0.75 + 0.25 * f64::from(draw) / 1024.0)
    }

    pub(crate) fn state(&self) -> SessionState {
        self.state
    }

    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// When a session held down or damped is next tried.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.disabled_until.or(self.idle_until)
    }

    /// Whether the neighbour is held down for exceeding its prefix limit.
    pub(crate) fn limit_exceeded(&self) -> bool {
        matches!(self.disabled, Some(PeerError::MaxPrefixExceeded { .. }))
    }

    /// Whether the Established session (if any) has lasted long enough to reset the backoffs.
    fn stable(&self, now: Instant, sc: &SpeakerConfig) -> bool {
        self.established_at
            .is_some_and(|t| now.saturating_duration_since(t) >= sc.stable_after)
    }

    pub(crate) fn is_ibgp(&self, sc: &SpeakerConfig) -> bool {
        self.cfg.asn == sc.asn
    }

    /// The families we offer this neighbour.
    fn families<'a>(&'a self, sc: &'a SpeakerConfig) -> &'a [Family] {
        self.cfg.families.as_deref().unwrap_or(&sc.families)
    }

    /// The OPEN we send.
    fn our_open(&self, sc: &SpeakerConfig) -> Open {
        let mut capabilities: Vec<Capability> = self
            .families(sc)
            .iter()
            .map(|&f| Capability::Multiprotocol(f))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAs(sc.asn));
        if let Some(gr) = sc.graceful_restart {
            capabilities.push(Capability::GracefulRestart(GracefulRestart {
                restarting: gr.restarting,
                notification: false,
                restart_time: gr.restart_time.min(0x0fff),
                // The agent leaves routes in the kernel across its own restarts, so forwarding
                // is preserved for every family.
                families: self
                    .families(sc)
                    .iter()
                    .map(|&family| GrFamily {
                        family,
                        forwarding_preserved: true,
                    })
                    .collect(),
            }));
        }
        Open {
            my_as: Open::two_octet(sc.asn),
            hold_time: sc.hold_time,
            bgp_id: sc.router_id,
            capabilities,
        }
    }

    /// Recomputes the reported state from the connections.
    fn refresh_state(&mut self, now: Instant) {
        let best = self.conns.iter().map(|c| c.state).max();
        let state = match best {
            Some(ConnState::Established) => SessionState::Established,
            Some(ConnState::OpenConfirm) => SessionState::OpenConfirm,
            Some(ConnState::OpenSent) => SessionState::OpenSent,
            Some(ConnState::Connecting) => SessionState::Connect,
            None if self.disabled.is_some() || self.idle_until.is_some() => SessionState::Idle,
            None => SessionState::Active,
        };
        if state != self.state {
            info!(from = ?self.state, to = ?state, "session state");
            self.state = state;
            self.since = now;
        }
    }

    /// Leaves Idle: connects out (unless passive) and accepts connections.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        sc: &SpeakerConfig,
        ids: &mut u64,
        out: &mut Vec<Action>,
    ) {
        if self.disabled.is_some() {
            return;
        }
        self.idle_until = None;
        if !self.cfg.passive {
            self.connect(now, sc, ids, out);
        }
        self.refresh_state(now);
    }

    fn connect(&mut self, now: Instant, sc: &SpeakerConfig, ids: &mut u64, out: &mut Vec<Action>) {
        *ids += 1;
        let id = ConnId(*ids);
        self.conns.push(Conn {
            id,
            outbound: true,
            state: ConnState::Connecting,
            buf: Vec::new(),
            local: None,
            open: None,
            hold: OPEN_HOLD,
            hold_at: None,
            keepalive_at: None,
        });
        self.connect_retry_at = Some(now + self.jittered(sc.connect_retry, now, sc));
        out.push(Action::Connect {
            conn: id,
            remote: std::net::SocketAddr::new(self.cfg.addr, self.cfg.port),
            local: self.cfg.local_addr,
        });
    }

    /// The earliest timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let conn_timers = self
            .conns
            .iter()
            .flat_map(|c| [c.hold_at, c.keepalive_at])
            .flatten();
        [
            self.connect_retry_at,
            self.idle_until,
            self.disabled_until,
            self.gr_restart_at,
            self.stale_until,
        ]
        .into_iter()
        .flatten()
        .chain(conn_timers)
        .min()
    }

    /// Runs every timer due at `now`.
    pub(crate) fn poll_timers(
        &mut self,
        now: Instant,
        sc: &SpeakerConfig,
        ids: &mut u64,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        if self.disabled_until.is_some_and(|t| t <= now) {
            info!("prefix limit hold over: trying the session again");
            self.disabled_until = None;
            self.disabled = None;
            self.start(now, sc, ids, out);
        }
        if self.idle_until.is_some_and(|t| t <= now) {
            self.idle_until = None;
            self.start(now, sc, ids, out);
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            if self.conns.iter().any(|c| c.state > ConnState::Connecting) {
                self.connect_retry_at = None;
            } else {
                // RFC 4271 8.2.2: drop the attempt in progress and try again.
                for c in self.conns.drain(..) {
                    if c.outbound {
                        let md5 = self.cfg.md5_key.is_some();
                        self.last_error = Some(PeerError::NoAnswer { md5 });
                    }
                    out.push(Action::Close { conn: c.id });
                }
                if self.cfg.passive {
                    self.connect_retry_at = None;
                } else {
                    self.connect(now, sc, ids, out);
                }
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            if c.hold_at.is_some_and(|t| t <= now) {
                let id = c.id;
                let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0);
                events.extend(self.drop_conn(
                    id,
                    now,
                    sc,
                    Some(n),
                    PeerError::HoldTimerExpired,
                    out,
                ));
                continue;
            }
            if let Some(t) = c.keepalive_at
                && t <= now
            {
                send(out, c.id, &Message::Keepalive, Context::default());
                c.keepalive_at = Some(now + keepalive_interval(c.hold));
            }
            i += 1;
        }
        self.refresh_state(now);
        events
    }

    /// An outgoing connection we asked for is up. Returns false when that attempt was
    /// abandoned meanwhile (the caller closes it).
    pub(crate) fn connected(
        &mut self,
        conn: ConnId,
        local: IpAddr,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> bool {
        let open = self.our_open(sc);
        if self
            .conns
            .iter()
            .any(|c| c.id != conn && c.state >= ConnState::OpenConfirm)
        {
            // Collision (RFC 4271 6.8) settled before it starts: the neighbour has already
            // answered on the other connection, and without our OPEN it cannot pick this one.
            debug!("outgoing connection dropped: another one is past OpenSent");
            self.conns.retain(|c| c.id != conn);
            return false;
        }
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return false;
        };
        c.state = ConnState::OpenSent;
        c.local = Some(local);
        c.hold_at = Some(now + OPEN_HOLD);
        send(out, conn, &Message::Open(open), Context::default());
        self.refresh_state(now);
        true
    }

    /// An outgoing connection attempt failed.
    pub(crate) fn connect_failed(&mut self, conn: ConnId, now: Instant) {
        self.conns.retain(|c| c.id != conn);
        self.last_error = Some(PeerError::ConnectionClosed);
        self.refresh_state(now);
    }

    /// The neighbour connected to us: accept the connection (and send OPEN), or refuse it.
    pub(crate) fn accept(
        &mut self,
        local: IpAddr,
        now: Instant,
        sc: &SpeakerConfig,
        ids: &mut u64,
        out: &mut Vec<Action>,
    ) -> (Option<ConnId>, Vec<PeerEvent>) {
        let events = Vec::new();
        if self.disabled.is_some() || self.idle_until.is_some() {
            debug!("incoming connection refused: session held down");
            return (None, events);
        }
        if self.conns.iter().any(|c| c.state == ConnState::Established) {
            let graceful = self.session.as_ref().is_some_and(|s| s.peer_gr.is_some());
            if !graceful {
                // RFC 4271 6.8: a connection colliding with an Established one is closed.
                debug!("incoming connection refused: session already established");
                return (None, events);
            }
            // RFC 4724 4.2: a restarting neighbour connects again while its old session still
            // looks up. But the connection may also be the late half of a collision that the
            // neighbour is about to close: its OPEN tells which (see `open_received`).
            debug!("incoming connection while established: waiting for its OPEN");
        }
        if self
            .conns
            .iter()
            .any(|c| !c.outbound && c.state != ConnState::Established)
        {
            debug!("incoming connection refused: one is already in progress");
            return (None, events);
        }
        *ids += 1;
        let id = ConnId(*ids);
        self.conns.push(Conn {
            id,
            outbound: false,
            state: ConnState::OpenSent,
            buf: Vec::new(),
            local: Some(local),
            open: None,
            hold: OPEN_HOLD,
            hold_at: Some(now + OPEN_HOLD),
            keepalive_at: None,
        });
        send(
            out,
            id,
            &Message::Open(self.our_open(sc)),
            Context::default(),
        );
        self.refresh_state(now);
        (Some(id), events)
    }

    pub(crate) fn owns(&self, conn: ConnId) -> bool {
        self.conns.iter().any(|c| c.id == conn)
    }

    /// The connection closed under us.
    pub(crate) fn closed(
        &mut self,
        conn: ConnId,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let events = self.drop_conn(conn, now, sc, None, PeerError::ConnectionClosed, out);
        self.refresh_state(now);
        events
    }

    /// Ends the session with a NOTIFICATION; `disable` keeps it down until [`Self::reset`].
    pub(crate) fn shutdown(
        &mut self,
        notification: Notification,
        reason: PeerError,
        disable: bool,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        if disable {
            self.disabled = Some(reason.clone());
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        let mut events = Vec::new();
        for id in ids {
            events.extend(self.drop_conn(
                id,
                now,
                sc,
                Some(notification.clone()),
                reason.clone(),
                out,
            ));
        }
        self.connect_retry_at = None;
        if disable {
            self.idle_until = None;
        }
        self.refresh_state(now);
        events
    }

    /// Lifts a shutdown and starts again at once.
    pub(crate) fn reset(
        &mut self,
        now: Instant,
        sc: &SpeakerConfig,
        ids: &mut u64,
        out: &mut Vec<Action>,
    ) {
        self.disabled = None;
        self.disabled_until = None;
        self.idle_until = None;
        self.failures = 0;
        self.cutoffs = 0;
        if self.conns.is_empty() {
            self.start(now, sc, ids, out);
        }
    }

    /// Cuts the session off for exceeding the prefix limit (the NOTIFICATION says so) and holds
    /// it down, longer on each cut-off until a session is stable.
    pub(crate) fn cut_off(
        &mut self,
        notification: Notification,
        reason: PeerError,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        if self.stable(now, sc) {
            self.cutoffs = 0;
        }
        let doublings = self.cutoffs.min(16);
        self.cutoffs += 1;
        let hold = (sc.limit_hold * 2u32.pow(doublings)).min(sc.limit_hold_max);
        warn!(error = %reason, ?hold, "prefix limit exceeded: session cut off");
        let events = self.shutdown(notification, reason, true, now, sc, out);
        self.disabled_until = Some(now + hold);
        events
    }

    /// Takes a new prefix limit. A neighbour held down for the old one is tried again at once.
    pub(crate) fn set_limit(
        &mut self,
        limit: Option<u32>,
        now: Instant,
        sc: &SpeakerConfig,
        ids: &mut u64,
        out: &mut Vec<Action>,
    ) {
        self.cfg.max_prefixes = limit;
        if self.limit_exceeded() {
            info!(?limit, "prefix limit changed: trying the session again");
            self.reset(now, sc, ids, out);
        }
    }

    /// Closes one connection (after a NOTIFICATION, if given) and does the bookkeeping: the
    /// session goes down if it was the Established one, and errors start the idle hold.
    fn drop_conn(
        &mut self,
        conn: ConnId,
        now: Instant,
        sc: &SpeakerConfig,
        notification: Option<Notification>,
        reason: PeerError,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return Vec::new();
        };
        let c = self.conns.remove(i);
        if let Some(n) = &notification
            && c.state != ConnState::Connecting
        {
            send(
                out,
                c.id,
                &Message::Notification(n.clone()),
                Context::default(),
            );
        }
        out.push(Action::Close { conn: c.id });
        let before_open = c.state <= ConnState::OpenSent;
        if reason == PeerError::Collision || (before_open && reason == PeerError::ConnectionClosed)
        {
            // Losing a collision is not a failure of the neighbour, nor is a connection closed
            // before its OPEN (the neighbour not listening yet, or not knowing us yet): try
            // again on the connect retry timer; idle hold and its backoff damp sessions that
            // fail or flap.
            if reason != PeerError::Collision {
                debug!("connection closed before the neighbour's OPEN");
                // A retry closed this early says less than why the session failed before.
                if matches!(self.last_error, None | Some(PeerError::ConnectionClosed)) {
                    self.last_error = Some(reason);
                }
            }
            if self.conns.is_empty() && !self.cfg.passive && self.disabled.is_none() {
                self.connect_retry_at = Some(now + self.jittered(sc.connect_retry, now, sc));
            }
            return Vec::new();
        }
        match &reason {
            PeerError::ConnectionClosed => info!("connection closed"),
            other => warn!(error = %other, "session failed"),
        }
        let mut events = Vec::new();
        if c.state == ConnState::Established {
            let session = self.session.take();
            self.flaps += 1;
            let graceful = match (&notification, &reason) {
                (None, PeerError::ConnectionClosed) => session.and_then(|s| s.peer_gr),
                _ => None,
            };
            events.push(PeerEvent::Down { graceful });
        }
        self.last_error = Some(reason.clone());
        let admin = matches!(reason, PeerError::AdminShutdown);
        if self.conns.is_empty() && !admin && self.disabled.is_none() {
            if self.stable(now, sc) {
                self.failures = 0;
            }
            self.failures += 1;
            if self.failures == 1 {
                // One failure is not an oscillation (RFC 4271 8.1.1 damps only repeated
                // ones): back to Active at once, accepting the neighbour's reconnection and
                // connecting out now rather than after an idle hold.
                debug!("first failure since the session was stable: restarting at once");
                self.idle_until = None;
                self.connect_retry_at = (!self.cfg.passive).then_some(now);
            } else {
                // Damp a flapping neighbour: refuse it and wait before trying again, longer
                // each time until a session is stable.
                let doublings = (self.failures - 2).min(16);
                let hold = (sc.idle_hold * 2u32.pow(doublings)).min(sc.idle_hold_max);
                debug!(failures = self.failures, ?hold, "damping the neighbour");
                self.idle_until = Some(now + self.jittered(hold, now, sc));
                self.connect_retry_at = None;
            }
        }
        if c.state == ConnState::Established {
            self.established_at = None;
        }
        events
    }

    /// Bytes from a connection: frames and handles every whole message.
    pub(crate) fn received(
        &mut self,
        conn: ConnId,
        data: &[u8],
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return events;
        };
        c.buf.extend_from_slice(data);
        while let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
            let len = match wire::frame(&c.buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(err) => {
                    events.extend(self.decode_failed(conn, err, now, sc, out));
                    break;
                }
            };
            let msg: Vec<u8> = c.buf.drain(..len).collect();
            let ctx = self
                .session
                .as_ref()
                .filter(|s| s.conn == conn)
                .map_or_else(Context::default, |s| s.ctx);
            match wire::decode(&msg, ctx) {
                Ok((m, faults)) => events.extend(self.handle(conn, m, faults, now, sc, out)),
                Err(err) => {
                    events.extend(self.decode_failed(conn, err, now, sc, out));
                    break;
                }
            }
        }
        self.refresh_state(now);
        events
    }

    fn decode_failed(
        &mut self,
        conn: ConnId,
        err: DecodeError,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let n = err.notification.clone();
        self.drop_conn(conn, now, sc, Some(n), PeerError::Decode(err), out)
    }

    fn handle(
        &mut self,
        conn: ConnId,
        msg: Message,
        faults: Vec<AttrFault>,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return Vec::new();
        };
        // Any message proves the neighbour alive (RFC 4271 restarts the timer on KEEPALIVE and
        // UPDATE; the others end or change the session anyway).
        if c.state >= ConnState::OpenConfirm && c.hold > Duration::ZERO {
            c.hold_at = Some(now + c.hold);
        }
        let state = c.state;
        match (state, msg) {
            (state, Message::Notification(n))
                if state != ConnState::Established
                    && (n.code, n.subcode) == (code::CEASE, code::CEASE_COLLISION) =>
            {
                // The neighbour settled a collision: our other connection is the one it kept.
                debug!("neighbour closed a connection that lost a collision");
                self.drop_conn(conn, now, sc, None, PeerError::Collision, out)
            }
            (_, Message::Notification(n)) => {
                self.drop_conn(conn, now, sc, None, PeerError::NotificationReceived(n), out)
            }
            (ConnState::OpenSent, Message::Open(open)) => {
                self.open_received(conn, open, now, sc, out)
            }
            (ConnState::OpenConfirm, Message::Keepalive) => self.establish(conn, now, sc, out),
            (ConnState::Established, Message::Keepalive) => Vec::new(),
            (ConnState::Established, Message::Update(u)) => {
                vec![PeerEvent::Update(Box::new(u), faults)]
            }
            (ConnState::Established, Message::RouteRefresh(f)) => vec![PeerEvent::RouteRefresh(f)],
            (state, _) => {
                let sub = match state {
                    ConnState::OpenSent => code::FSM_IN_OPEN_SENT,
                    ConnState::OpenConfirm => code::FSM_IN_OPEN_CONFIRM,
                    _ => code::FSM_IN_ESTABLISHED,
                };
                let n = Notification::new(code::FSM, sub);
                self.drop_conn(conn, now, sc, Some(n.clone()), PeerError::Fsm(n), out)
            }
        }
    }

    fn open_received(
        &mut self,
        conn: ConnId,
        open: Open,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let asn = open.asn();
        let refuse = |sub: u8| Notification::new(code::OPEN, sub);
        if asn != self.cfg.asn {
            let n = refuse(code::OPEN_BAD_PEER_AS);
            let reason = PeerError::BadPeerAs {
                expected: self.cfg.asn,
                got: asn,
            };
            return self.drop_conn(conn, now, sc, Some(n), reason, out);
        }
        let bad = if open.hold_time == 1 || open.hold_time == 2 {
            Some(refuse(code::OPEN_BAD_HOLD_TIME))
        } else if open.bgp_id.is_unspecified() || (self.is_ibgp(sc) && open.bgp_id == sc.router_id)
        {
            Some(refuse(code::OPEN_BAD_BGP_ID))
        } else {
            None
        };
        if let Some(n) = bad {
            return self.drop_conn(conn, now, sc, Some(n.clone()), PeerError::BadOpen(n), out);
        }

        // RFC 4271 6.8: with two connections, the one started by the speaker with the higher
        // BGP identifier survives. Both ends must settle on the same one although each sees
        // the messages of the two connections in its own order, so only the higher end
        // decides (here, when an OPEN shows a second connection), and the lower end follows
        // it: it answers every OPEN and keeps the connection the higher end confirms with a
        // KEEPALIVE (`establish`). The higher end confirms only one.
        let mut events = Vec::new();
        if higher(sc, &open, self.cfg.asn) {
            let this_outbound = self.conns.iter().any(|c| c.id == conn && c.outbound);
            let other = self
                .conns
                .iter()
                .find(|c| c.id != conn && c.state >= ConnState::OpenSent)
                .map(|c| (c.id, c.outbound, c.state));
            if let Some((other_id, other_outbound, other_state)) = other {
                let restarted = other_state == ConnState::Established && !this_outbound;
                let keep_this = match other_state {
                    // The lower end starts no connection once it has answered on another:
                    // an OPEN on a new one from it means it restarted.
                    ConnState::Established => restarted,
                    // Already confirmed to the neighbour: that one stays.
                    ConnState::OpenConfirm => false,
                    _ => this_outbound && !other_outbound,
                };
                debug!(keep_this, "connection collision");
                if restarted {
                    info!("neighbour reconnected: treating it as a graceful restart");
                    events.extend(self.drop_conn(
                        other_id,
                        now,
                        sc,
                        None,
                        PeerError::ConnectionClosed,
                        out,
                    ));
                } else {
                    let loser = if keep_this { other_id } else { conn };
                    let n = Notification::new(code::CEASE, code::CEASE_COLLISION);
                    events.extend(self.drop_conn(
                        loser,
                        now,
                        sc,
                        Some(n),
                        PeerError::Collision,
                        out,
                    ));
                    if loser == conn {
                        return events;
                    }
                }
            }
        }

        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return events;
        };
        let hold = sc.hold_time.min(open.hold_time);
        c.hold = Duration::from_secs(u64::from(hold));
        if hold == 0 {
            c.hold_at = None;
            c.keepalive_at = None;
        } else {
            c.hold_at = Some(now + c.hold);
            c.keepalive_at = Some(now + keepalive_interval(c.hold));
        }
        c.open = Some(open);
        c.state = ConnState::OpenConfirm;
        send(out, conn, &Message::Keepalive, Context::default());
        events
    }

    fn establish(
        &mut self,
        conn: ConnId,
        now: Instant,
        sc: &SpeakerConfig,
        out: &mut Vec<Action>,
    ) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        let others: Vec<(ConnId, ConnState)> = self
            .conns
            .iter()
            .filter(|c| c.id != conn)
            .map(|c| (c.id, c.state))
            .collect();
        let we_decide = self
            .conns
            .iter()
            .find(|c| c.id == conn)
            .and_then(|c| c.open.as_ref())
            .is_some_and(|open| higher(sc, open, self.cfg.asn));
        for (id, state) in others {
            if we_decide && state != ConnState::Connecting {
                // Settled when its OPEN comes (`open_received`): a restarted neighbour's.
                continue;
            }
            // The higher end confirmed this connection, so it closes its others; an older
            // Established one is a session the neighbour restarted away from.
            let (n, reason) = if state == ConnState::Established {
                (None, PeerError::ConnectionClosed)
            } else {
                let n = Notification::new(code::CEASE, code::CEASE_COLLISION);
                (Some(n), PeerError::Collision)
            };
            events.extend(self.drop_conn(id, now, sc, n, reason, out));
        }
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) else {
            return events;
        };
        let Some(open) = &c.open else {
            return events;
        };
        c.state = ConnState::Established;
        let theirs = open.families();
        self.session = Some(Session {
            conn,
            ctx: Context {
                four_octet_as: open.four_octet_as(),
            },
            families: self
                .cfg
                .families
                .as_deref()
                .unwrap_or(&sc.families)
                .iter()
                .copied()
                .filter(|f| theirs.contains(f))
                .collect(),
            router_id: open.bgp_id,
            local_addr: c.local,
            route_refresh: open.route_refresh(),
            peer_gr: open.graceful_restart().cloned(),
        });
        self.connect_retry_at = None;
        self.established_at = Some(now);
        self.last_error = None;
        events.push(PeerEvent::Up);
        events
    }

    /// Sends encoded messages on the Established session.
    pub(crate) fn send_raw(&self, data: Vec<u8>, out: &mut Vec<Action>) {
        if let Some(s) = &self.session
            && !data.is_empty()
        {
            out.push(Action::Send { conn: s.conn, data });
        }
    }

    /// Sends a ROUTE-REFRESH, if the neighbour supports it and the family was negotiated.
    pub(crate) fn request_refresh(&self, family: Family, out: &mut Vec<Action>) -> bool {
        match &self.session {
            Some(s) if s.route_refresh && s.families.contains(&family) => {
                send(out, s.conn, &Message::RouteRefresh(family), s.ctx);
                true
            }
            _ => false,
        }
    }
}

/// Whether we are the end that settles connection collisions: the higher BGP identifier (the
/// AS number breaks a tie, which only eBGP allows, as RFC 6286 2.3).
fn higher(sc: &SpeakerConfig, theirs: &Open, their_asn: u32) -> bool {
    (u32::from(sc.router_id), sc.asn) > (u32::from(theirs.bgp_id), their_asn)
}

/// A third of the hold time (RFC 4271 10), at least one second.
fn keepalive_interval(hold: Duration) -> Duration {
    (hold / 3).max(Duration::from_secs(1))
}
