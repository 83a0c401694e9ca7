//! Two `tabby node run` agents in two "host" network namespaces joined by a veth pair, each
//! with one workload namespace plumbed as DESIGN.md says, sharing a SQLite datastore. With
//! `spec.bgp` on both Nodes the agents peer over iBGP (the default full mesh on AS 64512),
//! advertise their workloads' /32s and program what they learn with tabby's route protocol;
//! a workload on one host then reaches the workload on the other. `tabby node status` shows
//! the session; deleting a workload withdraws its route from the other host.
//!
//! With IPAM blocks, each node advertises its block with a blackhole for it and a /32 for a
//! borrowed address; two agents mesh with `nodeMeshPassword` once its Secret exists. One agent
//! against BIRD 2 is `node_bgp_bird.rs`.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/bgp.rs"]
mod bgp;
#[path = "support/host.rs"]
mod host;
#[path = "support/traffic.rs"]
mod traffic;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;

use crate::bgp::{
    in_ns, link_pair, peer_status, routes, run_agent, run_agent_with, sh, status, wait_for,
};
use crate::host::{plumb, tabby_ok};
use crate::traffic::{Listener, tcp_probe};

fn cluster(net: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: List
items:
- {{apiVersion: v1, kind: Namespace, metadata: {{name: lab}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {net}.1/24}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-b}}, spec: {{bgp: {{ipv4Address: {net}.2/24}}}}}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {{name: node--a-k8s-wa-eth0, namespace: lab}}
  spec: {{node: node-a, interfaceName: tba, ipNetworks: [10.68.0.1/32], profiles: [kns.lab]}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {{name: node--b-k8s-wb-eth0, namespace: lab}}
  spec: {{node: node-b, interfaceName: tbb, ipNetworks: [10.68.1.1/32], profiles: [kns.lab]}}
"#
    )
}

/// Two host namespaces joined by a veth pair (`eth0` in both, `NET.1` and `NET.2`),
/// forwarding on, each with a default route of its own (proxy ARP answers for the
/// workloads' gateway 169.254.1.1 only when the host routes it somewhere).
fn two_hosts(net: &str) -> (NetNs, NetNs) {
    let host_a = NetNs::new("tbb-ha").expect("host a");
    let host_b = NetNs::new("tbb-hb").expect("host b");
    link_pair(&host_a, &format!("{net}.1"), &host_b, &format!("{net}.2"));
    for ns in [&host_a, &host_b] {
        sh(&[
            "ip",
            "-n",
            ns.name(),
            "route",
            "add",
            "default",
            "dev",
            "eth0",
        ]);
    }
    (host_a, host_b)
}

#[test]
fn two_agents_learn_each_others_workloads_over_bgp_and_forward_between_them() {
    if !tabby_test_util::root_or_skip(
        "two_agents_learn_each_others_workloads_over_bgp_and_forward_between_them",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-bgp");
    let db = dir.file("store");
    // A /24 of its own per run, so that parallel runs never share addresses in a log.
    let net = format!("10.79.{}", std::process::id() % 250);
    tabby_ok(&db, &["apply", "-f", "-"], &cluster(&net));

    let (host_a, host_b) = two_hosts(&net);
    let wa = plumb(&host_a, "tba", "10.68.0.1");
    let wb = plumb(&host_b, "tbb", "10.68.1.1");
    let _server_b = Listener::start(&wb, 8080);

    let _agent_a = run_agent(&host_a, &db, &dir, "node-a");
    let mut agent_b = run_agent(&host_b, &db, &dir, "node-b");
    let diag = || {
        format!(
            "routes a: {:?}\nroutes b: {:?}\nstatus a: {}\nstatus b: {}",
            routes(&host_a),
            routes(&host_b),
            status(&host_a, true).unwrap_or_default(),
            status(&host_b, true).unwrap_or_default()
        )
    };
    let learned = |ns: &NetNs, dst: &str, via: &str| {
        routes(ns)
            .iter()
            .any(|(d, g, p)| d == dst && g == via && p == "116")
    };
    let (a_ip, b_ip) = (format!("{net}.1"), format!("{net}.2"));
    wait_for(
        "both hosts to program each other's workload route",
        diag,
        || learned(&host_a, "10.68.1.1", &b_ip) && learned(&host_b, "10.68.0.1", &a_ip),
    );
    assert!(
        tcp_probe(&wa, Ipv4Addr::new(10, 68, 1, 1), 8080),
        "wa -> wb across hosts\n{}",
        diag()
    );

    let json: Value =
        serde_json::from_str(&status(&host_a, true).expect("status answers")).expect("json");
    assert_eq!(json["routing"], "bgp");
    assert_eq!(json["bgp"]["asn"], 64512);
    let peer = &json["bgp"]["peers"][0];
    assert_eq!(peer["name"], format!("Mesh_{}", b_ip.replace('.', "_")));
    assert_eq!(peer["kind"], "mesh");
    assert_eq!(peer["state"], "Established");
    assert_eq!(peer["prefixes_received"], 1);
    assert_eq!(peer["prefixes_advertised"], 1);
    let table = status(&host_a, false).expect("status answers");
    assert!(
        table.contains("Established") && table.contains("routing by bgp"),
        "{table}"
    );

    // b's agent is SIGKILLed: it announced graceful restart, so a keeps b's route (stale) for
    // the restart time instead of dropping it with the session, and flows keep going; b's
    // kernel still forwards. b comes back and the session with it.
    agent_b.0.kill().expect("SIGKILL b's agent");
    let _ = agent_b.0.wait();
    wait_for("a to see b's session drop", diag, || {
        status(&host_a, true).is_some_and(|s| !s.contains("Established"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        learned(&host_a, "10.68.1.1", &b_ip),
        "a kept b's route through b's restart\n{}",
        diag()
    );
    assert!(
        tcp_probe(&wa, Ipv4Addr::new(10, 68, 1, 1), 8080),
        "wa -> wb while b's agent is down\n{}",
        diag()
    );
    drop(agent_b);
    let _agent_b = run_agent(&host_b, &db, &dir, "node-b");
    wait_for("b's session back", diag, || {
        status(&host_a, true).is_some_and(|s| s.contains("Established"))
    });

    // The workload on b goes: its route leaves a's kernel.
    tabby_ok(
        &db,
        &["delete", "wep", "node--b-k8s-wb-eth0", "-n", "lab"],
        "",
    );
    wait_for("the withdrawal", diag, || {
        !routes(&host_a).iter().any(|(d, _, _)| d == "10.68.1.1")
    });
    assert!(!tcp_probe(&wa, Ipv4Addr::new(10, 68, 1, 1), 8080));
}

/// Blackhole routes tabby wrote in a namespace (their destinations).
fn blackholes(ns: &NetNs) -> Vec<String> {
    let out = in_ns(ns, &["ip", "-j", "route", "show", "type", "blackhole"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j route");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("protocol").and_then(Value::as_str) == Some("116"))
        .filter_map(|r| r.get("dst").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn assign(ipam: &tabby_ipam::Ipam<'_>, ip: &str, node: &str, handle: &str) -> bool {
    ipam.assign_ip(&tabby_ipam::AssignIpRequest {
        ip: Some(ip.parse().expect("ip")),
        handle: handle.to_owned(),
        node: node.to_owned(),
        attrs: Default::default(),
    })
    .expect("assigned")
    .borrowed
}

#[test]
fn ipam_blocks_are_advertised_with_a_blackhole_and_a_borrowed_address_wins_as_a_host_route() {
    if !tabby_test_util::root_or_skip(
        "ipam_blocks_are_advertised_with_a_blackhole_and_a_borrowed_address_wins_as_a_host_route",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-bgp-blocks");
    let db = dir.file("store");
    let net = format!("10.78.{}", std::process::id() % 250);
    tabby_ok(
        &db,
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: List
items:
- {{apiVersion: v1, kind: Namespace, metadata: {{name: lab}}}}
- {{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {{name: pool}}, spec: {{cidr: 10.66.0.0/16, blockSize: 26}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {net}.1/24}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-b}}, spec: {{bgp: {{ipv4Address: {net}.2/24}}}}}}
"#
        ),
    );
    // a claims 10.66.0.0/26 with its workload's address; b has no block and borrows from a's.
    let store = tabby_store::open(&format!("sqlite:{}", db.display())).expect("datastore");
    let ipam = tabby_ipam::Ipam::new(store.as_ref());
    assert!(!assign(&ipam, "10.66.0.1", "node-a", "h-wa"));
    assert!(assign(&ipam, "10.66.0.2", "node-b", "h-wb"), "borrowed");
    tabby_ok(
        &db,
        &["apply", "-f", "-"],
        r"
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--a-k8s-wa-eth0, namespace: lab}
  spec: {node: node-a, interfaceName: tba, ipNetworks: [10.66.0.1/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--b-k8s-wb-eth0, namespace: lab}
  spec: {node: node-b, interfaceName: tbb, ipNetworks: [10.66.0.2/32], profiles: [kns.lab]}
",
    );

    let (host_a, host_b) = two_hosts(&net);
    let wa = plumb(&host_a, "tba", "10.66.0.1");
    let wb = plumb(&host_b, "tbb", "10.66.0.2");
    let _server_a = Listener::start(&wa, 8080);
    let _server_b = Listener::start(&wb, 8080);
    let _agent_a = run_agent(&host_a, &db, &dir, "node-a");
    let _agent_b = run_agent(&host_b, &db, &dir, "node-b");
    let diag = || {
        format!(
            "routes a: {:?} blackholes {:?}\nroutes b: {:?}\nstatus a: {}",
            routes(&host_a),
            blackholes(&host_a),
            routes(&host_b),
            status(&host_a, true).unwrap_or_default(),
        )
    };
    let learned = |ns: &NetNs, dst: &str, via: &str| {
        routes(ns)
            .iter()
            .any(|(d, g, p)| d == dst && g == via && p == "116")
    };
    let (a_ip, b_ip) = (format!("{net}.1"), format!("{net}.2"));
    wait_for(
        "b to learn a's block and a the borrowed address",
        diag,
        || {
            learned(&host_b, "10.66.0.0/26", &a_ip)
                && learned(&host_a, "10.66.0.2", &b_ip)
                && blackholes(&host_a) == ["10.66.0.0/26"]
        },
    );
    // The block carries a's own workload: no /32 for it anywhere but its own interface.
    assert!(
        !routes(&host_b).iter().any(|(d, _, _)| d == "10.66.0.1"),
        "{}",
        diag()
    );
    assert!(blackholes(&host_b).is_empty(), "{}", diag());
    // Both ways: b reaches a through the block, a reaches the borrowed address through the
    // /32 that beats its own blackhole.
    assert!(
        tcp_probe(&wb, Ipv4Addr::new(10, 66, 0, 1), 8080),
        "{}",
        diag()
    );
    assert!(
        tcp_probe(&wa, Ipv4Addr::new(10, 66, 0, 2), 8080),
        "{}",
        diag()
    );
    let json: Value =
        serde_json::from_str(&status(&host_a, true).expect("status answers")).expect("json");
    assert_eq!(json["bgp"]["originated"], 1, "the block only");

    // Everything in the block goes and a gives it up: withdrawn, blackhole gone.
    tabby_ok(
        &db,
        &["delete", "wep", "node--b-k8s-wb-eth0", "-n", "lab"],
        "",
    );
    tabby_ok(
        &db,
        &["delete", "wep", "node--a-k8s-wa-eth0", "-n", "lab"],
        "",
    );
    ipam.release_handle("h-wb").expect("release");
    ipam.release_handle("h-wa").expect("release");
    assert_eq!(
        ipam.release_node_blocks("node-a").expect("release block"),
        vec!["10.66.0.0/26".parse::<ipnet::IpNet>().expect("net")]
    );
    wait_for("the block's withdrawal", diag, || {
        !routes(&host_b)
            .iter()
            .any(|(d, _, _)| d.starts_with("10.66."))
            && blackholes(&host_a).is_empty()
            && !routes(&host_a)
                .iter()
                .any(|(d, _, _)| d.starts_with("10.66."))
    });
}

#[test]
fn two_agents_mesh_with_the_node_mesh_password_once_its_secret_exists_in_their_namespace() {
    if !tabby_test_util::root_or_skip(
        "two_agents_mesh_with_the_node_mesh_password_once_its_secret_exists_in_their_namespace",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-bgp-meshpw");
    let db = dir.file("store");
    let net = format!("10.74.{}", std::process::id() % 250);
    tabby_ok(
        &db,
        &["apply", "-f", "-"],
        &format!(
            r"
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: BGPConfiguration
  metadata: {{name: default}}
  spec: {{nodeMeshPassword: {{secretKeyRef: {{name: mesh, key: password}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {net}.1/24}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-b}}, spec: {{bgp: {{ipv4Address: {net}.2/24}}}}}}
"
        ),
    );
    let (host_a, host_b) = two_hosts(&net);
    // Secrets from kube-system (a manifest-style install): by flag on a, by environment on b.
    let ns = ["--bgp-secret-namespace", "kube-system"];
    let _agent_a = run_agent_with(&host_a, &db, &dir, "node-a", &ns, &[]);
    let env = [("TABBY_BGP_SECRET_NAMESPACE", "kube-system")];
    let _agent_b = run_agent_with(&host_b, &db, &dir, "node-b", &[], &env);
    let (a_ip, b_ip) = (format!("{net}.1"), format!("{net}.2"));
    let diag = || {
        format!(
            "status a: {}\nstatus b: {}",
            status(&host_a, false).unwrap_or_default(),
            status(&host_b, false).unwrap_or_default()
        )
    };
    let missing = "password Secret \"kube-system/mesh\" not found";
    wait_for("both agents to name the missing Secret", diag, || {
        [(&host_a, &b_ip), (&host_b, &a_ip)]
            .iter()
            .all(|(h, peer)| peer_status(h, peer).is_some_and(|p| p["last_error"] == missing))
    });
    tabby_ok(
        &db,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: mesh, namespace: kube-system}\n\
         data: {password: bWVzaC1wYXNzd29yZA==}\n",
    );
    wait_for("the signed mesh session on both agents", diag, || {
        [(&host_a, &b_ip), (&host_b, &a_ip)]
            .iter()
            .all(|(h, peer)| {
                peer_status(h, peer)
                    .is_some_and(|p| p["state"] == "Established" && p["kind"] == "mesh")
            })
    });
}
