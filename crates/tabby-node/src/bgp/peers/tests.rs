use tabby_model::{LoadOptions, load};

use super::*;

fn inputs(yaml: &str) -> BgpInputs {
    let mut i = BgpInputs::default();
    for l in load(yaml, "test", &LoadOptions::default()).expect("test input loads") {
        assert!(
            i.upsert(&l.resource),
            "{:?} is a BGP kind",
            l.resource.kind()
        );
    }
    i
}

fn node(name: &str, v4: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}, labels: {{name: {name}}}}}\nspec:\n  bgp: {{ipv4Address: {v4}/24, ipv6Address: 'fd00::{}/64'{extra}}}\n",
        v4.rsplit('.').next().expect("dotted")
    )
}

fn three_nodes() -> String {
    [
        node("a", "10.0.0.1", ""),
        node("b", "10.0.0.2", ""),
        node("c", "10.0.0.10", ""),
    ]
    .concat()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn full_mesh_by_default_on_64512_passive_towards_greater_address_strings() {
    let i = inputs(&three_nodes());
    let d = i.desired("b").expect("b runs BGP");
    assert_eq!(d.speaker.asn, 64512);
    assert_eq!(d.speaker.router_id, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(d.speaker.cluster_id, None);
    assert_eq!(d.speaker.listen.port(), 179);
    assert_eq!(d.speaker.restart_time, 120);
    let names: Vec<_> = d.peers.values().map(|p| p.name.as_str()).collect();
    // As Calico (BIRD and BIRD6): an IPv4 and an IPv6 session with each node.
    assert_eq!(
        names,
        [
            "Mesh_10_0_0_1",
            "Mesh_10_0_0_10",
            "Mesh_fd00__1",
            "Mesh_fd00__10"
        ]
    );
    let a = &d.peers[&ip("10.0.0.1")];
    assert_eq!(a.kind, PeerKind::Mesh);
    assert_eq!(a.config.asn, 64512);
    assert_eq!(a.config.local_addr, Some(ip("10.0.0.2")));
    assert_eq!(a.config.families, Some(vec![Family::IPV4_UNICAST]));
    let a6 = &d.peers[&ip("fd00::1")];
    assert_eq!(a6.kind, PeerKind::Mesh);
    assert_eq!(a6.config.local_addr, Some(ip("fd00::2")));
    assert_eq!(a6.config.families, Some(vec![Family::IPV6_UNICAST]));
    assert!(!a6.config.passive, "fd00::1 < fd00::2: b connects");
    assert_eq!(a.config.next_hop_v6, Some("fd00::2".parse().expect("v6")));
    assert!(!a.config.passive, "10.0.0.1 < 10.0.0.2: b connects");
    // As strings "10.0.0.10" < "10.0.0.2", so b connects to c too, and c waits for b.
    assert!(!d.peers[&ip("10.0.0.10")].config.passive);
    let c = i.desired("c").expect("c runs BGP");
    assert!(c.peers[&ip("10.0.0.2")].config.passive);
}

#[test]
fn as_numbers_ports_and_mesh_switch_come_from_bgp_configuration() {
    let yaml = format!(
        "{}{}---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{asNumber: 65010, listenPort: 1179, nodeMeshMaxRestartTime: 30s}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: node.b}}\nspec: {{listenPort: 2179}}\n",
        node("a", "10.0.0.1", ""),
        node("b", "10.0.0.2", ", asNumber: 65020"),
    );
    let i = inputs(&yaml);
    let a = i.desired("a").expect("a");
    assert_eq!(a.speaker.asn, 65010);
    assert_eq!(a.speaker.listen.port(), 1179);
    assert_eq!(a.speaker.restart_time, 30);
    let to_b = &a.peers[&ip("10.0.0.2")].config;
    assert_eq!((to_b.asn, to_b.port), (65020, 2179));
    let b = i.desired("b").expect("b");
    assert_eq!((b.speaker.asn, b.speaker.listen.port()), (65020, 2179));

    let mut off = i.clone();
    let before = off.generation();
    let cfg = "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n";
    for l in load(cfg, "t", &LoadOptions::default()).expect("loads") {
        off.upsert(&l.resource);
    }
    assert!(off.generation() > before);
    assert!(off.desired("a").expect("a").peers.is_empty());
}

#[test]
fn route_reflectors_leave_the_mesh_and_peer_by_selector_both_ways() {
    let yaml = format!(
        "{}{}{}---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: to-rr}}\nspec: {{nodeSelector: all(), peerSelector: \"has(rr)\"}}\n",
        node("a", "10.0.0.1", ""),
        node("b", "10.0.0.2", ""),
        node("rr", "10.0.0.9", ", routeReflectorClusterID: 224.0.0.1")
            .replace("labels: {name: rr}", "labels: {name: rr, rr: 'yes'}"),
    );
    let i = inputs(&yaml);
    let a = i.desired("a").expect("a");
    assert_eq!(
        a.peers.len(),
        2,
        "IPv4 and IPv6 to the reflector: {:?}",
        a.peers
    );
    assert_eq!(a.peers[&ip("fd00::9")].kind, PeerKind::Reflector);
    let to_rr = &a.peers[&ip("10.0.0.9")];
    assert_eq!(to_rr.kind, PeerKind::Reflector);
    assert_eq!(to_rr.name, "Node_10_0_0_9");
    assert!(!to_rr.config.rr_client);
    let rr = i.desired("rr").expect("rr");
    assert_eq!(rr.speaker.cluster_id, Some(Ipv4Addr::new(224, 0, 0, 1)));
    let clients: Vec<_> = rr.peers.keys().copied().collect();
    assert_eq!(
        clients,
        [ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1"), ip("fd00::2")]
    );
    assert!(
        rr.peers
            .values()
            .all(|p| p.config.rr_client && p.kind == PeerKind::ReflectorClient)
    );
}

#[test]
fn explicit_peers_by_node_selector_or_globally_replace_mesh_sessions() {
    let yaml = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{node: a, peerIP: '10.0.0.254:1179', asNumber: 65001, nextHopMode: Self}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: everyone}}\nspec: {{peerIP: 10.0.0.2, asNumber: 64512, sourceAddress: None}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: by-label}}\nspec: {{nodeSelector: name == 'c', peerIP: 'fd00::99', asNumber: 65099}}\n",
        three_nodes()
    );
    let i = inputs(&yaml);
    let a = i.desired("a").expect("a");
    let tor = &a.peers[&ip("10.0.0.254")];
    assert_eq!(tor.kind, PeerKind::NodeSpecific);
    assert_eq!(tor.name, "Node_10_0_0_254");
    assert_eq!((tor.config.asn, tor.config.port), (65001, 1179));
    assert!(tor.config.next_hop_self);
    let b = &a.peers[&ip("10.0.0.2")];
    assert_eq!(
        b.kind,
        PeerKind::Global,
        "the BGPPeer replaces the mesh session"
    );
    assert_eq!(b.config.local_addr, None);
    assert!(!a.peers.contains_key(&ip("fd00::99")));
    let b = i.desired("b").expect("b");
    assert!(!b.peers.contains_key(&ip("10.0.0.254")));
    assert!(
        !b.peers.contains_key(&ip("10.0.0.2")),
        "never a session to itself"
    );
    let c = i.desired("c").expect("c");
    let v6 = &c.peers[&ip("fd00::99")];
    assert_eq!(v6.config.local_addr, Some(ip("fd00::10")));
    assert_eq!(v6.name, "Node_fd00__99");
}

#[test]
fn a_node_without_bgp_cannot_run_the_speaker_and_says_why() {
    let mut i = inputs(&three_nodes());
    assert_eq!(i.desired("zz"), Err(Unavailable::NoNode("zz".into())));
    let plain = "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: p}\nspec: {}\n";
    for l in load(plain, "t", &LoadOptions::default()).expect("loads") {
        i.upsert(&l.resource);
    }
    assert!(!i.has_bgp_spec("p"));
    assert_eq!(i.desired("p"), Err(Unavailable::NoBgpSpec("p".into())));
    // Others do not mesh with a node that has no BGP addresses.
    assert!(
        !i.desired("a")
            .expect("a")
            .peers
            .keys()
            .any(|a| a.is_unspecified())
    );
    let g = i.generation();
    i.remove(Kind::Node, "p");
    assert!(i.generation() > g);
    i.remove(Kind::Node, "p");
    assert_eq!(
        i.generation(),
        g + 1,
        "removing what is not there changes nothing"
    );
}

#[test]
fn next_hops_are_kept_on_a_shared_subnet_or_when_a_bgp_peer_says_keep() {
    let peer = |name: &str, ip: &str, extra: &str| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{node: a, peerIP: '{ip}', asNumber: 65001{extra}}}\n"
        )
    };
    let yaml = [
        three_nodes(),
        peer("tor", "10.0.0.254", ""),
        peer("far", "192.0.2.1", ""),
        peer("keep", "192.0.2.2", ", keepOriginalNextHop: true"),
        peer("mode", "192.0.2.3", ", nextHopMode: Keep"),
        peer("self", "10.0.0.253", ", nextHopMode: Self"),
    ]
    .concat();
    let a = i_desired(&yaml);
    let cfg = |ip_: &str| a.peers[&ip(ip_)].config.clone();
    let subnet: IpNet = "10.0.0.0/24".parse().expect("net");
    assert_eq!(cfg("10.0.0.254").shared_subnets, vec![subnet]);
    assert!(!cfg("10.0.0.254").next_hop_keep && !cfg("10.0.0.254").next_hop_self);
    assert_eq!(cfg("192.0.2.1").shared_subnets, vec![]);
    assert!(cfg("192.0.2.2").next_hop_keep);
    assert!(cfg("192.0.2.3").next_hop_keep);
    assert!(cfg("10.0.0.253").next_hop_self && !cfg("10.0.0.253").next_hop_keep);
    // Mesh peers on the same /24 share it too (iBGP keeps next hops anyway).
    assert_eq!(cfg("10.0.0.10").shared_subnets, vec![subnet]);
}

fn i_desired(yaml: &str) -> Desired {
    inputs(yaml).desired("a").expect("a")
}

#[test]
fn prefix_limits_come_from_tabby_annotations_on_bgp_peers_and_the_mesh_configuration() {
    let config = |limit: &str| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default, annotations: {{tabby.dev/node-mesh-max-prefixes: '{limit}'}}}}\nspec: {{}}\n"
        )
    };
    let yaml = format!(
        "{}{}---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor, annotations: {{tabby.dev/max-prefixes: '1000'}}}}\nspec: {{node: a, peerIP: 10.0.0.254, asNumber: 65001}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: to-c, annotations: {{tabby.dev/max-prefixes: '7'}}}}\nspec: {{node: a, peerSelector: name == 'c'}}\n---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: plain}}\nspec: {{node: a, peerIP: 10.0.0.253, asNumber: 65001}}\n",
        three_nodes(),
        config("50"),
    );
    let mut i = inputs(&yaml);
    let limit = |i: &BgpInputs, addr: &str| {
        i.desired("a").expect("a").peers[&ip(addr)]
            .config
            .max_prefixes
    };
    assert_eq!(limit(&i, "10.0.0.254"), Some(1000));
    assert_eq!(
        limit(&i, "10.0.0.10"),
        Some(7),
        "the BGPPeer's, not the mesh's"
    );
    assert_eq!(limit(&i, "10.0.0.2"), Some(50), "the mesh's");
    assert_eq!(limit(&i, "10.0.0.253"), None);

    // Only the annotation changes: a new generation, and the new limit.
    let before = i.generation();
    for l in load(&config("80"), "t", &LoadOptions::default()).expect("loads") {
        i.upsert(&l.resource);
    }
    assert!(i.generation() > before);
    assert_eq!(limit(&i, "10.0.0.2"), Some(80));

    // A value stored around validation: the session is not run, and node status says why.
    let mut bad = load(&yaml, "t", &LoadOptions::default())
        .expect("loads")
        .into_iter()
        .map(|l| l.resource)
        .find(|r| r.name() == "tor")
        .expect("tor");
    bad.meta_mut()
        .annotations
        .insert("tabby.dev/max-prefixes".into(), "lots".into());
    i.upsert(&bad);
    let tor = &i.desired("a").expect("a").peers[&ip("10.0.0.254")];
    assert_eq!(
        tor.refused.as_deref(),
        Some(
            "BGPPeer \"tor\": tabby.dev/max-prefixes \"lots\" is not a positive integer (the most \
             prefixes accepted from each peer, 1 to 4294967295; remove the annotation for no limit)"
        )
    );
    i.remove(Kind::BgpPeer, "tor");
    assert!(
        !i.desired("a")
            .expect("a")
            .peers
            .contains_key(&ip("10.0.0.254"))
    );
    assert!(i.limits.keys().all(|(_, name)| name != "tor"));
}
