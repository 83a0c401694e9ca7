//! Shared by the root tests of the agent and the CNI plugin: a "host" network namespace with
//! an uplink, workloads plumbed into it, the datastore, the agent running in the host
//! namespace, and `tabby` run against the datastore.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tabby_dataplane::netns::write_sysctl;
use tabby_dataplane::workload::{self, NetnsSysctls};
use tabby_dataplane::{NetNs, Netlink, RtNetlink};
use tabby_test_util::{ScratchDir, run_with_stdin};

pub(crate) const TABBY: &str = env!("CARGO_BIN_EXE_tabby");
pub(crate) const NODE: &str = "node-cni";
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tabby --datastore sqlite:DB ARGS` with `stdin`.
pub(crate) fn tabby(db: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(TABBY);
    cmd.arg("--datastore")
        .arg(format!("sqlite:{}", db.display()))
        .args(args);
    run_with_stdin(cmd, stdin)
}

/// Like [`tabby`], and it must succeed.
pub(crate) fn tabby_ok(db: &Path, args: &[&str], stdin: &str) -> Output {
    let out = tabby(db, args, stdin);
    assert!(out.status.success(), "tabby {args:?}: {}", text(&out));
    out
}

/// Kills the agent when the test ends, however it ends.
pub(crate) struct Agent(pub(crate) Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host: its namespace with an uplink and a default route (proxy ARP answers for the
/// workloads' gateway only when the host routes it somewhere), forwarding on.
pub(crate) fn host_namespace(prefix: &str) -> NetNs {
    let ns = NetNs::new(prefix).expect("host namespace");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let host = RtNetlink::in_netns(ns.path()).expect("netlink in host");
        host.set_up("lo").await.expect("lo up");
        host.add_veth("uplink0", "uplink1", None)
            .await
            .expect("uplink");
        host.set_up("uplink0").await.expect("up");
        host.set_up("uplink1").await.expect("up");
    });
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ip",
            "route",
            "add",
            "default",
            "dev",
            "uplink0",
        ])
        .output()
        .expect("ip route");
    assert!(out.status.success(), "{}", text(&out));
    write_sysctl(ns.path(), "net/ipv4/ip_forward", "1").expect("forwarding");
    ns
}

/// A workload namespace behind veth `iface` of `host`, plumbed as the lab and the CNI plugin
/// plumb workloads; no host route (that is the agent's job).
pub(crate) fn plumb(host: &NetNs, iface: &str, ip: &str) -> NetNs {
    let wl = NetNs::new("tbt-wl").expect("workload namespace");
    let addr: std::net::IpAddr = ip.parse().expect("an address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let h = RtNetlink::in_netns(host.path()).expect("netlink in host");
        let inside = RtNetlink::in_netns(wl.path()).expect("netlink in workload");
        workload::plumb(
            &h,
            &NetnsSysctls(host.path().to_owned()),
            &inside,
            &NetnsSysctls(wl.path().to_owned()),
            &workload::Workload {
                interface: iface,
                netns: wl.path(),
                inside: workload::WORKLOAD_INTERFACE,
                addresses: &[addr],
                mtu: None,
            },
        )
        .await
        .expect("plumb workload");
    });
    wl
}

/// Starts `tabby node run` in the host namespace and waits until it is ready.
pub(crate) fn start_agent(host: &NetNs, db: &Path, dir: &ScratchDir) -> Agent {
    let child = Command::new("ip")
        .args(["netns", "exec", host.name(), TABBY, "--datastore"])
        .arg(format!("sqlite:{}", db.display()))
        .args(["node", "run", "--name", NODE, "--lock-dir"])
        .arg(dir.path())
        .args(["--metrics-addr", "127.0.0.1:9099"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tabby node run");
    let agent = Agent(child);
    let start = Instant::now();
    while !ready(host) {
        assert!(start.elapsed() < DEADLINE, "the agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    agent
}

fn ready(host: &NetNs) -> bool {
    host.run(|| {
        let Ok(mut s) = TcpStream::connect_timeout(
            &"127.0.0.1:9099".parse().expect("literal"),
            Duration::from_millis(300),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(s, "GET /readyz HTTP/1.1\r\nhost: localhost\r\n\r\n");
        let mut t = String::new();
        let _ = s.read_to_string(&mut t);
        t.starts_with("HTTP/1.1 200")
    })
    .expect("enter host namespace")
}

/// Interface names in the host namespace that start with `tb` (workload veths).
pub(crate) fn workload_links(host: &NetNs) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", host.name(), "ip", "-br", "link"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split([' ', '@']).next())
        .filter(|n| n.starts_with("tb"))
        .map(str::to_owned)
        .collect()
}

/// The datastore for a test: a pool, the node, and the `default` namespace (whose profile
/// allows everything until a policy says otherwise, as in Kubernetes).
pub(crate) fn datastore(dir: &ScratchDir, pool: &str) -> PathBuf {
    let db = dir.file("store");
    let out = tabby(
        &db,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods}}\nspec: {{cidr: {pool}}}\n---\n\
apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {NODE}}}\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata: {{name: default}}\n"
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    db
}

/// Usage and check as the CLI reports them: (addresses in use, check clean, check text).
pub(crate) fn ipam_state(db: &Path) -> (u64, bool, String) {
    let show = tabby(db, &["ipam", "show", "-o", "json"], "");
    assert!(show.status.success(), "{}", text(&show));
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    let in_use = v["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["in_use"].as_u64().expect("in_use"))
        .sum();
    let check = tabby(db, &["ipam", "check"], "");
    (in_use, check.status.success(), text(&check))
}
