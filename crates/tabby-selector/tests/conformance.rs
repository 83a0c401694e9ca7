//! Runs the shared selector conformance vectors (`../shared/conformance/selectors`, beside
//! the repository) in place. The vectors are never copied into the project.

use std::collections::BTreeMap;

use serde_json::Value;
use tabby_selector::Selector;
use tabby_test_util::{conformance_dir, read_jsonl};

fn str_field<'v>(row: &'v Value, field: &str, at: &str) -> &'v str {
    row.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{at}: field {field:?} must be a string"))
}

/// Parses `input`, recording a failure instead of panicking so one run reports every mismatch.
fn parse_or_record(input: &str, at: &str, failures: &mut Vec<String>) -> Option<Selector> {
    match Selector::parse(input) {
        Ok(s) => Some(s),
        Err(e) => {
            failures.push(format!("{at}: {input:?} must parse but failed: {e}"));
            None
        }
    }
}

/// The canonical string must parse back to the same selector with the same ID.
fn check_reparse(sel: &Selector, at: &str, failures: &mut Vec<String>) {
    match Selector::parse(sel.canonical()) {
        Ok(again) if again == *sel && again.id() == sel.id() => {}
        Ok(again) => failures.push(format!(
            "{at}: canonical {:?} re-parses to {:?}",
            sel.canonical(),
            again.canonical()
        )),
        Err(e) => failures.push(format!(
            "{at}: canonical {:?} does not re-parse: {e}",
            sel.canonical()
        )),
    }
}

fn assert_no_failures(file: &str, checked: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors in {file} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn selector_cases_match_and_canonicalise_like_calico() {
    let Some(dir) = conformance_dir("selector_cases", "selectors") else {
        return;
    };
    let file = "selector_cases.jsonl";
    let rows = read_jsonl(&dir.join(file));
    let mut failures = Vec::new();
    for (line, row) in &rows {
        let at = format!("{file}:{line}");
        let input = str_field(row, "selector", &at);
        let labels: BTreeMap<String, String> = row
            .get("labels")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{at}: labels must be an object"))
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: label values are strings"));
                (k.clone(), v.to_owned())
            })
            .collect();
        let want = row
            .get("matches")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| panic!("{at}: matches must be a bool"));
        let Some(sel) = parse_or_record(input, &at, &mut failures) else {
            continue;
        };
        if sel.matches(&labels) != want {
            failures.push(format!("{at}: {input:?} on {labels:?} must give {want}"));
        }
        if let Some(canonical) = row.get("canonical_derived").and_then(Value::as_str)
            && sel.canonical() != canonical
        {
            failures.push(format!(
                "{at}: {input:?} canonical is {:?}, want {canonical:?}",
                sel.canonical()
            ));
        }
        check_reparse(&sel, &at, &mut failures);
        if let Ok(again) = Selector::parse(sel.canonical())
            && again.matches(&labels) != want
        {
            failures.push(format!("{at}: re-parsed canonical must also give {want}"));
        }
    }
    assert_no_failures(file, rows.len(), &failures);
}

#[test]
fn selector_canonical_forms_and_ids_match_calico() {
    let Some(dir) = conformance_dir("selector_canonical", "selectors") else {
        return;
    };
    let file = "selector_canonical.jsonl";
    let rows = read_jsonl(&dir.join(file));
    let mut failures = Vec::new();
    for (line, row) in &rows {
        let at = format!("{file}:{line}");
        let input = str_field(row, "input", &at);
        let canonical = str_field(row, "canonical", &at);
        // Upstream-provided IDs are `uid`; IDs computed by the vector generator are
        // `uid_derived`. Each row has one of the two, and both must agree with ours.
        let uid = row
            .get("uid")
            .or_else(|| row.get("uid_derived"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{at}: uid or uid_derived must be a string"));
        let Some(sel) = parse_or_record(input, &at, &mut failures) else {
            continue;
        };
        if sel.canonical() != canonical {
            failures.push(format!(
                "{at}: {input:?} canonical is {:?}, want {canonical:?}",
                sel.canonical()
            ));
        }
        if sel.id() != uid {
            failures.push(format!("{at}: {input:?} id is {}, want {uid}", sel.id()));
        }
        check_reparse(&sel, &at, &mut failures);
    }
    assert_no_failures(file, rows.len(), &failures);
}

#[test]
fn selector_invalid_inputs_are_rejected() {
    let Some(dir) = conformance_dir("selector_invalid", "selectors") else {
        return;
    };
    let file = "selector_invalid.jsonl";
    let rows = read_jsonl(&dir.join(file));
    let mut failures = Vec::new();
    for (line, row) in &rows {
        let at = format!("{file}:{line}");
        let input = str_field(row, "selector", &at);
        assert_eq!(
            row.get("valid").and_then(Value::as_bool),
            Some(false),
            "{at}: this file holds only invalid selectors"
        );
        if let Ok(sel) = Selector::parse(input) {
            failures.push(format!(
                "{at}: {input:?} must be rejected, parsed as {:?}",
                sel.canonical()
            ));
        }
    }
    assert_no_failures(file, rows.len(), &failures);
}
