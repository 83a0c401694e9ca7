//! tabby's speaker against real BGP daemons from Debian's packages (GoBGP, BIRD 2, FRR), each
//! in its own pair of network namespaces: sessions reach Established, routes flow both ways,
//! and withdrawals propagate. With a TCP MD5 password on the daemon, a wrong key never gets a
//! session and says why, and the right key gets one that carries routes. Needs root (CI runs as root; elsewhere the tests say they skipped).

#[path = "interop/netns.rs"]
mod netns;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use netns::{Topo, can_run, eventually};
use serde_json::Value;
use tabby_bgp::driver::{self, DriverConfig, Handle};
use tabby_bgp::{Md5Key, PeerConfig, PeerError, SessionState, Speaker, SpeakerConfig, wire};

const WAIT: Duration = Duration::from_secs(60);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Starts tabby's speaker listening on `addr`, peered with `peer`.
async fn start_tabby(
    asn: u32,
    addr: &str,
    peer: PeerConfig,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let IpAddr::V4(id) = ip(addr) else {
        panic!("router id must be IPv4")
    };
    let mut cfg = SpeakerConfig::new(asn, id);
    cfg.connect_retry = Duration::from_secs(2);
    cfg.idle_hold = Duration::from_secs(1);
    let listen = vec![SocketAddr::new(ip(addr), 179)];
    let (handle, _routes, task) = driver::start(Speaker::new(cfg), DriverConfig { listen })
        .await
        .expect("speaker starts");
    handle.add_peer(peer).expect("add peer");
    (handle, task)
}

async fn established(handle: &Handle, peer: &str) {
    let peer = ip(peer);
    eventually("session Established", WAIT, async || {
        let status = handle.status().await.ok()?;
        let st = status.iter().find(|s| s.addr == peer)?;
        (st.state == SessionState::Established).then_some(())
    })
    .await;
}

/// The next hop tabby has for a learned prefix, once it has one.
async fn learned(handle: &Handle, prefix: &str) -> IpAddr {
    let p = net(prefix);
    eventually(&format!("tabby to learn {prefix}"), WAIT, async || {
        let routes = handle.learned_routes().await.ok()?;
        routes.iter().find(|r| r.prefix == p).map(|r| r.next_hop)
    })
    .await
}

async fn unlearned(handle: &Handle, prefix: &str) {
    let p = net(prefix);
    eventually(&format!("tabby to drop {prefix}"), WAIT, async || {
        let routes = handle.learned_routes().await.ok()?;
        (!routes.iter().any(|r| r.prefix == p)).then_some(())
    })
    .await;
}

// ===== GoBGP =====

fn gobgp(topo: &Topo, args: &[&str]) -> std::process::Output {
    let mut all = vec!["gobgp", "-u", "127.0.0.1", "-p", "50051"];
    all.extend_from_slice(args);
    topo.in_peer(&all)
}

/// Once gobgpd's API answers, adds each (prefix, family) to its global RIB.
async fn gobgp_announce(topo: &Topo, routes: &[(&str, &str)]) {
    eventually("gobgpd's API", WAIT, async || {
        gobgp(topo, &["neighbor"]).status.success().then_some(())
    })
    .await;
    for (prefix, family) in routes {
        let add = gobgp(topo, &["global", "rib", "add", prefix, "-a", family]);
        assert!(
            add.status.success(),
            "{}",
            String::from_utf8_lossy(&add.stderr)
        );
    }
}

/// GoBGP's RIB for a family, as JSON: prefix -> list of paths.
fn gobgp_rib(topo: &Topo, family: &str) -> Value {
    let out = gobgp(topo, &["global", "rib", "-a", family, "-j"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The next hop and AS path GoBGP has for a prefix.
fn gobgp_route(topo: &Topo, family: &str, prefix: &str) -> Option<(String, Vec<u64>)> {
    let rib = gobgp_rib(topo, family);
    let path = rib.get(prefix)?.as_array()?.first()?.clone();
    let attrs = path.get("attrs")?.as_array()?.clone();
    let mut next_hop = None;
    let mut as_path = Vec::new();
    for a in attrs {
        match a.get("type").and_then(Value::as_u64) {
            Some(2) => {
                for seg in a
                    .get("as_paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    as_path.extend(
                        seg.get("asns")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64),
                    );
                }
            }
            Some(3) => next_hop = a.get("nexthop").and_then(Value::as_str).map(str::to_owned),
            Some(14) => next_hop = a.get("nexthop").and_then(Value::as_str).map(str::to_owned),
            _ => {}
        }
    }
    Some((next_hop?, as_path))
}

/// GoBGP on AS 65002 in the peer namespace, peered with tabby (AS 64512) for both families,
/// with a TCP MD5 password when given.
fn start_gobgp(topo: &mut Topo, password: Option<&str>) {
    let conf = topo.path("gobgpd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = 65002
  router-id = "{peer}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{tabby}"
    peer-as = 64512{auth}
  [neighbors.timers.config]
    connect-retry = 2
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#,
            peer = topo.peer_v4,
            tabby = topo.tabby_v4,
            auth = password.map_or_else(String::new, |p| format!("\n    auth-password = {p:?}")),
        ),
    )
    .unwrap();
    let conf = conf.to_string_lossy().into_owned();
    topo.spawn_in_peer(
        &[
            "gobgpd",
            "-f",
            &conf,
            "--api-hosts",
            "127.0.0.1:50051",
            "--pprof-disable",
        ],
        "gobgpd.log",
    );
}

#[test]
fn gobgp_ebgp_routes_flow_both_ways_and_withdrawals_propagate() {
    if !can_run("gobgp_ebgp", &["gobgpd", "gobgp", "ip"]) {
        return;
    }
    let mut topo = Topo::new("gobgp", "10.99.1", "99:1");
    start_gobgp(&mut topo, None);

    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        gobgp_announce(
            &t,
            &[("10.201.2.0/24", "ipv4"), ("2001:db8:202::/48", "ipv6")],
        )
        .await;

        let mut peer = PeerConfig::new(ip(&t.peer_v4), 65002);
        peer.next_hop_v6 = Some(t.tabby_v6.parse::<Ipv6Addr>().unwrap());
        let (handle, task) = start_tabby(64512, &t.tabby_v4, peer).await;
        handle.originate(net("10.201.1.0/24"), vec![]).unwrap();
        handle.originate(net("2001:db8:201::/48"), vec![]).unwrap();
        established(&handle, &t.peer_v4).await;

        // GoBGP -> tabby, IPv4 and IPv6.
        assert_eq!(learned(&handle, "10.201.2.0/24").await, ip(&t.peer_v4));
        let nh6 = learned(&handle, "2001:db8:202::/48").await;
        assert!(nh6.is_ipv6(), "IPv6 route with next hop {nh6}");

        // tabby -> GoBGP, with our AS prepended and ourselves as next hop.
        let (nh, path) = eventually("GoBGP to learn 10.201.1.0/24", WAIT, async || {
            gobgp_route(&t, "ipv4", "10.201.1.0/24")
        })
        .await;
        assert_eq!((nh.as_str(), path), (t.tabby_v4.as_str(), vec![64512]));
        let (nh6, path6) = eventually("GoBGP to learn 2001:db8:201::/48", WAIT, async || {
            gobgp_route(&t, "ipv6", "2001:db8:201::/48")
        })
        .await;
        assert_eq!((nh6.as_str(), path6), (t.tabby_v6.as_str(), vec![64512]));

        // Withdrawals, both ways.
        let del = gobgp(&t, &["global", "rib", "del", "10.201.2.0/24", "-a", "ipv4"]);
        assert!(del.status.success());
        unlearned(&handle, "10.201.2.0/24").await;
        handle.withdraw(net("10.201.1.0/24")).unwrap();
        eventually("GoBGP to drop 10.201.1.0/24", WAIT, async || {
            gobgp_route(&t, "ipv4", "10.201.1.0/24")
                .is_none()
                .then_some(())
        })
        .await;
        // The IPv6 route is untouched by the IPv4 withdrawals.
        assert!(gobgp_route(&t, "ipv6", "2001:db8:201::/48").is_some());

        handle.shutdown().unwrap();
        task.await.unwrap();
    });
}

// ===== BIRD 2 =====

fn birdc(topo: &Topo, cmd: &str) -> String {
    let sock = topo.path("bird.ctl");
    let sock = sock.to_string_lossy();
    let out = topo.in_peer(&["birdc", "-s", &sock, cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// BIRD 2 in the peer namespace with Calico's node-to-node mesh knobs (bgp-peers.md), iBGP
/// on AS 64512 with tabby, originating 10.202.3.0/24 (protocol `st`), with a TCP MD5 password
/// when given.
fn start_bird(topo: &mut Topo, password: Option<&str>) {
    let conf = topo.path("bird.conf");
    std::fs::write(
        &conf,
        format!(
            r#"router id {peer};
protocol device {{ }}
protocol direct {{ ipv4; interface "eth0"; }}
protocol static st {{ ipv4; route 10.202.3.0/24 blackhole; }}
protocol bgp tabby {{
  local {peer} as 64512;
  neighbor {tabby} as 64512;
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;{auth}
  ipv4 {{ import all; export all; gateway recursive; next hop self; }};
}}
"#,
            peer = topo.peer_v4,
            tabby = topo.tabby_v4,
            auth = password.map_or_else(String::new, |p| format!("\n  password {p:?};")),
        ),
    )
    .unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let sock = topo.path("bird.ctl").to_string_lossy().into_owned();
    let pid = topo.path("bird.pid").to_string_lossy().into_owned();
    topo.spawn_in_peer(
        &["bird", "-f", "-c", &conf, "-s", &sock, "-P", &pid],
        "bird.log",
    );
}

#[test]
fn bird_ibgp_routes_flow_both_ways_and_withdrawals_propagate() {
    if !can_run("bird_ibgp", &["bird", "birdc", "ip"]) {
        return;
    }
    let mut topo = Topo::new("bird", "10.99.2", "99:2");
    start_bird(&mut topo, None);

    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        let (handle, task) =
            start_tabby(64512, &t.tabby_v4, PeerConfig::new(ip(&t.peer_v4), 64512)).await;
        handle.originate(net("10.202.1.0/26"), vec![]).unwrap();
        established(&handle, &t.peer_v4).await;
        eventually("BIRD to report Established", WAIT, async || {
            birdc(&t, "show protocols tabby")
                .contains("Established")
                .then_some(())
        })
        .await;

        // BIRD -> tabby.
        assert_eq!(learned(&handle, "10.202.3.0/24").await, ip(&t.peer_v4));
        let routes = handle.learned_routes().await.unwrap();
        let r = routes
            .iter()
            .find(|r| r.prefix == net("10.202.3.0/24"))
            .unwrap();
        assert_eq!(r.attrs.local_pref, Some(100));
        assert_eq!(r.attrs.as_path, Some(wire::AsPath::default()));

        // tabby -> BIRD: an iBGP route, next hop us, reachable through eth0.
        let shown = eventually("BIRD to learn 10.202.1.0/26", WAIT, async || {
            let out = birdc(&t, "show route protocol tabby all");
            out.contains("10.202.1.0/26").then_some(out)
        })
        .await;
        assert!(
            shown.contains(&format!("via {} on eth0", t.tabby_v4)),
            "{shown}"
        );
        assert!(shown.contains("BGP.local_pref: 100"), "{shown}");

        // Withdrawals, both ways.
        assert!(birdc(&t, "disable st").contains("disabled"));
        unlearned(&handle, "10.202.3.0/24").await;
        handle.withdraw(net("10.202.1.0/26")).unwrap();
        eventually("BIRD to drop 10.202.1.0/26", WAIT, async || {
            (!birdc(&t, "show route protocol tabby").contains("10.202.1.0/26")).then_some(())
        })
        .await;

        handle.shutdown().unwrap();
        task.await.unwrap();
        // Our Cease reached BIRD.
        eventually("BIRD to see the Cease", WAIT, async || {
            let out = birdc(&t, "show protocols all tabby");
            (!out.contains("Established")).then_some(())
        })
        .await;
    });
}

// ===== FRR =====

/// FRR's private runtime folder (`-N <name>`), owned by user frr as bgpd needs; removed on drop.
struct FrrPathspace(PathBuf);

impl FrrPathspace {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/run/frr/{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new("install")
            .args(["-d", "-o", "frr", "-g", "frr"])
            .arg(&dir)
            .output()
            .expect("install -d");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }
}

impl Drop for FrrPathspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vtysh(topo: &Topo, space: &str, cmds: &[&str]) -> std::process::Output {
    let mut all = vec!["vtysh", "-N", space, "-d", "bgpd"];
    for c in cmds {
        all.extend(["-c", c]);
    }
    topo.in_peer(&all)
}

/// The next hop and AS path FRR's best route to `prefix` has (`afi` is `ipv4` or `ipv6`).
fn frr_route(topo: &Topo, space: &str, afi: &str, prefix: &str) -> Option<(String, String)> {
    let out = vtysh(topo, space, &[&format!("show bgp {afi} unicast json")]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let paths = v.get("routes")?.get(prefix)?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p.get("bestpath").and_then(Value::as_bool) == Some(true))
        .or_else(|| paths.first())?;
    let nh = best
        .get("nexthops")?
        .as_array()?
        .first()?
        .get("ip")?
        .as_str()?;
    let path = best.get("path").and_then(Value::as_str).unwrap_or("");
    Some((nh.to_owned(), path.to_owned()))
}

/// FRR's bgpd (AS 65003, no zebra) in the peer namespace, peered with tabby, originating
/// 10.203.2.0/24 and 2001:db8:203::/48, with a TCP MD5 password when given. Returns its
/// pathspace name (for vtysh -N) and folder.
fn start_frr(topo: &mut Topo, tag: &str, password: Option<&str>) -> (String, FrrPathspace) {
    let space = format!("tabby-{tag}-{}", std::process::id());
    let pathspace = FrrPathspace::new(&space);
    // bgp-peers.md: FRR >= 7.4 neither accepts nor sends eBGP routes without policy unless
    // told so; `network` needs no matching route without zebra. Over an IPv4 session FRR
    // without zebra knows no IPv6 address of its own, so the IPv6 next hop is set here.
    let conf = topo.path("bgpd.conf");
    std::fs::write(
        &conf,
        format!(
            r"frr defaults traditional
hostname frr
log stdout debugging
route-map NH6 permit 10
 set ipv6 next-hop global {peer6}
exit
router bgp 65003
 bgp router-id {peer}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {tabby} remote-as 64512
 neighbor {tabby} timers connect 2{auth}
 address-family ipv4 unicast
  network 10.203.2.0/24
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:203::/48
  neighbor {tabby} activate
  neighbor {tabby} route-map NH6 out
 exit-address-family
exit
",
            peer = topo.peer_v4,
            peer6 = topo.peer_v6,
            tabby = topo.tabby_v4,
            auth = password.map_or_else(String::new, |p| format!(
                "\n neighbor {} password {p}",
                topo.tabby_v4
            )),
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&conf).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&conf, perms).unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let pid = pathspace.0.join("bgpd.pid").to_string_lossy().into_owned();
    // Foreground (no -d), so that the topology's guard stops it; -Z: no zebra, -n: no kernel.
    topo.spawn_in_peer(
        &[
            "/usr/lib/frr/bgpd",
            "-N",
            &space,
            "-f",
            &conf,
            "-i",
            &pid,
            "-Z",
            "-n",
            "-p",
            "179",
        ],
        "bgpd.log",
    );
    (space, pathspace)
}

#[test]
fn frr_ebgp_routes_flow_both_ways_and_withdrawals_propagate() {
    if !can_run("frr_ebgp", &["vtysh", "/usr/lib/frr/bgpd", "ip"]) {
        return;
    }
    let mut topo = Topo::new("frr", "10.99.3", "99:3");
    let (space, pathspace) = start_frr(&mut topo, "frr", None);

    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        let mut peer = PeerConfig::new(ip(&t.peer_v4), 65003);
        peer.next_hop_v6 = Some(t.tabby_v6.parse::<Ipv6Addr>().unwrap());
        let (handle, task) = start_tabby(64512, &t.tabby_v4, peer).await;
        handle.originate(net("10.203.1.0/24"), vec![]).unwrap();
        handle.originate(net("2001:db8:204::/48"), vec![]).unwrap();
        established(&handle, &t.peer_v4).await;
        eventually("FRR to report Established", WAIT, async || {
            let out = vtysh(&t, &space, &["show bgp summary json"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("\"state\":\"Established\"")
                .then_some(())
        })
        .await;

        // FRR -> tabby, IPv4 and IPv6, with FRR's AS and address.
        assert_eq!(learned(&handle, "10.203.2.0/24").await, ip(&t.peer_v4));
        assert_eq!(learned(&handle, "2001:db8:203::/48").await, ip(&t.peer_v6));
        let routes = handle.learned_routes().await.unwrap();
        let r = routes
            .iter()
            .find(|r| r.prefix == net("10.203.2.0/24"))
            .unwrap();
        assert_eq!(
            r.attrs.as_path.as_ref().and_then(|p| p.first_as()),
            Some(65003)
        );

        // tabby -> FRR, with our AS and ourselves as next hop.
        let (nh, path) = eventually("FRR to learn 10.203.1.0/24", WAIT, async || {
            frr_route(&t, &space, "ipv4", "10.203.1.0/24")
        })
        .await;
        assert_eq!((nh.as_str(), path.as_str()), (t.tabby_v4.as_str(), "64512"));
        let (nh6, path6) = eventually("FRR to learn 2001:db8:204::/48", WAIT, async || {
            frr_route(&t, &space, "ipv6", "2001:db8:204::/48")
        })
        .await;
        assert_eq!(
            (nh6.as_str(), path6.as_str()),
            (t.tabby_v6.as_str(), "64512")
        );

        // Withdrawals, both ways.
        let del = vtysh(
            &t,
            &space,
            &[
                "configure terminal",
                "router bgp 65003",
                "address-family ipv4 unicast",
                "no network 10.203.2.0/24",
            ],
        );
        assert!(
            del.status.success(),
            "{}",
            String::from_utf8_lossy(&del.stderr)
        );
        unlearned(&handle, "10.203.2.0/24").await;
        handle.withdraw(net("10.203.1.0/24")).unwrap();
        eventually("FRR to drop 10.203.1.0/24", WAIT, async || {
            frr_route(&t, &space, "ipv4", "10.203.1.0/24")
                .is_none()
                .then_some(())
        })
        .await;
        // The IPv6 routes are untouched by the IPv4 withdrawals.
        assert!(frr_route(&t, &space, "ipv6", "2001:db8:204::/48").is_some());
        assert_eq!(learned(&handle, "2001:db8:203::/48").await, ip(&t.peer_v6));

        handle.shutdown().unwrap();
        task.await.unwrap();
        eventually("FRR to see the Cease", WAIT, async || {
            let out = vtysh(&t, &space, &["show bgp summary json"]);
            (!String::from_utf8_lossy(&out.stdout).contains("\"state\":\"Established\""))
                .then_some(())
        })
        .await;
    });
    drop(topo);
    drop(pathspace);
}

// ===== TCP MD5 passwords =====

/// The password every daemon below is configured with.
const PASSWORD: &str = "tabby-md5-test";

/// `peer` with a TCP MD5 key.
fn keyed(mut peer: PeerConfig, password: &str) -> PeerConfig {
    peer.md5_key = Md5Key::new(password);
    peer
}

/// Waits until tabby reports that its connections to `peer` (configured with a wrong key)
/// get no answer, and checks that no session came up and nothing was learned.
async fn refused_for_the_wrong_key(handle: &Handle, peer: &str) {
    let addr = ip(peer);
    let st = eventually(
        "tabby to report the unanswered connections",
        WAIT,
        async || {
            let st = handle
                .status()
                .await
                .ok()?
                .into_iter()
                .find(|s| s.addr == addr)?;
            (st.last_error == Some(PeerError::NoAnswer { md5: true })).then_some(st)
        },
    )
    .await;
    assert_eq!(
        st.last_error.map(|e| e.to_string()).as_deref(),
        Some("no answer from peer; TCP MD5 password configured: check it matches the peer's")
    );
    // Some connect retries (2 s) and daemon attempts later: still nothing.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let st = handle.status().await.unwrap();
    assert!(
        st.iter()
            .all(|s| s.state != SessionState::Established && s.flaps == 0),
        "{st:?}"
    );
    assert!(handle.learned_routes().await.unwrap().is_empty());
}

#[test]
fn bird_with_a_password_never_peers_with_a_wrong_key_and_carries_routes_with_the_right_one() {
    if !can_run("bird_md5", &["bird", "birdc", "ip"]) {
        return;
    }
    let mut topo = Topo::new("birdmd5", "10.99.12", "99:12");
    start_bird(&mut topo, Some(PASSWORD));
    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        let peer = PeerConfig::new(ip(&t.peer_v4), 64512);
        let (handle, task) = start_tabby(64512, &t.tabby_v4, keyed(peer.clone(), "wrong")).await;
        handle.originate(net("10.212.1.0/26"), vec![]).unwrap();
        refused_for_the_wrong_key(&handle, &t.peer_v4).await;
        assert!(!birdc(&t, "show protocols tabby").contains("Established"));

        handle.add_peer(keyed(peer, PASSWORD)).unwrap();
        established(&handle, &t.peer_v4).await;
        assert_eq!(learned(&handle, "10.202.3.0/24").await, ip(&t.peer_v4));
        eventually("BIRD to learn 10.212.1.0/26", WAIT, async || {
            birdc(&t, "show route protocol tabby")
                .contains("10.212.1.0/26")
                .then_some(())
        })
        .await;
        handle.shutdown().unwrap();
        task.await.unwrap();
    });
}

#[test]
fn gobgp_with_a_password_never_peers_with_a_wrong_key_and_carries_routes_with_the_right_one() {
    if !can_run("gobgp_md5", &["gobgpd", "gobgp", "ip"]) {
        return;
    }
    let mut topo = Topo::new("gobgpmd5", "10.99.11", "99:11");
    start_gobgp(&mut topo, Some(PASSWORD));
    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        gobgp_announce(&t, &[("10.211.2.0/24", "ipv4")]).await;
        let peer = PeerConfig::new(ip(&t.peer_v4), 65002);
        let (handle, task) = start_tabby(64512, &t.tabby_v4, keyed(peer.clone(), "wrong")).await;
        handle.originate(net("10.211.1.0/24"), vec![]).unwrap();
        refused_for_the_wrong_key(&handle, &t.peer_v4).await;
        let shown = String::from_utf8_lossy(&gobgp(&t, &["neighbor"]).stdout).into_owned();
        assert!(!shown.contains("Establ"), "{shown}");

        handle.add_peer(keyed(peer, PASSWORD)).unwrap();
        established(&handle, &t.peer_v4).await;
        assert_eq!(learned(&handle, "10.211.2.0/24").await, ip(&t.peer_v4));
        let (nh, _) = eventually("GoBGP to learn 10.211.1.0/24", WAIT, async || {
            gobgp_route(&t, "ipv4", "10.211.1.0/24")
        })
        .await;
        assert_eq!(nh, t.tabby_v4);
        handle.shutdown().unwrap();
        task.await.unwrap();
    });
}

#[test]
fn frr_with_a_password_never_peers_with_a_wrong_key_and_carries_routes_with_the_right_one() {
    if !can_run("frr_md5", &["vtysh", "/usr/lib/frr/bgpd", "ip"]) {
        return;
    }
    let mut topo = Topo::new("frrmd5", "10.99.13", "99:13");
    let (space, pathspace) = start_frr(&mut topo, "frrmd5", Some(PASSWORD));
    let topo = std::sync::Arc::new(topo);
    let t = topo.clone();
    topo.run_in_tabby(move || async move {
        let peer = PeerConfig::new(ip(&t.peer_v4), 65003);
        let (handle, task) = start_tabby(64512, &t.tabby_v4, keyed(peer.clone(), "wrong")).await;
        handle.originate(net("10.213.1.0/24"), vec![]).unwrap();
        refused_for_the_wrong_key(&handle, &t.peer_v4).await;
        let out = vtysh(&t, &space, &["show bgp summary json"]);
        assert!(!String::from_utf8_lossy(&out.stdout).contains("\"state\":\"Established\""));

        handle.add_peer(keyed(peer, PASSWORD)).unwrap();
        established(&handle, &t.peer_v4).await;
        assert_eq!(learned(&handle, "10.203.2.0/24").await, ip(&t.peer_v4));
        let (nh, _) = eventually("FRR to learn 10.213.1.0/24", WAIT, async || {
            frr_route(&t, &space, "ipv4", "10.213.1.0/24")
        })
        .await;
        assert_eq!(nh, t.tabby_v4);
        handle.shutdown().unwrap();
        task.await.unwrap();
    });
    drop(topo);
    drop(pathspace);
}
