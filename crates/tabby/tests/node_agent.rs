//! `tabby node run` for real: a SQLite datastore in a scratch folder, a "host" network
//! namespace with three workload namespaces plumbed as DESIGN.md says (but with no host
//! routes: the agent must program them), the real binary running in the host namespace, and
//! resources written with `tabby apply`. TCP probes show the policy enforced; a policy change
//! in the datastore flips the verdicts within a bounded wait; `/readyz` and `/metrics` answer;
//! a second agent for the node is refused.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/host.rs"]
mod host;
#[path = "support/traffic.rs"]
mod traffic;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;

use crate::host::{Agent, TABBY, tabby_ok};
use crate::traffic::{Listener, tcp_probe};

const HEALTH: &str = "127.0.0.1:9099";
const FLIP_DEADLINE: Duration = Duration::from_secs(15);

fn http_get(host: &NetNs, path: &str) -> Option<(u16, String)> {
    traffic::http_get(host, HEALTH, path)
}

/// Routes, the table and the metrics, for a failure message.
fn diagnose(host: &NetNs) -> String {
    let cmd = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", host.name()])
            .args(args)
            .output()
            .expect("run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    format!(
        "routes:\n{}\nmetrics:\n{}\ntable:\n{}",
        cmd(&["ip", "route"]),
        http_get(host, "/metrics").map(|r| r.1).unwrap_or_default(),
        cmd(&["nft", "list", "table", "inet", "tabby"]),
    )
}

const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: lab}}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-a-eth0, namespace: lab, labels: {app: a}}
  spec: {node: node-1, interfaceName: tba, ipNetworks: [10.66.0.1/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-b-eth0, namespace: lab, labels: {app: b}}
  spec: {node: node-1, interfaceName: tbb, ipNetworks: [10.66.0.2/32], profiles: [kns.lab]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {name: node--1-k8s-c-eth0, namespace: lab, labels: {app: c}}
  spec: {node: node-1, interfaceName: tbc, ipNetworks: [10.66.0.3/32], profiles: [kns.lab]}
"#;

fn policy(from: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: b-ingress, namespace: lab}}\n\
spec:\n  selector: app == 'b'\n  types: [Ingress]\n  ingress:\n  - {{action: Allow, protocol: TCP, source: {{selector: app == '{from}'}}, destination: {{ports: [8080]}}}}\n"
    )
}

#[test]
fn the_agent_enforces_policy_from_the_datastore_and_follows_changes() {
    if !tabby_test_util::root_or_skip(
        "the_agent_enforces_policy_from_the_datastore_and_follows_changes",
    ) {
        return;
    }
    let dir = ScratchDir::new("node-agent");
    let db = dir.file("store");
    tabby_ok(&db, &["apply", "-f", "-"], CLUSTER);
    tabby_ok(&db, &["apply", "-f", "-"], &policy("a"));

    let host_ns = host::host_namespace("tbn-host");
    let (a, b, c) = (
        host::plumb(&host_ns, "tba", "10.66.0.1"),
        host::plumb(&host_ns, "tbb", "10.66.0.2"),
        host::plumb(&host_ns, "tbc", "10.66.0.3"),
    );
    let _listener = Listener::start(&b, 8080);
    let b_ip = Ipv4Addr::new(10, 66, 0, 2);
    // No agent yet: no host routes, so nothing reaches b.
    assert!(
        !tcp_probe(&a, b_ip, 8080),
        "b reachable before the agent programmed routes"
    );

    let run = |extra: &str| {
        Command::new("ip")
            .args(["netns", "exec", host_ns.name(), TABBY, "--datastore"])
            .arg(format!("sqlite:{}", db.display()))
            .args(["node", "run", "--name", "node-1", "--lock-dir"])
            .arg(dir.path())
            .args(["--metrics-addr", extra])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tabby node run")
    };
    let agent = Agent(run("127.0.0.1:9099"));

    let start = Instant::now();
    loop {
        if let Some((200, _)) = http_get(&host_ns, "/readyz") {
            break;
        }
        assert!(
            start.elapsed() < FLIP_DEADLINE,
            "the agent never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        tcp_probe(&a, b_ip, 8080),
        "a->b:8080 must be allowed (policy allows app a)\n{}",
        diagnose(&host_ns)
    );
    assert!(
        !tcp_probe(&c, b_ip, 8080),
        "c->b:8080 must be denied (not app a)\n{}",
        diagnose(&host_ns)
    );

    let (status, metrics) = http_get(&host_ns, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    for line in [
        "tabby_local_endpoints 3",
        "tabby_active_policies 1",
        "tabby_in_sync 1",
        "tabby_local_routes 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("tabby_apply_seconds_count"), "{metrics}");
    assert_eq!(http_get(&host_ns, "/livez").map(|r| r.0), Some(200));

    // A second agent for the same node on this machine is refused.
    let second = run("127.0.0.1:9098")
        .wait_with_output()
        .expect("second agent");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");

    // The policy now allows c instead of a: the verdicts flip within a bounded wait.
    tabby_ok(&db, &["apply", "-f", "-"], &policy("c"));
    let start = Instant::now();
    let flipped = || tcp_probe(&c, b_ip, 8080) && !tcp_probe(&a, b_ip, 8080);
    while !flipped() {
        assert!(
            start.elapsed() < FLIP_DEADLINE,
            "the policy change was not enforced in time"
        );
    }
    drop(agent);
}
