use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::tor::TorState;

fn state(nodes: usize, reflectors: usize) -> LabState {
    LabState {
        name: "t".to_owned(),
        datastore: String::new(),
        datastore_netns: None,
        fabric_netns: "tabby-lab-t.fabric".to_owned(),
        gateway: Ipv4Addr::new(172, 30, 0, 1),
        routing: Routing::Bgp,
        route_reflectors: reflectors,
        tor: None,
        nodes: (1..=nodes)
            .map(|i| NodeState {
                name: format!("node-{i}"),
                netns: format!("tabby-lab-t.node-{i}"),
                address: Ipv4Addr::new(172, 30, 0, 10 + u8::try_from(i).unwrap()),
                address_v6: None,
                agent_pid: 0,
                log: "x".into(),
            })
            .collect(),
        workloads: BTreeMap::new(),
        loaded: BTreeSet::new(),
    }
}

fn opts(nodes: usize, routing: Routing, reflectors: usize, tor: Option<TorDaemon>) -> UpOptions {
    UpOptions {
        name: "t".to_owned(),
        nodes,
        datastore: None,
        routing,
        route_reflectors: reflectors,
        tor,
        ipv6: false,
    }
}

#[test]
fn bad_routing_options_are_refused_with_the_flag_named() {
    check(&opts(3, Routing::Bgp, 3, Some(TorDaemon::Bird))).unwrap();
    let err = check(&opts(3, Routing::Bgp, 4, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--route-reflectors 4") && err.contains("only 3 nodes"),
        "{err}"
    );
    let err = check(&opts(3, Routing::Datastore, 1, Some(TorDaemon::Frr)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--route-reflectors 1") && err.contains("--tor frr"),
        "{err}"
    );
    assert!("ospf".parse::<Routing>().is_err());
    assert!(
        "quagga"
            .parse::<TorDaemon>()
            .unwrap_err()
            .to_string()
            .contains("bird, gobgp or frr")
    );
}

fn load(text: &str) -> Vec<tabby_model::Resource> {
    let opts = tabby_model::LoadOptions {
        default_namespace: "default".to_owned(),
        enforce_namespace: false,
        apply_defaults: true,
    };
    tabby_model::load(text, "t", &opts)
        .unwrap()
        .into_iter()
        .map(|l| l.resource)
        .collect()
}

#[test]
fn mesh_lab_resources_give_each_node_its_fabric_address_and_keep_the_mesh_on() {
    let s = state(3, 0);
    let mut text: String = (0..3).map(|i| node_yaml(&s, i, 24, 64)).collect();
    text.push_str(&cluster_yaml(&s));
    let yaml = format!("{:?}", load(&text));
    assert!(
        yaml.contains(r#"ipv4_address: Some("172.30.0.12/24")"#),
        "{yaml}"
    );
    assert!(
        yaml.contains("node_to_node_mesh_enabled: Some(true)"),
        "{yaml}"
    );
    assert!(!yaml.contains("route_reflector_cluster_id: Some"), "{yaml}");
    assert_eq!(expected_peers(&s, 0).len(), 2);
}

#[test]
fn reflector_lab_marks_the_first_k_nodes_and_peers_the_rest_with_them_only() {
    let s = state(4, 1);
    let mut text: String = (0..4).map(|i| node_yaml(&s, i, 24, 64)).collect();
    text.push_str(&cluster_yaml(&s));
    let resources = load(&text);
    let yaml = format!("{resources:?}");
    assert_eq!(
        yaml.matches("route_reflector_cluster_id: Some").count(),
        1,
        "{yaml}"
    );
    assert!(
        yaml.contains("node_to_node_mesh_enabled: Some(false)"),
        "{yaml}"
    );
    assert!(
        yaml.contains(r#"peer_selector: Some("route-reflector == 'true'")"#),
        "{yaml}"
    );
    // The reflector peers with all three clients; a client only with the reflector.
    assert_eq!(expected_peers(&s, 0).len(), 3);
    assert_eq!(
        expected_peers(&s, 2),
        vec![IpAddr::V4(Ipv4Addr::new(172, 30, 0, 11))]
    );
}

#[test]
fn datastore_lab_resources_have_no_bgp() {
    let mut s = state(2, 0);
    s.routing = Routing::Datastore;
    assert!(!node_yaml(&s, 0, 24, 64).contains("bgp"));
    assert!(cluster_yaml(&s).is_empty());
}

#[test]
fn sessions_not_up_are_named_with_their_state_and_last_error() {
    let body = r#"{"node":"node-1","routing":"bgp","bgp":{"asn":64512,"router_id":"172.30.0.11",
        "listen":"[::]:179","originated":0,"learned":0,"peers":[
        {"name":"Mesh_172_30_0_12","address":"172.30.0.12","asn":64512,"kind":"mesh",
         "state":"Established","since_secs":3,"prefixes_received":0,"prefixes_advertised":0},
        {"name":"Global_172_30_0_254","address":"172.30.0.254","asn":65000,"kind":"global",
         "state":"Active","since_secs":3,"prefixes_received":0,"prefixes_advertised":0,
         "last_error":"peer AS is 65001, configured 65000"}]}}"#;
    let seen = parse_peers(body).unwrap();
    let want = |hosts: &[u8]| -> Vec<IpAddr> {
        hosts
            .iter()
            .map(|h| IpAddr::V4(Ipv4Addr::new(172, 30, 0, *h)))
            .collect()
    };
    assert_eq!(not_up(&want(&[12]), Some(&seen)), None);
    assert_eq!(
        not_up(&want(&[12, 254, 13]), Some(&seen)).unwrap(),
        "172.30.0.254 (Active, last error: peer AS is 65001, configured 65000), \
         172.30.0.13 (not configured)"
    );
    assert!(
        not_up(&want(&[12]), None)
            .unwrap()
            .contains("no BGP speaker")
    );
    assert_eq!(parse_peers(r#"{"node":"n","routing":"datastore"}"#), None);
}

#[test]
fn dual_stack_lab_resources_give_ipv6_addresses_and_a_v6_router_peer() {
    let mut s = state(2, 0);
    for (i, n) in s.nodes.iter_mut().enumerate() {
        n.address_v6 = Some(format!("fd00:172:30::{}", 11 + i).parse().unwrap());
    }
    s.tor = Some(TorState {
        daemon: TorDaemon::Bird,
        netns: "tabby-lab-t.tor".to_owned(),
        address: Ipv4Addr::new(172, 30, 0, 254),
        address_v6: Some("fd00:172:30::254".parse().unwrap()),
        asn: 65000,
        log: "x".into(),
    });
    assert!(s.ipv6());
    let mut text: String = (0..2).map(|i| node_yaml(&s, i, 24, 64)).collect();
    text.push_str(&cluster_yaml(&s));
    let yaml = format!("{:?}", load(&text));
    assert!(
        yaml.contains(r#"ipv6_address: Some("fd00:172:30::12/64")"#),
        "{yaml}"
    );
    assert!(
        yaml.contains(r#"peer_ip: Some("fd00:172:30::254")"#),
        "{yaml}"
    );
    // node-1 waits for an IPv4 and an IPv6 session with node-2 and with the router.
    let want: Vec<IpAddr> = [
        "172.30.0.12",
        "fd00:172:30::12",
        "172.30.0.254",
        "fd00:172:30::254",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert_eq!(expected_peers(&s, 0), want);
}
