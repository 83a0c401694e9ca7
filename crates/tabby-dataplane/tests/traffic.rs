//! Real traffic through the real `nft`: a "host" network namespace with workload namespaces
//! plumbed as DESIGN.md says (veth per workload, host side `tb*` with MAC ee:ee:ee:ee:ee:ee,
//! no address and proxy ARP; inside `eth0` with a /32 and a default route via 169.254.1.1),
//! the scenario's deltas applied, and TCP/UDP probes that must be allowed or dropped exactly as
//! the deltas say; then an incremental update flips verdicts, and a new table takes over.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "util/deltas.rs"]
mod deltas;
#[path = "util/scenario.rs"]
mod scenario;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use tabby_dataplane::netns::write_sysctl;
use tabby_dataplane::workload::{self, NetnsSysctls};
use tabby_dataplane::{Config, NetNs, Netlink, NftCli, NftTable, Route, RouteWrite, RtNetlink};

const PROBE_TIMEOUT: Duration = Duration::from_millis(700);
const TCP_PORTS: [u16; 3] = [7070, 8080, 9999];
const UDP_PORT: u16 = 5353;

/// Listeners inside one workload namespace: TCP ports answer "ok", the UDP port echoes and
/// records who sent.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    udp_senders: Arc<Mutex<Vec<IpAddr>>>,
}

impl Listeners {
    fn start(ns: &NetNs) -> Self {
        let (tcp, udp) = ns
            .run(|| {
                let tcp: Vec<TcpListener> = TCP_PORTS
                    .iter()
                    .map(|p| TcpListener::bind(("0.0.0.0", *p)).expect("bind tcp"))
                    .collect();
                let udp = UdpSocket::bind(("0.0.0.0", UDP_PORT)).expect("bind udp");
                (tcp, udp)
            })
            .expect("enter workload namespace");
        let stop = Arc::new(AtomicBool::new(false));
        let udp_senders = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for l in tcp {
            let stop = stop.clone();
            l.set_nonblocking(true).expect("nonblocking");
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.write_all(b"ok");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        {
            let stop = stop.clone();
            let seen = udp_senders.clone();
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        seen.lock().expect("lock").push(from.ip());
                        let _ = udp.send_to(&buf[..n], from);
                    }
                }
            }));
        }
        Self {
            stop,
            threads,
            udp_senders,
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_probe(from: &NetNs, to: Ipv4Addr, port: u16) -> bool {
    from.run(|| {
        let addr = SocketAddr::from((to, port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).is_ok() && &buf == b"ok"
    })
    .expect("enter source namespace")
}

fn udp_probe(from: &NetNs, src: Ipv4Addr, to: Ipv4Addr) -> bool {
    from.run(|| {
        let s = UdpSocket::bind((src, 0)).expect("bind udp client");
        s.set_read_timeout(Some(PROBE_TIMEOUT)).expect("timeout");
        s.send_to(b"ping", (to, UDP_PORT)).expect("send");
        let mut buf = [0u8; 8];
        matches!(s.recv_from(&mut buf), Ok((4, _)))
    })
    .expect("enter source namespace")
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("valid address")
}

struct Workload {
    ns: NetNs,
    ip: Ipv4Addr,
}

/// Plumbs one workload (the shared plumbing, as the lab and CNI do it) and, since this test
/// has no agent, the host route to it.
async fn plumb(host: &RtNetlink, host_ns: &NetNs, iface: &str, ip: &str) -> Workload {
    let ns = NetNs::new("tbt-wl").expect("workload namespace");
    let inside = RtNetlink::in_netns(ns.path()).expect("netlink in workload");
    let addr: IpAddr = ip.parse().expect("valid");
    workload::plumb(
        host,
        &NetnsSysctls(host_ns.path().to_owned()),
        &inside,
        &NetnsSysctls(ns.path().to_owned()),
        &workload::Workload {
            interface: iface,
            netns: ns.path(),
            inside: workload::WORKLOAD_INTERFACE,
            addresses: &[addr],
            mtu: None,
        },
    )
    .await
    .expect("plumb workload");
    host.replace_route(&Route {
        dst: IpNet::from(addr),
        dev: Some(iface.to_owned()),
        gateway: None,
        scope_link: true,
        onlink: false,
    })
    .await
    .expect("host route to the workload");
    Workload { ns, ip: v4(ip) }
}

/// A probe: its name, the expected verdict (allowed?), and the probe itself.
type Probe<'a> = (String, bool, Box<dyn Fn() -> bool + Send + Sync + 'a>);

fn tcp<'a>(from: &'a Workload, to: &Workload, port: u16, expected: bool, name: &str) -> Probe<'a> {
    let to_ip = to.ip;
    (
        format!("{name} tcp/{port}"),
        expected,
        Box::new(move || tcp_probe(&from.ns, to_ip, port)),
    )
}

fn udp<'a>(from: &'a Workload, to: &Workload, expected: bool, name: &str) -> Probe<'a> {
    let (src, to_ip) = (from.ip, to.ip);
    (
        format!("{name} udp/{UDP_PORT}"),
        expected,
        Box::new(move || udp_probe(&from.ns, src, to_ip)),
    )
}

/// Runs the probes in parallel (denied ones each wait out the timeout) and fails with the
/// whole table when any verdict is not the expected one.
fn check(phase: &str, probes: Vec<Probe<'_>>) {
    let results: Vec<(String, bool, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(name, expected, f)| s.spawn(move || (name.clone(), *expected, f())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, e, a)| e != a)
        .map(|(n, e, a)| {
            let word = |b: &bool| if *b { "allowed" } else { "denied" };
            format!("  {n}: expected {}, got {}", word(e), word(a))
        })
        .collect();
    assert!(wrong.is_empty(), "{phase}:\n{}", wrong.join("\n"));
}

fn nft_list(host_ns: &NetNs, chain: &str) -> String {
    let out = host_ns
        .run(|| {
            std::process::Command::new("nft")
                .args(["list", "chain", "inet", "tabby", chain])
                .output()
                .expect("run nft list")
        })
        .expect("enter host");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn policy_is_enforced_on_real_traffic_and_updates_flip_it() {
    if !tabby_test_util::root_or_skip("policy_is_enforced_on_real_traffic_and_updates_flip_it") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let host_ns = NetNs::new("tbt-host").expect("host namespace");
    let (a, b, c, d) = rt.block_on(async {
        let host = RtNetlink::in_netns(host_ns.path()).expect("netlink in host");
        host.set_up("lo").await.expect("lo up");
        // An uplink with a default route, as a real host has: proxy ARP answers for
        // 169.254.1.1 only when the host routes it through another interface.
        host.add_veth("uplink0", "uplink1", None)
            .await
            .expect("uplink");
        host.set_up("uplink0").await.expect("uplink up");
        host.set_up("uplink1").await.expect("uplink peer up");
        host.replace_route(&Route {
            dst: "0.0.0.0/0".parse().expect("valid"),
            dev: Some("uplink0".to_owned()),
            gateway: None,
            scope_link: true,
            onlink: false,
        })
        .await
        .expect("default route");
        for (key, value) in [
            ("net/ipv4/ip_forward", "1"),
            // Spoofed packets must meet tabby's rule, not the kernel's reverse-path filter.
            ("net/ipv4/conf/all/rp_filter", "0"),
            ("net/ipv4/conf/default/rp_filter", "0"),
        ] {
            write_sysctl(host_ns.path(), key, value).expect("sysctl");
        }
        let a = plumb(&host, &host_ns, scenario::A.1, scenario::A.2).await;
        let b = plumb(&host, &host_ns, scenario::B.1, scenario::B.2).await;
        let c = plumb(&host, &host_ns, scenario::C.1, scenario::C.2).await;
        // A tb* interface tabby was never told about.
        let d = plumb(&host, &host_ns, "tbd", "10.65.0.4").await;
        let spoof = RtNetlink::in_netns(a.ns.path()).expect("netlink in a");
        spoof
            .add_address("eth0", "10.65.0.99/32".parse().expect("valid"))
            .await
            .expect("second address in a");
        (a, b, c, d)
    });
    let listeners: Vec<Listeners> = [&a, &b, &c, &d]
        .iter()
        .map(|w| Listeners::start(&w.ns))
        .collect();

    let mut nft = NftCli::new().in_netns(host_ns.path());
    let mut table = NftTable::new(Config::default());
    for delta in scenario::initial() {
        table.apply(&delta);
    }
    let first = table
        .sync(&mut nft)
        .expect("initial write")
        .expect("a script");
    assert!(first.full);

    check(
        "initial deltas",
        vec![
            tcp(&a, &b, 8080, true, "a->b (a in s:clients)"),
            tcp(
                &c,
                &b,
                8080,
                false,
                "c->b (c quarantined: tier security denies)",
            ),
            tcp(&a, &b, 9999, false, "a->b (no rule: tier default denies)"),
            udp(&a, &b, true, "a->b (a in s:clients)"),
            udp(&c, &b, false, "c->b (passed by security, not a client)"),
            tcp(&b, &a, 8080, true, "b->a (no policy: profile allows)"),
            tcp(&c, &a, 7070, false, "c->a (c-egress denies 7070)"),
            tcp(&c, &a, 8080, true, "c->a (c-egress allows the rest)"),
            tcp(
                &b,
                &c,
                7070,
                true,
                "b->c (c's egress policy is not its ingress)",
            ),
            udp(&a, &c, true, "a->c"),
            tcp(&d, &a, 8080, false, "d->a (unknown tb interface)"),
            tcp(&a, &d, 8080, false, "a->d (unknown tb interface)"),
        ],
    );
    // Anti-spoofing: the same datagram from an address a holds but its endpoint does not.
    assert!(!udp_probe(&a.ns, v4("10.65.0.99"), c.ip));
    let seen = listeners[2].udp_senders.lock().expect("lock").clone();
    assert!(
        !seen.contains(&IpAddr::V4(v4("10.65.0.99"))),
        "a spoofed datagram reached c: {seen:?}"
    );
    let fw_a = nft_list(&host_ns, "fw_tba");
    let spoof_rule = fw_a
        .lines()
        .find(|l| l.contains("source is not the workload's address"))
        .expect("anti-spoofing rule");
    assert!(
        !spoof_rule.contains("packets 0 "),
        "the anti-spoofing rule dropped nothing: {spoof_rule}"
    );

    for delta in scenario::update() {
        table.apply(&delta);
    }
    let second = table
        .sync(&mut nft)
        .expect("update write")
        .expect("a script");
    assert!(!second.full, "an update is incremental");
    assert!(!second.text.contains("delete table"));
    let after_update = || {
        vec![
            tcp(&a, &b, 8080, false, "a->b (a left s:clients)"),
            tcp(
                &c,
                &b,
                8080,
                true,
                "c->b (c joined s:clients, left s:quarantined)",
            ),
            tcp(&a, &b, 9999, true, "a->b (new rule 2 allows 9999)"),
            udp(&a, &b, false, "a->b (a left s:clients)"),
            udp(&c, &b, true, "c->b (c joined s:clients)"),
            tcp(&c, &a, 7070, false, "c->a (unchanged)"),
            tcp(&d, &b, 9999, false, "d->b (still unknown)"),
        ]
    };
    check("after the incremental update", after_update());

    // A change of set members only goes to the kernel as one nfnetlink batch, not through
    // nft, and flips verdicts just the same: c leaves s:clients, then comes back.
    let clients = |added: Vec<&str>, removed: Vec<&str>| tabby_calc::Delta::IpSetMembers {
        id: deltas::set_id("s:clients"),
        added: added.into_iter().map(deltas::host).collect(),
        removed: removed.into_iter().map(deltas::host).collect(),
    };
    table.apply(&clients(vec![], vec!["10.65.0.3/32"]));
    let batch = table
        .sync(&mut nft)
        .expect("element batch")
        .expect("a write");
    assert!(batch.netlink && !batch.full, "{batch:?}");
    check(
        "after c left s:clients over nfnetlink",
        vec![
            tcp(&c, &b, 8080, false, "c->b (c left s:clients)"),
            udp(&c, &b, false, "c->b (c left s:clients)"),
            tcp(&a, &b, 9999, true, "a->b (rule 2 unchanged)"),
        ],
    );
    table.apply(&clients(vec!["10.65.0.3/32"], vec![]));
    assert!(
        table
            .sync(&mut nft)
            .expect("element batch")
            .expect("a write")
            .netlink
    );
    check("after c came back over nfnetlink", after_update());

    // A new agent takes over the table left by the old one with one full script.
    let mut fresh = NftTable::new(Config::default());
    for delta in scenario::initial().into_iter().chain(scenario::update()) {
        fresh.apply(&delta);
    }
    let takeover = fresh
        .sync(&mut nft)
        .expect("take-over write")
        .expect("a script");
    assert!(takeover.full);
    check("after a take-over", after_update());
    drop(listeners);
}

/// Every kind of statement the renderer writes, and every kind of incremental change, must be
/// accepted by the real `nft` (the golden files only show what is written).
#[test]
fn every_script_shape_is_accepted_by_nft() {
    if !tabby_test_util::root_or_skip("every_script_shape_is_accepted_by_nft") {
        return;
    }
    use tabby_calc::Delta;
    let ns = NetNs::new("tbt-shapes").expect("namespace");
    let mut nft = NftCli::new().in_netns(ns.path());
    let mut table = NftTable::new(Config::default());
    for d in scenario::rich() {
        table.apply(&d);
    }
    assert!(table.sync(&mut nft).expect("full rich script").is_some());

    // Networks appear in a set that had none, nested networks surface, an endpoint, a tier
    // and a policy go.
    let web_only = scenario::rich()
        .into_iter()
        .find_map(|d| match d {
            Delta::EndpointUpdated(ep) if ep.id.name == "web-1" => {
                let mut ep = (*ep).clone();
                ep.tiers.retain(|t| t.name == "default");
                Some(Delta::EndpointUpdated(Arc::new(ep)))
            }
            _ => None,
        })
        .expect("web-1 in the scenario");
    for d in [
        web_only,
        Delta::EndpointRemoved(deltas::ep_id("shop", "lonely")),
        Delta::PolicyRemoved(deltas::gnp("pass-external")),
        Delta::IpSetMembers {
            id: deltas::set_id("s:external"),
            added: vec![deltas::host("203.0.113.0/24")],
            removed: vec![deltas::host("198.51.100.0/24")],
        },
        Delta::IpSetMembers {
            id: deltas::set_id("s:frontend"),
            added: vec![deltas::host("10.65.2.0/24")],
            removed: vec![deltas::host("10.65.1.1/32")],
        },
    ] {
        table.apply(&d);
    }
    let step = table
        .sync(&mut nft)
        .expect("incremental script")
        .expect("a script");
    assert!(!step.full);
    assert!(
        step.text.contains("add set inet tabby p4_"),
        "{}",
        step.text
    );
    assert!(step.text.contains("delete chain"), "{}", step.text);

    // Everything goes, in the engine's order; only the fixed chains remain.
    for d in [
        Delta::EndpointRemoved(deltas::ep_id("shop", "web-1")),
        Delta::ProfileRemoved("kns.shop".to_owned()),
        Delta::PolicyRemoved(deltas::np("shop", "web")),
        Delta::IpSetRemoved(deltas::set_id("s:frontend")),
        Delta::IpSetRemoved(deltas::set_id("s:external")),
        Delta::IpSetRemoved(deltas::set_id("n:http")),
    ] {
        table.apply(&d);
    }
    table.sync(&mut nft).expect("removal script");
    let listing = ns
        .run(|| {
            std::process::Command::new("nft")
                .args(["list", "table", "inet", "tabby"])
                .output()
                .expect("run nft")
        })
        .expect("enter namespace");
    let text = String::from_utf8_lossy(&listing.stdout);
    for gone in [
        "set s4_",
        "set p4_",
        "set n4_",
        "chain pi_",
        "chain tw_",
        "goto fw_",
        "goto tw_",
    ] {
        assert!(!text.contains(gone), "{gone} left behind:\n{text}");
    }
    assert!(text.contains("chain forward"), "{text}");
}

#[test]
fn real_netlink_marks_finds_and_deletes_its_routes() {
    if !tabby_test_util::root_or_skip("real_netlink_marks_finds_and_deletes_its_routes") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let ns = NetNs::new("tbt-routes").expect("namespace");
    rt.block_on(async {
        let nl = RtNetlink::in_netns(ns.path()).expect("netlink");
        nl.add_veth("tbr1", "tbr1p", None).await.expect("veth");
        nl.set_up("tbr1").await.expect("up");
        nl.set_up("tbr1p").await.expect("up");
        let r = Route {
            dst: "10.66.0.5/32".parse().expect("valid"),
            dev: Some("tbr1".to_owned()),
            gateway: None,
            scope_link: true,
            onlink: false,
        };
        nl.replace_route(&r).await.expect("route");
        // Replacing is idempotent.
        nl.replace_route(&r).await.expect("route again");
        nl.replace_neighbour(
            "tbr1",
            "10.66.0.5".parse().expect("valid"),
            [2, 0, 0, 0, 0, 5],
        )
        .await
        .expect("neighbour");
        assert_eq!(nl.tabby_routes().await.expect("list"), vec![r.clone()]);
        nl.delete_route(r.dst).await.expect("delete");
        nl.delete_route(r.dst)
            .await
            .expect("deleting again is fine");
        assert!(nl.tabby_routes().await.expect("list").is_empty());
        nl.delete_link("tbr1").await.expect("delete link");
        assert_eq!(nl.link_index("tbr1p").await.expect("lookup"), None);
    });
}

#[test]
fn real_netlink_batches_route_writes_and_maps_refusals_to_their_routes() {
    if !tabby_test_util::root_or_skip(
        "real_netlink_batches_route_writes_and_maps_refusals_to_their_routes",
    ) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let ns = NetNs::new("tbt-batch").expect("namespace");
    rt.block_on(async {
        let nl = RtNetlink::in_netns(ns.path()).expect("netlink");
        nl.add_veth("tbb1", "tbb1p", None).await.expect("veth");
        nl.set_up("tbb1").await.expect("up");
        nl.set_up("tbb1p").await.expect("up");
        nl.add_address("tbb1", "10.67.0.1/24".parse().expect("valid"))
            .await
            .expect("address");
        // More routes than one send carries, via a next hop on the link.
        let gw: IpAddr = "10.67.0.2".parse().expect("valid");
        let mut writes: Vec<RouteWrite> = (0..300u32)
            .map(|i| {
                let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i * 4);
                RouteWrite::Replace(Route {
                    dst: IpNet::new(IpAddr::V4(a), 30).expect("valid"),
                    dev: None,
                    gateway: Some(gw),
                    scope_link: false,
                    onlink: false,
                })
            })
            .collect();
        let blackhole = Route::blackhole("10.68.0.0/26".parse().expect("valid"));
        writes.push(RouteWrite::Replace(blackhole.clone()));
        // Refusals, each answered at its own place: an unreachable next hop, an unknown
        // interface; and deleting what is not there is fine.
        let unreachable = Route {
            dst: "10.69.0.0/24".parse().expect("valid"),
            dev: None,
            gateway: Some("192.0.2.1".parse().expect("valid")),
            scope_link: false,
            onlink: false,
        };
        writes.insert(7, RouteWrite::Replace(unreachable));
        writes.insert(
            200,
            RouteWrite::Replace(Route {
                dst: "10.70.0.0/24".parse().expect("valid"),
                dev: Some("nosuch0".to_owned()),
                gateway: None,
                scope_link: true,
                onlink: false,
            }),
        );
        writes.insert(250, RouteWrite::Delete("10.71.0.0/24".parse().expect("valid")));
        let answers = nl.write_routes(&writes).await.expect("batch");
        assert_eq!(answers.len(), writes.len());
        for (i, a) in answers.iter().enumerate() {
            match i {
                7 => {
                    let err = a.as_ref().expect_err("unreachable next hop refused");
                    assert!(err.to_string().contains("10.69.0.0/24"), "{err}");
                }
                200 => assert!(
                    matches!(a, Err(tabby_dataplane::NetlinkError::NoSuchLink(d)) if d == "nosuch0"),
                    "{a:?}"
                ),
                _ => assert!(a.is_ok(), "write {i}: {a:?}"),
            }
        }
        let routes = nl.tabby_routes().await.expect("list");
        assert_eq!(routes.len(), 301, "300 via the link and the blackhole");
        assert!(routes.contains(&blackhole), "{routes:?}");
        let text = String::from_utf8(
            std::process::Command::new("ip")
                .args(["-n", ns.name(), "route", "show", "10.68.0.0/26"])
                .output()
                .expect("ip")
                .stdout,
        )
        .expect("utf-8");
        assert!(text.starts_with("blackhole 10.68.0.0/26 proto 116"), "{text}");

        // A route of someone else's to the same destination survives tabby's delete.
        let status = std::process::Command::new("ip")
            .args([
                "-n", ns.name(), "route", "add", "10.72.0.0/24", "via", "10.67.0.3", "proto",
                "static", "metric", "5",
            ])
            .status()
            .expect("ip");
        assert!(status.success());
        nl.replace_route(&Route {
            dst: "10.72.0.0/24".parse().expect("valid"),
            dev: None,
            gateway: Some(gw),
            scope_link: false,
            onlink: false,
        })
        .await
        .expect("tabby's own");
        let deletes: Vec<RouteWrite> = routes
            .iter()
            .map(|r| RouteWrite::Delete(r.dst))
            .chain([RouteWrite::Delete("10.72.0.0/24".parse().expect("valid"))])
            .collect();
        let answers = nl.write_routes(&deletes).await.expect("batch");
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert!(nl.tabby_routes().await.expect("list").is_empty());
        let text = String::from_utf8(
            std::process::Command::new("ip")
                .args(["-n", ns.name(), "route", "show", "10.72.0.0/24"])
                .output()
                .expect("ip")
                .stdout,
        )
        .expect("utf-8");
        assert!(text.contains("proto static"), "{text}");
        // delete_route alone, by destination without a dump, leaves it too.
        nl.delete_route("10.72.0.0/24".parse().expect("valid"))
            .await
            .expect("nothing of tabby's there");
    });
}

/// `ip -6 addr show dev IFACE` in a namespace.
fn ipv6_addresses(ns: &NetNs, iface: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-6", "addr", "show", "dev", iface])
        .output()
        .expect("ip addr");
    assert!(out.status.success(), "ip addr: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A dual-stack workload can use IPv6 the moment plumbing returns: its address and the host
/// side's link-local address (its gateway) are not held tentative by duplicate address
/// detection, and a TCP connection through the gateway goes through at once.
#[test]
fn a_dual_stack_workload_has_working_ipv6_as_soon_as_it_is_plumbed() {
    if !tabby_test_util::root_or_skip(
        "a_dual_stack_workload_has_working_ipv6_as_soon_as_it_is_plumbed",
    ) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let host_ns = NetNs::new("tbt-host6").expect("host namespace");
    let wl = NetNs::new("tbt-wl6").expect("workload namespace");
    let v6: IpAddr = "fd00:65::9".parse().expect("valid");
    rt.block_on(async {
        let host = RtNetlink::in_netns(host_ns.path()).expect("netlink in host");
        host.set_up("lo").await.expect("lo up");
        let inside = RtNetlink::in_netns(wl.path()).expect("netlink in workload");
        let addresses = [IpAddr::V4(v4("10.65.0.9")), v6];
        workload::plumb(
            &host,
            &NetnsSysctls(host_ns.path().to_owned()),
            &inside,
            &NetnsSysctls(wl.path().to_owned()),
            &workload::Workload {
                interface: "tbv6",
                netns: wl.path(),
                inside: workload::WORKLOAD_INTERFACE,
                addresses: &addresses,
                mtu: None,
            },
        )
        .await
        .expect("plumb workload");
        host.replace_route(&Route {
            dst: IpNet::from(v6),
            dev: Some("tbv6".to_owned()),
            gateway: None,
            scope_link: true,
            onlink: false,
        })
        .await
        .expect("host route to the workload");
    });
    let inside = ipv6_addresses(&wl, workload::WORKLOAD_INTERFACE);
    assert!(
        inside.contains("fd00:65::9/128") && !inside.contains("tentative"),
        "the workload's address is usable at once:\n{inside}"
    );
    let host_side = ipv6_addresses(&host_ns, "tbv6");
    assert!(
        host_side.contains("fe80::ecee:eeff:feee:eeee") && !host_side.contains("tentative"),
        "the gateway address is usable at once:\n{host_side}"
    );
    // The workload reaches an address of the host through its gateway, and the answer
    // comes back through the host route: neighbour discovery both ways, at once.
    let host_ip: IpAddr = "fd00:1::1".parse().expect("valid");
    let out = std::process::Command::new("ip")
        .args([
            "-n",
            host_ns.name(),
            "addr",
            "add",
            "fd00:1::1/128",
            "dev",
            "lo",
            "nodad",
        ])
        .output()
        .expect("ip addr add");
    assert!(out.status.success(), "{out:?}");
    let listener = host_ns
        .run(|| TcpListener::bind((host_ip, 7070)).expect("bind"))
        .expect("enter host namespace");
    let connected = wl
        .run(|| {
            TcpStream::connect_timeout(&SocketAddr::from((host_ip, 7070)), Duration::from_secs(2))
        })
        .expect("enter workload namespace");
    let stream = connected.expect("the workload connects to the host over IPv6 at once");
    let (_, from) = listener.accept().expect("accept");
    assert_eq!(from.ip(), v6, "from the workload's address");
    drop(stream);
}
