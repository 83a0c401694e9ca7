//! Every scenario and step of `../shared/conformance/netpol/netpol_cases_public.json` (the
//! upstream Kubernetes e2e NetworkPolicy truth tables) through `tabby policy matrix`: each
//! step's state is built as Kubernetes resources, fed to the binary, and every cell of every
//! probe's matrix is compared except pod-to-itself (which upstream does not assert).
//! `lab_netpol.rs` runs the same steps with real traffic.

#[path = "support/netpol.rs"]
mod netpol;

use std::process::Command;

use serde_json::{Value, json};
use tabby_test_util::run_with_stdin;

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
    let Some(steps) = netpol::steps("netpol_conformance") else {
        return;
    };
    let mut failures = Vec::new();
    let mut cells = 0;
    for step in &steps {
        for probe in &step.probes {
            let got = run_matrix(&step.docs, probe.port.into(), &probe.protocol);
            cells += netpol::compare(&step.name, probe, &got, &mut failures);
        }
    }
    assert!(
        cells > 1000,
        "only {cells} cells compared: the vectors were not read as expected"
    );
    println!(
        "netpol conformance: {cells} cells compared across {} scenario steps",
        steps.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
