//! 100,000 prefixes over iBGP, tabby against BIRD 2 on the same machine in the same run.
//!
//! Two network namespaces on a veth pair: `src` runs BIRD ("the network", 100,000 /27s in a
//! static protocol, disabled until the clock starts) and `node` runs the receiver, first
//! tabby's agent parts (the `Bgp` controller with the speaker, the `Dataplane` route
//! reconciler and real netlink; nftables faked since no policy is involved), then BIRD with a
//! kernel protocol. Figures, one JSON line each:
//! - receive: from enabling the source's routes until all 100,000 are in the node's kernel
//!   table (tabby: its reconciler has written them; BIRD: `ip route` counts them, polled);
//! - advertise: from the node originating 100,000 prefixes until the source's BIRD holds them;
//! - withdraw: from disabling the source's routes until none is left in the node's kernel;
//! - memory: the receiver's resident set growth (tabby: this process; BIRD: its process).
//!
//! Needs root and `bird`; otherwise it prints a JSON line saying it was skipped.
//! Run with `cargo bench -p tabby-node --bench bgp_100k`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tabby_calc::{Delta, RouteOut, RouteTarget};
use tabby_dataplane::{Config, FakeNft, NetNs, RtNetlink};
use tabby_model::{LoadOptions, load};
use tabby_node::Dataplane;
use tabby_node::bgp::{Bgp, BgpInputs, Routing, StatusBoard};
use tabby_test_util::bird::Bird;
use tabby_test_util::{ScratchDir, veth_eth0};

const N: usize = 100_000;
const SRC: &str = "192.168.98.2";
const NODE: &str = "192.168.98.1";
const LIMIT: Duration = Duration::from_secs(600);

/// The i-th /27 of `base` (100.64.0.0 for the network's routes, 10.64.0.0 for the node's).
fn prefix(base: Ipv4Addr, i: usize) -> IpNet {
    let a = u32::from(base) + (i as u32) * 32;
    IpNet::new(Ipv4Addr::from(a).into(), 27).expect("valid")
}

fn sh(args: &[&str]) -> String {
    String::from_utf8_lossy(&tabby_test_util::sh(args).stdout).into_owned()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn bird_conf(me: &str, peer: &str, statics: Option<Ipv4Addr>, kernel: bool) -> String {
    let mut c = format!(
        "router id {me};\nprotocol device {{ }}\nprotocol direct {{ ipv4; interface \"eth0\"; }}\n"
    );
    if kernel {
        // Only what BGP learned: the node's own statics (the advertise step) stay out.
        c += "protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }\n";
    }
    if let Some(base) = statics {
        c += "protocol static st { disabled; ipv4;\n";
        for i in 0..N {
            let _ = writeln!(c, "route {} blackhole;", prefix(base, i));
        }
        c += "}\n";
    }
    let _ = writeln!(
        c,
        "protocol bgp t {{ local {me} as 64512; neighbor {peer} as 64512; connect delay time 1; \
         connect retry time 1; ipv4 {{ import all; export where source = RTS_STATIC; next hop self; }}; }}"
    );
    c
}

/// Kernel routes of a protocol in a namespace.
fn kernel_count(ns: &NetNs, proto: &str) -> usize {
    sh(&[
        "ip",
        "-n",
        ns.name(),
        "-4",
        "-o",
        "route",
        "show",
        "proto",
        proto,
    ])
    .lines()
    .count()
}

fn figure(bench: &str, speaker: &str, secs: f64, rss_delta: u64, rss: u64) -> String {
    format!(
        r#"{{"bench":"{bench}","speaker":"{speaker}","prefixes":{N},"seconds":{:.2},"rss_growth_mib":{},"rss_mib":{}}}"#,
        secs,
        mib(rss_delta),
        mib(rss)
    )
}

/// tabby as the node: receive, then advertise. Runs on a thread inside the node namespace.
fn tabby_side(src: &Bird) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let netlink = {
        let _in = rt.enter();
        RtNetlink::new().expect("netlink")
    };
    let mut dp = Dataplane::new(Config::default(), Box::new(FakeNft::default()), netlink);
    let mut inputs = BgpInputs::default();
    let yaml = format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: n}}, spec: {{bgp: {{ipv4Address: {NODE}/24}}}}}}\n\
         - {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: default}}, spec: {{nodeToNodeMeshEnabled: false}}}}\n\
         - {{apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {{name: src}}, spec: {{peerIP: {SRC}, asNumber: 64512}}}}\n"
    );
    for l in load(&yaml, "bench", &LoadOptions::default()).expect("loads") {
        inputs.upsert(&l.resource);
    }
    let board = Arc::new(StatusBoard::new("n"));
    let mut bgp = Bgp::new("n", Routing::Bgp, board.clone());
    let step = |bgp: &mut Bgp, dp: &mut Dataplane<RtNetlink>| {
        bgp.reconcile(&inputs, dp);
        if dp.has_pending() {
            rt.block_on(dp.sync()).expect("routes written");
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let start = Instant::now();
    loop {
        step(&mut bgp, &mut dp);
        let st = rt.block_on(board.report());
        let up = st
            .bgp
            .is_some_and(|b| b.peers.iter().any(|p| p.state == "Established"));
        if up {
            break;
        }
        assert!(start.elapsed() < LIMIT, "tabby: no session");
    }
    let me = std::process::id();
    let mut out = Vec::new();

    // Advertise first, then receive and withdraw, the same order on both sides.
    let rss0 = rss_kib(me);
    let deltas: Vec<Delta> = (0..N)
        .map(|i| {
            Delta::RouteUpdated(RouteOut {
                dst: prefix(Ipv4Addr::new(10, 64, 0, 0), i),
                target: RouteTarget::Local {
                    interface: "tbx".to_owned(),
                },
            })
        })
        .collect();
    let t0 = Instant::now();
    bgp.observe(&deltas, false);
    // The bench's own input is not the agent's memory (BIRD parsed its statics before too).
    drop(deltas);
    src.wait("tabby's routes", LIMIT, |b| b.routes_of("t") >= N);
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(me);
    out.push(figure(
        "bgp_advertise",
        "tabby",
        took,
        rss1.saturating_sub(rss0),
        rss1,
    ));

    let rss0 = rss_kib(me);
    let t0 = Instant::now();
    assert!(src.birdc("enable st").contains("enabled"));
    while dp.learned_routes() < N || dp.has_pending() {
        step(&mut bgp, &mut dp);
        assert!(t0.elapsed() < LIMIT, "tabby: receive timed out");
    }
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(me);
    let written = sh(&["ip", "-4", "-o", "route", "show", "proto", "116"])
        .lines()
        .count();
    assert_eq!(written, N, "every learned route in the kernel");
    out.push(figure(
        "bgp_receive",
        "tabby",
        took,
        rss1.saturating_sub(rss0),
        rss1,
    ));

    let rss0 = rss_kib(me);
    let t0 = Instant::now();
    assert!(src.birdc("disable st").contains("disabled"));
    while dp.learned_routes() > 0 || dp.has_pending() {
        step(&mut bgp, &mut dp);
        assert!(t0.elapsed() < LIMIT, "tabby: withdrawal timed out");
    }
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(me);
    let left = sh(&["ip", "-4", "-o", "route", "show", "proto", "116"])
        .lines()
        .count();
    assert_eq!(left, 0, "every withdrawn route gone from the kernel");
    out.push(figure(
        "bgp_withdraw",
        "tabby",
        took,
        rss1.saturating_sub(rss0),
        rss1,
    ));
    bgp.stop();
    out
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let bird = Command::new("sh")
        .args(["-c", "command -v bird"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !root || !bird {
        println!(r#"{{"bench":"bgp_100k","skipped":"needs root and bird"}}"#);
        return;
    }
    let dir = ScratchDir::new("bgp-bench");
    let src_ns = NetNs::new("tbgpb-src").expect("namespace");
    let node_ns = node(&src_ns);
    let src = Bird::start(
        &dir,
        src_ns.name(),
        "src",
        &bird_conf(SRC, NODE, Some(Ipv4Addr::new(100, 64, 0, 0)), false),
    );
    for line in node_ns
        .run(|| tabby_side(&src))
        .expect("enter node namespace")
    {
        println!("{line}");
    }
    // A fresh node namespace: the old one goes with tabby's routes and its end of the link.
    drop(node_ns);
    src.wait("tabby's routes to go", LIMIT, |b| b.routes_of("t") == 0);
    // The kernel takes a namespace (and the link end in `src`) down asynchronously.
    let t0 = Instant::now();
    while Command::new("ip")
        .args(["-n", src_ns.name(), "link", "show", "eth0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(t0.elapsed() < LIMIT, "the old node namespace lingers");
        std::thread::sleep(Duration::from_millis(20));
    }
    let node_ns = node(&src_ns);

    // BIRD as the node, same steps.
    let node = Bird::start(
        &dir,
        node_ns.name(),
        "node",
        &bird_conf(NODE, SRC, Some(Ipv4Addr::new(10, 64, 0, 0)), true),
    );
    node.wait("the session", LIMIT, |b| b.established("t"));
    let rss0 = rss_kib(node.pid());
    let t0 = Instant::now();
    assert!(node.birdc("enable st").contains("enabled"));
    src.wait("BIRD's routes", LIMIT, |b| b.routes_of("t") >= N);
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(node.pid());
    println!(
        "{}",
        figure(
            "bgp_advertise",
            "bird",
            took,
            rss1.saturating_sub(rss0),
            rss1
        )
    );

    let rss0 = rss_kib(node.pid());
    let t0 = Instant::now();
    assert!(src.birdc("enable st").contains("enabled"));
    while kernel_count(&node_ns, "bird") < N {
        assert!(t0.elapsed() < LIMIT, "BIRD: receive timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(node.pid());
    println!(
        "{}",
        figure("bgp_receive", "bird", took, rss1.saturating_sub(rss0), rss1)
    );

    let rss0 = rss_kib(node.pid());
    let t0 = Instant::now();
    assert!(src.birdc("disable st").contains("disabled"));
    while kernel_count(&node_ns, "bird") > 0 {
        assert!(t0.elapsed() < LIMIT, "BIRD: withdrawal timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed().as_secs_f64();
    let rss1 = rss_kib(node.pid());
    println!(
        "{}",
        figure(
            "bgp_withdraw",
            "bird",
            took,
            rss1.saturating_sub(rss0),
            rss1
        )
    );
    drop(node);
    drop(src);
}

/// A node namespace linked to `src` by a veth pair, `eth0` on both ends.
fn node(src: &NetNs) -> NetNs {
    let ns = NetNs::new("tbgpb-node").expect("namespace");
    veth_eth0(src.name(), ns.name());
    sh(&[
        "ip",
        "-n",
        ns.name(),
        "addr",
        "add",
        &format!("{NODE}/24"),
        "dev",
        "eth0",
    ]);
    for n in [src, &ns] {
        sh(&["ip", "-n", n.name(), "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", n.name(), "link", "set", "lo", "up"]);
    }
    if !sh(&["ip", "-n", src.name(), "-4", "addr", "show", "dev", "eth0"]).contains(SRC) {
        sh(&[
            "ip",
            "-n",
            src.name(),
            "addr",
            "add",
            &format!("{SRC}/24"),
            "dev",
            "eth0",
        ]);
    }
    ns
}
