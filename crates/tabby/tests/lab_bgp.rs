//! `tabby lab up --routing bgp` for real: agents peering in Calico's full iBGP mesh or with
//! route reflectors, learning each other's workload routes (proto 116) and carrying traffic
//! between hosts; a top-of-rack router running BIRD, GoBGP or FRR that learns the workloads
//! over eBGP (each node's IPAM blocks) with the workload's host as next hop, in the daemon's
//! own RIB and in its kernel, and reaches them from outside the cluster without ICMP
//! redirects, while a removed pod's address is blackholed on its node; bad routing options
//! refused with nothing built.
//!
//! Needs root. Without it the tests say they were skipped; under `CI=true` that is a failure.

#[path = "support/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::TestLab;

/// One open pod per node (no policy: everything may reach them), on TCP/8080.
fn pods(nodes: usize) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: open}}\n",
    );
    for i in 1..=nodes {
        text.push_str(&format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata: {{name: p{i}, namespace: open}}\n  spec: {{nodeName: node-{i}, containers: [{{name: s, ports: [{{containerPort: 8080}}]}}]}}\n"
        ));
    }
    text
}

/// Workload `open/pN`'s addresses (IPv4 first), from the lab's state.
fn addresses(lab: &TestLab, pod: &str) -> Vec<String> {
    let state = lab.state();
    let all: Vec<String> = state["workloads"][format!("open/{pod}")]["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("open/{pod} in {state}"))
        .iter()
        .map(|a| a.as_str().expect("an address").to_owned())
        .collect();
    assert!(!all.is_empty(), "open/{pod} has addresses: {state}");
    all
}

/// Workload `open/pN`'s IPv4 address.
fn address(lab: &TestLab, pod: &str) -> String {
    addresses(lab, pod).remove(0)
}

fn family(addr: &str) -> &'static str {
    if addr.contains(':') { "-6" } else { "-4" }
}

/// A node's routes with tabby's protocol, of both families: destination -> gateway ("" for
/// a local one).
fn tabby_routes(lab: &TestLab, node: &str) -> Vec<(String, String)> {
    ["-4", "-6"]
        .iter()
        .flat_map(|f| tabby_routes_of(lab, node, f))
        .collect()
}

fn tabby_routes_of(lab: &TestLab, node: &str, family: &str) -> Vec<(String, String)> {
    let text = lab.ok(
        &[
            "exec", node, "--", "ip", family, "-j", "route", "show", "proto", "116",
        ],
        "",
    );
    let routes: Vec<Value> = serde_json::from_str(&text).expect("ip -j prints JSON");
    routes
        .iter()
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or_default().to_owned(),
                r["gateway"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn fabric_address(node: usize) -> String {
    format!("172.30.0.{}", 10 + node)
}

/// Node `node`'s fabric address of `addr`'s family (a dual-stack lab's IPv6 fabric reuses
/// the IPv4 host number's digits).
fn fabric_address_like(node: usize, addr: &str) -> String {
    if addr.contains(':') {
        format!("fd00:172:30::{}", 10 + node)
    } else {
        fabric_address(node)
    }
}

/// Whether route destination `dst` (`ip` prints a host route without its length) covers
/// `addr`.
fn covers(dst: &str, addr: &str) -> bool {
    let net = if dst.contains('/') {
        dst.parse::<ipnet::IpNet>().ok()
    } else {
        dst.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
    };
    let addr = addr.parse::<std::net::IpAddr>().ok();
    net.zip(addr).is_some_and(|(n, a)| n.contains(&a))
}

/// Every node routes every other node's pod through that node, by a learned route (the
/// other node's IPAM block, as Calico advertises, or the pod's /32 when no block covers it),
/// for each of the pod's addresses (IPv6 through the node's IPv6 address).
fn assert_learned_everywhere(lab: &TestLab, nodes: usize) {
    for i in 1..=nodes {
        let routes = tabby_routes(lab, &format!("node-{i}"));
        for j in (1..=nodes).filter(|j| *j != i) {
            for addr in addresses(lab, &format!("p{j}")) {
                let via = fabric_address_like(j, &addr);
                assert!(
                    routes.iter().any(|(d, g)| covers(d, &addr) && *g == via),
                    "node-{i} should route p{j} ({addr}) via node-{j} ({via}) with proto 116: {routes:?}",
                );
            }
        }
    }
}

/// A node's blackhole routes with tabby's protocol (its own blocks), of `addr`'s family.
fn blackholes(lab: &TestLab, node: &str, addr: &str) -> Vec<String> {
    let text = lab.ok(
        &[
            "exec",
            node,
            "--",
            "ip",
            family(addr),
            "-j",
            "route",
            "show",
            "type",
            "blackhole",
            "proto",
            "116",
        ],
        "",
    );
    let routes: Vec<Value> = serde_json::from_str(&text).expect("ip -j prints JSON");
    routes
        .iter()
        .filter_map(|r| r["dst"].as_str().map(str::to_owned))
        .collect()
}

/// Each node's agent status as JSON, by running `tabby node status -o json` inside it.
fn node_status(lab: &TestLab, node: &str) -> Value {
    let text = lab.ok(
        &[
            "exec",
            node,
            "--",
            lab::TABBY,
            "node",
            "status",
            "-o",
            "json",
        ],
        "",
    );
    serde_json::from_str(&text).expect("node status -o json prints JSON")
}

fn peers(status: &Value) -> Vec<(String, String, String)> {
    status["bgp"]["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every pair of workloads reaches each other.
fn assert_all_reach(lab: &TestLab) {
    let m = lab.matrix(8080, "TCP");
    let allowed = m["allowed"].as_object().expect("allowed");
    for (from, row) in allowed {
        for (to, ok) in row.as_object().unwrap() {
            assert_eq!(ok, &Value::Bool(true), "{from} -> {to}: {m}");
        }
    }
}

#[test]
fn a_bgp_mesh_lab_learns_workload_routes_and_carries_traffic_across_hosts() {
    if !tabby_test_util::root_or_skip(
        "a_bgp_mesh_lab_learns_workload_routes_and_carries_traffic_across_hosts",
    ) {
        return;
    }
    // BGP is the default.
    let lab = TestLab::up("bm", 3);
    assert_eq!(lab.state()["routing"], "bgp");
    let status = lab.ok(&["status"], "");
    assert!(
        status.contains("routing by BGP (iBGP mesh, AS 64512)"),
        "{status}"
    );
    // `lab up` returned with the mesh up: 3 nodes, 2 Established mesh sessions each.
    assert_eq!(
        status.matches("   mesh   Established").count(),
        6,
        "{status}"
    );

    let out = lab.load(&pods(3), false);
    assert!(
        out.contains("workloads made: open/p1, open/p2, open/p3"),
        "{out}"
    );
    assert_learned_everywhere(&lab, 3);
    for i in 1..=3 {
        let st = node_status(&lab, &format!("node-{i}"));
        assert_eq!(st["routing"], "bgp");
        assert_eq!(st["bgp"]["learned"], 2, "{st}");
        assert_eq!(st["bgp"]["originated"], 1, "{st}");
    }
    assert_all_reach(&lab);

    // A removed pod: its host route on node-3 goes; node-3 keeps its block (advertised, as
    // Calico keeps a node's last block) with a blackhole, so traffic to the address stops
    // there.
    let gone = address(&lab, "p3");
    lab.load(&pods(2), true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let local = |routes: &[(String, String)]| routes.iter().any(|(d, _)| *d == gone);
    while local(&tabby_routes(&lab, "node-3")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let routes = tabby_routes(&lab, "node-3");
    assert!(!local(&routes), "node-3: {routes:?}");
    let holes = blackholes(&lab, "node-3", &gone);
    assert!(
        holes.iter().any(|b| covers(b, &gone)),
        "node-3 blackholes {gone}: {holes:?}"
    );
}

#[test]
fn a_reflector_lab_peers_the_other_nodes_only_with_the_reflector() {
    if !tabby_test_util::root_or_skip(
        "a_reflector_lab_peers_the_other_nodes_only_with_the_reflector",
    ) {
        return;
    }
    // Dual stack: the reflector reflects IPv6 routes over IPv6 sessions too.
    let lab = TestLab::up_with("br", &["--nodes", "4", "--route-reflectors", "1", "--ipv6"]);
    let status = lab.ok(&["status"], "");
    assert!(status.contains("1 route reflector, AS 64512"), "{status}");
    let rr = node_status(&lab, "node-1");
    assert_eq!(rr["bgp"]["cluster_id"], "244.0.0.1", "{rr}");
    let mut clients = peers(&rr);
    clients.sort();
    let v6 = |j: usize| format!("fd00:172:30::{}", 10 + j);
    let peer = |addr: String, kind: &str| (addr, kind.to_owned(), "Established".to_owned());
    assert_eq!(
        clients,
        (2..=4)
            .map(|j| peer(fabric_address(j), "reflector-client"))
            .chain((2..=4).map(|j| peer(v6(j), "reflector-client")))
            .collect::<Vec<_>>()
    );
    for i in 2..=4 {
        let st = node_status(&lab, &format!("node-{i}"));
        let mut seen = peers(&st);
        seen.sort();
        assert_eq!(
            seen,
            vec![
                peer(fabric_address(1), "reflector"),
                peer(v6(1), "reflector")
            ],
            "node-{i} peers only with the reflector, once per family"
        );
    }
    lab.load(&pods(4), false);
    // Reflected routes keep the originating node as next hop, for both families.
    assert_learned_everywhere(&lab, 4);
    assert_all_reach(&lab);
}

#[test]
fn bad_routing_options_are_refused_and_build_nothing() {
    if !tabby_test_util::root_or_skip("bad_routing_options_are_refused_and_build_nothing") {
        return;
    }
    for (args, want) in [
        (
            vec!["--nodes", "2", "--route-reflectors", "3"],
            "--route-reflectors 3: the lab has only 2 nodes",
        ),
        (
            vec!["--tor", "quagga"],
            "--tor \"quagga\": expected bird, gobgp or frr",
        ),
        (
            vec!["--routing", "ospf"],
            "--routing \"ospf\": expected bgp or datastore",
        ),
        (
            vec!["--routing", "datastore", "--tor", "bird"],
            "--tor bird: a top-of-rack router needs --routing bgp",
        ),
    ] {
        let name = format!("bb{}", std::process::id());
        let mut cmd = std::process::Command::new(lab::TABBY);
        cmd.args(["lab", "up", "--name", &name]).args(&args);
        let out = cmd.output().expect("run tabby");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        let probe = TestLab { name: name.clone() };
        assert!(probe.namespaces().is_empty(), "{args:?} built namespaces");
        let root = std::env::var("TABBY_LAB_DIR").unwrap_or_else(|_| "/run/tabby/lab".to_owned());
        assert!(
            !std::path::Path::new(&root).join(&name).exists(),
            "{args:?} left a folder"
        );
    }
}

/// From the router's namespace (outside the cluster), connect to a workload's server and
/// read its greeting; one attempt: the router's route goes straight to the workload's host.
fn greeting_from_tor(lab: &TestLab, addr: &str) -> String {
    let script = format!("exec 3<>/dev/tcp/{addr}/8080 && head -1 <&3");
    let out = lab.run(
        &["exec", "tor", "--", "timeout", "5", "bash", "-c", &script],
        "",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The router's kernel routes covering `addr` (a node's block or a /32): their next hops
/// (several for a multipath route).
fn tor_next_hops(lab: &TestLab, addr: &str) -> Vec<String> {
    let text = lab.ok(
        &[
            "exec",
            "tor",
            "--",
            "ip",
            family(addr),
            "-j",
            "route",
            "show",
            "match",
            addr,
        ],
        "",
    );
    let routes: Vec<Value> = serde_json::from_str(&text).expect("ip -j prints JSON");
    routes
        .iter()
        .filter(|r| r["dst"] != "default")
        .flat_map(|r| {
            let mut hops: Vec<String> = r["gateway"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect();
            for h in r["nexthops"].as_array().into_iter().flatten() {
                hops.extend(h["gateway"].as_str().map(str::to_owned));
            }
            hops
        })
        .collect()
}

/// The next hop of every BGP path the router's daemon holds for the prefix covering `addr`,
/// read from the daemon itself: `birdc show route for`, `gobgp global rib -j`, `vtysh show
/// bgp ... json` (for an IPv6 path FRR also lists the link-local next hop, left out here).
fn daemon_next_hops(lab: &TestLab, daemon: &str, addr: &str) -> (Vec<String>, String) {
    let family = if addr.contains(':') { "ipv6" } else { "ipv4" };
    let root = std::env::var("TABBY_LAB_DIR").unwrap_or_else(|_| "/run/tabby/lab".to_owned());
    let ctl = format!("{root}/{}/tor/bird.ctl", lab.name);
    let space = format!("tabby-lab-{}-tor", lab.name);
    let show = format!("show bgp {family} unicast {addr} json");
    let args: Vec<&str> = match daemon {
        "bird" => vec!["birdc", "-s", &ctl, "show", "route", "for", addr],
        "gobgp" => vec![
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            "50051",
            "global",
            "rib",
            "-a",
            family,
            addr,
            "-j",
        ],
        _ => vec!["vtysh", "-N", &space, "-d", "bgpd", "-c", &show],
    };
    let mut all = vec!["exec", "tor", "--"];
    all.extend(args);
    let text = lab.ok(&all, "");
    let hops = match daemon {
        "bird" => text
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("via")).then(|| words.next().map(str::to_owned))?
            })
            .collect(),
        "gobgp" => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            v.as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|path| {
                    path["attrs"]
                        .as_array()?
                        .iter()
                        .find_map(|a| a["nexthop"].as_str().map(str::to_owned))
                })
                .collect()
        }
        _ => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            v["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    p["nexthops"]
                        .as_array()?
                        .iter()
                        .filter(|h| h["scope"] != "link-local")
                        .find_map(|h| h["ip"].as_str().map(str::to_owned))
                })
                .collect()
        }
    };
    (hops, text)
}

/// An ICMP counter of a lab namespace (`/proc/net/snmp` is the reader's namespace's).
fn icmp_counter(lab: &TestLab, target: &str, field: &str) -> u64 {
    let text = lab.ok(&["exec", target, "--", "cat", "/proc/net/snmp"], "");
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp: "));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == field)
        .unwrap_or_else(|| panic!("{field} in {names}"));
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// An ICMPv6 counter of a lab namespace (`/proc/net/snmp6`: one `name value` per line).
fn icmp6_counter(lab: &TestLab, target: &str, field: &str) -> u64 {
    let text = lab.ok(&["exec", target, "--", "cat", "/proc/net/snmp6"], "");
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(char::is_whitespace)?;
            (name == field).then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("{field} in {text}"))
}

/// ICMP and ICMPv6 redirects sent by each node and received by the router so far.
fn redirects(lab: &TestLab, nodes: usize) -> Vec<(String, u64)> {
    let mut counts = Vec::new();
    for i in 1..=nodes {
        let node = format!("node-{i}");
        counts.push((
            format!("{node} sent (IPv4)"),
            icmp_counter(lab, &node, "OutRedirects"),
        ));
        counts.push((
            format!("{node} sent (IPv6)"),
            icmp6_counter(lab, &node, "Icmp6OutRedirects"),
        ));
    }
    counts.push((
        "the router received (IPv4)".to_owned(),
        icmp_counter(lab, "tor", "InRedirects"),
    ));
    counts.push((
        "the router received (IPv6)".to_owned(),
        icmp6_counter(lab, "tor", "Icmp6InRedirects"),
    ));
    counts
}

/// The router's view of `addr` (on node `host`): every path its daemon holds and its kernel
/// route point straight at the host (the nodes pass routes learned from each other on with
/// the originating node as a third-party next hop, as Calico's BIRD does).
fn assert_routed_to_host(lab: &TestLab, daemon: &str, addr: &str, host: &str) {
    // Both nodes advertise it (one its own, the other passing on what it learned); the
    // second path may still be on its way, but no path may ever point elsewhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (hops, text) = daemon_next_hops(lab, daemon, addr);
        assert!(
            !hops.is_empty() && hops.iter().all(|h| h == host),
            "{daemon} should hold {addr} via {host} only: {hops:?}\n{text}"
        );
        if hops.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{daemon} should hold a path to {addr} from each node: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kernel = tor_next_hops(lab, addr);
    assert!(
        !kernel.is_empty() && kernel.iter().all(|h| h == host),
        "the router's kernel should route {addr} via {host}: {kernel:?}"
    );
}

/// A dual-stack lab with a `daemon` router: every node has an IPv4 and an IPv6 session with
/// it (as Calico's BIRD and BIRD6); it learns both nodes' pods over eBGP, IPv4 and IPv6, with
/// each pod's host as next hop, reaches them from outside the cluster with no ICMP redirect,
/// advertises its own outside networks (both families) which the nodes route through it and
/// pods reach, keeps routing a removed pod's addresses to its host (whose blackholes stop them), and `lab
/// down` stops the daemon even when the lab's state file is gone (as after a crash).
/// `sessions`: for node-2's IPv4 and IPv6 session, the words of a line of the daemon's own
/// session view that `lab status` must show.
fn tor_lab(tag: &str, daemon: &str, tools: &[&str], sessions: [&[&str]; 2]) {
    for tool in tools {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing (scripts/deps.sh installs it)");
    }
    let lab = TestLab::up_with(tag, &["--nodes", "2", "--tor", daemon, "--ipv6"]);
    let status = lab.ok(&["status"], "");
    assert!(
        status.contains(&format!(
            "top-of-rack router: {daemon} on 172.30.0.254 (AS 65000)"
        )),
        "{status}"
    );
    for words in sessions {
        assert!(
            status
                .lines()
                .any(|l| words.iter().all(|w| l.split_whitespace().any(|x| x == *w))),
            "a line with {words:?} in the router's sessions: {status}"
        );
    }
    for i in 1..=2 {
        let st = node_status(&lab, &format!("node-{i}"));
        let mut seen = peers(&st);
        seen.sort();
        let other = 3 - i;
        let want = |addr: String, kind: &str| (addr, kind.to_owned(), "Established".to_owned());
        assert_eq!(
            seen,
            vec![
                want(fabric_address(other), "mesh"),
                want("172.30.0.254".to_owned(), "global"),
                want(format!("fd00:172:30::{}", 10 + other), "mesh"),
                want("fd00:172:30::254".to_owned(), "global"),
            ],
            "node-{i}: one session per family with each peer: {st}"
        );
    }
    lab.load(&pods(2), false);
    let v6 = addresses(&lab, "p2");
    assert!(
        v6.len() == 2 && v6[1].starts_with("fd00:192:168:"),
        "a dual-stack pod has an address of each family from the lab's pools: {v6:?}"
    );
    assert_learned_everywhere(&lab, 2);
    let before = redirects(&lab, 2);
    for (i, p) in [(1, "p1"), (2, "p2")] {
        for addr in addresses(&lab, p) {
            assert_routed_to_host(&lab, daemon, &addr, &fabric_address_like(i, &addr));
            assert_eq!(
                greeting_from_tor(&lab, &addr),
                format!("open/{p}"),
                "{addr}"
            );
        }
    }
    // Routes flow the other way too: the router advertises its outside networks, the nodes
    // route them through its address of each family, and pods reach its server there.
    for i in 1..=2 {
        let routes = tabby_routes(&lab, &format!("node-{i}"));
        for (net, via) in [
            ("203.0.113.0/24", "172.30.0.254"),
            ("2001:db8:203::/64", "fd00:172:30::254"),
        ] {
            assert!(
                routes.iter().any(|(d, g)| d == net && g == via),
                "node-{i} routes {net} via the router ({via}): {routes:?}"
            );
        }
    }
    for outside in ["203.0.113.1", "2001:db8:203::1"] {
        let script = format!("exec 3<>/dev/tcp/{outside}/8080 && head -1 <&3");
        assert_eq!(
            lab.ok(
                &["exec", "p1", "--", "timeout", "5", "bash", "-c", &script],
                ""
            )
            .trim(),
            "outside",
            "p1 reaches {outside} outside the cluster"
        );
    }
    // Across hosts over IPv6 too.
    let script = format!("exec 3<>/dev/tcp/{}/8080 && head -1 <&3", v6[1]);
    assert_eq!(
        lab.ok(
            &["exec", "p1", "--", "timeout", "5", "bash", "-c", &script],
            ""
        )
        .trim(),
        "open/p2"
    );
    assert_eq!(
        redirects(&lab, 2),
        before,
        "ICMP redirects (sent by the nodes, received by the router) while reaching the pods"
    );

    // p2 goes: node-2 keeps its blocks, so the router still sends its addresses to node-2,
    // whose blackholes for the blocks stop them.
    let gone = addresses(&lab, "p2");
    lab.load(&pods(1), true);
    for addr in &gone {
        let holes = blackholes(&lab, "node-2", addr);
        assert!(
            holes.iter().any(|b| covers(b, addr)),
            "node-2 blackholes {addr}: {holes:?}"
        );
        assert_routed_to_host(&lab, daemon, addr, &fabric_address_like(2, addr));
        assert_eq!(
            greeting_from_tor(&lab, addr),
            "",
            "nothing answers for {addr}"
        );
    }

    // `lab down` finds the daemon by its namespace, without the state file.
    let root = std::env::var("TABBY_LAB_DIR").unwrap_or_else(|_| "/run/tabby/lab".to_owned());
    std::fs::remove_file(std::path::Path::new(&root).join(&lab.name).join("lab.json")).unwrap();
    let netns = format!("tabby-lab-{}.tor", lab.name);
    let daemons = std::process::Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()
        .expect("ip netns pids");
    let pids = String::from_utf8_lossy(&daemons.stdout).into_owned();
    assert!(!pids.trim().is_empty(), "the daemon runs in {netns}");
    let out = std::process::Command::new(lab::TABBY)
        .args(["lab", "down", "--name", &lab.name])
        .output()
        .expect("lab down");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in pids.split_whitespace() {
        // A stopped daemon may stay a zombie until its adopter reaps it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        assert!(
            matches!(state, None | Some("Z")),
            "process {pid} of the router survived lab down: {stat}"
        );
    }
    assert!(lab.namespaces().is_empty());
    assert!(
        !std::path::Path::new(&format!("/run/frr/tabby-lab-{}-tor", lab.name)).exists(),
        "FRR's runtime folder is removed"
    );
}

#[test]
fn a_bird_tor_learns_the_workloads_over_ebgp_and_reaches_them() {
    if tabby_test_util::root_or_skip("a_bird_tor_learns_the_workloads_over_ebgp_and_reaches_them") {
        tor_lab(
            "tb",
            "bird",
            &["bird", "birdc"],
            [
                &["node_2", "BGP", "Established"],
                &["node_2_v6", "BGP", "Established"],
            ],
        );
    }
}

#[test]
fn a_gobgp_tor_learns_the_workloads_over_ebgp_and_reaches_them() {
    if tabby_test_util::root_or_skip("a_gobgp_tor_learns_the_workloads_over_ebgp_and_reaches_them")
    {
        tor_lab(
            "tg",
            "gobgp",
            &["gobgpd", "gobgp"],
            [
                &["172.30.0.12", "64512", "Establ"],
                &["fd00:172:30::12", "64512", "Establ"],
            ],
        );
    }
}

#[test]
fn an_frr_tor_learns_the_workloads_over_ebgp_and_reaches_them() {
    if tabby_test_util::root_or_skip("an_frr_tor_learns_the_workloads_over_ebgp_and_reaches_them") {
        tor_lab(
            "tf",
            "frr",
            &["/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh"],
            [
                &["172.30.0.12", "4", "64512"],
                &["fd00:172:30::12", "4", "64512"],
            ],
        );
    }
}
