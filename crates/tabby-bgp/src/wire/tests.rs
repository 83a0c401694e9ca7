//! Hand-written byte vectors, laid out field by field from the RFC formats, checked both ways.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

use super::*;

/// Bytes from hex text; spaces and `|` only separate fields for the reader.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            _ => (b | 0x20) - b'a' + 10,
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd hex in {s}");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// A whole message: marker, length, type, body.
fn message(kind: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(kind);
    out.extend_from_slice(&body);
    out
}

const FOUR: Context = Context {
    four_octet_as: true,
};
const TWO: Context = Context {
    four_octet_as: false,
};

fn both_ways(bytes: &[u8], msg: &Message, ctx: Context) {
    let (decoded, faults) = decode(bytes, ctx).expect("decodes");
    assert_eq!(&decoded, msg);
    assert_eq!(faults, vec![]);
    assert_eq!(encode(msg, ctx).expect("encodes"), bytes);
}

fn decode_err(bytes: &[u8], ctx: Context) -> Notification {
    decode(bytes, ctx)
        .expect_err("must be refused")
        .notification
}

fn faults_of(bytes: &[u8], ctx: Context) -> (Update, Vec<AttrFault>) {
    match decode(bytes, ctx).expect("decodes") {
        (Message::Update(u), faults) => (u, faults),
        (other, _) => panic!("not an update: {other:?}"),
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

// ===== header and simple messages =====

#[test]
fn keepalive() {
    both_ways(
        &hex("ffffffff ffffffff ffffffff ffffffff 0013 04"),
        &Message::Keepalive,
        FOUR,
    );
}

#[test]
fn notification_with_and_without_data() {
    both_ways(
        &message(3, "06 02"),
        &Message::Notification(Notification::new(6, 2)),
        FOUR,
    );
    both_ways(
        &message(3, "02 01 0004"),
        &Message::Notification(Notification {
            code: 2,
            subcode: 1,
            data: vec![0, 4],
        }),
        FOUR,
    );
}

#[test]
fn route_refresh() {
    both_ways(
        &message(5, "0002 00 01"),
        &Message::RouteRefresh(Family::IPV6_UNICAST),
        FOUR,
    );
}

#[test]
fn header_errors_name_the_rfc_subcode() {
    let mut bad_marker = message(4, "");
    bad_marker[3] = 0;
    assert_eq!(decode_err(&bad_marker, FOUR), Notification::new(1, 1));

    let mut too_long = message(4, "");
    too_long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(
        frame(&too_long).unwrap_err().notification,
        Notification {
            code: 1,
            subcode: 2,
            data: vec![0x10, 0x01]
        }
    );

    assert_eq!(
        decode_err(&message(9, ""), FOUR),
        Notification {
            code: 1,
            subcode: 3,
            data: vec![9]
        }
    );
    // KEEPALIVE has no body.
    assert_eq!(decode_err(&message(4, "00"), FOUR).subcode, 2);
    // ROUTE-REFRESH is exactly four bytes of body.
    assert_eq!(decode_err(&message(5, "0001 00 01 00"), FOUR).subcode, 2);
    // An OPEN shorter than its fixed part.
    assert_eq!(decode_err(&message(1, "04 fde9"), FOUR).subcode, 2);
}

#[test]
fn frame_waits_for_whole_messages() {
    let ka = message(4, "");
    assert_eq!(frame(&ka[..10]), Ok(None));
    assert_eq!(frame(&ka[..18]), Ok(None));
    assert_eq!(frame(&ka), Ok(Some(19)));
    let mut two = ka.clone();
    two.extend_from_slice(&ka[..5]);
    assert_eq!(frame(&two), Ok(Some(19)));
}

// ===== OPEN =====

fn sample_open() -> Open {
    Open {
        my_as: 65001,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
        ],
    }
}

#[test]
fn open_with_capabilities() {
    let bytes = message(
        1,
        "04 fde9 005a 0a000001 1e
         02 06 | 01 04 0001 00 01
         02 02 | 02 00
         02 06 | 41 04 0000fde9
         02 08 | 40 06 0078 0001 01 80",
    );
    both_ways(&bytes, &Message::Open(sample_open()), FOUR);
    let Message::Open(open) = decode(&bytes, FOUR).unwrap().0 else {
        unreachable!()
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.families(), vec![Family::IPV4_UNICAST]);
    assert!(open.four_octet_as() && open.route_refresh());
    assert_eq!(open.graceful_restart().unwrap().restart_time, 120);
}

#[test]
fn open_with_four_octet_as_uses_as_trans() {
    let open = Open {
        my_as: Open::two_octet(4_200_000_000),
        hold_time: 0,
        bgp_id: Ipv4Addr::new(192, 0, 2, 7),
        capabilities: vec![Capability::FourOctetAs(4_200_000_000)],
    };
    assert_eq!(open.my_as, AS_TRANS);
    let bytes = message(1, "04 5ba0 0000 c0000207 08  02 06 41 04 fa56ea00");
    both_ways(&bytes, &Message::Open(open.clone()), FOUR);
    assert_eq!(open.asn(), 4_200_000_000);
}

#[test]
fn open_capabilities_in_one_parameter_and_unknown_ones_are_kept() {
    // BIRD packs every capability into one parameter; 0x46 (enhanced route refresh) and 0x49
    // (FQDN) are not interpreted but survive.
    let bytes = message(
        1,
        "04 fde9 00f0 0a000002 12
         02 10 | 01 04 0002 00 01 | 46 00 | 49 06 04 686f7374 00",
    );
    let (Message::Open(open), _) = decode(&bytes, FOUR).unwrap() else {
        panic!("not an open")
    };
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::Unknown {
                code: 0x46,
                value: vec![]
            },
            Capability::Unknown {
                code: 0x49,
                value: hex("04 686f7374 00")
            },
        ]
    );
    assert_eq!(open.families(), vec![Family::IPV6_UNICAST]);
    assert!(!open.four_octet_as());
}

#[test]
fn open_errors() {
    assert_eq!(
        decode_err(&message(1, "03 fde9 005a 0a000001 00"), FOUR),
        Notification {
            code: 2,
            subcode: 1,
            data: vec![0, 4]
        }
    );
    // Optional parameter type 1 (authentication, deprecated) is not supported.
    assert_eq!(
        decode_err(&message(1, "04 fde9 005a 0a000001 03 01 01 00"), FOUR),
        Notification::new(2, 4)
    );
    // Parameters length disagrees with the message.
    assert_eq!(
        decode_err(&message(1, "04 fde9 005a 0a000001 05 02 02 02 00"), FOUR).code,
        2
    );
    // A capability overrunning its parameter.
    assert_eq!(
        decode_err(&message(1, "04 fde9 005a 0a000001 04 02 02 41 04"), FOUR).code,
        2
    );
}

// ===== UPDATE =====

fn sample_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![65001, 65002])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        med: Some(100),
        communities: vec![(65001 << 16) | 100],
        ..PathAttrs::default()
    }
}

#[test]
fn update_ipv4_announcement() {
    let bytes = message(
        2,
        "0000 0026
         40 01 01 00
         40 02 0a 02 02 0000fde9 0000fdea
         40 03 04 0a000001
         80 04 04 00000064
         c0 08 04 fde90064
         10 0a01  18 c0a801",
    );
    let update = Update {
        attrs: sample_attrs(),
        nlri: vec![net("10.1.0.0/16"), net("192.168.1.0/24")],
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), FOUR);
}

#[test]
fn update_from_two_octet_speaker_merges_as4_path() {
    // AS_PATH [65001, AS_TRANS] with AS4_PATH [65001, 4200000000] (RFC 6793 4.2.3).
    let bytes = message(
        2,
        "0000 0021
         40 01 01 00
         40 02 06 02 02 fde9 5ba0
         40 03 04 0a000001
         c0 11 0a 02 02 0000fde9 fa56ea00
         18 c0a801",
    );
    let update = Update {
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65001, 4_200_000_000])),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..PathAttrs::default()
        },
        nlri: vec![net("192.168.1.0/24")],
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), TWO);
}

#[test]
fn as4_path_shorter_than_as_path_keeps_the_leading_old_speakers() {
    // An OLD speaker (AS 100) prepended itself without touching AS4_PATH.
    let bytes = message(
        2,
        "0000 0023
         40 01 01 00
         40 02 08 02 03 0064 fde9 5ba0
         40 03 04 0a000001
         c0 11 0a 02 02 0000fde9 fa56ea00
         18 c0a801",
    );
    let (u, faults) = faults_of(&bytes, TWO);
    assert_eq!(faults, vec![]);
    assert_eq!(
        u.attrs
            .as_path
            .unwrap()
            .segments
            .iter()
            .flat_map(|s| s.asns.clone())
            .collect::<Vec<_>>(),
        vec![100, 65001, 4_200_000_000]
    );
}

#[test]
fn as4_path_from_four_octet_speaker_is_discarded() {
    let bytes = message(
        2,
        "0000 0016
         40 01 01 00
         40 02 06 02 01 0000fde9
         c0 11 06 02 01 fa56ea00
         ",
    );
    let (u, faults) = faults_of(&bytes, FOUR);
    assert_eq!(u.attrs.as_path, Some(AsPath::sequence(vec![65001])));
    assert_eq!(faults.len(), 1);
    assert_eq!(
        (faults[0].code, faults[0].action),
        (attr_code::AS4_PATH, FaultAction::Discard)
    );
}

#[test]
fn update_withdrawal() {
    let update = Update {
        withdrawn: vec![net("192.168.1.0/24"), net("0.0.0.0/0")],
        ..Update::default()
    };
    both_ways(
        &message(2, "0005 18 c0a801 00 0000"),
        &Message::Update(update),
        FOUR,
    );
}

#[test]
fn update_ipv6_in_mp_reach_and_unreach() {
    let bytes = message(
        2,
        "0000 0047
         90 0e 0035 0002 01 20 20010db8000000000000000000000001 fe800000000000000000000000000001 00
                    30 20010db80001  40 20010db800020000
         40 01 01 00
         40 02 00
         40 05 04 00000064",
    );
    let update = Update {
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            ..PathAttrs::default()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: IpAddr::V6("2001:db8::1".parse().unwrap()),
            link_local: Some("fe80::1".parse().unwrap()),
            nlri: vec![
                "2001:db8:1::/48".parse().unwrap(),
                "2001:db8:2::/64".parse().unwrap(),
            ],
        }),
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), FOUR);

    let withdraw = Update {
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec!["2001:db8:1::/48".parse().unwrap()],
        }),
        ..Update::default()
    };
    both_ways(
        &message(2, "0000 000e 90 0f 000a 0002 01 30 20010db80001"),
        &Message::Update(withdraw),
        FOUR,
    );
}

#[test]
fn end_of_rib_markers() {
    let v4 = message(2, "0000 0000");
    both_ways(
        &v4,
        &Message::Update(Update::end_of_rib(Family::IPV4_UNICAST)),
        FOUR,
    );
    let v6 = message(2, "0000 0007 90 0f 0003 0002 01");
    both_ways(
        &v6,
        &Message::Update(Update::end_of_rib(Family::IPV6_UNICAST)),
        FOUR,
    );
    assert_eq!(
        Update::end_of_rib(Family::IPV6_UNICAST).end_of_rib_family(),
        Some(Family::IPV6_UNICAST)
    );
    let (u, _) = faults_of(&message(2, "0005 18 c0a801 00 0000"), FOUR);
    assert_eq!(u.end_of_rib_family(), None);
}

#[test]
fn all_rfc_4456_and_aggregation_attributes() {
    let bytes = message(
        2,
        "0000 0041
         40 01 01 02
         40 02 0c 01 01 0000fde9 02 01 0000fdea
         40 03 04 0a000001
         40 05 04 000000c8
         40 06 00
         c0 07 08 0000fdea c0000201
         80 09 04 0a000009
         80 0a 08 0a0000fe 0a0000fd
         0a 0a40",
    );
    let update = Update {
        attrs: PathAttrs {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath {
                segments: vec![
                    Segment {
                        kind: SegmentType::Set,
                        asns: vec![65001],
                    },
                    Segment {
                        kind: SegmentType::Sequence,
                        asns: vec![65002],
                    },
                ],
            }),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_pref: Some(200),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: 65002,
                addr: Ipv4Addr::new(192, 0, 2, 1),
            }),
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 9)),
            cluster_list: vec![Ipv4Addr::new(10, 0, 0, 254), Ipv4Addr::new(10, 0, 0, 253)],
            ..PathAttrs::default()
        },
        nlri: vec![net("10.64.0.0/10")],
        ..Update::default()
    };
    both_ways(&bytes, &Message::Update(update), FOUR);
}

// ===== RFC 7606 error handling =====

/// An UPDATE with ORIGIN/AS_PATH/NEXT_HOP valid plus `extra` attributes, announcing 10.1.0.0/16.
fn update_with(extra: &str) -> Vec<u8> {
    let base = "40 01 01 00  40 02 06 02 01 0000fde9  40 03 04 0a000001";
    let attrs = hex(&format!("{base} {extra}"));
    let body = format!("0000 {:04x} {base} {extra} 10 0a01", attrs.len());
    message(2, &body)
}

fn single_fault(bytes: &[u8]) -> (u8, FaultAction) {
    let (_, faults) = faults_of(bytes, FOUR);
    assert_eq!(faults.len(), 1, "{faults:?}");
    (faults[0].code, faults[0].action)
}

#[test]
fn malformed_well_known_attributes_are_treat_as_withdraw() {
    use FaultAction::TreatAsWithdraw as W;
    // ORIGIN value out of range.
    let bytes = message(2, "0000 0007 40 01 01 05  40 02 00 10 0a01");
    assert_eq!(faults_of(&bytes, FOUR).1[0].action, W);
    // MED of three bytes; LOCAL_PREF with optional flag; COMMUNITIES of 3 bytes; empty
    // CLUSTER_LIST; ORIGINATOR_ID of 5 bytes.
    assert_eq!(single_fault(&update_with("80 04 03 000001")), (4, W));
    assert_eq!(single_fault(&update_with("c0 05 04 00000064")), (5, W));
    assert_eq!(single_fault(&update_with("c0 08 03 000001")), (8, W));
    assert_eq!(single_fault(&update_with("80 0a 00")), (10, W));
    assert_eq!(single_fault(&update_with("80 09 05 0a00000101")), (9, W));
    // An AS_PATH segment of zero length, and one of unknown type.
    let zero_seg = message(
        2,
        "0000 0010 40 01 01 00 40 02 02 02 00 40 03 04 0a000001 10 0a01",
    );
    assert!(
        faults_of(&zero_seg, FOUR)
            .1
            .iter()
            .any(|f| f.code == 2 && f.action == W)
    );
    let bad_seg = message(
        2,
        "0000 0014 40 01 01 00 40 02 06 07 01 0000fde9 40 03 04 0a000001 10 0a01",
    );
    assert!(
        faults_of(&bad_seg, FOUR)
            .1
            .iter()
            .any(|f| f.code == 2 && f.action == W)
    );
}

#[test]
fn missing_mandatory_attributes_are_treat_as_withdraw() {
    // NLRI without NEXT_HOP.
    let bytes = message(2, "0000 000d 40 01 01 00 40 02 06 02 01 0000fde9 10 0a01");
    assert_eq!(single_fault(&bytes), (3, FaultAction::TreatAsWithdraw));
    // A withdrawal needs no attributes at all.
    assert!(
        faults_of(&message(2, "0003 10 0a01 0000"), FOUR)
            .1
            .is_empty()
    );
}

#[test]
fn malformed_aggregation_attributes_are_discarded() {
    use FaultAction::Discard as D;
    let (u, faults) = faults_of(&update_with("c0 07 06 fdea c0000201"), FOUR);
    assert_eq!((faults[0].code, faults[0].action), (7, D));
    assert_eq!(u.attrs.aggregator, None);
    assert_eq!(u.nlri, vec![net("10.1.0.0/16")]);
    assert_eq!(single_fault(&update_with("40 06 01 00")), (6, D));
}

#[test]
fn attribute_overrunning_the_list_is_treat_as_withdraw() {
    // The last attribute claims 9 bytes but the list ends after 4; NLRI is still found.
    let bytes = message(2, "0000 0007 40 01 01 00 40 02 09 10 0a01");
    let (u, faults) = faults_of(&bytes, FOUR);
    assert_eq!(faults[0].action, FaultAction::TreatAsWithdraw);
    assert_eq!(u.nlri, vec![net("10.1.0.0/16")]);
}

#[test]
fn duplicate_attributes_keep_the_first() {
    let (u, faults) = faults_of(&update_with("80 04 04 00000001 80 04 04 00000002"), FOUR);
    assert_eq!(u.attrs.med, Some(1));
    assert_eq!(
        (faults[0].code, faults[0].action),
        (4, FaultAction::Discard)
    );
}

#[test]
fn unknown_attributes_pass_or_drop_by_their_flags() {
    // Optional transitive 0x63 is kept (with its flags); optional non-transitive 0x62 dropped.
    let (u, faults) = faults_of(&update_with("c0 63 02 abcd  80 62 01 ff"), FOUR);
    assert!(faults.is_empty());
    assert_eq!(
        u.attrs.unknown,
        vec![RawAttr {
            flags: 0xc0,
            code: 0x63,
            value: vec![0xab, 0xcd]
        }]
    );
    // An unknown well-known attribute resets the session, naming the attribute.
    let err = decode_err(&update_with("40 63 01 07"), FOUR);
    assert_eq!((err.code, err.subcode), (3, 2));
    assert_eq!(err.data, hex("40 63 07"));
}

#[test]
fn errors_that_reset_the_session() {
    let sub = |bytes: &[u8]| {
        let n = decode_err(bytes, FOUR);
        (n.code, n.subcode)
    };
    // Withdrawn length past the end.
    assert_eq!(sub(&message(2, "0009 18 c0a801 0000")), (3, 1));
    // Total attribute length past the end.
    assert_eq!(sub(&message(2, "0000 0030 40 01 01 00")), (3, 1));
    // NLRI prefix longer than 32 bits, and NLRI that overruns.
    assert_eq!(sub(&message(2, "0000 0000 21 0a000001 00")), (3, 10));
    assert_eq!(sub(&message(2, "0000 0000 18 0a01")), (3, 10));
    // MP_REACH twice; MP_REACH with a 5-byte IPv6 next hop; malformed MP prefix.
    assert_eq!(
        sub(&message(
            2,
            "0000 000e 90 0f 0003 0002 01 90 0f 0003 0002 01"
        )),
        (3, 1)
    );
    assert_eq!(
        sub(&message(2, "0000 000e 90 0e 000a 0002 01 05 0102030405 00")),
        (3, 9)
    );
    assert_eq!(
        sub(&message(2, "0000 0009 90 0f 0005 0002 01 81 00")),
        (3, 9)
    );
}

#[test]
fn mp_attributes_for_other_families_are_discarded() {
    // AFI 25 (L2VPN) was never negotiated.
    let bytes = message(2, "0000 0007 90 0f 0003 0019 46");
    let (u, faults) = faults_of(&bytes, FOUR);
    assert_eq!(u.mp_unreach, None);
    assert_eq!(faults[0].action, FaultAction::Discard);
}

// ===== splitting large announcements =====

#[test]
fn many_prefixes_split_into_messages_under_the_limit() {
    let prefixes: Vec<IpNet> = (0..3000u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24).unwrap()))
        .collect();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![64512])),
        ..PathAttrs::default()
    };
    let nh = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
    let msgs = encode_announce(Family::IPV4_UNICAST, &attrs, nh, None, &prefixes, FOUR).unwrap();
    assert!(msgs.len() > 1);
    let mut seen = Vec::new();
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        let (u, faults) = faults_of(m, FOUR);
        assert!(faults.is_empty());
        assert_eq!(u.attrs.next_hop, Some(Ipv4Addr::new(10, 99, 0, 1)));
        seen.extend(u.nlri.into_iter().map(IpNet::V4));
    }
    assert_eq!(seen, prefixes);

    let v6: Vec<IpNet> = (0..2000u128)
        .map(|i| {
            IpNet::V6(
                ipnet::Ipv6Net::new(Ipv6Addr::from(0x2001_0db8u128 << 96 | i << 64), 64).unwrap(),
            )
        })
        .collect();
    let nh6 = IpAddr::V6("2001:db8::1".parse().unwrap());
    let msgs = encode_announce(Family::IPV6_UNICAST, &attrs, nh6, None, &v6, FOUR).unwrap();
    let mut seen = Vec::new();
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        seen.extend(faults_of(m, FOUR).0.mp_reach.unwrap().nlri);
    }
    assert_eq!(seen, v6);

    let msgs = encode_withdraw(Family::IPV6_UNICAST, &v6, FOUR);
    let mut seen = Vec::new();
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        seen.extend(faults_of(m, FOUR).0.mp_unreach.unwrap().withdrawn);
    }
    assert_eq!(seen, v6);
}
