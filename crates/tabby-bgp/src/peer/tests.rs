//! The FSM against a scripted neighbour: we play the other side byte by byte and check every
//! reply, especially the NOTIFICATION for each kind of bad input.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::wire::{
    self, AsPath, Capability, Context, Family, Message, Notification, Open, Origin, PathAttrs,
    Update,
};
use crate::{Action, ConnId, PeerConfig, PeerError, SessionState, Speaker, SpeakerConfig};

const US: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const THEM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

struct Script {
    speaker: Speaker,
    conn: ConnId,
    now: Instant,
}

fn their_open(four_octet: bool) -> Open {
    let mut capabilities = vec![Capability::Multiprotocol(Family::IPV4_UNICAST)];
    if four_octet {
        capabilities.push(Capability::FourOctetAs(65002));
    }
    Open {
        my_as: 65002,
        hold_time: 30,
        bgp_id: Ipv4Addr::new(10, 0, 0, 2),
        capabilities,
    }
}

fn bytes(m: &Message) -> Vec<u8> {
    wire::encode(m, Context::default()).unwrap()
}

impl Script {
    /// A passive speaker whose neighbour has just connected.
    fn connected(asn: u32) -> Self {
        let mut speaker = Speaker::new(SpeakerConfig::new(asn, Ipv4Addr::new(10, 0, 0, 1)));
        let now = Instant::now();
        let mut peer = PeerConfig::new(THEM, 65002);
        peer.passive = true;
        speaker.add_peer(now, peer);
        let conn = speaker.accept(now, THEM, US).expect("accepted");
        let mut s = Self { speaker, conn, now };
        let sent = s.sent();
        let [Message::Open(open)] = &sent[..] else {
            panic!("expected our OPEN, got {sent:?}")
        };
        assert_eq!(open.asn(), asn);
        assert!(open.four_octet_as() && open.route_refresh());
        assert_eq!(
            open.families(),
            vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
        );
        assert!(open.graceful_restart().is_some());
        s
    }

    fn established(asn: u32, four_octet: bool) -> Self {
        let mut s = Self::connected(asn);
        s.feed(&bytes(&Message::Open(their_open(four_octet))));
        assert_eq!(s.sent(), vec![Message::Keepalive]);
        s.feed(&bytes(&Message::Keepalive));
        assert_eq!(s.state(), SessionState::Established);
        s
    }

    fn feed(&mut self, data: &[u8]) {
        self.speaker.received(self.now, self.conn, data);
    }

    fn state(&self) -> SessionState {
        self.speaker.session_state(THEM).unwrap()
    }

    /// Decoded messages we sent (with the given context), and whether we closed.
    fn sent_ctx(&mut self, ctx: Context) -> (Vec<Message>, bool) {
        let mut msgs = Vec::new();
        let mut closed = false;
        while let Some(a) = self.speaker.poll_action() {
            match a {
                Action::Send { data, .. } => {
                    let mut rest = &data[..];
                    while let Ok(Some(len)) = wire::frame(rest) {
                        msgs.push(wire::decode(&rest[..len], ctx).unwrap().0);
                        rest = &rest[len..];
                    }
                }
                Action::Close { .. } => closed = true,
                _ => {}
            }
        }
        (msgs, closed)
    }

    fn sent(&mut self) -> Vec<Message> {
        self.sent_ctx(Context::default()).0
    }

    /// Feeds bytes and expects exactly this NOTIFICATION, then the close.
    fn refuses(&mut self, data: &[u8], code: u8, subcode: u8) -> Notification {
        self.feed(data);
        let (msgs, closed) = self.sent_ctx(Context::default());
        let Some(Message::Notification(n)) = msgs.last() else {
            panic!("no notification in {msgs:?}")
        };
        assert_eq!((n.code, n.subcode), (code, subcode), "{n}");
        assert!(closed);
        assert_ne!(self.state(), SessionState::Established);
        n.clone()
    }
}

fn announce(prefix: &str, origin: Option<Origin>) -> Vec<u8> {
    bytes(&Message::Update(Update {
        attrs: PathAttrs {
            origin,
            as_path: Some(AsPath::sequence(vec![65002])),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ..PathAttrs::default()
        },
        nlri: vec![prefix.parse().unwrap()],
        ..Update::default()
    }))
}

#[test]
fn session_reaches_established_and_sends_end_of_rib() {
    let mut s = Script::established(64512, true);
    let sent = s.sent();
    assert!(sent.contains(&Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))));
    // IPv6 was not negotiated (the neighbour offered IPv4 only).
    assert!(!sent.contains(&Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))));
}

#[test]
fn update_before_established_is_an_fsm_error() {
    let mut s = Script::connected(64512);
    s.feed(&bytes(&Message::Open(their_open(true))));
    s.sent();
    s.refuses(&announce("10.9.0.0/24", Some(Origin::Igp)), 5, 2);
}

#[test]
fn unacceptable_open_fields() {
    let mut open = their_open(true);
    open.hold_time = 2;
    Script::connected(64512).refuses(&bytes(&Message::Open(open)), 2, 6);
    let mut open = their_open(true);
    open.bgp_id = Ipv4Addr::UNSPECIFIED;
    Script::connected(64512).refuses(&bytes(&Message::Open(open)), 2, 3);
    let mut open = their_open(true);
    open.capabilities = vec![Capability::FourOctetAs(65003)];
    Script::connected(64512).refuses(&bytes(&Message::Open(open)), 2, 2);
    let mut raw = bytes(&Message::Open(their_open(true)));
    raw[19] = 3; // version
    let n = Script::connected(64512).refuses(&raw, 2, 1);
    assert_eq!(n.data, vec![0, 4]);
}

#[test]
fn broken_header_and_unknown_well_known_attribute_reset_the_session() {
    let mut s = Script::established(64512, true);
    s.sent();
    let mut raw = bytes(&Message::Keepalive);
    raw[0] = 0;
    s.refuses(&raw, 1, 1);

    let mut s = Script::established(64512, true);
    s.sent();
    let update = Update {
        attrs: PathAttrs {
            unknown: vec![wire::RawAttr {
                flags: 0x40,
                code: 0x63,
                value: vec![],
            }],
            ..PathAttrs::default()
        },
        ..Update::default()
    };
    s.refuses(&bytes(&Message::Update(update)), 3, 2);
    assert!(matches!(
        s.speaker.peer_status()[0].last_error,
        Some(PeerError::Decode(_))
    ));
}

#[test]
fn treat_as_withdraw_keeps_the_session_and_drops_the_route() {
    let mut s = Script::established(64512, true);
    s.feed(&announce("10.9.0.0/24", Some(Origin::Igp)));
    assert_eq!(s.speaker.learned_routes().len(), 1);
    // The same prefix again, now without ORIGIN: withdrawn, session unharmed.
    s.feed(&announce("10.9.0.0/24", None));
    assert_eq!(s.state(), SessionState::Established);
    assert_eq!(s.speaker.learned_routes(), vec![]);
    let (msgs, closed) = s.sent_ctx(Context::default());
    assert!(!closed);
    assert!(!msgs.iter().any(|m| matches!(m, Message::Notification(_))));
}

#[test]
fn two_octet_neighbour_gets_as_trans_and_as4_path() {
    let mut s = Script::established(4_200_000_000, false);
    s.speaker.originate("10.1.0.0/26".parse().unwrap(), vec![]);
    let two = Context {
        four_octet_as: false,
    };
    let (msgs, _) = s.sent_ctx(two);
    let update = msgs
        .iter()
        .find_map(|m| match m {
            Message::Update(u) if !u.nlri.is_empty() => Some(u),
            _ => None,
        })
        .expect("announcement");
    // Decoded as a 2-octet speaker would, AS4_PATH restores the real AS.
    assert_eq!(
        update.attrs.as_path,
        Some(AsPath::sequence(vec![4_200_000_000]))
    );
    let raw = wire::encode(&Message::Update(update.clone()), two).unwrap();
    assert!(raw.windows(2).any(|w| w == wire::AS_TRANS.to_be_bytes()));
}

#[test]
fn hold_timer_from_the_negotiated_hold_time() {
    let mut s = Script::established(64512, true);
    s.sent();
    // Negotiated hold 30 s: keepalives every 10 s, expiry at 30 s without input.
    s.now += Duration::from_secs(10);
    s.speaker.timeout(s.now);
    assert_eq!(s.sent(), vec![Message::Keepalive]);
    s.now += Duration::from_secs(20);
    s.speaker.timeout(s.now);
    let msgs = s.sent();
    assert!(
        msgs.contains(&Message::Notification(Notification::new(4, 0))),
        "{msgs:?}"
    );
    // A first failure is not damped: (passive) waiting for the neighbour again at once.
    assert_eq!(s.state(), SessionState::Active);
    assert_eq!(s.speaker.peer_status()[0].retry_at, None);
}

/// The gaps between our connection attempts to a neighbour whose listener takes the
/// connection and closes it at once (its agent not started yet or not knowing us yet).
fn retry_gaps(close_after_connect: bool) -> Vec<Duration> {
    let mut speaker = Speaker::new(SpeakerConfig::new(65001, Ipv4Addr::new(10, 0, 0, 1)));
    let mut now = Instant::now();
    speaker.add_peer(now, PeerConfig::new(THEM, 65002));
    let mut attempts = Vec::new();
    while attempts.len() < 6 {
        while let Some(a) = speaker.poll_action() {
            if let Action::Connect { conn, .. } = a {
                attempts.push(now);
                if close_after_connect {
                    speaker.connected(now, conn, US);
                    speaker.closed(now, conn);
                } else {
                    speaker.connect_failed(now, conn);
                }
            }
        }
        now = speaker.next_timeout().expect("a timer to try again");
        speaker.timeout(now);
    }
    attempts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn a_neighbour_not_answering_yet_is_retried_on_the_jittered_connect_retry_timer() {
    for close_after_connect in [false, true] {
        let gaps = retry_gaps(close_after_connect);
        for gap in &gaps {
            // 5 s connect retry, shortened by at most a quarter; never the idle hold's
            // backoff (10, 20, 30 s) meant for sessions that fail after their OPEN.
            assert!(
                *gap >= Duration::from_millis(3750) && *gap <= Duration::from_secs(5),
                "closed after connect: {close_after_connect}: {gaps:?}"
            );
        }
        assert!(
            gaps.windows(2).any(|w| w[0] != w[1]),
            "jittered, not in step: {gaps:?}"
        );
    }
}

/// A connection attempt still unanswered when the connect retry timer fires is dropped and
/// reported; with a TCP MD5 key the report points at the password (a mismatch is silent).
#[test]
fn an_unanswered_connect_reports_no_answer_and_mentions_the_md5_password() {
    for md5 in [false, true] {
        let sc = SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1));
        let retry = sc.connect_retry;
        let mut speaker = Speaker::new(sc);
        let now = Instant::now();
        let mut peer = PeerConfig::new(THEM, 65002);
        peer.md5_key = md5.then(|| crate::Md5Key::new("s3cret").expect("a valid key"));
        speaker.add_peer(now, peer);
        let first = std::iter::from_fn(|| speaker.poll_action())
            .find_map(|a| match a {
                Action::Connect { conn, .. } => Some(conn),
                _ => None,
            })
            .expect("the peer connects out");
        assert_eq!(speaker.peer_status()[0].last_error, None);
        // Past the retry timer, with its jitter.
        speaker.timeout(now + retry * 2);
        let actions: Vec<Action> = std::iter::from_fn(|| speaker.poll_action()).collect();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Close { conn } if *conn == first)),
            "{actions:?}"
        );
        assert!(
            actions.iter().any(|a| matches!(a, Action::Connect { .. })),
            "tries again: {actions:?}"
        );
        let err = speaker.peer_status()[0].last_error.clone();
        assert_eq!(err, Some(PeerError::NoAnswer { md5 }));
        let shown = err.unwrap().to_string();
        assert_eq!(shown.contains("TCP MD5 password"), md5, "{shown}");
    }
}

#[test]
fn an_md5_key_never_shows_in_debug_output_and_must_fit_the_kernel() {
    let key = crate::Md5Key::new("hunter2").expect("a valid key");
    assert!(!format!("{key:?}").contains("hunter2"));
    let mut peer = PeerConfig::new(THEM, 65002);
    peer.md5_key = Some(key);
    assert!(!format!("{peer:?}").contains("hunter2"));
    assert!(crate::Md5Key::new("").is_none());
    assert!(crate::Md5Key::new(vec![b'k'; 81]).is_none());
    assert!(crate::Md5Key::new(vec![b'k'; 80]).is_some());
}

#[test]
fn a_neighbour_limited_to_one_family_is_offered_and_sent_only_that_family() {
    let mut speaker = Speaker::new(SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1)));
    let now = Instant::now();
    speaker.originate("10.1.0.0/24".parse().unwrap(), Vec::new());
    speaker.originate("fd00:1::/64".parse().unwrap(), Vec::new());
    let mut peer = PeerConfig::new(THEM, 65002);
    peer.passive = true;
    peer.next_hop_v6 = Some("fd00::1".parse().unwrap());
    peer.families = Some(vec![Family::IPV6_UNICAST]);
    speaker.add_peer(now, peer);
    let conn = speaker.accept(now, THEM, US).expect("accepted");
    let mut s = Script { speaker, conn, now };
    let sent = s.sent();
    let [Message::Open(open)] = &sent[..] else {
        panic!("expected our OPEN, got {sent:?}")
    };
    assert_eq!(open.families(), vec![Family::IPV6_UNICAST]);
    let gr = open.graceful_restart().expect("graceful restart");
    assert_eq!(
        gr.families.iter().map(|f| f.family).collect::<Vec<_>>(),
        vec![Family::IPV6_UNICAST]
    );
    // The neighbour offers both; only IPv6 is negotiated.
    let mut theirs = their_open(true);
    theirs
        .capabilities
        .push(Capability::Multiprotocol(Family::IPV6_UNICAST));
    s.feed(&bytes(&Message::Open(theirs)));
    s.feed(&bytes(&Message::Keepalive));
    assert_eq!(s.state(), SessionState::Established);
    let ctx = Context {
        four_octet_as: true,
    };
    let (sent, _) = s.sent_ctx(ctx);
    let updates: Vec<&Update> = sent
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect();
    assert!(
        updates
            .iter()
            .all(|u| u.nlri.is_empty() && u.withdrawn.is_empty()),
        "no IPv4 route or End-of-RIB: {updates:?}"
    );
    assert!(!sent.contains(&Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))));
    assert!(sent.contains(&Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))));
    let v6 = format!("{updates:?}");
    assert!(v6.contains("fd00:1::/64"), "{v6}");
}
