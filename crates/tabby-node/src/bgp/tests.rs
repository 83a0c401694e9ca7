//! Two agents' BGP parts in one process, on loopback addresses (no root needed): the full
//! path from the engine's routes through real sessions to the other dataplane's routes. The
//! kernel end is the fake netlink; the namespace test in the `tabby` crate covers the kernel.

use std::net::TcpListener;
use std::time::Duration;

use tabby_calc::RouteOut;
use tabby_dataplane::{Config, FakeNetlink};
use tabby_model::{LoadOptions, load};

use super::*;
use crate::test_support::SharedNft;

/// A port free right now (the listener is closed again; good enough on loopback).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn inputs(yaml: &str) -> BgpInputs {
    let mut i = BgpInputs::default();
    for l in load(yaml, "test", &LoadOptions::default()).expect("loads") {
        i.upsert(&l.resource);
    }
    i
}

fn cluster(port_a: u16, port_b: u16) -> String {
    format!(
        r"
apiVersion: v1
kind: List
items:
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: a}}, spec: {{bgp: {{ipv4Address: 127.0.0.1/8}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: Node, metadata: {{name: b}}, spec: {{bgp: {{ipv4Address: 127.0.0.2/8}}}}}}
- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: node.a}}, spec: {{listenPort: {port_a}}}}}
- {{apiVersion: projectcalico.org/v3, kind: BGPConfiguration, metadata: {{name: node.b}}, spec: {{listenPort: {port_b}}}}}
"
    )
}

fn local(dst: &str, iface: &str) -> Delta {
    Delta::RouteUpdated(RouteOut {
        dst: dst.parse().expect("net"),
        target: RouteTarget::Local {
            interface: iface.to_owned(),
        },
    })
}

fn remote(dst: &str, via: &str) -> Delta {
    Delta::RouteUpdated(RouteOut {
        dst: dst.parse().expect("net"),
        target: RouteTarget::Remote {
            node: "x".to_owned(),
            via: via.parse().expect("ip"),
        },
    })
}

struct Side {
    bgp: Bgp,
    board: Arc<StatusBoard>,
    dp: Dataplane<FakeNetlink>,
    netlink: FakeNetlink,
}

fn side(host: &str, mode: Routing, ifaces: &[&str]) -> Side {
    let board = Arc::new(StatusBoard::new(host));
    let netlink = FakeNetlink::new();
    for i in ifaces {
        netlink.add_link(i);
    }
    Side {
        bgp: Bgp::new(host, mode, board.clone()),
        board,
        dp: Dataplane::new(
            Config::default(),
            Box::new(SharedNft::default()),
            netlink.clone(),
        ),
        netlink,
    }
}

/// The kernel's routes as `dst via gateway` / `dst dev iface` lines.
fn kernel(n: &FakeNetlink) -> Vec<String> {
    n.state()
        .routes
        .values()
        .map(|r| match (&r.gateway, &r.dev) {
            (Some(g), _) => format!("{} via {g}", r.dst),
            (None, Some(d)) => format!("{} dev {d}", r.dst),
            (None, None) => r.dst.to_string(),
        })
        .collect()
}

/// Steps both sides (reconcile and write) until `done`, failing after `limit`.
fn until(
    rt: &tokio::runtime::Runtime,
    sides: &mut [&mut Side],
    inputs: &BgpInputs,
    limit: Duration,
    what: &str,
    done: impl Fn(&[&mut Side]) -> bool,
) {
    let start = Instant::now();
    loop {
        for s in sides.iter_mut() {
            s.bgp.reconcile(inputs, &mut s.dp);
            rt.block_on(s.dp.sync()).expect("fake writes succeed");
        }
        if done(sides) {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_nodes_learn_each_others_workload_routes_and_bgp_replaces_datastore_routes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs = inputs(&cluster(free_port(), free_port()));
    let mut a = side("a", Routing::Auto, &["tba"]);
    let mut b = side("b", Routing::Bgp, &["tbb"]);
    // a also originates a network that covers its own address, which b must not program
    // (it would shadow the route b reaches a by).
    let a_deltas = [
        local("10.70.0.1/32", "tba"),
        remote("10.70.1.1/32", "10.9.9.8"),
        local("127.0.0.0/30", "tba"),
    ];
    a.bgp.observe(&a_deltas, true);
    a.dp.apply(&a_deltas);
    // b's engine also has a datastore route to a's workload; under BGP it is not programmed.
    let b_deltas = [
        local("10.70.1.1/32", "tbb"),
        remote("10.70.0.1/32", "10.9.9.9"),
    ];
    b.bgp.observe(&b_deltas, true);
    b.dp.apply(&b_deltas);

    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "each side to learn the other's workload",
        |s| {
            kernel(&s[0].netlink).contains(&"10.70.1.1/32 via 127.0.0.2".to_owned())
                && kernel(&s[1].netlink).contains(&"10.70.0.1/32 via 127.0.0.1".to_owned())
        },
    );
    assert!(a.bgp.running() && b.bgp.running());
    assert_eq!(
        kernel(&b.netlink),
        ["10.70.0.1/32 via 127.0.0.1", "10.70.1.1/32 dev tbb"],
        "the learned route, not the datastore's, and not the one covering its next hop"
    );
    let report = rt.block_on(a.board.report());
    assert_eq!(report.routing, "bgp");
    let bgp = report.bgp.expect("speaker status");
    assert_eq!((bgp.asn, bgp.originated, bgp.learned), (64512, 2, 1));
    let peer = &bgp.peers[0];
    assert_eq!(
        (peer.name.as_str(), peer.kind, peer.state.as_str()),
        ("Mesh_127_0_0_2", PeerKind::Mesh, "Established")
    );
    assert_eq!((peer.prefixes_received, peer.prefixes_advertised), (1, 2));

    // The workload on a goes: its route is withdrawn from b's kernel.
    a.bgp.observe(
        &[Delta::RouteRemoved("10.70.0.1/32".parse().expect("net"))],
        false,
    );
    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "the withdrawal",
        |s| {
            !kernel(&s[1].netlink)
                .iter()
                .any(|r| r.starts_with("10.70.0.1/32"))
        },
    );

    // Node a loses spec.bgp: under Auto its speaker stops and its learned routes go (the
    // engine's remote routes are programmed instead, once datastore routing programs them).
    let mut changed = inputs.clone();
    changed.upsert(
        &load(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: a}\nspec: {}\n",
            "t",
            &LoadOptions::default(),
        )
        .expect("loads")[0]
            .resource,
    );
    until(
        &rt,
        &mut [&mut a],
        &changed,
        Duration::from_secs(5),
        "datastore routing on a",
        |s| !s[0].bgp.running() && !kernel(&s[0].netlink).iter().any(|r| r.contains("via 127.")),
    );
    assert!(kernel(&a.netlink).contains(&"10.70.0.1/32 dev tba".to_owned()));
    assert_eq!(rt.block_on(a.board.report()).routing, "datastore");
}

#[test]
fn without_spec_bgp_auto_means_datastore_and_explicit_bgp_says_why_it_cannot_run() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs =
        inputs("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: plain}\nspec: {}\n");
    let mut auto = side("plain", Routing::Auto, &[]);
    auto.bgp.reconcile(&inputs, &mut auto.dp);
    assert!(!auto.bgp.running());
    let r = rt.block_on(auto.board.report());
    assert_eq!(
        (r.routing.as_str(), r.note, r.bgp),
        ("datastore", None, None)
    );

    let mut forced = side("plain", Routing::Bgp, &[]);
    forced.bgp.reconcile(&inputs, &mut forced.dp);
    assert!(!forced.bgp.running());
    let r = rt.block_on(forced.board.report());
    assert_eq!(r.routing, "bgp");
    assert_eq!(r.note.as_deref(), Some("Node \"plain\" has no spec.bgp"));
}

fn affinity(node: &str, block: &str, state: &str) -> tabby_store::Entry {
    let cidr: IpNet = block.parse().expect("net");
    tabby_store::Entry {
        key: tabby_ipam::records::affinity_key(node, cidr),
        value: serde_json::to_string(&tabby_ipam::records::Affinity {
            cidr,
            node: node.to_owned(),
            state: state.to_owned(),
        })
        .expect("json"),
        create_revision: 1,
        mod_revision: 1,
    }
}

#[test]
fn blocks_are_advertised_with_a_blackhole_and_uncovered_addresses_as_host_routes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut inputs = inputs(&cluster(free_port(), free_port()));
    for e in [
        affinity("a", "10.71.0.0/26", "confirmed"),
        affinity("b", "10.71.0.64/26", "confirmed"),
        // Pending counts as absent, as in Calico.
        affinity("a", "10.71.1.0/26", "pending"),
    ] {
        assert!(inputs.upsert_ipam(&e));
    }
    let mut a = side("a", Routing::Bgp, &["tba"]);
    let mut b = side("b", Routing::Bgp, &["tbb"]);
    // a: one address of its own block, one borrowed from b's, one from outside IPAM.
    let a_deltas = [
        local("10.71.0.5/32", "tba"),
        local("10.71.0.70/32", "tba"),
        local("10.99.0.1/32", "tba"),
    ];
    a.bgp.observe(&a_deltas, true);
    a.dp.apply(&a_deltas);
    let b_deltas = [local("10.71.0.65/32", "tbb")];
    b.bgp.observe(&b_deltas, true);
    b.dp.apply(&b_deltas);
    let want_b = [
        "10.71.0.0/26 via 127.0.0.1",
        "10.71.0.64/26",
        "10.71.0.65/32 dev tbb",
        "10.71.0.70/32 via 127.0.0.1",
        "10.99.0.1/32 via 127.0.0.1",
    ];
    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "b to learn a's block and a's uncovered addresses",
        |s| kernel(&s[1].netlink) == want_b,
    );
    assert!(
        b.netlink.state().routes[&"10.71.0.64/26".parse::<IpNet>().expect("net")].is_blackhole()
    );
    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "a to learn b's block",
        |s| kernel(&s[0].netlink).contains(&"10.71.0.64/26 via 127.0.0.2".to_owned()),
    );
    assert_eq!(
        kernel(&a.netlink),
        [
            "10.71.0.0/26",
            "10.71.0.5/32 dev tba",
            "10.71.0.64/26 via 127.0.0.2",
            "10.71.0.70/32 dev tba",
            "10.99.0.1/32 dev tba",
        ],
        "a's blackhole, its workloads, b's block; b's workload inside b's block has no /32"
    );
    let report = rt.block_on(a.board.report()).bgp.expect("speaker status");
    assert_eq!((report.originated, report.learned), (3, 1));

    // a's block is released: withdrawn, its blackhole gone, and the address a still uses in
    // it (no block covers it now) advertised on its own.
    assert!(inputs.remove_ipam(&tabby_ipam::records::affinity_key(
        "a",
        "10.71.0.0/26".parse().expect("net")
    )));
    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "the block's withdrawal",
        |s| {
            let kb = kernel(&s[1].netlink);
            !kb.iter().any(|r| r.starts_with("10.71.0.0/26"))
                && kb.contains(&"10.71.0.5/32 via 127.0.0.1".to_owned())
        },
    );
    assert!(!kernel(&a.netlink).contains(&"10.71.0.0/26".to_owned()));
}

#[test]
fn a_restarted_node_keeps_the_previous_runs_learned_routes_until_end_of_rib() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inputs = inputs(&cluster(free_port(), free_port()));
    let mut a = side("a", Routing::Bgp, &["tba"]);
    let mut b = side("b", Routing::Bgp, &["tbb"]);
    // What b's previous run left in its kernel: a route a still advertises, one it no longer
    // does, and a workload route of b's own that is gone.
    for (dst, gw, dev) in [
        ("10.70.0.1/32", Some("127.0.0.1"), None),
        ("10.70.9.0/24", Some("127.0.0.1"), None),
        ("10.70.1.9/32", None, Some("tbb")),
    ] {
        let dst: IpNet = dst.parse().expect("net");
        b.netlink.state().routes.insert(
            dst,
            tabby_dataplane::Route {
                dst,
                dev: dev.map(str::to_owned),
                gateway: gw.map(|g| g.parse().expect("ip")),
                scope_link: dev.is_some(),
                onlink: false,
            },
        );
    }
    b.dp.hold_stale();
    let a_deltas = [local("10.70.0.1/32", "tba")];
    a.bgp.observe(&a_deltas, true);
    a.dp.apply(&a_deltas);
    b.bgp.observe(&[], true);

    // b's first write, before any session: the learned routes stay, the dead workload's goes.
    b.bgp.reconcile(&inputs, &mut b.dp);
    rt.block_on(b.dp.sync()).expect("fake writes succeed");
    assert_eq!(
        kernel(&b.netlink),
        ["10.70.0.1/32 via 127.0.0.1", "10.70.9.0/24 via 127.0.0.1"]
    );
    assert_eq!(b.dp.stale_routes(), 2);
    until(
        &rt,
        &mut [&mut a, &mut b],
        &inputs,
        Duration::from_secs(30),
        "a's End-of-RIB to clear b's stale routes",
        |s| {
            let k = kernel(&s[1].netlink);
            assert!(
                k.contains(&"10.70.0.1/32 via 127.0.0.1".to_owned()),
                "the route a still advertises never goes: {k:?}"
            );
            k == ["10.70.0.1/32 via 127.0.0.1"]
        },
    );
    assert_eq!(b.dp.stale_routes(), 0);
}
