//! Property tests: every message we can build survives encode then decode unchanged, in both
//! AS-number widths; and decoding arbitrary bytes never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn v6net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi }),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..0x1000,
            vec((family(), any::<bool>()), 0..4)
        )
            .prop_map(|(restarting, notification, restart_time, fams)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families: fams
                        .into_iter()
                        .map(|(family, forwarding_preserved)| GrFamily {
                            family,
                            forwarding_preserved,
                        })
                        .collect(),
                })
            }),
        (any::<u8>(), vec(any::<u8>(), 0..20))
            .prop_filter("known codes decode as themselves", |(code, _)| {
                !matches!(code, 1 | 2 | 64 | 65)
            })
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        vec(capability(), 0..6),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
        })
}

fn segment(confed: bool) -> impl Strategy<Value = Segment> {
    let kinds = if confed {
        vec![
            SegmentType::Set,
            SegmentType::Sequence,
            SegmentType::ConfedSequence,
            SegmentType::ConfedSet,
        ]
    } else {
        vec![SegmentType::Set, SegmentType::Sequence]
    };
    (proptest::sample::select(kinds), vec(any::<u32>(), 1..8))
        .prop_map(|(kind, asns)| Segment { kind, asns })
}

/// Attributes valid for the context. With 2-octet peers, confederation segments never appear in
/// AS4_PATH, and an AGGREGATOR naming a real 2-octet AS tells the receiver to ignore AS4_PATH
/// (RFC 6793 4.2.3), so those combinations cannot round-trip and are not generated.
fn attrs(four: bool) -> impl Strategy<Value = PathAttrs> {
    let aggregator = if four {
        any::<u32>().boxed()
    } else {
        (u32::from(u16::MAX) + 1..=u32::MAX).boxed()
    };
    (
        (
            proptest::option::of(prop_oneof![
                Just(Origin::Igp),
                Just(Origin::Egp),
                Just(Origin::Incomplete)
            ]),
            proptest::option::of(vec(segment(four), 0..4).prop_map(|segments| AsPath { segments })),
            proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
        ),
        (
            proptest::option::of((aggregator, any::<u32>()).prop_map(|(asn, a)| Aggregator {
                asn,
                addr: Ipv4Addr::from(a),
            })),
            vec(any::<u32>(), 0..5),
            proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
            vec(any::<u32>().prop_map(Ipv4Addr::from), 0..4),
            vec((any::<bool>(), vec(any::<u8>(), 0..300)), 0..3),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate),
                (aggregator, communities, originator_id, cluster_list, unknown),
            )| PathAttrs {
                origin,
                as_path,
                next_hop,
                med,
                local_pref,
                atomic_aggregate,
                aggregator,
                communities,
                originator_id,
                cluster_list,
                // Distinct unknown optional transitive codes (repeats would be discarded).
                unknown: unknown
                    .into_iter()
                    .zip([0x63u8, 0x70, 0xf0])
                    .map(|((partial, value), code)| RawAttr {
                        flags: attr_flag::OPTIONAL
                            | attr_flag::TRANSITIVE
                            | if partial { attr_flag::PARTIAL } else { 0 },
                        code,
                        value,
                    })
                    .collect(),
            },
        )
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (any::<u32>(), vec(v4net(), 0..10)).prop_map(|(nh, nets)| MpReach {
            family: Family::IPV4_UNICAST,
            next_hop: IpAddr::V4(Ipv4Addr::from(nh)),
            link_local: None,
            nlri: nets.into_iter().map(IpNet::V4).collect(),
        }),
        (
            any::<u128>(),
            proptest::option::of(any::<u128>()),
            vec(v6net(), 0..10)
        )
            .prop_map(|(nh, ll, nets)| MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: IpAddr::V6(Ipv6Addr::from(nh)),
                link_local: ll.map(Ipv6Addr::from),
                nlri: nets.into_iter().map(IpNet::V6).collect(),
            }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        vec(v4net(), 0..10).prop_map(|nets| MpUnreach {
            family: Family::IPV4_UNICAST,
            withdrawn: nets.into_iter().map(IpNet::V4).collect(),
        }),
        vec(v6net(), 0..10).prop_map(|nets| MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: nets.into_iter().map(IpNet::V6).collect(),
        }),
    ]
}

fn update(four: bool) -> impl Strategy<Value = Update> {
    (
        vec(v4net(), 0..20),
        attrs(four),
        proptest::option::of(mp_reach()),
        proptest::option::of(mp_unreach()),
        vec(v4net(), 0..20),
    )
        .prop_map(|(withdrawn, attrs, mp_reach, mp_unreach, nlri)| Update {
            withdrawn,
            attrs,
            mp_reach,
            mp_unreach,
            nlri,
        })
}

fn message(four: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(four).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..64)).prop_map(|(code, subcode, data)| {
            Message::Notification(Notification {
                code,
                subcode,
                data,
            })
        }),
        Just(Message::Keepalive),
        family().prop_map(Message::RouteRefresh),
    ]
}

fn round_trip(msg: &Message, ctx: Context) -> Result<(), TestCaseError> {
    // Too many generated capabilities or attributes for one message is not a codec bug.
    let Ok(bytes) = encode(msg, ctx) else {
        return Ok(());
    };
    prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
    prop_assert_eq!(frame(&bytes), Ok(Some(bytes.len())));
    let (back, _faults) = decode(&bytes, ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, msg);
    Ok(())
}

proptest! {
    #[test]
    fn messages_round_trip_with_four_octet_as(msg in message(true)) {
        round_trip(&msg, Context { four_octet_as: true })?;
    }

    #[test]
    fn messages_round_trip_with_two_octet_as(msg in message(false)) {
        round_trip(&msg, Context { four_octet_as: false })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..600), kind in 0u8..7, four in any::<bool>()) {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes, Context { four_octet_as: four });
        let _ = frame(&body);
    }

    #[test]
    fn corrupted_valid_messages_never_panic(
        msg in message(true),
        flips in vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        if let Ok(mut bytes) = encode(&msg, Context::default()) {
            for (at, value) in flips {
                // Keep the header intact so the body parsers, not framing, see the damage.
                let i = 19 + at % bytes.len().saturating_sub(19).max(1);
                if i < bytes.len() {
                    bytes[i] = value;
                }
            }
            let _ = decode(&bytes, Context::default());
        }
    }
}
