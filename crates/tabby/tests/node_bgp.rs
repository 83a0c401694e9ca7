//! Two `tabby node run` agents in two "host" network namespaces joined by a veth pair, each
//! with one workload namespace plumbed as DESIGN.md says, sharing a SQLite datastore. With
//! `spec.bgp` on both Nodes the agents peer over iBGP (the default full mesh on AS 64512),
//! advertise their workloads' /32s and program what they learn with tabby's route protocol;
//! a workload on one host then reaches the workload on the other. `tabby node status` shows
//! the session; deleting a workload withdraws its route from the other host.
//!
//! With IPAM blocks, each node advertises its block with a blackhole for it and a /32 for a
//! borrowed address. Against BIRD 2: an agent killed and restarted keeps forwarding (graceful
//! restart both ways, no route ever leaves either kernel), and a wrong peer AS, a password whose
//! Secret is missing, or a wrong password shows as the peer's error in `tabby node status`; the
//! right password (a Secret's key, TCP MD5) brings the session up, and two agents mesh with
//! `nodeMeshPassword`.
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

/// The `tabby node status -o json` entry of the peer at `addr`, once the agent answers.
fn peer_status(host: &NetNs, addr: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(&status(host, true)?).ok()?;
    v["bgp"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["address"] == addr)
        .cloned()
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
    run_agent_with(host, db, dir, node, &[], &[])
}

/// `tabby node run` with more arguments and environment.
fn run_agent_with(
    host: &NetNs,
    db: &Path,
    dir: &ScratchDir,
    node: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Agent {
    Agent(
        Command::new("ip")
            .args(["netns", "exec", host.name(), TABBY, "--datastore"])
            .arg(format!("sqlite:{}", db.display()))
            .args(["node", "run", "--name", node, "--lock-dir"])
            .arg(dir.path())
            .args(["--metrics-addr", "127.0.0.1:9099"])
            .args(args)
            .envs(env.iter().copied())
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

/// Whether BIRD 2 is installed; under `CI=true` it must be.
fn have_bird() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v bird && command -v birdc"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || std::env::var("CI").is_err(),
        "bird and birdc are needed (scripts/deps.sh installs bird2)"
    );
    found
}

/// Joins two namespaces with a veth pair (`eth0` in both, /24 addresses), lo up, forwarding
/// on, and no default route.
fn link_pair(a: &NetNs, a_ip: &str, b: &NetNs, b_ip: &str) {
    sh(&[
        "ip",
        "-n",
        a.name(),
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.name(),
    ]);
    for (ns, ip) in [(a, a_ip), (b, b_ip)] {
        sh(&[
            "ip",
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", ns.name(), "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns.name(), "link", "set", "lo", "up"]);
        in_ns(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
}

/// BIRD 2 in a namespace, killed when the test ends.
struct Bird {
    child: std::process::Child,
    ns: String,
    sock: String,
}

impl Bird {
    fn start(dir: &ScratchDir, ns: &NetNs, conf: &str) -> Self {
        let path = dir.file("bird.conf");
        std::fs::write(&path, conf).expect("write bird.conf");
        let sock = dir.file("bird.ctl").to_string_lossy().into_owned();
        // `ip netns exec` execs BIRD in place: the child is BIRD.
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "bird", "-f", "-c"])
            .arg(&path)
            .args(["-s", &sock])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bird");
        let bird = Self {
            child,
            ns: ns.name().to_owned(),
            sock,
        };
        wait_for("BIRD's control socket", String::new, || {
            !bird.birdc("show status").is_empty()
        });
        bird
    }

    fn birdc(&self, cmd: &str) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "birdc", "-s", &self.sock, cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ip monitor route` in a namespace, writing to a file until dropped.
struct RouteMonitor {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl RouteMonitor {
    fn start(dir: &ScratchDir, ns: &NetNs, name: &str) -> Self {
        let log = dir.file(name);
        let file = std::fs::File::create(&log).expect("monitor log");
        let child = Command::new("ip")
            .args(["-n", ns.name(), "monitor", "route"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor");
        Self { child, log }
    }

    /// Route deletions seen so far that mention `dst`.
    fn deletions(&self, dst: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Deleted") && l.contains(dst))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn graceful_restart_with_bird_keeps_forwarding_across_an_agent_kill_and_restart() {
    if !tabby_test_util::root_or_skip(
        "graceful_restart_with_bird_keeps_forwarding_across_an_agent_kill_and_restart",
    ) {
        return;
    }
    if !have_bird() {
        return;
    }
    let dir = ScratchDir::new("node-bgp-gr");
    let db = dir.file("store");
    let net = format!("10.77.{}", std::process::id() % 250);
    let (host, router) = (format!("{net}.1"), format!("{net}.2"));
    tabby_ok(
        &db,
        &["apply", "-f", "-"],
        &format!(
            r"
apiVersion: v1
kind: List
items:
- {{apiVersion: v1, kind: Namespace, metadata: {{name: lab}}}}
- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: default}}, spec: {{nodeToNodeMeshEnabled: false}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {host}/24}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {{name: tor}}, spec: {{peerIP: {router}, asNumber: 64512}}}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {{name: node--a-k8s-wa-eth0, namespace: lab}}
  spec: {{node: node-a, interfaceName: tba, ipNetworks: [10.66.0.1/32], profiles: [kns.lab]}}
"
        ),
    );
    // The host's only way to 10.200.0.0/24 is the route it learns from BIRD, and the
    // router's only way to the workload is the one BIRD learns from tabby: no default routes.
    let host_ns = NetNs::new("tbg-h").expect("host");
    let router_ns = NetNs::new("tbg-r").expect("router");
    link_pair(&host_ns, &host, &router_ns, &router);
    // Proxy ARP answers for the workload's gateway when the host routes it somewhere.
    sh(&[
        "ip",
        "-n",
        host_ns.name(),
        "route",
        "add",
        "169.254.1.1/32",
        "dev",
        "eth0",
    ]);
    // "The rest of the network" behind the router (no dummy module here: a veth pair).
    sh(&[
        "ip",
        "-n",
        router_ns.name(),
        "link",
        "add",
        "ext0",
        "type",
        "veth",
        "peer",
        "name",
        "ext1",
    ]);
    sh(&["ip", "-n", router_ns.name(), "link", "set", "ext1", "up"]);
    sh(&[
        "ip",
        "-n",
        router_ns.name(),
        "addr",
        "add",
        "10.200.0.1/24",
        "dev",
        "ext0",
    ]);
    sh(&["ip", "-n", router_ns.name(), "link", "set", "ext0", "up"]);
    serve_ok(&router_ns, 8080);
    let wa = plumb(&host_ns, "tba", "10.66.0.1");

    let bird = Bird::start(
        &dir,
        &router_ns,
        &format!(
            "router id {router};\n\
             protocol device {{ }}\n\
             protocol direct {{ ipv4; interface \"ext0\"; }}\n\
             protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
             protocol bgp tabby {{ local {router} as 64512; neighbor {host} as 64512; direct;\n\
               graceful restart on; graceful restart time 120;\n\
               connect delay time 1; connect retry time 1; error wait time 1, 2;\n\
               ipv4 {{ import all; export where source = RTS_DEVICE; next hop self; gateway direct; }}; }}\n"
        ),
    );
    let mut agent = Some(run_agent(&host_ns, &db, &dir, "node-a"));
    let diag = || {
        format!(
            "host routes: {:?}\nrouter routes: {:?}\nstatus: {}",
            routes(&host_ns),
            routes(&router_ns),
            status(&host_ns, true).unwrap_or_default()
        )
    };
    let host_route = || {
        routes(&host_ns)
            .iter()
            .any(|(d, g, p)| d == "10.200.0.0/24" && *g == router && p == "116")
    };
    let router_route = || {
        routes(&router_ns)
            .iter()
            .any(|(d, g, p)| d == "10.66.0.1" && *g == host && p == "bird")
    };
    wait_for("routes both ways", diag, || host_route() && router_route());
    assert!(
        tcp_probe(&wa, Ipv4Addr::new(10, 200, 0, 1), 8080),
        "{}",
        diag()
    );

    // Kill the agent outright and start it again, probing all along; neither kernel may
    // lose its route at any moment.
    let host_mon = RouteMonitor::start(&dir, &host_ns, "host-routes.log");
    let router_mon = RouteMonitor::start(&dir, &router_ns, "router-routes.log");
    std::thread::sleep(Duration::from_millis(200));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let wa_path = wa.path().to_owned();
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            let mut tries = 0;
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tries += 1;
                let ok = tabby_dataplane::netns::run_in(&wa_path, || {
                    TcpStream::connect_timeout(
                        &SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), 8080)),
                        PROBE_TIMEOUT,
                    )
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
                        let mut buf = [0u8; 2];
                        s.read_exact(&mut buf)
                    })
                    .is_ok()
                })
                .unwrap_or(false);
                if !ok {
                    failed.push(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (tries, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    drop(agent.take());
    let killed = Instant::now();
    agent = Some(run_agent(&host_ns, &db, &dir, "node-a"));
    let established = || {
        status(&host_ns, true)
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .is_some_and(|v| v["bgp"]["peers"][0]["state"] == "Established")
    };
    wait_for("the restarted agent's session", diag, established);
    // Past the End-of-RIB exchange both ways, and the restarted agent's stale sweep.
    wait_for("BIRD to see the session again", diag, || {
        bird.birdc("show protocols tabby").contains("Established")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (tries, failed) = prober.join().expect("prober");
    assert_eq!(host_mon.deletions("10.200.0.0/24"), Vec::<String>::new());
    assert_eq!(router_mon.deletions("10.66.0.1"), Vec::<String>::new());
    assert!(tries >= 10, "{tries} probes only");
    assert!(
        failed.is_empty(),
        "{} of {tries} probes failed (at {failed:?} after the start of probing); restart took {:?}\n{}",
        failed.len(),
        killed.elapsed(),
        diag()
    );
    assert!(host_route() && router_route(), "{}", diag());
    drop(agent);
}

/// One node (`node-a`, mesh off) in a host namespace at `NET.1` and BIRD 2 in a router
/// namespace at `NET.2`, with the agent running. Fields drop in order: agent, BIRD, namespaces.
struct BirdNeighbour {
    _agent: Agent,
    bird: Bird,
    host_ns: NetNs,
    _router_ns: NetNs,
    router: String,
    net: String,
    db: std::path::PathBuf,
    _dir: ScratchDir,
}

impl BirdNeighbour {
    /// `items` are the List items beside the node (BGPPeers, Secrets) and `bird` the body of
    /// BIRD's `protocol bgp tabby`, both given the host's and router's addresses.
    fn start(
        tag: &str,
        octet: u32,
        items: &dyn Fn(&str, &str) -> String,
        bird: &dyn Fn(&str, &str) -> String,
    ) -> Self {
        let dir = ScratchDir::new(&format!("node-bgp-{tag}"));
        let db = dir.file("store");
        let net = format!("10.{octet}.{}", std::process::id() % 250);
        let (host, router) = (format!("{net}.1"), format!("{net}.2"));
        tabby_ok(
            &db,
            &["apply", "-f", "-"],
            &format!(
                r"
apiVersion: v1
kind: List
items:
- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: default}}, spec: {{nodeToNodeMeshEnabled: false}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: node-a}}, spec: {{bgp: {{ipv4Address: {host}/24}}}}}}
{}",
                items(&host, &router)
            ),
        );
        let host_ns = NetNs::new(&format!("tb{tag}-h")).expect("host");
        let router_ns = NetNs::new(&format!("tb{tag}-r")).expect("router");
        link_pair(&host_ns, &host, &router_ns, &router);
        let bird = Bird::start(
            &dir,
            &router_ns,
            &format!(
                "router id {router};\n\
                 protocol device {{ }}\n\
                 protocol static {{ ipv4; route 10.77.7.0/24 blackhole; }}\n\
                 protocol bgp tabby {{ local {router} as 64999; neighbor {host} as 64512;\n\
                   connect delay time 1; connect retry time 1; error wait time 1, 2;\n\
                   {} }}\n",
                bird(&host, &router)
            ),
        );
        let agent = run_agent(&host_ns, &db, &dir, "node-a");
        Self {
            _agent: agent,
            bird,
            host_ns,
            _router_ns: router_ns,
            router,
            net,
            db,
            _dir: dir,
        }
    }

    fn peer(&self, addr: &str) -> Option<Value> {
        peer_status(&self.host_ns, addr)
    }

    fn diag(&self) -> String {
        format!(
            "status: {}\nbird: {}",
            status(&self.host_ns, false).unwrap_or_default(),
            self.bird.birdc("show protocols all tabby")
        )
    }

    fn bird_established(&self) -> bool {
        self.bird
            .birdc("show protocols tabby")
            .contains("Established")
    }
}

#[test]
fn a_wrong_peer_as_and_a_missing_password_secret_show_as_peer_errors_in_node_status() {
    if !tabby_test_util::root_or_skip(
        "a_wrong_peer_as_and_a_missing_password_secret_show_as_peer_errors_in_node_status",
    ) || !have_bird()
    {
        return;
    }
    // BIRD runs AS 64999; the BGPPeer says 64512. A second peer's password names a Secret
    // that does not exist.
    let lab = BirdNeighbour::start(
        "s",
        76,
        &|_, router| {
            let net = router.rsplit_once('.').expect("dotted").0;
            format!(
                "- {{apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {{name: tor}}, spec: {{peerIP: {router}, asNumber: 64512}}}}
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {{name: secret-tor}}
  spec:
    peerIP: {net}.3
    asNumber: 64512
    password: {{secretKeyRef: {{name: bgp-secrets, key: tor}}}}
"
            )
        },
        &|_, _| "ipv4 { import all; export none; };".to_owned(),
    );
    let router = &lab.router;
    wait_for(
        "the AS mismatch in node status",
        || lab.diag(),
        || {
            lab.peer(router).is_some_and(|p| {
                p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("peer AS is 64999, configured 64512"))
            })
        },
    );
    let tor = lab.peer(router).expect("tor");
    assert_ne!(tor["state"], "Established", "{tor}");
    let secret = lab
        .peer(&format!("{}.3", lab.net))
        .expect("the password peer is listed");
    assert_eq!(
        secret["last_error"], "password Secret \"calico-system/bgp-secrets\" not found",
        "{secret}"
    );
    assert_ne!(secret["state"], "Established");
    let table = status(&lab.host_ns, false).expect("status");
    assert!(
        table.contains("peer AS is 64999, configured 64512")
            && table.contains("calico-system/bgp-secrets\" not found"),
        "{table}"
    );
    // BIRD never saw a session either.
    assert!(!lab.bird_established());
}

/// The Secret holding the `tor` password.
fn password_secret(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bgp-secrets, namespace: calico-system}}\n\
         stringData: {{tor: {value}}}\n"
    )
}

#[test]
fn bgp_peer_passwords_come_from_a_secret_and_a_wrong_one_says_why() {
    if !tabby_test_util::root_or_skip(
        "bgp_peer_passwords_come_from_a_secret_and_a_wrong_one_says_why",
    ) || !have_bird()
    {
        return;
    }
    let lab = BirdNeighbour::start(
        "m",
        75,
        &|_, router| {
            format!(
                "- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {{name: tor}}
  spec:
    peerIP: {router}
    asNumber: 64999
    password: {{secretKeyRef: {{name: bgp-secrets, key: tor}}}}
- {{apiVersion: v1, kind: Secret, metadata: {{name: bgp-secrets, namespace: calico-system}}, stringData: {{tor: not-the-password}}}}
"
            )
        },
        &|_, _| "password \"the-password\"; ipv4 { import all; export all; };".to_owned(),
    );
    let router = &lab.router;
    wait_for(
        "the wrong password in node status",
        || lab.diag(),
        || {
            lab.peer(router).is_some_and(|p| {
            p["last_error"]
                == "no answer from peer; TCP MD5 password configured: check it matches the peer's"
        })
        },
    );
    let tor = lab.peer(router).expect("tor");
    assert_ne!(tor["state"], "Established", "{tor}");
    assert!(!lab.bird_established());
    // BIRD's signed SYNs carry the other password: the kernel counts them, and says so.
    wait_for(
        "the kernel's MD5 drop count in node status",
        || lab.diag(),
        || {
            status(&lab.host_ns, true)
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .and_then(|v| v["bgp"]["tcp_md5"]["wrong"].as_u64())
                .is_some_and(|n| n > 0)
        },
    );
    let table = status(&lab.host_ns, false).expect("status");
    assert!(
        table.contains("with a wrong signature (the passwords differ)"),
        "{table}"
    );

    // The Secret changes: the session restarts with the new key, comes up, and routes flow.
    tabby_ok(
        &lab.db,
        &["apply", "-f", "-"],
        &password_secret("the-password"),
    );
    wait_for(
        "the signed session and BIRD's route",
        || lab.diag(),
        || {
            lab.peer(router)
                .is_some_and(|p| p["state"] == "Established")
                && routes(&lab.host_ns)
                    .iter()
                    .any(|(d, g, p)| d == "10.77.7.0/24" && g == router && p == "116")
        },
    );
    assert!(lab.bird_established());
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
