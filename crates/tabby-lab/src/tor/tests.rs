use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn tor(v6: bool) -> TorState {
    TorState {
        daemon: TorDaemon::Frr,
        netns: "tabby-lab-t.tor".to_owned(),
        address: Ipv4Addr::new(172, 30, 0, 254),
        address_v6: v6.then(|| "fd00:172:30::254".parse().unwrap()),
        asn: TOR_AS,
        log: "x".into(),
    }
}

fn nodes(v6: bool) -> Vec<NodeState> {
    (1..=2u8)
        .map(|i| NodeState {
            name: format!("node-{i}"),
            netns: format!("tabby-lab-t.node-{i}"),
            address: Ipv4Addr::new(172, 30, 0, 10 + i),
            address_v6: v6
                .then(|| Ipv6Addr::new(0xfd00, 0x172, 0x30, 0, 0, 0, 0, 0x10 + u16::from(i))),
            agent_pid: 0,
            log: "x".into(),
        })
        .collect()
}

#[test]
fn a_dual_stack_router_has_one_session_per_family_and_advertises_only_the_outside() {
    let frr = frr_conf(&tor(true), &nodes(true));
    // IPv6 neighbours are not activated for IPv4 (FRR's default) but for IPv6, and every
    // session sends only the outside network of its family.
    assert!(
        frr.contains("  no neighbor fd00:172:30::11 activate\n"),
        "{frr}"
    );
    let v6 = frr.split("address-family ipv6 unicast").nth(1).unwrap();
    assert!(v6.contains("  network 2001:db8:203::/64\n"), "{frr}");
    assert!(
        v6.contains("  neighbor fd00:172:30::12 route-map OUTSIDE-ipv6 out\n"),
        "{frr}"
    );
    assert!(!v6.contains("neighbor 172.30.0.11"), "{frr}");
    assert!(frr.contains("  network 203.0.113.0/24\n"), "{frr}");

    let bird = bird_conf(&tor(true), &nodes(true));
    assert!(
        bird.contains("protocol bgp node_2_v6 from nodes6 { neighbor fd00:172:30::12 as 64512; }"),
        "{bird}"
    );
    assert!(bird.contains("protocol kernel kernel6"), "{bird}");
    let gobgp = gobgp_conf(&tor(true), &nodes(true));
    assert!(
        gobgp.contains("neighbor-address = \"fd00:172:30::11\"")
            && gobgp.contains("afi-safi-name = \"ipv6-unicast\"")
            && gobgp.contains("ip-prefix = \"2001:db8:203::/64\""),
        "{gobgp}"
    );
    assert_eq!(
        outside_routes(&tor(true)),
        vec![
            (
                "203.0.113.1".parse().unwrap(),
                "172.30.0.254".parse().unwrap()
            ),
            (
                "2001:db8:203::1".parse().unwrap(),
                "fd00:172:30::254".parse().unwrap()
            ),
        ]
    );
}

#[test]
fn an_ipv4_router_has_no_ipv6_sessions() {
    let bird = bird_conf(&tor(false), &nodes(false));
    assert!(!bird.contains("ipv6") && !bird.contains("_v6"), "{bird}");
    let frr = frr_conf(&tor(false), &nodes(false));
    assert!(!frr.contains("network 2001:db8"), "{frr}");
    let gobgp = gobgp_conf(&tor(false), &nodes(false));
    assert!(
        !gobgp.contains("ipv6-unicast") && !gobgp.contains("2001:db8"),
        "{gobgp}"
    );
    assert_eq!(outside_routes(&tor(false)).len(), 1);
}
