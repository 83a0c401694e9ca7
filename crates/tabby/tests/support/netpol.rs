//! The upstream Kubernetes NetworkPolicy truth tables (`../shared/conformance/netpol`) as a
//! sequence of cluster states: for every scenario and step, the resources that hold after
//! the step's actions and the probes whose expected matrices must hold then.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tabby_test_util::conformance_dir;

/// One step of one scenario.
pub(crate) struct Step {
    /// `scenario-id step N`, for messages.
    pub(crate) name: String,
    /// Namespaces, pods and policies, as Kubernetes documents.
    pub(crate) docs: Vec<Value>,
    /// What must hold.
    pub(crate) probes: Vec<Probe>,
}

/// One expected matrix.
pub(crate) struct Probe {
    pub(crate) port: u16,
    pub(crate) protocol: String,
    /// `expected[from][to]`, pods as `namespace/name`.
    pub(crate) expected: BTreeMap<String, BTreeMap<String, bool>>,
}

/// Every step of every scenario; `None` (after saying why) without the shared folder.
pub(crate) fn steps(test: &str) -> Option<Vec<Step>> {
    let dir = conformance_dir(test, "netpol")?;
    let path = dir.join("netpol_cases_public.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let scenarios = cases["scenarios"].as_array().expect("scenarios");
    assert!(!scenarios.is_empty(), "no scenarios in {}", path.display());
    let mut out = Vec::new();
    for scenario in scenarios {
        let id = scenario["id"].as_str().unwrap_or("?");
        let (namespaces, mut pods) = cluster_documents(&scenario["cluster"]);
        let mut policies: BTreeMap<String, Value> = BTreeMap::new();
        for (n, step) in scenario["steps"]
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
                    other => panic!("{id} step {n}: unknown action {other:?}"),
                }
            }
            let mut docs = namespaces.clone();
            docs.extend(pods.values().cloned());
            docs.extend(policies.values().cloned());
            let probes = step["probes"]
                .as_array()
                .expect("probes")
                .iter()
                .map(|p| Probe {
                    port: u16::try_from(p["port"].as_u64().expect("port")).expect("a port"),
                    protocol: p["protocol"].as_str().expect("protocol").to_owned(),
                    expected: serde_json::from_value(p["expected"].clone()).expect("expected"),
                })
                .collect();
            out.push(Step {
                name: format!("{id} step {n}"),
                docs,
                probes,
            });
        }
    }
    Some(out)
}

/// The cluster of a scenario as Kubernetes resources: namespaces, then pods by `ns/name`.
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

/// Compares a matrix (`tabby policy matrix -o json` shape) with the expected one, off the
/// diagonal (upstream does not assert a pod to itself): the number of cells compared, and
/// every difference.
pub(crate) fn compare(step: &str, probe: &Probe, got: &Value, failures: &mut Vec<String>) -> usize {
    let mut cells = 0;
    for (from, row) in &probe.expected {
        for (to, want) in row {
            if from == to {
                continue;
            }
            cells += 1;
            let have = &got["allowed"][from][to];
            if have.as_bool() != Some(*want) {
                failures.push(format!(
                    "{step} {}/{}: {from} -> {to}: expected {want}, got {have}",
                    probe.protocol, probe.port
                ));
            }
        }
    }
    cells
}
