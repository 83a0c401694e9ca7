//! Two `tabby node run` agents in two "host" network namespaces joined by a veth pair, each
//! with one workload namespace plumbed as DESIGN.md says, sharing a SQLite datastore. With
//! `spec.bgp` on both Nodes the agents peer over iBGP (the default full mesh on AS 64512),
//! advertise their workloads' /32s and program what they learn with tabby's route protocol;
//! a workload on one host then reaches the workload on the other. `tabby node status` shows
//! the session; deleting a workload withdraws its route from the other host.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/host.rs"]
mod host;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;

use crate::host::{Agent, TABBY, plumb, tabby_ok};

const DEADLINE: Duration = Duration::from_secs(40);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn in_ns(ns: &NetNs, args: &[&str]) -> Output {
    let mut all = vec!["ip", "netns", "exec", ns.name()];
    all.extend_from_slice(args);
    sh(&all)
}

/// Answers "ok" to every connection on `port` inside `ns`, until the test ends.
fn serve_ok(ns: &NetNs, port: u16) {
    let l = ns
        .run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind"))
        .expect("enter namespace");
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(b"ok");
        }
    });
}

fn tcp_probe(from: &NetNs, to: Ipv4Addr, port: u16) -> bool {
    from.run(|| {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, port)), PROBE_TIMEOUT)
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).is_ok() && &buf == b"ok"
    })
    .expect("enter source namespace")
}

/// `ip route` of a namespace: (destination, gateway, protocol) for each route.
fn routes(ns: &NetNs) -> Vec<(String, String, String)> {
    let out = in_ns(ns, &["ip", "-j", "route", "show"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j route");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (s("dst"), s("gateway"), s("protocol"))
        })
        .collect()
}

/// `tabby node status` run in a host namespace: its output.
fn status(host: &NetNs, json: bool) -> Option<String> {
    let mut args = vec![
        "ip",
        "netns",
        "exec",
        host.name(),
        TABBY,
        "node",
        "status",
        "--addr",
        "127.0.0.1:9099",
    ];
    if json {
        args.extend(["-o", "json"]);
    }
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, diag: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
    sh(&[
        "ip",
        "-n",
        host_a.name(),
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        host_b.name(),
    ]);
    for (ns, ip) in [
        (&host_a, format!("{net}.1/24")),
        (&host_b, format!("{net}.2/24")),
    ] {
        sh(&["ip", "-n", ns.name(), "addr", "add", &ip, "dev", "eth0"]);
        sh(&["ip", "-n", ns.name(), "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns.name(), "link", "set", "lo", "up"]);
        in_ns(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
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

/// `tabby node run` for `node` inside `host`.
fn run_agent(host: &NetNs, db: &Path, dir: &ScratchDir, node: &str) -> Agent {
    Agent(
        Command::new("ip")
            .args(["netns", "exec", host.name(), TABBY, "--datastore"])
            .arg(format!("sqlite:{}", db.display()))
            .args(["node", "run", "--name", node, "--lock-dir"])
            .arg(dir.path())
            .args(["--metrics-addr", "127.0.0.1:9099"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tabby node run"),
    )
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
    serve_ok(&wb, 8080);

    let _agent_a = run_agent(&host_a, &db, &dir, "node-a");
    let _agent_b = run_agent(&host_b, &db, &dir, "node-b");
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
    serve_ok(&wa, 8080);
    serve_ok(&wb, 8080);
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
