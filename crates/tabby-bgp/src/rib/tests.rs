//! Best-path selection, step by step (RFC 4271 9.1.2.2, RFC 4456 9).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::wire::{AsPath, Origin};

struct C {
    peer: u8,
    ebgp: bool,
    router_id: u8,
    attrs: PathAttrs,
}

fn c(peer: u8) -> C {
    C {
        peer,
        ebgp: true,
        router_id: peer,
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000 + u32::from(peer)])),
            ..PathAttrs::default()
        },
    }
}

impl C {
    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// The peer whose candidate wins.
fn winner(cands: Vec<C>) -> u8 {
    let routes: Vec<RouteIn> = cands
        .iter()
        .map(|c| RouteIn {
            attrs: Arc::new(c.attrs.clone()),
            next_hop: addr(c.peer),
            stale: false,
        })
        .collect();
    let list = cands
        .iter()
        .zip(&routes)
        .map(|(c, route)| Candidate {
            peer: addr(c.peer),
            route,
            info: PeerInfo {
                ebgp: c.ebgp,
                router_id: Ipv4Addr::new(192, 0, 2, c.router_id),
                rr_client: false,
            },
        })
        .collect();
    let best = select(list).expect("a winner");
    let IpAddr::V4(a) = best.peer else {
        unreachable!()
    };
    a.octets()[3]
}

#[test]
fn local_pref_beats_path_length() {
    let long = c(1).with(|c| {
        c.attrs.local_pref = Some(200);
        c.attrs.as_path = Some(AsPath::sequence(vec![1, 2, 3]));
    });
    assert_eq!(winner(vec![c(2), long]), 1);
}

#[test]
fn shorter_as_path_then_lower_origin() {
    let long = c(1).with(|c| c.attrs.as_path = Some(AsPath::sequence(vec![1, 2])));
    assert_eq!(winner(vec![long, c(2)]), 2);
    let egp = c(1).with(|c| c.attrs.origin = Some(Origin::Egp));
    let incomplete = c(2).with(|c| c.attrs.origin = Some(Origin::Incomplete));
    assert_eq!(winner(vec![incomplete, egp, c(9)]), 9);
}

#[test]
fn med_is_compared_only_between_routes_from_the_same_neighbour_as() {
    // 1 and 2 come from AS 100 (2 has the lower MED, so 1 is out); 3 from AS 200 with a high
    // MED survives the MED step and wins on router id. A plain "lowest MED" would pick 2.
    let from = |as_: u32, med: u32, peer: u8, rid: u8| {
        c(peer).with(|c| {
            c.attrs.as_path = Some(AsPath::sequence(vec![as_]));
            c.attrs.med = Some(med);
            c.router_id = rid;
        })
    };
    assert_eq!(
        winner(vec![
            from(100, 10, 1, 1),
            from(100, 5, 2, 50),
            from(200, 99, 3, 20)
        ]),
        3
    );
    // Within one AS the lower MED wins even against a lower router id.
    assert_eq!(winner(vec![from(100, 10, 1, 1), from(100, 5, 2, 50)]), 2);
}

#[test]
fn ebgp_beats_ibgp_then_router_id_then_address() {
    let ibgp = c(1).with(|c| {
        c.ebgp = false;
        c.attrs.as_path = Some(AsPath::sequence(vec![65009]));
    });
    let ebgp = c(2).with(|c| {
        c.router_id = 200;
        c.attrs.as_path = Some(AsPath::sequence(vec![65009]));
    });
    assert_eq!(winner(vec![ibgp, ebgp]), 2);
    let same = |peer, rid| {
        c(peer).with(|c| {
            c.router_id = rid;
            c.attrs.as_path = Some(AsPath::sequence(vec![65009]));
        })
    };
    assert_eq!(winner(vec![same(1, 9), same(2, 3)]), 2);
    assert_eq!(winner(vec![same(7, 3), same(4, 3)]), 4);
}

#[test]
fn reflected_routes_compare_originator_id_and_cluster_list_length() {
    let reflected = |peer, originator: u8, clusters: usize| {
        c(peer).with(|c| {
            c.ebgp = false;
            c.router_id = 1;
            c.attrs.as_path = Some(AsPath::default());
            c.attrs.originator_id = Some(Ipv4Addr::new(192, 0, 2, originator));
            c.attrs.cluster_list = vec![Ipv4Addr::new(1, 1, 1, 1); clusters];
        })
    };
    // Same session router id; the ORIGINATOR_ID decides.
    assert_eq!(winner(vec![reflected(1, 30, 1), reflected(2, 20, 1)]), 2);
    // Same originator: the shorter cluster list.
    assert_eq!(winner(vec![reflected(1, 20, 2), reflected(2, 20, 1)]), 2);
}

#[test]
fn local_routes_win_and_stale_routes_can_be_purged() {
    let mut rib = Rib::default();
    let p: IpNet = "10.1.0.0/26".parse().unwrap();
    let peer = addr(2);
    rib.set_info(
        peer,
        PeerInfo {
            ebgp: true,
            router_id: Ipv4Addr::new(10, 0, 0, 2),
            rr_client: false,
        },
    );
    let route = RouteIn {
        attrs: Arc::new(c(2).attrs),
        next_hop: peer,
        stale: false,
    };
    assert!(rib.set_in(peer, p, Some(route.clone())));
    assert!(!rib.set_in(peer, p, Some(route)), "same route is no change");
    let (old, new) = rib.reselect(p).unwrap();
    assert_eq!((old, new.unwrap().source), (None, Source::Peer(peer)));

    rib.set_local(p, Some(Arc::new(PathAttrs::default())));
    assert_eq!(rib.reselect(p).unwrap().1.unwrap().source, Source::Local);
    rib.set_local(p, None);
    assert_eq!(
        rib.reselect(p).unwrap().1.unwrap().source,
        Source::Peer(peer)
    );

    rib.mark_stale(&peer);
    assert_eq!(rib.stale_len(&peer), 1);
    assert_eq!(
        rib.remove_in(&peer, Some(Family::IPV6_UNICAST), true),
        vec![]
    );
    assert_eq!(
        rib.remove_in(&peer, Some(Family::IPV4_UNICAST), true),
        vec![p]
    );
    assert_eq!(rib.reselect(p).unwrap().1, None);
}

#[test]
fn interner_shares_equal_sets_and_sweeps_unused_ones() {
    let mut i = Interner::default();
    let with = |med| PathAttrs {
        med: Some(med),
        ..PathAttrs::default()
    };
    let a = i.intern(with(1));
    let b = i.intern_arc(Arc::new(with(1)));
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &i.intern(with(2))));
    // Thousands of sets used once and dropped: the set stays near the live ones.
    for med in 3..5000 {
        drop(i.intern(with(med)));
    }
    assert!(i.len() <= 2048, "{} sets held", i.len());
    assert!(
        Arc::ptr_eq(&a, &i.intern(with(1))),
        "a live set survives sweeps"
    );
}
