//! 64 CNI ADDs at once from separate processes, as a kubelet does when a node fills up, into
//! one host namespace and one SQLite datastore: 64 distinct addresses, 64 endpoints and veths,
//! nothing lost; then 64 DELs at once release everything and `ipam check` stays clean. Also
//! the bad-input cases through the real binary: each gets its CNI code and leaves no veth and
//! no allocation behind.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/host.rs"]
mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::{NODE, TABBY, datastore, host_namespace, ipam_state, workload_links};
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
