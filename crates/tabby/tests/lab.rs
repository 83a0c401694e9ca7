//! `tabby lab` for real: a lab of hosts in network namespaces, each running the agent; the
//! demo application loaded; real traffic checked against `tabby policy matrix`; re-loads that
//! change labels in place and prune; bad input refused with nothing changed; `lab down`
//! leaving nothing, also for a half-built lab; and an agent killed and restarted under
//! traffic without an allowed connection breaking or a denied one passing.
//!
//! Needs root. Without it the tests say they were skipped; under `CI=true` that is a failure.

#[path = "support/lab.rs"]
mod lab;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tabby_lab::{Lab, LabConfig};

use crate::lab::{TABBY, TestLab};

const DEMO: &str = include_str!("../../../examples/lab/demo.yaml");

fn demo_with_debug_as(app: &str) -> String {
    DEMO.replace(
        "metadata: {name: debug, namespace: web, labels: {app: debug}}",
        &format!("metadata: {{name: debug, namespace: web, labels: {{app: {app}}}}}"),
    )
}

fn server_pid(state: &Value, workload: &str) -> u64 {
    state["workloads"][workload]["server_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{workload} in {state}"))
}

#[test]
fn a_lab_runs_the_demo_follows_reloads_and_leaves_nothing_behind() {
    if !tabby_test_util::root_or_skip(
        "a_lab_runs_the_demo_follows_reloads_and_leaves_nothing_behind",
    ) {
        return;
    }
    let lab = TestLab::up("lc", 3);
    assert_eq!(lab.namespaces().len(), 4, "fabric and three nodes");

    // The same name again is refused, naming the way out.
    let again = lab.run(&["up"], "");
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("lab down"),
        "{err}"
    );

    let out = lab.load(DEMO, false);
    assert!(
        out.contains("workloads made: shop/backend, shop/database, web/debug, web/frontend"),
        "{out}"
    );
    assert!(out.contains("every agent has programmed"), "{out}");
    assert_eq!(lab.namespaces().len(), 8);
    let status = lab.ok(&["status"], "");
    assert_eq!(status.matches("ready (pid").count(), 3, "{status}");
    assert_eq!(status.matches("   up\n").count(), 4, "{status}");

    // Real traffic agrees with the evaluator, on both ports the application uses.
    for port in ["8080", "5432"] {
        let text = lab.ok(&["verify", "--port", port], "");
        assert!(
            text.contains("agrees with `tabby policy matrix` on every pair"),
            "{text}"
        );
    }
    let m = lab.matrix(8080, "TCP");
    assert_eq!(m["allowed"]["web/frontend"]["shop/backend"], true);
    assert_eq!(m["allowed"]["web/debug"]["shop/backend"], false);

    // The pods were made through the CNI plugin: their addresses come from IPAM blocks
    // affine to their own node, and `tabby ipam` agrees with the lab.
    let workloads = lab.state()["workloads"].clone();
    for (key, w) in workloads.as_object().expect("workloads") {
        let ip = w["addresses"][0].as_str().expect("address");
        let (_, info) = lab.ipam(&["show", "--ip", ip]);
        assert_eq!(info["affinity"], w["node"], "{key}: {info}");
        assert_eq!(info["attrs"]["pod"], w["name"], "{key}: {info}");
    }
    let (clean, check) = lab.ipam(&["check"]);
    assert!(clean, "{check}");
    assert_eq!(check["allocations"], 4, "{check}");
    assert_eq!(check["endpoints"], 4, "{check}");

    // Relabelling debug as a front end lets it reach the back end; the workload is not
    // remade (same server process), only the datastore changes.
    let before = server_pid(&lab.state(), "web/debug");
    let out = lab.load(&demo_with_debug_as("frontend"), false);
    assert!(
        !out.contains("workloads made") && !out.contains("workloads changed"),
        "{out}"
    );
    assert_eq!(server_pid(&lab.state(), "web/debug"), before);
    assert_eq!(
        lab.matrix(8080, "TCP")["allowed"]["web/debug"]["shop/backend"],
        true
    );

    // Bad input: every problem named, nothing changed.
    let bad = DEMO.replace(
        "metadata: {name: debug, namespace: web, labels: {app: debug}}\n    spec:\n",
        "metadata: {name: debug, namespace: web, labels: {app: debug}}\n    spec:\n      nodeName: node-9\n",
    );
    let bad = bad.replace(
        "kind: Pod\n    metadata: {name: frontend",
        "kind: Pod\n    status: {podIP: 10.99.0.1}\n    metadata: {name: frontend",
    );
    let refused = lab.run(&["load", "-f", "-"], &bad);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("Pod \"web/debug\": spec.nodeName: \"node-9\" is not a node"),
        "{err}"
    );
    assert!(
        err.contains("status.podIP: 10.99.0.1 is in no IP pool"),
        "{err}"
    );
    assert_eq!(
        lab.matrix(8080, "TCP")["allowed"]["web/debug"]["shop/backend"],
        true,
        "unchanged"
    );

    // Probing SCTP or an unknown target says why it cannot.
    let sctp = lab.run(&["matrix", "--protocol", "SCTP"], "");
    assert!(String::from_utf8_lossy(&sctp.stderr).contains("SCTP"));
    let exec = lab.run(&["exec", "nobody", "--", "true"], "");
    let err = String::from_utf8_lossy(&exec.stderr);
    assert!(
        err.contains("no node or workload \"nobody\"") && err.contains("web/frontend"),
        "{err}"
    );
    // exec runs inside the workload.
    let addr = lab.ok(
        &[
            "exec",
            "web/frontend",
            "--",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ],
        "",
    );
    assert!(addr.contains("10.48.0."), "{addr}");

    // A pod may ask for its address (status.podIP): the CNI ADD requests it from the IPAM.
    // A WorkloadEndpoint given whole keeps its address, which the lab holds in the IPAM.
    let fixed = "  - apiVersion: v1\n    kind: Pod\n    metadata: {name: fixed, namespace: web, labels: {app: debug}}\n    status: {podIP: 10.48.0.250}\n    spec:\n      nodeName: node-2\n      containers: [{name: shell}]\n  - apiVersion: projectcalico.org/v3\n    kind: WorkloadEndpoint\n    metadata: {name: node-1-k8s-given-eth0, namespace: web, labels: {app: debug}}\n    spec: {node: node-1, pod: given, interfaceName: tbgiven, ipNetworks: [10.48.0.251/32]}\n";
    let with_fixed = DEMO.replace(
        "  # The security team's tier",
        &format!("{fixed}\n  # The security team's tier"),
    );
    assert_ne!(with_fixed, DEMO);
    let out = lab.load(&with_fixed, false);
    assert!(
        out.contains("workloads made: web/fixed, web/given"),
        "{out}"
    );
    assert_eq!(
        lab.state()["workloads"]["web/fixed"]["addresses"][0],
        "10.48.0.250"
    );
    let (_, info) = lab.ipam(&["show", "--ip", "10.48.0.250"]);
    assert_eq!(info["attrs"]["pod"], "fixed", "{info}");
    let (_, info) = lab.ipam(&["show", "--ip", "10.48.0.251"]);
    assert_eq!(info["attrs"]["node"], "node-1", "{info}");
    let (clean, check) = lab.ipam(&["check"]);
    assert!(clean, "{check}");
    assert_eq!(check["allocations"], 6, "{check}");
    // Taken by another workload: refused before anything changes.
    let taken = with_fixed.replace(
        "metadata: {name: backend, namespace: shop, labels: {app: backend}}\n",
        "metadata: {name: backend, namespace: shop, labels: {app: backend}}\n    status: {podIP: 10.48.0.250}\n",
    );
    let refused = lab.run(&["load", "-f", "-"], &taken);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("address 10.48.0.250 is given to another workload too"),
        "{err}"
    );
    assert_eq!(lab.namespaces().len(), 10, "nothing changed");

    // --prune removes what the file no longer has: the debug pod and its namespace.
    let without_debug: String = DEMO.replace(
        "  - apiVersion: v1\n    kind: Pod\n    metadata: {name: debug, namespace: web, labels: {app: debug}}\n    spec:\n      containers: [{name: shell, ports: [{name: http, containerPort: 8080}]}]\n",
        "",
    );
    assert_ne!(without_debug, DEMO);
    let out = lab.load(&without_debug, true);
    assert!(out.contains("Pod \"web/debug\" deleted (pruned)"), "{out}");
    assert!(
        out.contains("workloads removed: web/debug, web/fixed, web/given"),
        "{out}"
    );
    assert_eq!(lab.namespaces().len(), 7);
    assert!(lab.state()["workloads"].get("web/debug").is_none());
    // Their addresses went back to the IPAM with them.
    let (clean, check) = lab.ipam(&["check"]);
    assert!(clean, "{check}");
    assert_eq!(check["allocations"], 3, "{check}");

    let down = lab.ok(&["down"], "");
    assert!(down.contains("removed"), "{down}");
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    let none = lab.ok(&["down"], "");
    assert!(none.contains("nothing to remove"), "{none}");
}

#[test]
fn a_half_built_lab_blocks_its_name_until_down_removes_it() {
    if !tabby_test_util::root_or_skip("a_half_built_lab_blocks_its_name_until_down_removes_it") {
        return;
    }
    let name = format!("hb{}", std::process::id());
    let lab = TestLab { name: name.clone() };
    // What a crash during `lab up` can leave: a namespace and no state.
    tabby_dataplane::netns::create(&format!("tabby-lab-{name}.node-1")).expect("namespace");
    let up = lab.run(&["up"], "");
    assert!(!up.status.success());
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("already exists") && err.contains(&format!("tabby-lab-{name}.node-1")),
        "{err}"
    );
    let down = lab.ok(&["down"], "");
    assert!(down.contains("1 network namespaces removed"), "{down}");
    assert!(lab.namespaces().is_empty());
    let bad = lab.run(&["status"], "");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no lab named"));
    let invalid = std::process::Command::new(TABBY)
        .args(["lab", "up", "--name", "Not.Valid"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("lab name \"Not.Valid\""));
}

const RESTART: &str = r"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: t}}
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: restart}
  spec: {cidr: 10.77.0.0/24}
- apiVersion: v1
  kind: Pod
  metadata: {name: client, namespace: t, labels: {app: client}}
  spec: {nodeName: node-1, containers: [{name: c}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: intruder, namespace: t, labels: {app: intruder}}
  spec: {nodeName: node-1, containers: [{name: c}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: server, namespace: t, labels: {app: server}}
  spec: {nodeName: node-2, containers: [{name: s, ports: [{containerPort: 8080}]}]}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: server-from-client, namespace: t}
  spec:
    selector: app == 'server'
    types: [Ingress]
    ingress:
    - {action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [8080]}}
";

/// Runs `f` inside a workload's namespace (the socket it makes stays there).
fn inside<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    tabby_dataplane::netns::run_in(&PathBuf::from("/run/netns").join(netns), f)
        .expect("enter the workload's namespace")
}

#[test]
fn killing_and_restarting_an_agent_keeps_allowed_flows_up_and_denied_flows_out() {
    if !tabby_test_util::root_or_skip(
        "killing_and_restarting_an_agent_keeps_allowed_flows_up_and_denied_flows_out",
    ) {
        return;
    }
    // On BGP (the default): graceful restart keeps the routes to and from node-2 while its
    // agent is down and restarting.
    let lab = TestLab::up("rs", 2);
    lab.load(RESTART, false);
    let state = lab.state();
    let netns = |w: &str| {
        state["workloads"][w]["netns"]
            .as_str()
            .expect("netns")
            .to_owned()
    };
    let server: SocketAddr = format!(
        "{}:8080",
        state["workloads"]["t/server"]["addresses"][0]
            .as_str()
            .expect("address")
    )
    .parse()
    .expect("address");

    // An established, allowed connection from the client (node-1) to the server (node-2).
    let stream = inside(&netns("t/client"), || {
        TcpStream::connect_timeout(&server, Duration::from_secs(2)).expect("client reaches server")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    assert_eq!(greeting.trim(), "t/server");

    let stop = Arc::new(AtomicBool::new(false));
    let breaches = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let intruder = {
        let (stop, breaches, attempts) = (stop.clone(), breaches.clone(), attempts.clone());
        let ns = netns("t/intruder");
        std::thread::spawn(move || {
            inside(&ns, || {
                while !stop.load(Ordering::Relaxed) {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if TcpStream::connect_timeout(&server, Duration::from_millis(200)).is_ok() {
                        breaches.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        })
    };
    let mut echoes = 0;
    let mut echo = |what: &str| {
        let mut w = stream.try_clone().expect("clone");
        writeln!(w, "{what}").expect("send on the established connection");
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("echo on the established connection");
        assert_eq!(line.trim(), what);
        echoes += 1;
    };

    let config = LabConfig::new(PathBuf::from(TABBY));
    let mut handle = Lab::open(&config, &lab.name).expect("open lab");
    echo("before");
    handle.kill_agent("node-2").expect("kill");
    // With no agent the kernel keeps enforcing what was programmed.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        echo("agent down");
        std::thread::sleep(Duration::from_millis(50));
    }
    handle
        .start_agent("node-2")
        .expect("a new agent starts and takes over");
    handle
        .wait_programmed(Duration::from_secs(30))
        .expect("the new agent programs the current state");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        echo("agent back");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(handle);
    stop.store(true, Ordering::Relaxed);
    intruder.join().expect("intruder thread");
    assert!(echoes > 10, "only {echoes} echoes");
    assert!(
        attempts.load(Ordering::Relaxed) >= 5,
        "the denied flow was hardly tried"
    );
    assert_eq!(
        breaches.load(Ordering::Relaxed),
        0,
        "a denied connection got through"
    );
    // And the allowed direction still works for new connections.
    let m = lab.matrix(8080, "TCP");
    assert_eq!(m["allowed"]["t/client"]["t/server"], true);
    assert_eq!(m["allowed"]["t/intruder"]["t/server"], false);
}

#[test]
fn a_lab_runs_on_its_own_etcd_cluster() {
    if !tabby_test_util::root_or_skip("a_lab_runs_on_its_own_etcd_cluster") {
        return;
    }
    let lab = TestLab::up_with("ed", &["--nodes", "2", "--datastore", "etcd"]);
    let state = lab.state();
    let url = state["datastore"].as_str().expect("datastore");
    assert!(url.starts_with("etcd://172.30.0.1:2379,"), "{url}");
    lab.load(RESTART, false);
    let text = lab.ok(&["verify", "--port", "8080"], "");
    assert!(
        text.contains("agrees with `tabby policy matrix` on every pair"),
        "{text}"
    );
    let m = lab.matrix(8080, "TCP");
    assert_eq!(m["allowed"]["t/client"]["t/server"], true);
    assert_eq!(m["allowed"]["t/intruder"]["t/server"], false);
    // The datastore is reachable from the lab's hosts, as the summary of `lab up` says.
    let nodes = lab.ok(
        &[
            "exec",
            "node-1",
            "--",
            TABBY,
            "--datastore",
            url,
            "get",
            "nodes",
        ],
        "",
    );
    assert!(nodes.contains("node-2"), "{nodes}");
    let down = lab.ok(&["down"], "");
    // Two agents, three etcd members and the server's process.
    assert!(down.contains("6 processes stopped"), "{down}");
    assert!(lab.namespaces().is_empty());
}
