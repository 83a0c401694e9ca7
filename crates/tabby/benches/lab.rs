//! Policy on a lab, end to end through the release binary: how long `tabby apply` of a policy
//! takes to be enforced on a node, what 1,000 policies applying to two workloads cost their
//! TCP throughput and 64-byte UDP packet rate (iperf3), and how long a new pod waits for its
//! first allowed packet; and in a 5-node BGP lab how long a new pod's route takes to reach
//! every node's kernel (`TABBY_BENCH_ONLY_BGP=1` runs only that). Prints one JSON line per
//! figure; needs root (it says so and prints nothing else without it); never fails on a slow
//! machine.

#[path = "../tests/support/lab.rs"]
#[expect(
    dead_code,
    reason = "the tests' lab helper; the benchmark needs only part of it"
)]
mod lab;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::{TABBY, TestLab};

const BASE: &str = r"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: b}}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: bench}
  spec: {cidr: 10.78.0.0/24}
- apiVersion: v1
  kind: Pod
  metadata: {name: client, namespace: b, labels: {app: client}}
  spec: {nodeName: node-1, containers: [{name: c}]}
  status: {podIP: 10.78.0.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: server, namespace: b, labels: {app: server}}
  spec: {nodeName: node-2, containers: [{name: s, ports: [{containerPort: 8080}]}]}
  status: {podIP: 10.78.0.20}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata: {name: server-base}
  spec:
    selector: app == 'server'
    order: 5000
    types: [Ingress]
    ingress: [{action: Allow, source: {selector: app == 'nobody'}}]
";

fn allow(name: &str, order: u32) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  selector: app == 'server'\n  order: {order}\n  types: [Ingress]\n  ingress: [{{action: Allow, source: {{selector: app == 'client'}}}}]\n"
    )
}

fn netns_path(name: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(name)
}

/// `tabby apply` (or delete) of `yaml` against the lab's datastore; returns when the command
/// has returned.
fn tabby(datastore: &str, verb: &str, yaml: &str) {
    let mut child = Command::new(TABBY)
        .args(["--datastore", datastore, verb, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run tabby");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "tabby {verb} failed");
}

/// The node agent's programmed revision, read inside the node's namespace.
fn programmed(node_netns: &str) -> Option<i64> {
    tabby_dataplane::netns::run_in(&netns_path(node_netns), || {
        let mut s =
            TcpStream::connect_timeout(&"127.0.0.1:9099".parse().ok()?, Duration::from_millis(200))
                .ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("tabby_programmed_revision ")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as i64)
        })
    })
    .ok()
    .flatten()
}

fn revision(datastore: &str) -> i64 {
    tabby_store::open(datastore)
        .expect("open lab datastore")
        .revision()
        .expect("revision")
}

/// Waits until a new TCP connection from `netns` to `to` gets through; probes overlap every
/// few milliseconds so that the first moment it is allowed is seen.
fn first_connect(
    netns: &str,
    to: SocketAddr,
    start: Instant,
    deadline: Duration,
) -> Option<Duration> {
    tabby_dataplane::netns::run_in(&netns_path(netns), || {
        while start.elapsed() < deadline {
            if TcpStream::connect_timeout(&to, Duration::from_millis(15)).is_ok() {
                return Some(start.elapsed());
            }
        }
        None
    })
    .ok()
    .flatten()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

#[expect(
    clippy::print_stdout,
    reason = "a benchmark prints its figures, one JSON line each"
)]
fn emit(v: &Value) {
    println!("{v}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `tabby apply` of an allow policy to (a) the agent of the server's node reporting it
/// programmed and (b) the first new connection getting through.
fn apply_to_enforcement(lab: &TestLab, datastore: &str, node2: &str) {
    const ROUNDS: usize = 20;
    let server: SocketAddr = "10.78.0.20:8080".parse().expect("address");
    let client = lab.state()["workloads"]["b/client"]["netns"]
        .as_str()
        .expect("netns")
        .to_owned();
    let mut programmed_ms = Vec::new();
    let mut packet_ms = Vec::new();
    let mut removed_ms = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        tabby(datastore, "apply", &allow("bench-allow", 100));
        let target = revision(datastore);
        let seen = first_connect(&client, server, start, Duration::from_secs(5));
        while programmed(node2).is_none_or(|r| r < target) {}
        programmed_ms.push(ms(start.elapsed()));
        if let Some(d) = seen {
            packet_ms.push(ms(d));
        }
        let start = Instant::now();
        tabby(datastore, "delete", &allow("bench-allow", 100));
        let target = revision(datastore);
        while programmed(node2).is_none_or(|r| r < target) {}
        removed_ms.push(ms(start.elapsed()));
    }
    for (figure, mut samples) in [
        ("apply_allow_to_programmed_ms", programmed_ms),
        ("apply_allow_to_first_packet_ms", packet_ms),
        ("delete_allow_to_programmed_ms", removed_ms),
    ] {
        if samples.is_empty() {
            continue;
        }
        emit(&json!({
            "bench": "lab", "figure": figure, "rounds": samples.len(),
            "p50": percentile(&mut samples, 0.5), "p99": percentile(&mut samples, 0.99),
            "max": percentile(&mut samples, 1.0),
        }));
    }
}

/// iperf3 from the client to the server: (TCP bits/s, UDP 64-byte packets/s received).
fn iperf(lab: &TestLab) -> Option<(f64, f64)> {
    let run = |args: &[&str]| -> Option<Value> {
        let mut all = vec![
            "exec",
            "b/client",
            "--",
            "iperf3",
            "-c",
            "10.78.0.20",
            "-J",
            "-t",
            "3",
        ];
        all.extend_from_slice(args);
        let out = lab.run(&all, "");
        serde_json::from_slice(&out.stdout).ok()
    };
    let tcp = run(&[])?;
    let tcp_bps = tcp["end"]["sum_received"]["bits_per_second"].as_f64()?;
    let udp = run(&["-u", "-l", "64", "-b", "0"])?;
    let sum = &udp["end"]["sum"];
    let received = sum["packets"].as_f64()? - sum["lost_packets"].as_f64().unwrap_or(0.0);
    let seconds = sum["seconds"].as_f64()?;
    Some((tcp_bps, received / seconds))
}

fn throughput(lab: &TestLab, datastore: &str) {
    if Command::new("iperf3").arg("--version").output().is_err() {
        emit(
            &json!({"bench": "lab", "skipped": "throughput: iperf3 is not installed (scripts/deps.sh installs it)"}),
        );
        return;
    }
    tabby(datastore, "apply", &allow("bench-allow", 4000));
    lab.ok(
        &["exec", "b/server", "--", "iperf3", "-s", "-D", "-p", "5201"],
        "",
    );
    // Alternating rounds show how much of a difference is the machine's noise.
    let fillers = fillers(1000);
    let mut rounds: Vec<(usize, f64, f64)> = Vec::new();
    for (round, policies) in [0usize, 1000, 0, 1000].into_iter().enumerate() {
        match (round, policies) {
            (0, _) => {}
            (_, 0) => tabby(datastore, "delete", &fillers),
            _ => tabby(datastore, "apply", &fillers),
        }
        let target = revision(datastore);
        let nodes: Vec<String> = lab.state()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["netns"].as_str().expect("netns").to_owned())
            .collect();
        for n in &nodes {
            while programmed(n).is_none_or(|r| r < target) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let Some((tcp, udp)) = iperf(lab) else {
            emit(
                &json!({"bench": "lab", "skipped": format!("throughput with {policies} policies: iperf3 gave no result")}),
            );
            return;
        };
        emit(
            &json!({"bench": "lab", "figure": "tcp_bits_per_second", "policies": policies, "round": round, "value": tcp}),
        );
        emit(
            &json!({"bench": "lab", "figure": "udp_64b_packets_per_second", "policies": policies, "round": round, "value": udp}),
        );
        rounds.push((policies, tcp, udp));
    }
    let mean = |policies: usize, pick: fn(&(usize, f64, f64)) -> f64| {
        let v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.0 == policies)
            .map(pick)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    emit(&json!({
        "bench": "lab", "figure": "ratio_1000_to_0_policies",
        "tcp": mean(1000, |r| r.1) / mean(0, |r| r.1),
        "udp_64b": mean(1000, |r| r.2) / mean(0, |r| r.2),
    }));
}

/// `n` policies that apply to the server and that a new flow from the client traverses: each
/// rule matches a source the client does not have.
fn fillers(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let _ = write!(
            text,
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: filler-{i}}}\nspec:\n  selector: app == 'server'\n  order: {i}\n  types: [Ingress]\n  ingress: [{{action: Deny, protocol: TCP, source: {{selector: role == 'r{i}'}}, destination: {{ports: [{}]}}}}]\n",
            1000 + i
        );
    }
    text
}

/// A new pod: from `tabby lab load` starting to the first connection to it getting through.
fn pod_to_first_packet(lab: &TestLab) {
    let mut samples = Vec::new();
    let client = lab.state()["workloads"]["b/client"]["netns"]
        .as_str()
        .expect("netns")
        .to_owned();
    for i in 0..5u8 {
        let ip = format!("10.78.0.{}", 100 + i);
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: new-{i}, namespace: fresh}}\nspec: {{nodeName: node-2, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}\nstatus: {{podIP: {ip}}}\n"
        );
        let to: SocketAddr = format!("{ip}:8080").parse().expect("address");
        let start = Instant::now();
        let mut load = Command::new(TABBY)
            .args(["lab", "load", "--name", &lab.name, "--no-wait", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("lab load");
        load.stdin
            .take()
            .expect("stdin")
            .write_all(pod.as_bytes())
            .expect("write");
        let reached = first_connect(&client, to, start, Duration::from_secs(10));
        let _ = load.wait();
        if let Some(d) = reached {
            samples.push(ms(d));
        }
    }
    if !samples.is_empty() {
        emit(&json!({
            "bench": "lab", "figure": "pod_load_to_first_packet_ms", "pods": samples.len(),
            "p50": percentile(&mut samples, 0.5), "max": percentile(&mut samples, 1.0),
        }));
    }
}

/// Netlink handles into each node's namespace, made once so that polling costs one dump.
struct NodeRoutes {
    rt: tokio::runtime::Runtime,
    nodes: Vec<(String, std::net::IpAddr, tabby_dataplane::RtNetlink)>,
}

impl NodeRoutes {
    fn new(lab: &TestLab) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let nodes = lab.state()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                let netns = n["netns"].as_str().expect("netns");
                let addr = n["address"].as_str().expect("address").parse().expect("ip");
                let nl = rt.block_on(async {
                    tabby_dataplane::RtNetlink::in_netns(&netns_path(netns)).expect("netlink")
                });
                (n["name"].as_str().expect("name").to_owned(), addr, nl)
            })
            .collect();
        Self { rt, nodes }
    }

    /// Node `i`'s tabby routes (proto 116).
    fn dump(&self, i: usize) -> Vec<tabby_dataplane::Route> {
        use tabby_dataplane::Netlink as _;
        self.rt
            .block_on(self.nodes[i].2.tabby_routes())
            .unwrap_or_default()
    }

    /// Whether node `i`'s most specific tabby route to `addr` goes through `via`, or (`via`
    /// None) is a local one.
    fn has(&self, i: usize, addr: std::net::IpAddr, via: Option<std::net::IpAddr>) -> bool {
        self.dump(i)
            .iter()
            .filter(|r| r.dst.contains(&addr))
            .max_by_key(|r| r.dst.prefix_len())
            .is_some_and(|r| r.gateway == via)
    }
}

/// In a 5-node BGP lab (full mesh, or with `reflectors` route reflectors): a new pod on one
/// node, from `lab load --no-wait` returning (the pod is plumbed through the CNI plugin and in
/// the datastore) to the route covering it in its own node's kernel and, through its node,
/// in every other node's (learned over BGP, proto 116). The pods come from a pool of 4-address
/// blocks (blockSize 30): while agents advertise per-workload /32s every pod makes a new
/// route; once they advertise their IPAM blocks only a pod that claims a new block does, and
/// the others (already covered) are counted but not timed. The JSON says which prefix lengths
/// the new routes had.
fn bgp_pod_to_routes(reflectors: usize) {
    const PODS: usize = 100;
    const POOL: &str = "---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bench-bgp}\nspec: {cidr: 10.79.0.0/16, blockSize: 30}\n";
    let lab = TestLab::up_with(
        "bg",
        &[
            "--nodes",
            "5",
            "--route-reflectors",
            &reflectors.to_string(),
        ],
    );
    let topology = if reflectors == 0 {
        "bgp mesh".to_owned()
    } else {
        format!("bgp, {reflectors} route reflector(s)")
    };
    let routes = NodeRoutes::new(&lab);
    lab.load(
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: r}}\n{POOL}"),
        false,
    );
    let mut local_ms = Vec::new();
    let mut everywhere_ms = Vec::new();
    let mut prefix_lens = std::collections::BTreeSet::new();
    let (mut missed, mut covered) = (0, 0);
    for i in 0..PODS {
        let host = i % routes.nodes.len();
        // A node other than the pod's, to tell a pod in an advertised block from a new route.
        let other = (host + 1) % routes.nodes.len();
        let before = routes.dump(other);
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: r}}\nspec: {{nodeName: {}, containers: [{{name: c}}]}}\n{POOL}",
            routes.nodes[host].0
        );
        let out = lab.run(&["load", "--no-wait", "-f", "-"], &pod);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = Instant::now();
        let addr: std::net::IpAddr = lab.state()["workloads"][format!("r/p{i}")]["addresses"][0]
            .as_str()
            .expect("address")
            .parse()
            .expect("ip");
        let via = routes.nodes[host].1;
        if before
            .iter()
            .any(|r| r.dst.contains(&addr) && r.gateway == Some(via))
        {
            covered += 1;
            continue;
        }
        let mut pending: Vec<usize> = (0..routes.nodes.len()).collect();
        let mut local = None;
        while !pending.is_empty() && start.elapsed() < Duration::from_secs(10) {
            pending.retain(|&n| {
                let want = if n == host { None } else { Some(via) };
                if routes.has(n, addr, want) {
                    if n == host {
                        local = Some(start.elapsed());
                    }
                    false
                } else {
                    true
                }
            });
        }
        if pending.is_empty() {
            everywhere_ms.push(ms(start.elapsed()));
            local_ms.extend(local.map(ms));
            prefix_lens.extend(
                routes
                    .dump(other)
                    .iter()
                    .filter(|r| r.dst.contains(&addr) && r.gateway == Some(via))
                    .map(|r| r.dst.prefix_len()),
            );
        } else {
            missed += 1;
        }
    }
    for (figure, mut samples) in [
        ("bgp_new_route_to_local_route_ms", local_ms),
        ("bgp_new_route_to_every_node_ms", everywhere_ms),
    ] {
        if samples.is_empty() {
            continue;
        }
        emit(&json!({
            "bench": "lab", "figure": figure, "nodes": 5, "routing": topology,
            "route_prefix_lens": prefix_lens, "pods": PODS, "timed": samples.len(),
            "already_covered": covered, "missed": missed,
            "p50": percentile(&mut samples, 0.5), "p99": percentile(&mut samples, 0.99),
            "max": percentile(&mut samples, 1.0),
        }));
    }
}

fn main() {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    }) {
        emit(&json!({"bench": "lab", "skipped": "needs root"}));
        return;
    }
    if std::env::var_os("TABBY_BENCH_ONLY_BGP").is_some() {
        bgp_pod_to_routes(0);
        bgp_pod_to_routes(1);
        return;
    }
    let lab = TestLab::up("bn", 2);
    lab.load(BASE, false);
    let state = lab.state();
    let datastore = state["datastore"].as_str().expect("datastore").to_owned();
    let node2 = state["nodes"][1]["netns"]
        .as_str()
        .expect("netns")
        .to_owned();
    apply_to_enforcement(&lab, &datastore, &node2);
    pod_to_first_packet(&lab);
    throughput(&lab, &datastore);
    drop(lab);
    bgp_pod_to_routes(0);
    bgp_pod_to_routes(1);
}
