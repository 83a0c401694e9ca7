use std::net::IpAddr;
use std::sync::Arc;

use tabby_calc::{Delta, IpSetKind, IpSetMember};

use super::{MAX_ELEMENTS, key};
use crate::apply::FakeNft;
use crate::nfnl::{ElementBatch, ElementKey, ElementOp, SetChange};
use crate::nft::names::{self, Family, SetPart};
use crate::nft::tests::{allow_from, created, endpoint, members, policy};
use crate::nft::{Config, NftTable};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid")
}

fn fast(deltas: &[Delta]) -> (NftTable, FakeNft) {
    let mut t = NftTable::new(Config::default());
    let mut nft = FakeNft::with_netlink();
    for d in deltas {
        t.apply(d);
    }
    let first = t.sync(&mut nft).expect("fake").expect("full script");
    assert!(
        first.full && !first.netlink,
        "the first write is a full script"
    );
    (t, nft)
}

fn set(id: &str, part: SetPart, f: Family) -> String {
    names::set_name(&Arc::from(id), part, f)
}

fn net_port(addr: &str, protocol: u8, port: u16) -> IpSetMember {
    IpSetMember::NetPort {
        addr: ip(addr),
        protocol,
        port,
    }
}

#[test]
fn keys_are_parsed_back_only_for_the_sets_that_take_them() {
    assert_eq!(
        key("s4_0123", "10.0.0.1"),
        Some(ElementKey::Addr(ip("10.0.0.1")))
    );
    assert_eq!(
        key("s6_0123", "fd00::1"),
        Some(ElementKey::Addr(ip("fd00::1")))
    );
    assert_eq!(
        key("n6_0123", "fd00::1 . 17 . 53"),
        Some(ElementKey::AddrProtoPort {
            addr: ip("fd00::1"),
            protocol: 17,
            port: 53
        })
    );
    // Wrong family, interval sets, malformed triples: not for the fast path.
    assert_eq!(key("s4_0123", "fd00::1"), None);
    assert_eq!(key("n4_0123", "fd00::1 . 6 . 80"), None);
    assert_eq!(key("p4_0123", "10.0.0.0/24"), None);
    assert_eq!(key("n4_0123", "10.0.0.1 . 6"), None);
    assert_eq!(key("n4_0123", "10.0.0.1 . 6 . 80 . 1"), None);
    assert_eq!(key("n4_0123", "10.0.0.1 . 6 . 70000"), None);
    assert_eq!(key("x", "10.0.0.1"), None);
}

#[test]
fn address_changes_go_as_one_batch_and_no_script() {
    let (mut t, mut nft) = fast(&[
        created("s:a", &["10.0.0.2/32"]),
        created("s:b", &["fd00::2/128"]),
        policy("p", vec![allow_from("s:a"), allow_from("s:b")]),
        endpoint("tb1", &["p"]),
    ]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &["10.0.0.2/32"]));
    t.apply(&members("s:b", &["fd00::3/128"], &[]));
    let s = t.sync(&mut nft).expect("fake").expect("written");
    assert!(s.netlink && !s.full);
    let a4 = set("s:a", SetPart::Hosts, Family::V4);
    let b6 = set("s:b", SetPart::Hosts, Family::V6);
    // The text is still what nft would have been given.
    assert!(
        s.text
            .contains(&format!("delete element inet tabby {a4} {{ 10.0.0.2 }}")),
        "{}",
        s.text
    );
    assert_eq!(nft.scripts.len(), 1, "only the first, full script");
    let mut want = vec![
        SetChange {
            set: a4.clone(),
            op: ElementOp::Delete,
            keys: vec![ElementKey::Addr(ip("10.0.0.2"))],
        },
        SetChange {
            set: a4,
            op: ElementOp::Add,
            keys: vec![ElementKey::Addr(ip("10.0.0.3"))],
        },
        SetChange {
            set: b6,
            op: ElementOp::Add,
            keys: vec![ElementKey::Addr(ip("fd00::3"))],
        },
    ];
    // Sets are written in name order.
    want.sort_by(|x, y| x.set.cmp(&y.set));
    assert_eq!(
        nft.batches,
        vec![ElementBatch {
            table: "tabby".to_owned(),
            changes: want
        }]
    );
    assert_eq!(t.sync(&mut nft).expect("fake"), None, "nothing left");
}

#[test]
fn named_port_changes_use_concatenated_keys() {
    let (mut t, mut nft) = fast(&[Delta::IpSetCreated {
        id: Arc::from("s:np"),
        kind: IpSetKind::NetPorts,
        members: vec![net_port("10.0.0.1", 6, 80)],
    }]);
    t.apply(&Delta::IpSetMembers {
        id: Arc::from("s:np"),
        added: vec![net_port("fd00::1", 17, 53)],
        removed: vec![net_port("10.0.0.1", 6, 80)],
    });
    let s = t.sync(&mut nft).expect("fake").expect("written");
    assert!(s.netlink);
    let changes = &nft.batches[0].changes;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.contains(&SetChange {
        set: set("s:np", SetPart::NamedPorts, Family::V4),
        op: ElementOp::Delete,
        keys: vec![ElementKey::AddrProtoPort {
            addr: ip("10.0.0.1"),
            protocol: 6,
            port: 80
        }],
    }));
    assert!(changes.contains(&SetChange {
        set: set("s:np", SetPart::NamedPorts, Family::V6),
        op: ElementOp::Add,
        keys: vec![ElementKey::AddrProtoPort {
            addr: ip("fd00::1"),
            protocol: 17,
            port: 53
        }],
    }));
}

#[test]
fn anything_but_hash_set_elements_goes_through_nft() {
    let (mut t, mut nft) = fast(&[
        created("s:a", &["10.0.0.2/32", "192.0.2.0/24"]),
        policy("p", vec![allow_from("s:a")]),
    ]);
    // A network: the interval set.
    t.apply(&members("s:a", &["198.51.100.0/24"], &[]));
    assert!(!t.sync(&mut nft).expect("fake").expect("script").netlink);
    // An address together with a new policy chain.
    t.apply(&members("s:a", &["10.0.0.9/32"], &[]));
    t.apply(&policy("q", vec![allow_from("s:a")]));
    assert!(!t.sync(&mut nft).expect("fake").expect("script").netlink);
    // A new set with its elements.
    t.apply(&created("s:new", &["10.0.0.4/32"]));
    assert!(!t.sync(&mut nft).expect("fake").expect("script").netlink);
    // More elements than one batch takes.
    let many: Vec<String> = (0..=MAX_ELEMENTS)
        .map(|i| format!("10.{}.{}.1/32", i / 250, i % 250))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    t.apply(&members("s:a", &many, &[]));
    assert!(!t.sync(&mut nft).expect("fake").expect("script").netlink);
    assert_eq!(nft.scripts.len(), 5);
    assert!(nft.batches.is_empty(), "{:?}", nft.batches);
}

#[test]
fn a_failed_batch_makes_the_next_write_a_full_script() {
    let (mut t, mut nft) = fast(&[created("s:a", &["10.0.0.2/32"])]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &[]));
    nft.fail_next = Some("kernel said no".to_owned());
    let err = t.sync(&mut nft).expect_err("fails");
    assert!(err.to_string().contains("kernel said no"), "{err}");
    assert_eq!(nft.batches.len(), 1);
    let s = t.sync(&mut nft).expect("fake").expect("full script");
    assert!(s.full && !s.netlink);
    assert!(s.text.contains("10.0.0.3") && s.text.contains("10.0.0.2"));
    // And after it, the fast path again.
    t.apply(&members("s:a", &[], &["10.0.0.3/32"]));
    assert!(t.sync(&mut nft).expect("fake").expect("batch").netlink);
    assert_eq!(nft.scripts.len(), 2);
    assert_eq!(nft.batches.len(), 2);
}

#[test]
fn changes_that_cancel_out_write_nothing() {
    let (mut t, mut nft) = fast(&[created("s:a", &[])]);
    t.apply(&members("s:a", &["10.0.0.3/32"], &[]));
    t.apply(&members("s:a", &[], &["10.0.0.3/32"]));
    assert_eq!(t.sync(&mut nft).expect("fake"), None);
    assert!(!t.has_pending());
    assert!(nft.batches.is_empty() && nft.scripts.len() == 1);
}
