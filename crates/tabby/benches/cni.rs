//! CNI figures, with the agent running in the host namespace (as on a real node): ADD and DEL
//! latency (p50, p99) of the real binary as a runtime runs it, and 1,000 pods added one after
//! another on one node (total time, blocks claimed). One JSON line per figure.
//!
//! Needs root; without it, it says so and prints nothing else.

#[path = "../tests/support/host.rs"]
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{NODE, TABBY, datastore, host_namespace, start_agent, tabby};
use tabby_dataplane::NetNs;
use tabby_test_util::ScratchDir;

fn conf(db: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tabby",
        "datastore": format!("sqlite:{}", db.display()), "nodename": NODE,
        "ipam": {"type": "tabby-ipam"},
    })
    .to_string()
}

/// Runs one CNI command to completion; returns its wall time.
fn cni(host: &NetNs, command: &str, i: usize, netns: &Path, conf: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", host.path().display()))
        .arg(TABBY)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("bench{i}"))
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench-{i}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.as_bytes())
        .expect("write config");
    let out = child.wait_with_output().expect("plugin finishes");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{command} {i}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its figures")]
fn main() {
    if !tabby_test_util::root_or_skip("cni benchmark") {
        return;
    }
    let machine = format!(
        "{} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let dir = ScratchDir::new("cni-bench");
    let db = datastore(&dir, "10.70.0.0/16");
    let host = host_namespace("tbbench-host");
    let _agent = start_agent(&host, &db, &dir);
    let conf = conf(&db);

    // Latency: 100 pods added, then deleted, one at a time.
    let n = 100;
    let spaces: Vec<NetNs> = (0..n)
        .map(|_| NetNs::new("tbbench").expect("netns"))
        .collect();
    let mut adds: Vec<Duration> = spaces
        .iter()
        .enumerate()
        .map(|(i, ns)| cni(&host, "ADD", i, ns.path(), &conf))
        .collect();
    let mut dels: Vec<Duration> = spaces
        .iter()
        .enumerate()
        .map(|(i, ns)| cni(&host, "DEL", i, ns.path(), &conf))
        .collect();
    drop(spaces);
    adds.sort();
    dels.sort();
    for (name, d) in [("cni_add_latency", &adds), ("cni_del_latency", &dels)] {
        println!(
            "{}",
            serde_json::json!({"bench": name, "n": n, "p50_ms": percentile(d, 0.5),
                "p99_ms": percentile(d, 0.99), "agent": "running", "machine": machine})
        );
    }

    // 1,000 pods on one node, one after another.
    let pods = 1000;
    let spaces: Vec<NetNs> = (0..pods)
        .map(|_| NetNs::new("tbbench").expect("netns"))
        .collect();
    let start = Instant::now();
    for (i, ns) in spaces.iter().enumerate() {
        cni(&host, "ADD", n + i, ns.path(), &conf);
    }
    let total = start.elapsed();
    let show = tabby(&db, &["ipam", "show", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    let blocks = v["pools"][0]["blocks"].as_u64().unwrap_or(0);
    let in_use = v["pools"][0]["in_use"].as_u64().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({"bench": "cni_1000_pods_sequential", "pods": pods,
            "total_s": total.as_secs_f64(), "per_pod_ms": total.as_secs_f64() * 1000.0 / pods as f64,
            "blocks_claimed": blocks, "addresses_in_use": in_use, "machine": machine})
    );
    let start = Instant::now();
    for (i, ns) in spaces.iter().enumerate() {
        cni(&host, "DEL", n + i, ns.path(), &conf);
    }
    println!(
        "{}",
        serde_json::json!({"bench": "cni_1000_pods_delete_sequential", "pods": pods,
            "total_s": start.elapsed().as_secs_f64(), "machine": machine})
    );
}
