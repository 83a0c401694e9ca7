//! Export rules and attribute rewriting.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::wire::{AsPath, Origin, PathAttrs, RawAttr};

fn me(cluster: bool) -> SpeakerConfig {
    let mut cfg = SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1));
    if cluster {
        cfg.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    }
    cfg
}

const FAMILIES: &[Family] = &[Family::IPV4_UNICAST];

fn target(last: u8, ibgp: bool) -> Target<'static> {
    Target {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
        ibgp,
        rr_client: false,
        next_hop_self: false,
        next_hop_keep: false,
        shared_subnets: &[],
        self_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        self_v6: None,
        families: FAMILIES,
    }
}

fn learned(from: u8, attrs: PathAttrs) -> Best {
    Best {
        source: Source::Peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, from))),
        attrs: Arc::new(attrs),
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, from))),
    }
}

fn info(ebgp: bool, rr_client: bool) -> Option<PeerInfo> {
    Some(PeerInfo {
        ebgp,
        router_id: Ipv4Addr::new(10, 0, 0, 9),
        rr_client,
    })
}

fn p() -> IpNet {
    "10.1.0.0/26".parse().unwrap()
}

fn ibgp_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(300),
        med: Some(5),
        unknown: vec![RawAttr {
            flags: 0xc0,
            code: 0x63,
            value: vec![1],
        }],
        ..PathAttrs::default()
    }
}

#[test]
fn ebgp_export_prepends_sets_next_hop_self_and_strips_internal_attributes() {
    let mut attrs = ibgp_attrs();
    attrs.originator_id = Some(Ipv4Addr::new(10, 0, 0, 7));
    attrs.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1)];
    let e = export(
        &p(),
        &learned(2, attrs),
        info(false, false),
        &target(3, false),
        &me(false),
    )
    .expect("exported");
    assert_eq!(e.next_hop, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(e.attrs.as_path, Some(AsPath::sequence(vec![64512])));
    assert_eq!(e.attrs.local_pref, None);
    assert_eq!(e.attrs.med, None);
    assert_eq!(e.attrs.originator_id, None);
    assert!(e.attrs.cluster_list.is_empty());
    // Passed-on unknown transitive attributes carry the Partial bit.
    assert_eq!(e.attrs.unknown[0].flags, 0xe0);
}

#[test]
fn ibgp_split_horizon_without_reflection() {
    let best = learned(2, ibgp_attrs());
    assert_eq!(
        export(
            &p(),
            &best,
            info(false, false),
            &target(3, true),
            &me(false)
        ),
        None
    );
    // eBGP-learned routes go to iBGP peers, next hop unchanged, LOCAL_PREF kept.
    let e = export(&p(), &best, info(true, false), &target(3, true), &me(false)).unwrap();
    assert_eq!(e.next_hop, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(e.attrs.local_pref, Some(300));
    // ...unless next-hop-self is asked for.
    let mut t = target(3, true);
    t.next_hop_self = true;
    let e = export(&p(), &best, info(true, false), &t, &me(false)).unwrap();
    assert_eq!(e.next_hop, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn reflection_rules_for_clients_and_non_clients() {
    let best = learned(2, ibgp_attrs());
    let mut client = target(3, true);
    client.rr_client = true;
    let non_client = target(4, true);
    // From a client: to clients and non-clients, with ORIGINATOR_ID and CLUSTER_LIST.
    let e = export(&p(), &best, info(false, true), &non_client, &me(true)).unwrap();
    assert_eq!(e.attrs.originator_id, Some(Ipv4Addr::new(10, 0, 0, 9)));
    assert_eq!(e.attrs.cluster_list, vec![Ipv4Addr::new(1, 1, 1, 1)]);
    assert_eq!(e.next_hop, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
    assert!(export(&p(), &best, info(false, true), &client, &me(true)).is_some());
    // From a non-client: to clients only.
    assert!(export(&p(), &best, info(false, false), &client, &me(true)).is_some());
    assert_eq!(
        export(&p(), &best, info(false, false), &non_client, &me(true)),
        None
    );
}

#[test]
fn never_back_to_the_source_nor_outside_negotiated_families() {
    let best = learned(3, ibgp_attrs());
    assert_eq!(
        export(
            &p(),
            &best,
            info(true, false),
            &target(3, false),
            &me(false)
        ),
        None
    );
    let v6: IpNet = "2001:db8::/64".parse().unwrap();
    assert_eq!(
        export(&v6, &best, info(true, false), &target(4, false), &me(false)),
        None
    );
}

#[test]
fn well_known_communities() {
    let with = |c| {
        learned(
            2,
            PathAttrs {
                communities: vec![c],
                ..ibgp_attrs()
            },
        )
    };
    let from = info(true, false);
    assert_eq!(
        export(
            &p(),
            &with(NO_ADVERTISE),
            from,
            &target(3, true),
            &me(false)
        ),
        None
    );
    assert_eq!(
        export(&p(), &with(NO_EXPORT), from, &target(3, false), &me(false)),
        None
    );
    assert!(export(&p(), &with(NO_EXPORT), from, &target(3, true), &me(false)).is_some());
}

#[test]
fn ebgp_keeps_a_learned_next_hop_on_the_neighbours_subnet_unless_told_otherwise() {
    let subnet: [IpNet; 1] = ["192.0.2.0/24".parse().unwrap()];
    let other: [IpNet; 1] = ["198.51.100.0/24".parse().unwrap()];
    let third_party = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let ours = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let next_hop = |shared: &[IpNet], keep: bool, nh_self: bool, best: &Best| {
        let mut to = target(3, false);
        to.shared_subnets = shared;
        to.next_hop_keep = keep;
        to.next_hop_self = nh_self;
        let from = if best.source == Source::Local {
            None
        } else {
            info(false, false)
        };
        export(&p(), best, from, &to, &me(false)).map(|e| e.next_hop)
    };
    let learned = learned(2, ibgp_attrs());
    // Auto: kept on the shared subnet, ours elsewhere.
    assert_eq!(next_hop(&subnet, false, false, &learned), Some(third_party));
    assert_eq!(next_hop(&other, false, false, &learned), Some(ours));
    assert_eq!(next_hop(&[], false, false, &learned), Some(ours));
    // Keep: always the learned one; Self: always ours.
    assert_eq!(next_hop(&[], true, false, &learned), Some(third_party));
    assert_eq!(next_hop(&subnet, false, true, &learned), Some(ours));
    // Our own routes always carry our address.
    let local = Best {
        source: Source::Local,
        attrs: Arc::new(PathAttrs::default()),
        next_hop: Some(third_party),
    };
    assert_eq!(next_hop(&subnet, true, false, &local), Some(ours));
}
