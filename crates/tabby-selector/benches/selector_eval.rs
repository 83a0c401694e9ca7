//! Selector evaluation and parse throughput, single thread.
//!
//! Prints one JSON line per figure. Makes no assertions on speed, so a slow machine never
//! fails it. Run with `cargo bench -p tabby-selector --bench selector_eval`.

#![expect(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use tabby_selector::Selector;

const THREE_TERMS: &str = r#"a == "x" && b in {"p","q"} && has(c)"#;

/// A longer selector of the kind Kubernetes policy conversion produces.
const K8S_STYLE: &str = "projectcalico.org/orchestrator == 'k8s' && app in { 'api', 'web' } \
     && !has(quarantine) && tier != 'db' && projectcalico.org/namespace starts with 'prod-'";

const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(200);

/// Ten labels; `a`, `b` and `c` are set so that `THREE_TERMS` matches.
fn matching_labels() -> BTreeMap<String, String> {
    let labels: BTreeMap<String, String> = [
        ("a", "x"),
        ("b", "q"),
        ("c", ""),
        ("app", "web"),
        ("tier", "frontend"),
        ("version", "v1.2.3"),
        ("projectcalico.org/namespace", "prod-eu"),
        ("projectcalico.org/orchestrator", "k8s"),
        ("pod-template-hash", "5d8f7b9c4"),
        ("zone", "eu-west-1a"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(labels.len(), 10);
    labels
}

/// Ten labels that pass the first two terms and fail the last, so all three lookups run.
fn non_matching_labels() -> BTreeMap<String, String> {
    let mut labels = matching_labels();
    labels.remove("c");
    labels.insert("d".to_owned(), String::new());
    labels
}

/// Runs `f` in batches for `SAMPLES` samples and returns the median nanoseconds per call.
fn measure(mut f: impl FnMut() -> bool) -> f64 {
    // Size a batch to take about a millisecond, so the clock is read rarely.
    let mut batch: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        if start.elapsed() >= Duration::from_millis(1) {
            break;
        }
        batch *= 2;
    }
    let mut per_call: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < SAMPLE_TIME {
                for _ in 0..batch {
                    black_box(f());
                }
                calls += batch;
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[SAMPLES / 2]
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn report_eval(selector: &str, case: &str, labels: &BTreeMap<String, String>) {
    let sel = Selector::parse(selector).expect("bench selector parses");
    let expected = case == "match";
    assert_eq!(sel.matches(labels), expected, "bench label set for {case}");
    let ns = measure(|| black_box(&sel).matches(black_box(labels)));
    let line = json!({
        "bench": "selector_eval",
        "selector": selector,
        "labels": labels.len(),
        "case": case,
        "evals_per_sec": (1e9 / ns).round() as u64,
        "ns_per_eval": round1(ns),
    });
    println!("{line}");
}

fn report_parse(selector: &str) {
    let ns = measure(|| Selector::parse(black_box(selector)).is_ok());
    let line = json!({
        "bench": "selector_parse",
        "selector": selector,
        "bytes": selector.len(),
        "parses_per_sec": (1e9 / ns).round() as u64,
        "ns_per_parse": round1(ns),
    });
    println!("{line}");
}

fn main() {
    report_eval(THREE_TERMS, "match", &matching_labels());
    report_eval(THREE_TERMS, "no_match", &non_matching_labels());
    report_eval(K8S_STYLE, "match", &matching_labels());
    report_parse(THREE_TERMS);
    report_parse(K8S_STYLE);
}
