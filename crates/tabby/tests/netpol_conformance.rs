//! Every scenario and step of `../shared/conformance/netpol/netpol_cases_public.json` (the
//! upstream Kubernetes e2e NetworkPolicy truth tables) through `tabby policy matrix`: each
//! step's state is built as Kubernetes resources, fed to the binary, and every cell of every
//! probe's matrix is compared except pod-to-itself (which upstream does not assert).

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use tabby_test_util::{conformance_dir, run_with_stdin};

fn load_cases() -> Option<Value> {
    let dir = conformance_dir("netpol_conformance", "netpol")?;
    let path = dir.join("netpol_cases_public.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The cluster of a scenario as Kubernetes resources: namespaces, then pods.
fn cluster_documents(cluster: &Value) -> (Vec<Value>, BTreeMap<String, Value>) {
    let mut docs = Vec::new();
    for (name, ns) in cluster["namespaces"].as_object().expect("namespaces") {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": ns["labels"]}}));
    }
    let mut pods = BTreeMap::new();
    for (id, pod) in cluster["pods"].as_object().expect("pods") {
        pods.insert(
            id.clone(),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod["name"], "namespace": pod["namespace"], "labels": pod["labels"]},
                   "spec": {"containers": pod["containers"]},
                   "status": {"podIP": pod["ip"]}}),
        );
    }
    (docs, pods)
}

fn policy_key(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or("default"),
        p["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn run_matrix(docs: &[Value], port: u64, protocol: &str) -> Value {
    let input = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tabby"));
    cmd.args([
        "policy",
        "matrix",
        "-f",
        "-",
        "-o",
        "json",
        "--port",
        &port.to_string(),
        "--protocol",
        protocol,
    ]);
    let out = run_with_stdin(cmd, &input);
    assert!(
        out.status.success(),
        "policy matrix failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("policy matrix -o json prints JSON")
}

#[test]
#[expect(
    clippy::print_stdout,
    reason = "the count shows on the test's output that the vectors were read"
)]
fn every_scenario_step_matches_the_upstream_truth_tables() {
    let Some(cases) = load_cases() else { return };
    let scenarios = cases["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty());
    let mut failures = Vec::new();
    let mut cells = 0;
    for scenario in scenarios {
        let id = scenario["id"].as_str().unwrap_or("?");
        let (namespaces, mut pods) = cluster_documents(&scenario["cluster"]);
        let mut policies: BTreeMap<String, Value> = BTreeMap::new();
        for (step_no, step) in scenario["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .enumerate()
        {
            for action in step["actions"].as_array().expect("actions") {
                match action["op"].as_str() {
                    Some("create_policy" | "update_policy") => {
                        policies.insert(policy_key(&action["policy"]), action["policy"].clone());
                    }
                    Some("delete_policy") => {
                        policies.remove(&policy_key(&action["policy"]));
                    }
                    Some("add_pod_labels") => {
                        let pod = pods
                            .get_mut(action["pod"].as_str().expect("pod"))
                            .expect("known pod");
                        let labels = pod["metadata"]["labels"].as_object_mut().expect("labels");
                        for (k, v) in action["labels"].as_object().expect("labels") {
                            labels.insert(k.clone(), v.clone());
                        }
                    }
                    other => panic!("{id} step {step_no}: unknown action {other:?}"),
                }
            }
            let mut docs = namespaces.clone();
            docs.extend(pods.values().cloned());
            docs.extend(policies.values().cloned());
            for probe in step["probes"].as_array().expect("probes") {
                let port = probe["port"].as_u64().expect("port");
                let protocol = probe["protocol"].as_str().expect("protocol");
                let got = run_matrix(&docs, port, protocol);
                for (from, row) in probe["expected"].as_object().expect("expected") {
                    for (to, want) in row.as_object().expect("row") {
                        if from == to {
                            continue;
                        }
                        cells += 1;
                        let have = &got["allowed"][from][to];
                        if have != want {
                            failures.push(format!(
                                "{id} step {step_no} {protocol}/{port}: {from} -> {to}: expected {want}, tabby says {have}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        cells > 1000,
        "only {cells} cells compared: the vectors were not read as expected"
    );
    println!(
        "netpol conformance: {cells} cells compared across {} scenarios",
        scenarios.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
