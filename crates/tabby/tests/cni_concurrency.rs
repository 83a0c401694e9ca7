//! 64 CNI ADDs at once from separate processes, as a kubelet does when a node fills up, into
//! one host namespace and one SQLite datastore: 64 distinct addresses, 64 endpoints and veths,
//! nothing lost, and `ipam check` run while they are in flight never calls one leaked; then
//! 64 DELs at once release everything and `ipam check` stays clean. Also the bad-input cases
//! through the real binary: each gets its CNI code and leaves no veth and no allocation
//! behind; and workloads outside Kubernetes (no `K8S_POD_NAME`, as a plain CNI runtime calls)
//! reach each other through their network's profile with the agent enforcing.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/host.rs"]
mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::{
    NODE, TABBY, datastore, host_namespace, ipam_state, start_agent, tabby, text, workload_links,
};
use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;
use tabby_test_util::root_or_skip as is_root;

fn conf(db: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tabby",
        "datastore": format!("sqlite:{}", db.display()), "nodename": NODE,
        "ipam": {"type": "tabby-ipam"},
    })
    .to_string()
}

/// Starts `tabby` as the CNI plugin in the host namespace.
fn cni(host: &NetNs, command: &str, cid: &str, netns: &str, args: &str, stdin: &str) -> Child {
    use std::io::Write as _;
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", host.path().display()))
        .arg(TABBY)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write config");
    child
}

fn finish(child: Child) -> (bool, serde_json::Value, String) {
    let out = child.wait_with_output().expect("plugin finishes");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn sixty_four_concurrent_adds_and_dels() {
    if !is_root("sixty_four_concurrent_adds_and_dels") {
        return;
    }
    let dir = ScratchDir::new("cni-64");
    let db = datastore(&dir, "10.68.0.0/22");
    let host = host_namespace("tbcc-host");
    let workloads: Vec<NetNs> = (0..64)
        .map(|_| NetNs::new("tbcc-wl").expect("workload namespace"))
        .collect();
    let conf = conf(&db);
    let pod = |i: usize| format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{i}");
    let adds: Vec<Child> = workloads
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            cni(
                &host,
                "ADD",
                &format!("c{i}"),
                &ns.path().display().to_string(),
                &pod(i),
                &conf,
            )
        })
        .collect();
    // `ipam check` while the ADDs are in flight: an address taken for an endpoint not yet
    // written is an ADD under way, never a leak.
    let mut adds = adds;
    let mut checks = 0;
    while adds.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
        let out = tabby(&db, &["ipam", "check", "-o", "json"], "");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ipam check: {e}: {}", text(&out)));
        assert_eq!(v["leaked"], serde_json::json!([]), "{v}");
        checks += 1;
    }
    assert!(checks > 0, "the check never ran while ADDs were in flight");
    let mut ips = BTreeSet::new();
    for child in adds {
        let (ok, v, all) = finish(child);
        assert!(ok, "ADD failed: {all}");
        let address = v["ips"][0]["address"].as_str().expect("an address");
        let ip: IpAddr = address.trim_end_matches("/32").parse().expect("an IP");
        assert!(ips.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(ips.len(), 64);
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 64);
    assert!(clean, "{report}");
    assert_eq!(workload_links(&host).len(), 64);

    let dels: Vec<Child> = workloads
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            cni(
                &host,
                "DEL",
                &format!("c{i}"),
                &ns.path().display().to_string(),
                &pod(i),
                &conf,
            )
        })
        .collect();
    for child in dels {
        let (ok, _, all) = finish(child);
        assert!(ok, "DEL failed: {all}");
    }
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 0);
    assert!(clean, "{report}");
    assert!(workload_links(&host).is_empty());
}

#[test]
fn bad_input_through_the_binary_gets_its_code_and_leaves_nothing() {
    if !is_root("bad_input_through_the_binary_gets_its_code_and_leaves_nothing") {
        return;
    }
    let dir = ScratchDir::new("cni-bad");
    let db = datastore(&dir, "10.69.0.0/30, blockSize: 30");
    let host = host_namespace("tbcb-host");
    let wl = NetNs::new("tbcb-wl").expect("workload namespace");
    let netns = wl.path().display().to_string();
    let good = conf(&db);
    let code = |command: &str, netns: &str, args: &str, stdin: &str| {
        let (ok, v, all) = finish(cni(&host, command, "cbad", netns, args, stdin));
        assert!(!ok, "must fail: {all}");
        assert!(!v["msg"].as_str().unwrap_or_default().is_empty(), "{all}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code: {all}"))
    };
    assert_eq!(code("ADD", &netns, "", "{not json"), 6);
    assert_eq!(code("ADD", &netns, "", &good.replace("1.0.0", "7.0.0")), 1);
    assert_eq!(code("ADD", "/run/netns/tbcb-no-such", "", &good), 3);
    assert_eq!(code("ADD", &netns, "IP=192.0.2.9", &good), 101);
    let unreachable = good.replace("sqlite:", "sqlite:/proc/no-such-dir/");
    assert_eq!(code("ADD", &netns, "", &unreachable), 11);
    // Fill the /30, then one more.
    let mut others = Vec::new();
    for i in 0..4 {
        let ns = NetNs::new("tbcb-fill").expect("namespace");
        let (ok, _, all) = finish(cni(
            &host,
            "ADD",
            &format!("f{i}"),
            &ns.path().display().to_string(),
            "",
            &good,
        ));
        assert!(ok, "{all}");
        others.push(ns);
    }
    assert_eq!(code("ADD", &netns, "", &good), 100);
    assert_eq!(code("ADD", &netns, "IP=10.69.0.1", &good), 101);
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 4, "the failed ADDs took nothing");
    assert!(clean, "{report}");
    assert_eq!(
        workload_links(&host).len(),
        4,
        "the failed ADDs left no veth"
    );
    // DEL of something never added, twice, with the netns gone: success.
    for _ in 0..2 {
        let (ok, _, all) = finish(cni(
            &host,
            "DEL",
            "never",
            "/run/netns/tbcb-gone",
            "",
            &good,
        ));
        assert!(ok, "{all}");
    }
}

/// Pings `to` from inside `from` (busybox's ping: deps.sh installs it for podman; the host
/// may have no other).
fn ping(from: &NetNs, to: IpAddr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", from.path().display()))
        .args([
            "/bin/busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            &to.to_string(),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn workloads_outside_kubernetes_reach_each_other_through_their_networks_profile() {
    if !is_root("workloads_outside_kubernetes_reach_each_other_through_their_networks_profile") {
        return;
    }
    let dir = ScratchDir::new("cni-plain");
    let db = datastore(&dir, "10.66.0.0/24");
    let host = host_namespace("tbcp-host");
    let _agent = start_agent(&host, &db, &dir);
    let conf = conf(&db);
    let a = NetNs::new("tbcp-a").expect("namespace");
    let b = NetNs::new("tbcp-b").expect("namespace");
    let mut ips = Vec::new();
    for (cid, ns) in [("plain-a", &a), ("plain-b", &b)] {
        let (ok, v, all) = finish(cni(
            &host,
            "ADD",
            cid,
            &ns.path().display().to_string(),
            "",
            &conf,
        ));
        assert!(ok, "{all}");
        let address = v["ips"][0]["address"].as_str().expect("an address");
        ips.push(
            address
                .trim_end_matches("/32")
                .parse::<IpAddr>()
                .expect("an IP"),
        );
    }
    let profile = tabby(
        &db,
        &["get", "profile", "k8s-pod-network", "-o", "json"],
        "",
    );
    assert!(profile.status.success(), "{}", text(&profile));
    // No policy selects them, so their profile decides: members of the network reach each
    // other (without it the agent would drop everything: an endpoint with no profile).
    let start = std::time::Instant::now();
    while !(ping(&a, ips[1]) && ping(&b, ips[0])) {
        if start.elapsed() > support::DEADLINE {
            let nft = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    host.name(),
                    "nft",
                    "list",
                    "table",
                    "inet",
                    "tabby",
                ])
                .output()
                .expect("nft");
            panic!(
                "plain workloads {ips:?} cannot reach each other; the host's table:\n{}",
                text(&nft)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 2);
    assert!(clean, "{report}");
    for (cid, ns) in [("plain-a", &a), ("plain-b", &b)] {
        let (ok, _, all) = finish(cni(
            &host,
            "DEL",
            cid,
            &ns.path().display().to_string(),
            "",
            &conf,
        ));
        assert!(ok, "{all}");
    }
    assert!(workload_links(&host).is_empty());
    let (in_use, clean, report) = ipam_state(&db);
    assert_eq!(in_use, 0);
    assert!(clean, "{report}");
}
