//! Speakers wired to each other in memory with a simulated clock: sessions, route exchange,
//! reflection, graceful restart, limits, damping.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::NO_EXPORT;
use crate::config::PeerConfig;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Speakers on one simulated network; messages are delivered in order, instantly.
struct Lab {
    nodes: Vec<(IpAddr, Speaker)>,
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    routes: Vec<Vec<RouteChange>>,
    /// Nodes whose outgoing bytes vanish (a hung neighbour).
    mute: Vec<usize>,
    now: Instant,
}

impl Lab {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            links: HashMap::new(),
            routes: Vec::new(),
            mute: Vec::new(),
            now: Instant::now(),
        }
    }

    fn node(&mut self, last: u8, asn: u32, f: impl FnOnce(&mut SpeakerConfig)) -> usize {
        let IpAddr::V4(id) = ip(last) else {
            unreachable!()
        };
        let mut cfg = SpeakerConfig::new(asn, id);
        f(&mut cfg);
        self.nodes.push((ip(last), Speaker::new(cfg)));
        self.routes.push(Vec::new());
        self.nodes.len() - 1
    }

    fn peer(&mut self, a: usize, b: usize, f: impl FnOnce(&mut PeerConfig)) {
        let (addr, asn) = (self.nodes[b].0, self.nodes[b].1.config().asn);
        let mut cfg = PeerConfig::new(addr, asn);
        f(&mut cfg);
        let now = self.now;
        self.nodes[a].1.add_peer(now, cfg);
    }

    fn index_of(&self, addr: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|(a, _)| *a == addr)
    }

    /// Delivers every pending action until all speakers are quiet.
    fn settle(&mut self) {
        let now = self.now;
        for _ in 0..10_000 {
            let mut work: VecDeque<(usize, Action)> = VecDeque::new();
            for (i, (_, s)) in self.nodes.iter_mut().enumerate() {
                while let Some(a) = s.poll_action() {
                    work.push_back((i, a));
                }
            }
            if work.is_empty() {
                return;
            }
            for (i, action) in work {
                match action {
                    Action::Connect { conn, remote, .. } => {
                        let me = self.nodes[i].0;
                        match self.index_of(remote.ip()) {
                            Some(j) => match self.nodes[j].1.accept(now, me, remote.ip()) {
                                Some(their) => {
                                    self.links.insert((i, conn), (j, their));
                                    self.links.insert((j, their), (i, conn));
                                    self.nodes[i].1.connected(now, conn, me);
                                }
                                None => self.nodes[i].1.connect_failed(now, conn),
                            },
                            None => self.nodes[i].1.connect_failed(now, conn),
                        }
                    }
                    Action::Send { conn, data } => {
                        if self.mute.contains(&i) {
                            continue;
                        }
                        if let Some(&(j, their)) = self.links.get(&(i, conn)) {
                            self.nodes[j].1.received(now, their, &data);
                        }
                    }
                    Action::Close { conn } => {
                        if let Some((j, their)) = self.links.remove(&(i, conn)) {
                            self.links.remove(&(j, their));
                            self.nodes[j].1.closed(now, their);
                        }
                    }
                    Action::Route(change) => self.routes[i].push(change),
                }
            }
        }
        panic!("speakers never settled");
    }

    /// Moves the clock on, firing timers as they come due.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter_map(|(_, s)| s.next_timeout())
                .filter(|&t| t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            let now = self.now;
            for (_, s) in &mut self.nodes {
                if s.next_timeout().is_some_and(|t| t <= now) {
                    s.timeout(now);
                }
            }
        }
        self.now = end;
        self.settle();
    }

    fn state(&self, a: usize, b: usize) -> SessionState {
        self.nodes[a].1.session_state(self.nodes[b].0).unwrap()
    }

    fn status(&self, a: usize, b: usize) -> PeerStatus {
        let addr = self.nodes[b].0;
        self.nodes[a]
            .1
            .peer_status()
            .into_iter()
            .find(|s| s.addr == addr)
            .unwrap()
    }

    fn learned(&self, a: usize) -> Vec<(IpNet, IpAddr)> {
        self.nodes[a]
            .1
            .learned_routes()
            .into_iter()
            .map(|r| (r.prefix, r.next_hop))
            .collect()
    }

    fn route(&self, a: usize, prefix: &str) -> Option<LearnedRoute> {
        let p = net(prefix);
        self.nodes[a]
            .1
            .learned_routes()
            .into_iter()
            .find(|r| r.prefix == p)
    }

    /// Cuts every connection of a node without any message (a crash or cable cut).
    fn crash(&mut self, i: usize) {
        let now = self.now;
        let mine: Vec<((usize, ConnId), (usize, ConnId))> = self
            .links
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, (j, their)) in mine {
            self.links.remove(&k);
            self.links.remove(&(j, their));
            self.nodes[j].1.closed(now, their);
        }
    }
}

fn ebgp_pair() -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |_| {});
    lab.peer(a, b, |_| {});
    lab.peer(b, a, |_| {});
    lab.advance(Duration::from_secs(1));
    (lab, a, b)
}

#[test]
fn ebgp_session_establishes_once_despite_both_sides_connecting() {
    let (lab, a, b) = ebgp_pair();
    assert_eq!(lab.state(a, b), SessionState::Established);
    assert_eq!(lab.state(b, a), SessionState::Established);
    // Collision detection left exactly one connection.
    assert_eq!(lab.links.len(), 2);
    assert_eq!(lab.status(a, b).router_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(
        lab.status(a, b).families,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
}

#[test]
fn routes_flow_both_ways_and_withdrawals_propagate() {
    let (mut lab, a, b) = ebgp_pair();
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.nodes[b].1.originate(net("10.2.0.0/26"), vec![]);
    lab.settle();
    let r = lab.route(b, "10.1.0.0/26").expect("b learned a's block");
    assert_eq!(r.next_hop, ip(1));
    assert_eq!(r.peer, ip(1));
    assert_eq!(r.attrs.as_path, Some(wire::AsPath::sequence(vec![65001])));
    assert_eq!(r.attrs.local_pref, None);
    assert_eq!(lab.learned(a), vec![(net("10.2.0.0/26"), ip(2))]);
    assert_eq!(lab.status(a, b).prefixes_advertised, 1);
    assert_eq!(lab.status(a, b).prefixes_received, 1);
    assert!(matches!(
        lab.routes[b].last(),
        Some(RouteChange::Learned(_))
    ));

    lab.nodes[a].1.withdraw(net("10.1.0.0/26"));
    lab.settle();
    assert_eq!(lab.route(b, "10.1.0.0/26"), None);
    assert_eq!(
        lab.routes[b].last(),
        Some(&RouteChange::Withdrawn(net("10.1.0.0/26")))
    );
}

#[test]
fn ipv6_routes_need_an_ipv6_next_hop() {
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |_| {});
    lab.peer(a, b, |p| {
        p.next_hop_v6 = Some("2001:db8::1".parse().unwrap())
    });
    lab.peer(b, a, |_| {});
    lab.advance(Duration::from_secs(1));
    lab.nodes[a].1.originate(net("2001:db8:1::/122"), vec![]);
    lab.nodes[b].1.originate(net("2001:db8:2::/122"), vec![]);
    lab.settle();
    let r = lab
        .route(b, "2001:db8:1::/122")
        .expect("learned over MP_REACH");
    assert_eq!(r.next_hop, "2001:db8::1".parse::<IpAddr>().unwrap());
    // b has no IPv6 address for the IPv4 session, so it cannot advertise its IPv6 block.
    assert_eq!(lab.route(a, "2001:db8:2::/122"), None);
}

#[test]
fn ibgp_routes_are_not_passed_to_other_ibgp_peers_without_reflection() {
    let mut lab = Lab::new();
    let a = lab.node(1, 64512, |_| {});
    let b = lab.node(2, 64512, |_| {});
    let c = lab.node(3, 64512, |_| {});
    for (x, y) in [(a, b), (b, a), (b, c), (c, b)] {
        lab.peer(x, y, |_| {});
    }
    lab.advance(Duration::from_secs(1));
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.settle();
    let r = lab.route(b, "10.1.0.0/26").expect("b learned it");
    assert_eq!(r.attrs.local_pref, Some(100));
    assert_eq!(r.attrs.as_path, Some(wire::AsPath::default()));
    assert_eq!(lab.route(c, "10.1.0.0/26"), None);
}

#[test]
fn route_reflector_reflects_client_routes_with_originator_and_cluster() {
    let mut lab = Lab::new();
    let a = lab.node(1, 64512, |_| {});
    let rr = lab.node(2, 64512, |c| c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1)));
    let c = lab.node(3, 64512, |_| {});
    let d = lab.node(4, 64512, |_| {});
    lab.peer(a, rr, |_| {});
    lab.peer(c, rr, |_| {});
    lab.peer(d, rr, |_| {});
    lab.peer(rr, a, |p| p.rr_client = true);
    lab.peer(rr, c, |p| p.rr_client = true);
    lab.peer(rr, d, |_| {}); // a non-client
    lab.advance(Duration::from_secs(1));
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.nodes[d].1.originate(net("10.4.0.0/26"), vec![]);
    lab.settle();
    // Client route: reflected to the other client and to the non-client.
    for node in [c, d] {
        let r = lab.route(node, "10.1.0.0/26").expect("reflected");
        assert_eq!(r.next_hop, ip(1), "next hop unchanged by reflection");
        assert_eq!(r.attrs.originator_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(r.attrs.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1)]);
    }
    // Non-client route: reflected to clients only.
    assert!(lab.route(a, "10.4.0.0/26").is_some());
    assert!(lab.route(c, "10.4.0.0/26").is_some());
    // The originator never takes its own route back.
    assert_eq!(lab.route(a, "10.1.0.0/26"), None);
}

#[test]
fn reflected_route_with_our_originator_id_is_ignored() {
    // Two reflectors in one cluster both reflect a client's route; the loop checks stop it
    // from coming back.
    let mut lab = Lab::new();
    let cl = Some(Ipv4Addr::new(9, 9, 9, 9));
    let a = lab.node(1, 64512, |_| {});
    let r1 = lab.node(2, 64512, |c| c.cluster_id = cl);
    let r2 = lab.node(3, 64512, |c| c.cluster_id = cl);
    lab.peer(a, r1, |_| {});
    lab.peer(a, r2, |_| {});
    lab.peer(r1, a, |p| p.rr_client = true);
    lab.peer(r2, a, |p| p.rr_client = true);
    lab.peer(r1, r2, |_| {});
    lab.peer(r2, r1, |_| {});
    lab.advance(Duration::from_secs(1));
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.settle();
    // r2 learns it from a directly; the copy r1 reflects carries cluster 9.9.9.9 and is refused.
    let r = lab.route(r2, "10.1.0.0/26").unwrap();
    assert_eq!(r.peer, ip(1));
    assert_eq!(lab.status(r2, r1).prefixes_received, 0);
}

#[test]
fn hold_timer_expiry_ends_the_session_and_withdraws() {
    let (mut lab, a, b) = ebgp_pair();
    lab.nodes[b].1.originate(net("10.2.0.0/26"), vec![]);
    lab.settle();
    assert_eq!(lab.learned(a).len(), 1);
    lab.mute.push(b);
    lab.advance(Duration::from_secs(89));
    assert_eq!(lab.state(a, b), SessionState::Established);
    lab.advance(Duration::from_secs(2));
    assert_ne!(lab.state(a, b), SessionState::Established);
    assert_eq!(
        lab.status(a, b).last_error,
        Some(PeerError::HoldTimerExpired)
    );
    assert_eq!(lab.learned(a), vec![]);
    assert_eq!(
        lab.routes[a].last(),
        Some(&RouteChange::Withdrawn(net("10.2.0.0/26")))
    );
}

#[test]
fn keepalives_keep_a_quiet_session_up() {
    let (mut lab, a, b) = ebgp_pair();
    lab.advance(Duration::from_secs(600));
    assert_eq!(lab.state(a, b), SessionState::Established);
    assert_eq!(lab.status(a, b).flaps, 0);
}

#[test]
fn wrong_peer_as_is_refused_and_retried_with_growing_backoff() {
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |_| {});
    lab.peer(a, b, |p| p.asn = 65009);
    lab.peer(b, a, |_| {});
    lab.advance(Duration::from_millis(10));
    let st = lab.status(a, b);
    assert_eq!(
        st.last_error,
        Some(PeerError::BadPeerAs {
            expected: 65009,
            got: 65002
        })
    );
    assert_eq!(st.state, SessionState::Idle);
    // b saw our NOTIFICATION: OPEN error, bad peer AS.
    assert_eq!(
        lab.status(b, a).last_error,
        Some(PeerError::NotificationReceived(Notification::new(2, 2)))
    );
    // Idle hold: 5 s, then 10 s, then 20 s between attempts (a tries; b only answers).
    let mut attempts = Vec::new();
    let start = lab.now;
    for _ in 0..400 {
        let before = lab.status(a, b).since;
        lab.advance(Duration::from_millis(100));
        let st = lab.status(a, b);
        if st.since != before && st.state == SessionState::Idle {
            attempts.push((lab.now - start).as_secs());
        }
    }
    assert!(attempts.len() >= 3, "{attempts:?}");
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(gaps.iter().any(|&g| g >= 10), "{gaps:?}");
}

/// a originates `n` prefixes 10.1.i.0/24, and b limits a to `limit`.
fn limited_pair(n: u8, limit: u32) -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |_| {});
    lab.peer(a, b, |_| {});
    lab.peer(b, a, |p| p.max_prefixes = Some(limit));
    lab.advance(Duration::from_secs(1));
    assert_eq!(lab.state(b, a), SessionState::Established);
    for i in 0..n {
        lab.nodes[a]
            .1
            .originate(net(&format!("10.1.{i}.0/24")), vec![]);
    }
    lab.settle();
    (lab, a, b)
}

/// How long a's session to b is held down or damped for, from when it went down.
fn hold(lab: &Lab, a: usize, b: usize) -> Option<Duration> {
    let st = lab.status(a, b);
    st.retry_at.map(|t| t - st.since)
}

#[test]
fn max_prefix_limit_cuts_the_session_and_holds_it_down_longer_each_time() {
    let (mut lab, a, b) = limited_pair(3, 2);
    let st = lab.status(b, a);
    assert_eq!(st.state, SessionState::Idle);
    let over = PeerError::MaxPrefixExceeded {
        limit: 2,
        received: 3,
    };
    assert_eq!(st.disabled, Some(over.clone()));
    assert_eq!(st.last_error, Some(over.clone()));
    assert_eq!(st.max_prefixes, Some(2));
    assert_eq!(over.to_string(), "sent 3 prefixes, limit 2: session closed");
    // Every route from a is gone, for the agent too.
    assert_eq!(lab.learned(b), vec![]);
    assert_eq!(st.prefixes_received, 0);
    let withdrawn = lab.routes[b]
        .iter()
        .filter(|c| matches!(c, RouteChange::Withdrawn(_)))
        .count();
    assert_eq!(withdrawn, 2, "{:?}", lab.routes[b]);
    // a was told why: Cease, maximum number of prefixes reached, with AFI/SAFI and limit.
    let PeerError::NotificationReceived(n) = lab.status(a, b).last_error.unwrap() else {
        panic!("a was not told")
    };
    assert_eq!((n.code, n.subcode), (6, 1));
    assert_eq!(n.data, vec![0, 1, 1, 0, 0, 0, 2]);

    // Held down for a minute, refusing a's attempts (no tight loop either way)...
    assert_eq!(hold(&lab, b, a), Some(Duration::from_secs(60)));
    lab.advance(Duration::from_secs(59));
    assert_eq!(lab.state(b, a), SessionState::Idle);
    assert_ne!(lab.state(a, b), SessionState::Established);
    // ...then tried again; a still sends too many, so it is cut off for two minutes, then four.
    let mut holds = Vec::new();
    for _ in 0..3 {
        let before = lab.status(b, a).since;
        for _ in 0..600 {
            lab.advance(Duration::from_secs(1));
            if lab.status(b, a).since != before && lab.state(b, a) == SessionState::Idle {
                break;
            }
        }
        holds.push(hold(&lab, b, a).expect("held down again"));
    }
    let secs: Vec<u64> = holds.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [120, 240, 480]);
    assert_eq!(lab.status(b, a).flaps, 4);
}

#[test]
fn the_prefix_limit_hold_is_capped() {
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |c| c.limit_hold_max = Duration::from_secs(100));
    lab.peer(a, b, |_| {});
    lab.peer(b, a, |p| p.max_prefixes = Some(1));
    lab.nodes[a].1.originate(net("10.1.0.0/24"), vec![]);
    lab.nodes[a].1.originate(net("10.1.1.0/24"), vec![]);
    lab.advance(Duration::from_secs(1));
    assert_eq!(hold(&lab, b, a), Some(Duration::from_secs(60)));
    lab.advance(Duration::from_secs(61));
    assert_eq!(hold(&lab, b, a), Some(Duration::from_secs(100)));
    lab.advance(Duration::from_secs(101));
    assert_eq!(hold(&lab, b, a), Some(Duration::from_secs(100)));
}

#[test]
fn a_raised_limit_lifts_the_hold_at_once_and_a_changed_one_keeps_the_session() {
    let (mut lab, a, b) = limited_pair(3, 2);
    assert_eq!(lab.state(b, a), SessionState::Idle);
    // The operator raises the limit: the same neighbour with a new limit.
    lab.peer(b, a, |p| p.max_prefixes = Some(5));
    lab.advance(Duration::from_millis(10));
    assert_eq!(lab.state(b, a), SessionState::Established);
    assert_eq!(lab.learned(b).len(), 3);
    let st = lab.status(b, a);
    assert_eq!(
        (st.disabled, st.retry_at, st.max_prefixes),
        (None, None, Some(5))
    );
    let flaps = st.flaps;
    // Raised again, or removed, while Established: the session stays.
    lab.peer(b, a, |p| p.max_prefixes = Some(10));
    lab.peer(b, a, |_| {});
    lab.advance(Duration::from_millis(10));
    assert_eq!(lab.status(b, a).flaps, flaps);
    assert_eq!(lab.learned(b).len(), 3);
    // Lowered below what a sends: cut off at once.
    lab.peer(b, a, |p| p.max_prefixes = Some(1));
    lab.settle();
    assert_eq!(
        lab.status(b, a).disabled,
        Some(PeerError::MaxPrefixExceeded {
            limit: 1,
            received: 3
        })
    );
    assert_eq!(lab.learned(b), vec![]);
    // The operator's reset also lifts the hold (a now within the limit).
    lab.nodes[a].1.withdraw(net("10.1.1.0/24"));
    lab.nodes[a].1.withdraw(net("10.1.2.0/24"));
    lab.nodes[b].1.reset_peer(lab.now, ip(1));
    // a, cut off twice within a minute, damps b for up to 5 s.
    lab.advance(Duration::from_secs(6));
    assert_eq!(lab.state(b, a), SessionState::Established);
    assert_eq!(lab.learned(b).len(), 1);
}

/// a drops its session to b the way BIRD's `restart` of a protocol does: Cease, then a new
/// session at once.
fn restart_protocol(lab: &mut Lab, a: usize, b: usize) {
    let now = lab.now;
    let addr = lab.nodes[b].0;
    lab.nodes[a].1.remove_peer(now, addr);
    lab.peer(a, b, |_| {});
    lab.settle();
}

#[test]
fn a_first_drop_reconnects_at_once_and_a_flapping_peer_is_damped_with_growing_backoff() {
    let (mut lab, a, b) = ebgp_pair();
    lab.advance(Duration::from_secs(120));
    // The first drop after a stable session: b accepts a's new connection at once.
    restart_protocol(&mut lab, a, b);
    lab.advance(Duration::from_millis(10));
    assert_eq!(lab.state(b, a), SessionState::Established);
    assert_eq!(lab.status(b, a).flaps, 1);

    // Flapping: each further drop before the session is stable holds b down longer (the idle
    // hold, 5 s doubling to 30 s, shortened by up to a quarter), refusing a meanwhile.
    let mut holds = Vec::new();
    for _ in 0..5 {
        lab.advance(Duration::from_secs(1));
        restart_protocol(&mut lab, a, b);
        let st = lab.status(b, a);
        assert_eq!(st.state, SessionState::Idle, "{st:?}");
        let held = hold(&lab, b, a).expect("damped");
        lab.advance(held - Duration::from_millis(100));
        assert_ne!(
            lab.state(b, a),
            SessionState::Established,
            "refused while damped"
        );
        lab.advance(Duration::from_secs(6));
        assert_eq!(lab.state(b, a), SessionState::Established);
        holds.push(held);
    }
    for (hold, nominal) in holds.iter().zip([5u64, 10, 20, 30, 30]) {
        let nominal = Duration::from_secs(nominal);
        assert!(*hold <= nominal && *hold >= nominal * 3 / 4, "{holds:?}");
    }

    // Stable for a minute: the next drop is a first one again.
    lab.advance(Duration::from_secs(61));
    restart_protocol(&mut lab, a, b);
    lab.advance(Duration::from_millis(10));
    assert_eq!(lab.state(b, a), SessionState::Established);
}

#[test]
fn a_crashed_peer_is_accepted_back_at_once() {
    let (mut lab, a, b) = ebgp_pair();
    lab.advance(Duration::from_secs(120));
    // a's connections vanish with no NOTIFICATION (a crash); a comes back with fresh state.
    lab.crash(a);
    lab.settle();
    assert_ne!(
        lab.state(b, a),
        SessionState::Idle,
        "b is not holding a down"
    );
    assert_eq!(hold(&lab, b, a), None);
    let IpAddr::V4(id) = ip(1) else {
        unreachable!()
    };
    lab.nodes[a].1 = Speaker::new(SpeakerConfig::new(65001, id));
    lab.peer(a, b, |_| {});
    lab.advance(Duration::from_millis(10));
    assert_eq!(lab.state(b, a), SessionState::Established);
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let (mut lab, a, b) = ebgp_pair();
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.nodes[a].1.originate(net("10.1.1.0/26"), vec![]);
    lab.settle();
    assert_eq!(lab.learned(b).len(), 2);
    let changes_before = lab.routes[b].len();

    // a dies without a NOTIFICATION: b keeps both routes, marked stale, and tells the agent
    // nothing (traffic keeps flowing).
    lab.crash(a);
    lab.settle();
    assert_eq!(lab.learned(b).len(), 2);
    assert_eq!(lab.status(b, a).prefixes_stale, 2);
    assert_eq!(lab.routes[b].len(), changes_before);

    // a comes back (fresh state) and announces only one of the two blocks, then End-of-RIB.
    let IpAddr::V4(id) = ip(1) else {
        unreachable!()
    };
    let mut cfg = SpeakerConfig::new(65001, id);
    cfg.graceful_restart = Some(crate::GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
    });
    lab.nodes[a].1 = Speaker::new(cfg);
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.peer(a, b, |_| {});
    lab.advance(Duration::from_secs(10));
    assert_eq!(lab.state(b, a), SessionState::Established);
    assert_eq!(lab.learned(b), vec![(net("10.1.0.0/26"), ip(1))]);
    assert_eq!(lab.status(b, a).prefixes_stale, 0);
    // The stale route goes, and only then is a's End-of-RIB reported (a restarted agent
    // sweeps its kernel at that moment).
    let changes = &lab.routes[b];
    assert_eq!(
        changes[changes.len().saturating_sub(2)..],
        [
            RouteChange::Withdrawn(net("10.1.1.0/26")),
            RouteChange::EndOfRib(ip(1))
        ]
    );
}

#[test]
fn graceful_restart_gives_up_after_the_restart_time() {
    let (mut lab, a, b) = ebgp_pair();
    lab.nodes[a].1.originate(net("10.1.0.0/26"), vec![]);
    lab.settle();
    lab.nodes[a].1.remove_peer(lab.now, ip(2)); // keep a from reconnecting
    // remove_peer sent a Cease: no graceful restart for that one. Start again, then crash.
    lab.settle();
    assert_eq!(lab.learned(b), vec![]);
    lab.peer(a, b, |_| {});
    lab.advance(Duration::from_secs(40));
    assert_eq!(lab.learned(b).len(), 1);
    lab.crash(a);
    lab.nodes[a].1.remove_peer(lab.now, ip(2));
    lab.advance(Duration::from_secs(119));
    assert_eq!(lab.learned(b).len(), 1, "kept for the restart time");
    lab.advance(Duration::from_secs(2));
    assert_eq!(lab.learned(b), vec![]);
}

#[test]
fn best_path_prefers_shorter_as_path_across_peers() {
    // b hears 10.9.0.0/24 from a directly (path 65001) and via c (path 65003 65001).
    let mut lab = Lab::new();
    let a = lab.node(1, 65001, |_| {});
    let b = lab.node(2, 65002, |_| {});
    let c = lab.node(3, 65003, |_| {});
    for (x, y) in [(a, b), (b, a), (a, c), (c, a), (b, c), (c, b)] {
        lab.peer(x, y, |_| {});
    }
    lab.advance(Duration::from_secs(1));
    lab.nodes[a].1.originate(net("10.9.0.0/24"), vec![]);
    lab.settle();
    assert_eq!(lab.route(b, "10.9.0.0/24").unwrap().peer, ip(1));
    // When the direct session goes, the longer path takes over.
    lab.nodes[b].1.remove_peer(lab.now, ip(1));
    lab.settle();
    let r = lab.route(b, "10.9.0.0/24").unwrap();
    assert_eq!(r.peer, ip(3));
    assert_eq!(
        r.attrs.as_path,
        Some(wire::AsPath::sequence(vec![65003, 65001]))
    );
    // a never accepts its own route back (AS loop).
    assert_eq!(lab.route(a, "10.9.0.0/24"), None);
}

#[test]
fn no_export_community_stays_inside_the_as() {
    let (mut lab, a, b) = ebgp_pair();
    lab.nodes[a]
        .1
        .originate(net("10.1.0.0/26"), vec![NO_EXPORT]);
    lab.nodes[a]
        .1
        .originate(net("10.1.1.0/26"), vec![(65001 << 16) | 7]);
    lab.settle();
    assert_eq!(lab.route(b, "10.1.0.0/26"), None);
    assert_eq!(
        lab.route(b, "10.1.1.0/26").unwrap().attrs.communities,
        vec![(65001 << 16) | 7]
    );
}

#[test]
fn many_originated_prefixes_share_one_attribute_set_and_go_out_in_full_updates() {
    let (mut lab, a, b) = ebgp_pair();
    let prefixes: Vec<IpNet> = (0..1000u32)
        .map(|i| net(&format!("10.{}.{}.0/26", 100 + i / 256, i % 256)))
        .collect();
    lab.nodes[a]
        .1
        .set_origin(prefixes.iter().map(|&p| (p, Some(vec![]))));
    let mut sends = Vec::new();
    while let Some(action) = lab.nodes[a].1.poll_action() {
        match action {
            Action::Send { conn, data } => sends.push((conn, data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    // One UPDATE per prefix would be at least 19 + 4 bytes of header and NLRI each, plus the
    // attributes; packed, a /26 costs 4 bytes of NLRI.
    let bytes: usize = sends.iter().map(|(_, d)| d.len()).sum();
    assert_eq!(sends.len(), 1, "one write for the whole batch");
    assert!(bytes < 1000 * 6, "{bytes} bytes for 1000 prefixes");
    for (conn, data) in sends {
        let (j, their) = lab.links[&(a, conn)];
        let now = lab.now;
        lab.nodes[j].1.received(now, their, &data);
    }
    lab.settle();
    assert_eq!(lab.learned(b).len(), 1000);
    assert_eq!(lab.status(a, b).prefixes_advertised, 1000);

    // The RIBs hold one copy of the attributes on each side, not one per route.
    let speaker = &lab.nodes[a].1;
    let sent: Vec<&Arc<PathAttrs>> = speaker.adj_out[&ip(2)].values().map(|e| &e.attrs).collect();
    assert!(sent.iter().all(|x| Arc::ptr_eq(x, sent[0])));
    let local: Vec<&Arc<PathAttrs>> = speaker.rib.local_attrs().collect();
    assert_eq!(local.len(), 1000);
    assert!(local.iter().all(|x| Arc::ptr_eq(x, local[0])));
    assert!(
        speaker.interner.len() <= 3,
        "{} sets",
        speaker.interner.len()
    );

    // Withdrawn in one batch too; the unused sets go at a later sweep.
    lab.nodes[a]
        .1
        .set_origin(prefixes.iter().map(|&p| (p, None)));
    lab.settle();
    assert!(lab.learned(b).is_empty());
}
