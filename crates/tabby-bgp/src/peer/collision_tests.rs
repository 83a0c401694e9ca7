//! Connection collisions (RFC 4271 6.8) under every message ordering: two speakers that both
//! connect at once, on a simulated network that delivers each connection's bytes in order but
//! interleaves connections, accepts and connects at random (seeded, so a failure replays).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::{Action, ConnId, PeerConfig, SessionState, Speaker, SpeakerConfig};

/// One thing the network will do next.
enum Ev {
    /// Node `from` asked to connect (its connection `conn`); the other end accepts it.
    Syn { from: usize, conn: ConnId },
    /// The connecting side learns that its connection is up (or refused).
    Connected { node: usize, conn: ConnId, ok: bool },
}

/// Bytes or a close travelling on one direction of one connection.
enum Seg {
    Data(Vec<u8>),
    Fin,
}

struct Net {
    nodes: [Speaker; 2],
    /// (node, its conn) -> (other node, its conn)
    links: Vec<((usize, ConnId), (usize, ConnId))>,
    /// One FIFO per direction: bytes sent by (node, conn).
    pipes: Vec<((usize, ConnId), VecDeque<Seg>)>,
    events: Vec<Ev>,
    now: Instant,
    rng: u64,
    log: Vec<String>,
    /// Connecting ends that have not been told yet that they are connected: nothing is
    /// delivered to them before.
    unready: Vec<(usize, ConnId)>,
}

fn addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, u8::try_from(i + 1).unwrap()))
}

fn speaker(i: usize, now: Instant) -> Speaker {
    let IpAddr::V4(id) = addr(i) else {
        unreachable!()
    };
    let mut s = Speaker::new(SpeakerConfig::new(64512, id));
    s.add_peer(now, PeerConfig::new(addr(1 - i), 64512));
    s
}

impl Net {
    /// Node `i` dies without its neighbour noticing (its host lost power) and starts again.
    fn restart(&mut self, i: usize) {
        self.links.retain(|(a, b)| a.0 != i && b.0 != i);
        self.pipes.retain(|(end, _)| end.0 != i);
        self.nodes[i] = speaker(i, self.now);
        self.nodes[i].originate("10.9.0.0/26".parse().unwrap(), vec![]);
    }

    fn new(seed: u64) -> Self {
        let now = Instant::now();
        Self {
            nodes: [speaker(0, now), speaker(1, now)],
            links: Vec::new(),
            pipes: Vec::new(),
            events: Vec::new(),
            now,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            log: Vec::new(),
            unready: Vec::new(),
        }
    }

    fn rand(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        usize::try_from(self.rng % u64::try_from(n).unwrap()).unwrap()
    }

    fn far_end(&self, end: (usize, ConnId)) -> Option<(usize, ConnId)> {
        self.links.iter().find(|(a, _)| *a == end).map(|(_, b)| *b)
    }

    fn pipe(&mut self, end: (usize, ConnId)) -> &mut VecDeque<Seg> {
        if let Some(i) = self.pipes.iter().position(|(e, _)| *e == end) {
            return &mut self.pipes[i].1;
        }
        self.pipes.push((end, VecDeque::new()));
        &mut self.pipes.last_mut().unwrap().1
    }

    /// Takes every action the speakers want done and queues it on the network.
    fn collect(&mut self) {
        for i in 0..2 {
            while let Some(a) = self.nodes[i].poll_action() {
                match a {
                    Action::Connect { conn, .. } => self.events.push(Ev::Syn { from: i, conn }),
                    Action::Send { conn, data } => self.pipe((i, conn)).push_back(Seg::Data(data)),
                    Action::Close { conn } => self.pipe((i, conn)).push_back(Seg::Fin),
                    Action::Route(_) => {}
                }
            }
        }
    }

    /// Does one random pending thing; false when nothing is pending.
    fn step(&mut self) -> bool {
        self.collect();
        let busy: Vec<usize> = (0..self.pipes.len())
            .filter(|&p| {
                !self.pipes[p].1.is_empty()
                    && self
                        .far_end(self.pipes[p].0)
                        .is_none_or(|far| !self.unready.contains(&far))
            })
            .collect();
        let choices = busy.len() + self.events.len();
        if choices == 0 {
            return false;
        }
        let now = self.now;
        let pick = self.rand(choices);
        if pick < busy.len() {
            let p = busy[pick];
            let end = self.pipes[p].0;
            let seg = self.pipes[p].1.pop_front().unwrap();
            let Some((j, their)) = self.far_end(end) else {
                return true;
            };
            let what = match &seg {
                Seg::Data(d) => crate::wire::decode(
                    &d[..crate::wire::frame(d).unwrap().unwrap()],
                    crate::wire::Context::default(),
                )
                .map_or_else(
                    |e| format!("{e:?}"),
                    |m| format!("{:?}", m.0).chars().take(30).collect(),
                ),
                Seg::Fin => "FIN".into(),
            };
            self.log
                .push(format!("{} -> {j} on {their:?}: {what}", end.0));
            match seg {
                Seg::Data(d) => self.nodes[j].received(now, their, &d),
                Seg::Fin => {
                    self.links.retain(|(a, b)| *a != end && *b != end);
                    self.nodes[j].closed(now, their);
                }
            }
            return true;
        }
        match self.events.remove(pick - busy.len()) {
            Ev::Syn { from, conn } => {
                let j = 1 - from;
                self.log.push(format!("syn {from} {conn:?}"));
                let ok = match self.nodes[j].accept(now, addr(from), addr(j)) {
                    Some(their) => {
                        self.links.push(((from, conn), (j, their)));
                        self.links.push(((j, their), (from, conn)));
                        self.unready.push((from, conn));
                        true
                    }
                    None => false,
                };
                self.events.push(Ev::Connected {
                    node: from,
                    conn,
                    ok,
                });
            }
            Ev::Connected {
                node,
                conn,
                ok: true,
            } => {
                self.log.push(format!("connected {node} {conn:?}"));
                self.unready.retain(|&e| e != (node, conn));
                self.nodes[node].connected(now, conn, addr(node));
            }
            Ev::Connected {
                node,
                conn,
                ok: false,
            } => self.nodes[node].connect_failed(now, conn),
        }
        true
    }

    /// Runs the network for `d` of simulated time, a millisecond per delivery.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            if !self.step() {
                let next = self.nodes.iter().filter_map(Speaker::next_timeout).min();
                self.now = next.map_or(end, |t| t.clamp(self.now, end));
            } else {
                self.now += Duration::from_millis(1);
            }
            let now = self.now;
            for s in &mut self.nodes {
                if s.next_timeout().is_some_and(|t| t <= now) {
                    s.timeout(now);
                }
            }
        }
    }

    fn state(&self, i: usize) -> SessionState {
        self.nodes[i].session_state(addr(1 - i)).unwrap()
    }
}

#[test]
fn both_ends_keep_the_same_connection_whatever_the_order_of_a_collision() {
    for seed in 0..300 {
        let mut net = Net::new(seed);
        // Both connect at once; nothing has a timer due within the first second, so the
        // session must come up on the first try.
        net.run(Duration::from_secs(1));
        for i in 0..2 {
            assert_eq!(
                net.state(i),
                SessionState::Established,
                "seed {seed}: node {i} {:?}\n{}",
                net.nodes[i].peer_status(),
                net.log.join("\n")
            );
        }
        assert_eq!(net.links.len(), 2, "seed {seed}: one connection left");
        net.run(Duration::from_secs(120));
        for i in 0..2 {
            let st = &net.nodes[i].peer_status()[0];
            assert_eq!(st.state, SessionState::Established, "seed {seed}");
            assert_eq!(st.flaps, 0, "seed {seed}: node {i} {st:?}");
        }
    }
}

#[test]
fn a_neighbour_that_restarted_unnoticed_is_taken_back_at_once_on_either_end() {
    for restarted in 0..2 {
        for seed in 0..50 {
            let mut net = Net::new(seed);
            net.nodes[restarted].originate("10.9.0.0/26".parse().unwrap(), vec![]);
            net.run(Duration::from_secs(1));
            let other = 1 - restarted;
            assert_eq!(net.nodes[other].learned_routes().len(), 1);
            net.restart(restarted);
            // Its neighbour still holds the old session (hold time 90 s); the new connection
            // must replace it well before that, the routes kept meanwhile.
            net.run(Duration::from_secs(6));
            let st = &net.nodes[other].peer_status()[0];
            assert_eq!(
                st.state,
                SessionState::Established,
                "restarted {restarted}, seed {seed}: {st:?}\n{}",
                net.log.join("\n")
            );
            assert_eq!(st.flaps, 1, "restarted {restarted}, seed {seed}");
            assert_eq!(net.nodes[other].learned_routes().len(), 1);
            assert_eq!(net.state(restarted), SessionState::Established);
        }
    }
}
