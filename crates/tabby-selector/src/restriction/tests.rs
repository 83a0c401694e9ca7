use super::*;
use crate::Selector;

/// Expected restriction for one label: present, absent, allowed values.
type Want<'a> = (&'a str, bool, bool, Option<&'a [&'a str]>);

fn restrictions_of(selector: &str) -> BTreeMap<String, LabelRestriction> {
    Selector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?} must parse: {e}"))
        .label_restrictions()
}

fn want(rows: &[Want<'_>]) -> BTreeMap<String, LabelRestriction> {
    rows.iter()
        .map(|&(label, must_be_present, must_be_absent, values)| {
            let r = LabelRestriction {
                must_be_present,
                must_be_absent,
                allowed_values: values.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
            };
            (label.to_owned(), r)
        })
        .collect()
}

/// Checks `selector` alone and behind `all() &&`, which must change nothing.
fn check(selector: &str, rows: &[Want<'_>]) {
    let expected = want(rows);
    assert_eq!(restrictions_of(selector), expected, "{selector}");
    let prefixed = format!("all() && ({selector})");
    assert_eq!(restrictions_of(&prefixed), expected, "{prefixed}");
}

#[test]
fn trivial_selectors_restrict_nothing() {
    assert!(restrictions_of("").is_empty());
    check("all()", &[]);
    check("global()", &[]);
}

#[test]
fn positive_leaves_require_presence() {
    check("has(a)", &[("a", true, false, None)]);
    check("a contains 'foo'", &[("a", true, false, None)]);
    check("a starts with 'foo'", &[("a", true, false, None)]);
    check("a ends with 'foo'", &[("a", true, false, None)]);
}

#[test]
fn equality_and_in_also_limit_values() {
    check("a == 'value'", &[("a", true, false, Some(&["value"]))]);
    check(
        "a in {'v1','v2'}",
        &[("a", true, false, Some(&["v1", "v2"]))],
    );
    check("a in {}", &[("a", true, false, Some(&[]))]);
}

#[test]
fn negative_leaves_restrict_nothing() {
    check("a != 'value'", &[]);
    check("a not in {'v1','v2'}", &[]);
}

#[test]
fn only_not_has_requires_absence() {
    check("!has(a)", &[("a", false, true, None)]);
    check("!(a == 'value')", &[]);
    check("!a in {'x'}", &[]);
    check("!(has(a) && has(b))", &[]);
    // Adjacent nots cancel before restrictions are computed...
    check("!!has(a)", &[("a", true, false, None)]);
    // ... but a double negation through parentheses is opaque, as in Calico.
    check("!(!has(a))", &[]);
}

#[test]
fn and_merges_flags_and_intersects_values() {
    check(
        "a == 'v1' && a == 'v1'",
        &[("a", true, false, Some(&["v1"]))],
    );
    check("a == 'v1' && a == 'v2'", &[("a", true, false, Some(&[]))]);
    check("a == 'v1' && has(a)", &[("a", true, false, Some(&["v1"]))]);
    check("has(a) && a == 'v1'", &[("a", true, false, Some(&["v1"]))]);
    check(
        "a in {'v1','v2'} && a in {'v2','v3'} ",
        &[("a", true, false, Some(&["v2"]))],
    );
    check(
        "a in {'v1','v2', 'v3'} && a in {'v2','v3'} ",
        &[("a", true, false, Some(&["v2", "v3"]))],
    );
    check("has(a) && !has(a)", &[("a", true, true, None)]);
    check(
        "a == 'v1' && b == 'v2'",
        &[
            ("a", true, false, Some(&["v1"])),
            ("b", true, false, Some(&["v2"])),
        ],
    );
    check("a == 'v1' && all()", &[("a", true, false, Some(&["v1"]))]);
    check("all() && a == 'v1'", &[("a", true, false, Some(&["v1"]))]);
    check("a != 'x' && has(b)", &[("b", true, false, None)]);
}

#[test]
fn or_keeps_only_what_every_branch_requires() {
    check(
        "a == 'v1' || a == 'v2'",
        &[("a", true, false, Some(&["v1", "v2"]))],
    );
    check("has(a) || a == 'v2'", &[("a", true, false, None)]);
    check("a=='v2' || has(a)", &[("a", true, false, None)]);
    check("a=='v2' || has(b)", &[]);
    check("a=='v2' || (has(b) && has(a))", &[("a", true, false, None)]);
    check("a == 'v1' || b == 'v2'", &[]);
    check("a == 'v1' || all()", &[]);
    check("all() || b == 'v2'", &[]);
    check("!has(a) || !has(a)", &[("a", false, true, None)]);
    check("!has(a) || has(a)", &[]);
    check(
        "a == 'x' || a in {'y', 'z'} || a == 'x'",
        &[("a", true, false, Some(&["x", "y", "z"]))],
    );
}

#[test]
fn or_drops_values_once_presence_is_no_longer_required() {
    // Both branches constrain `a`, but only one requires it present.
    check(
        "(a == 'x' && !has(a)) || !has(a)",
        &[("a", false, true, None)],
    );
}

#[test]
fn satisfiability_flags_contradictions() {
    let r = &restrictions_of("a == 'v1' && a == 'v2'")["a"];
    assert!(!r.is_satisfiable());
    let r = &restrictions_of("has(a) && !has(a)")["a"];
    assert!(!r.is_satisfiable());
    let r = &restrictions_of("a in {'x', 'y'} && has(a)")["a"];
    assert!(r.is_satisfiable());
}
