//! One `tabby node run` agent against BIRD 2 in a router namespace (mesh off, a BGPPeer to
//! BIRD; `support/bgp.rs` sets it up). An agent killed and restarted keeps forwarding
//! (graceful restart both ways, no route ever leaves either kernel); a wrong peer AS, a
//! password whose Secret is missing, or a wrong password shows as the peer's error in
//! `tabby node status`, and the right password (a Secret's key, TCP MD5) brings the session
//! up. A peer sending more prefixes than its `tabby.dev/max-prefixes` is cut off, its routes
//! leave the kernel, node status says why and until when, and a raised limit brings it back
//! at once; a session BIRD restarts is back at once, and a flapping one is damped.
//!
//! Needs root and BIRD 2. Without them the tests say they were skipped; under `CI=true` that
//! is a failure.

#[path = "support/bgp.rs"]
mod bgp;
#[path = "support/host.rs"]
mod host;
#[path = "support/traffic.rs"]
mod traffic;

use std::cell::OnceCell;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;

use crate::bgp::{BirdNeighbour, BirdSetup, bird_bgp, root_and_bird, routes, sh, status, wait_for};
use crate::host::{plumb, tabby_ok};
use crate::traffic::{Listener, PROBE_TIMEOUT, tcp_probe};

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
    if !root_and_bird(
        "graceful_restart_with_bird_keeps_forwarding_across_an_agent_kill_and_restart",
    ) {
        return;
    }
    // The host's only way to 10.200.0.0/24 is the route it learns from BIRD, and the
    // router's only way to the workload is the one BIRD learns from tabby: no default routes.
    let workload = OnceCell::new();
    let server = OnceCell::new();
    let lab = BirdNeighbour::start(&BirdSetup {
        tag: "g",
        octet: 77,
        items: &|_, router| {
            format!(
                "- {{apiVersion: v1, kind: Namespace, metadata: {{name: lab}}}}
- {{apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {{name: tor}}, spec: {{peerIP: {router}, asNumber: 64512}}}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {{name: node--a-k8s-wa-eth0, namespace: lab}}
  spec: {{node: node-a, interfaceName: tba, ipNetworks: [10.66.0.1/32], profiles: [kns.lab]}}
"
            )
        },
        bird: &|host, router| {
            "protocol direct { ipv4; interface \"ext0\"; }\n\
             protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }\n"
                .to_owned()
                + &bird_bgp(
                    host,
                    router,
                    64512,
                    "direct; graceful restart on; graceful restart time 120;\n\
                     ipv4 { import all; export where source = RTS_DEVICE; next hop self; gateway direct; };",
                )
        },
        prepare: &|host_ns, router_ns| {
            // Proxy ARP answers for the workload's gateway when the host routes it somewhere.
            let (h, r) = (host_ns.name(), router_ns.name());
            sh(&[
                "ip",
                "-n",
                h,
                "route",
                "add",
                "169.254.1.1/32",
                "dev",
                "eth0",
            ]);
            // "The rest of the network" behind the router (no dummy module here: a veth pair).
            sh(&[
                "ip", "-n", r, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
            ]);
            sh(&["ip", "-n", r, "link", "set", "ext1", "up"]);
            sh(&["ip", "-n", r, "addr", "add", "10.200.0.1/24", "dev", "ext0"]);
            sh(&["ip", "-n", r, "link", "set", "ext0", "up"]);
            let _ = server.set(Listener::start(router_ns, 8080));
            let _ = workload.set(plumb(host_ns, "tba", "10.66.0.1"));
        },
    });
    let wa = workload.get().expect("plumbed");
    let (host, router) = (lab.host.clone(), lab.router.clone());
    let diag = || {
        format!(
            "router routes: {:?}\n{}",
            routes(&lab.router_ns),
            lab.diag()
        )
    };
    let host_route = || {
        routes(&lab.host_ns)
            .iter()
            .any(|(d, g, p)| d == "10.200.0.0/24" && *g == router && p == "116")
    };
    let router_route = || {
        routes(&lab.router_ns)
            .iter()
            .any(|(d, g, p)| d == "10.66.0.1" && *g == host && p == "bird")
    };
    wait_for("routes both ways", diag, || host_route() && router_route());
    assert!(
        tcp_probe(wa, Ipv4Addr::new(10, 200, 0, 1), 8080),
        "{}",
        diag()
    );

    // Kill the agent outright and start it again, probing all along; neither kernel may
    // lose its route at any moment.
    let host_mon = RouteMonitor::start(&lab.dir, &lab.host_ns, "host-routes.log");
    let router_mon = RouteMonitor::start(&lab.dir, &lab.router_ns, "router-routes.log");
    std::thread::sleep(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        let wa_path = wa.path().to_owned();
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            let mut tries = 0;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
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
    let killed = Instant::now();
    lab.kill_and_restart_agent();
    wait_for("the restarted agent's session", diag, || {
        lab.tor()["state"] == "Established"
    });
    // Past the End-of-RIB exchange both ways, and the restarted agent's stale sweep.
    wait_for("BIRD to see the session again", diag, || {
        lab.bird_established()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
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
}

#[test]
fn a_wrong_peer_as_and_a_missing_password_secret_show_as_peer_errors_in_node_status() {
    if !root_and_bird(
        "a_wrong_peer_as_and_a_missing_password_secret_show_as_peer_errors_in_node_status",
    ) {
        return;
    }
    // BIRD runs AS 64999; the BGPPeer says 64512. A second peer's password names a Secret
    // that does not exist.
    let lab = BirdNeighbour::start(&BirdSetup {
        tag: "s",
        octet: 76,
        items: &|_, router| {
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
        bird: &|host, router| bird_bgp(host, router, 64999, "ipv4 { import all; export none; };"),
        prepare: &|_, _| {},
    });
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
    if !root_and_bird("bgp_peer_passwords_come_from_a_secret_and_a_wrong_one_says_why") {
        return;
    }
    let lab = BirdNeighbour::start(&BirdSetup {
        tag: "m",
        octet: 75,
        items: &|_, router| {
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
        bird: &|host, router| {
            "protocol static { ipv4; route 10.77.7.0/24 blackhole; }\n".to_owned()
                + &bird_bgp(
                    host,
                    router,
                    64999,
                    "password \"the-password\"; ipv4 { import all; export all; };",
                )
        },
        prepare: &|_, _| {},
    });
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

/// A BIRD static protocol `name` with `n` /24 blackholes under `10.SECOND.0.0/16`.
fn bird_statics(name: &str, second: u8, n: u8, disabled: bool) -> String {
    let routes: String = (0..n)
        .map(|i| format!("route 10.{second}.{i}.0/24 blackhole; "))
        .collect();
    let disabled = if disabled { "disabled; " } else { "" };
    format!("protocol static {name} {{ {disabled}ipv4; {routes}}}\n")
}

/// The BGPPeer `tor` to BIRD (AS 64999), as a List item, with tabby's prefix limit.
fn limited_peer(router: &str, limit: Option<u32>) -> String {
    let annotations = limit
        .map(|l| format!(", annotations: {{tabby.dev/max-prefixes: '{l}'}}"))
        .unwrap_or_default();
    format!(
        "- {{apiVersion: projectcalico.org/v3, kind: BGPPeer, metadata: {{name: tor{annotations}}}, spec: {{peerIP: {router}, asNumber: 64999}}}}\n"
    )
}

/// Routes tabby learned (protocol 116) in the host's kernel under `10.SECOND.0.0/16`.
fn learned_under(host: &NetNs, second: u8) -> usize {
    let prefix = format!("10.{second}.");
    routes(host)
        .iter()
        .filter(|(d, _, p)| p == "116" && d.starts_with(&prefix))
        .count()
}

#[test]
fn a_peer_over_its_prefix_limit_is_cut_off_and_held_down_until_the_limit_is_raised() {
    if !root_and_bird(
        "a_peer_over_its_prefix_limit_is_cut_off_and_held_down_until_the_limit_is_raised",
    ) {
        return;
    }
    // BIRD announces 20 prefixes, then 20 more once `more` is enabled; the limit is 30.
    let lab = BirdNeighbour::start(&BirdSetup {
        tag: "l",
        octet: 72,
        items: &|_, router| limited_peer(router, Some(30)),
        bird: &|host, router| {
            format!(
                "{}{}{}",
                bird_statics("few", 91, 20, false),
                bird_statics("more", 92, 20, true),
                bird_bgp(
                    host,
                    router,
                    64999,
                    "ipv4 { import all; export where source = RTS_STATIC; };"
                )
            )
        },
        prepare: &|_, _| {},
    });
    let router = &lab.router;
    let peer = || lab.peer(router).unwrap_or_default();
    wait_for(
        "BIRD's 20 routes in the kernel",
        || lab.diag(),
        || learned_under(&lab.host_ns, 91) == 20,
    );
    let p = peer();
    assert_eq!(
        (p["state"].as_str(), p["max_prefixes"].as_u64()),
        (Some("Established"), Some(30)),
        "{p}"
    );

    // Over the limit: cut off with Cease, routes gone, and node status says why and until when.
    assert!(
        lab.bird.birdc("enable more").contains("enabled"),
        "{}",
        lab.diag()
    );
    let cut = Instant::now();
    let closed = "prefixes, limit 30 (tabby.dev/max-prefixes): session closed";
    wait_for(
        "the cut-off in node status",
        || lab.diag(),
        || {
            peer()["disabled"]
                .as_str()
                .is_some_and(|d| d.ends_with(closed))
        },
    );
    let p = peer();
    assert_eq!(p["state"], "Idle", "{p}");
    let sent: u64 = p["last_error"]
        .as_str()
        .and_then(|e| {
            e.strip_prefix("sent ")?
                .strip_suffix(closed)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("last error says how many were sent: {p}"));
    assert!((31..=40).contains(&sent), "{p}");
    let retry = p["retry_in_secs"].as_u64().expect("when it is tried again");
    assert!(
        (40..=60).contains(&retry),
        "held down for the first hold, 60 s: {p}"
    );
    wait_for(
        "the learned routes to leave the kernel",
        || lab.diag(),
        || learned_under(&lab.host_ns, 91) + learned_under(&lab.host_ns, 92) == 0,
    );
    assert_eq!(peer()["prefixes_received"], 0);
    let table = status(&lab.host_ns, false).expect("status");
    assert!(
        table.contains(" 0/30 ") && table.contains("held down: sent") && table.contains("retry in"),
        "{table}"
    );
    assert!(
        lab.bird
            .birdc("show protocols all tabby")
            .contains("Maximum number of prefixes"),
        "BIRD was told why: {}",
        lab.diag()
    );
    // Held down: BIRD keeps trying (error wait 1-2 s) and is refused.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(peer()["state"], "Idle", "{}", lab.diag());
    assert!(!lab.bird_established(), "{}", lab.diag());

    // The operator raises the limit: the session comes back at once, not after the hold.
    tabby_ok(
        &lab.db,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            limited_peer(router, Some(100))
        ),
    );
    wait_for(
        "the session with the raised limit",
        || lab.diag(),
        || {
            peer()["state"] == "Established"
                && learned_under(&lab.host_ns, 91) == 20
                && learned_under(&lab.host_ns, 92) == 20
        },
    );
    assert!(
        cut.elapsed() < Duration::from_secs(55),
        "the 60 s hold was lifted: {:?}",
        cut.elapsed()
    );
    assert_eq!(peer()["max_prefixes"], 100);
}

#[test]
fn a_session_the_peer_restarts_is_back_at_once_and_a_flapping_peer_is_damped() {
    if !root_and_bird("a_session_the_peer_restarts_is_back_at_once_and_a_flapping_peer_is_damped") {
        return;
    }
    let lab = BirdNeighbour::start(&BirdSetup {
        tag: "f",
        octet: 71,
        items: &|_, router| limited_peer(router, None),
        bird: &|host, router| {
            format!(
                "{}{}",
                bird_statics("few", 93, 3, false),
                bird_bgp(
                    host,
                    router,
                    64999,
                    "ipv4 { import all; export where source = RTS_STATIC; };"
                )
            )
        },
        prepare: &|_, _| {},
    });
    let router = &lab.router;
    let peer = || lab.peer(router).unwrap_or_default();
    let up_after = |flaps: u64| {
        let p = peer();
        p["state"] == "Established" && p["flaps"] == flaps
    };
    wait_for(
        "the session",
        || lab.diag(),
        || up_after(0) && lab.bird_established(),
    );

    // BIRD restarts its protocol (Cease, administrative reset, then it connects again after
    // its connect delay of 1 s): tabby takes the new session at once.
    let t0 = Instant::now();
    assert!(
        lab.bird.birdc("restart tabby").contains("restarted"),
        "{}",
        lab.diag()
    );
    wait_for("the session back", || lab.diag(), || up_after(1));
    let first = t0.elapsed();
    assert!(
        first < Duration::from_secs(3),
        "back in {first:?}\n{}",
        lab.diag()
    );

    // Again within a minute: a flapping peer, held off for the idle hold (5 s, shortened by
    // up to a quarter) and told so in node status.
    let t1 = Instant::now();
    assert!(
        lab.bird.birdc("restart tabby").contains("restarted"),
        "{}",
        lab.diag()
    );
    let mut damped = None;
    wait_for(
        "the session back after the hold",
        || lab.diag(),
        || {
            let p = peer();
            if p["state"] == "Idle" && p["retry_in_secs"].as_u64().is_some() {
                damped.get_or_insert_with(|| p.clone());
            }
            p["state"] == "Established" && p["flaps"] == 2
        },
    );
    let second = t1.elapsed();
    let damped = damped.expect("node status showed the hold");
    assert!(
        second >= Duration::from_millis(3500) && second < Duration::from_secs(15),
        "back in {second:?} (damped: {damped})"
    );
    assert!(learned_under(&lab.host_ns, 93) == 3, "{}", lab.diag());
}
