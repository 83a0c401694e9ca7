//! The upstream Kubernetes NetworkPolicy truth tables with real traffic: every scenario and
//! step of `../shared/conformance/netpol/netpol_cases_public.json` loaded into a lab of three
//! hosts (the nine pods spread over them, so most pairs cross hosts), and every probe's matrix
//! measured with real connections and compared off the diagonal.
//!
//! SCTP probes cannot run on a kernel without SCTP (this machine's has none); they are counted
//! and named on the test's output, and the same cells are checked by `netpol_conformance.rs`
//! through the evaluator.
//!
//! Needs root. Without it the test says it was skipped; under `CI=true` that is a failure.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/netpol.rs"]
mod netpol;

use serde_json::{Value, json};

use crate::lab::TestLab;

/// Pods on nodes by position, so that each namespace spans every node.
fn placed(docs: &[Value]) -> Vec<Value> {
    let mut pod = 0;
    let mut out: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d["kind"] == "Pod" {
                d["spec"]["nodeName"] = json!(format!("node-{}", pod % 3 + 1));
                pod += 1;
            }
            d
        })
        .collect();
    // The synthetic pod addresses of the vectors, as a pool.
    out.push(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                    "metadata": {"name": "netpol"}, "spec": {"cidr": "10.244.0.0/16"}}),
    );
    out
}

#[test]
#[expect(
    clippy::print_stdout,
    reason = "the counts show on the test's output what was measured and what could not be"
)]
fn every_scenario_step_holds_on_real_traffic_across_three_hosts() {
    if !tabby_test_util::root_or_skip(
        "every_scenario_step_holds_on_real_traffic_across_three_hosts",
    ) {
        return;
    }
    let Some(steps) = netpol::steps("lab_netpol") else {
        return;
    };
    let lab = TestLab::up("np", 3);
    let mut failures = Vec::new();
    let mut cells = 0;
    let mut sctp = Vec::new();
    for step in &steps {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": placed(&step.docs)});
        lab.load(&list.to_string(), true);
        for probe in &step.probes {
            if probe.protocol == "SCTP" {
                sctp.push(format!("{} SCTP/{}", step.name, probe.port));
                continue;
            }
            let got = lab.matrix(probe.port, &probe.protocol);
            cells += netpol::compare(&step.name, probe, &got, &mut failures);
        }
    }
    // Nine pods, each its own namespace, beside the fabric and the three hosts.
    assert_eq!(lab.namespaces().len(), 13, "{:?}", lab.namespaces());
    assert_eq!(
        lab.state()["workloads"].as_object().map(|w| w.len()),
        Some(9)
    );
    assert!(
        cells > 1000,
        "only {cells} cells compared: the vectors were not read as expected"
    );
    if !sctp.is_empty() {
        assert!(
            !tabby_lab::sctp_supported(),
            "the kernel has SCTP now: teach the lab to probe it"
        );
        println!(
            "lab netpol: {} SCTP probes not run (this kernel has no SCTP): {}",
            sctp.len(),
            sctp.join(", ")
        );
    }
    println!(
        "lab netpol: {cells} cells compared with real traffic across {} scenario steps",
        steps.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
