use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn leaf(op: fn(String, String) -> Expr, label: &str, value: &str) -> Expr {
    op(label.to_owned(), value.to_owned())
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn equality_operators_need_the_label_present() {
    let e = leaf(|label, value| Expr::Equals { label, value }, "a", "x");
    assert!(e.matches(&labels(&[("a", "x")])));
    assert!(!e.matches(&labels(&[("a", "y")])));
    assert!(!e.matches(&labels(&[])));
}

#[test]
fn inequality_operators_match_an_absent_label() {
    let ne = leaf(|label, value| Expr::NotEquals { label, value }, "a", "x");
    assert!(ne.matches(&labels(&[])));
    assert!(ne.matches(&labels(&[("a", "y")])));
    assert!(!ne.matches(&labels(&[("a", "x")])));
    let not_in = Expr::NotIn {
        label: "a".to_owned(),
        values: set(&["x", "y"]),
    };
    assert!(not_in.matches(&labels(&[])));
    assert!(not_in.matches(&labels(&[("a", "z")])));
    assert!(!not_in.matches(&labels(&[("a", "y")])));
}

#[test]
fn string_operators_need_the_label_present() {
    let contains = leaf(|label, value| Expr::Contains { label, value }, "a", "ell");
    let starts = leaf(|label, value| Expr::StartsWith { label, value }, "a", "he");
    let ends = leaf(|label, value| Expr::EndsWith { label, value }, "a", "lo");
    let hello = labels(&[("a", "hello")]);
    let other = labels(&[("a", "world")]);
    let none = labels(&[("b", "hello")]);
    for e in [&contains, &starts, &ends] {
        assert!(e.matches(&hello), "{e}");
        assert!(!e.matches(&other), "{e}");
        assert!(!e.matches(&none), "{e}");
    }
    // An empty needle matches any present value, even "".
    let empty = leaf(|label, value| Expr::Contains { label, value }, "a", "");
    assert!(empty.matches(&labels(&[("a", "")])));
    assert!(!empty.matches(&labels(&[])));
}

#[test]
fn in_needs_the_label_present_and_an_empty_set_matches_nothing() {
    let e = Expr::In {
        label: "a".to_owned(),
        values: set(&["x", "y"]),
    };
    assert!(e.matches(&labels(&[("a", "y")])));
    assert!(!e.matches(&labels(&[("a", "z")])));
    assert!(!e.matches(&labels(&[])));
    let empty = Expr::In {
        label: "a".to_owned(),
        values: set(&[]),
    };
    assert!(!empty.matches(&labels(&[("a", "")])));
}

#[test]
fn has_is_true_for_an_empty_value() {
    let e = Expr::Has("a".to_owned());
    assert!(e.matches(&labels(&[("a", "")])));
    assert!(!e.matches(&labels(&[("b", "")])));
}

#[test]
fn all_and_global_match_everything() {
    assert!(Expr::All.matches(&labels(&[])));
    assert!(Expr::Global.matches(&labels(&[("a", "b")])));
}

#[test]
fn boolean_nodes_follow_their_truth_tables() {
    let a = || leaf(|label, value| Expr::Equals { label, value }, "a", "a1");
    let b = || leaf(|label, value| Expr::Equals { label, value }, "b", "b1");
    let and = Expr::And(vec![a(), b()]);
    let or = Expr::Or(vec![a(), b()]);
    let not = Expr::Not(Box::new(a()));
    for (pairs, want_and, want_or) in [
        (&[("a", "a1"), ("b", "b1")][..], true, true),
        (&[("a", "a1"), ("b", "b2")][..], false, true),
        (&[("a", "a2"), ("b", "b1")][..], false, true),
        (&[("a", "a2"), ("b", "b2")][..], false, false),
        (&[][..], false, false),
    ] {
        let l = labels(pairs);
        assert_eq!(and.matches(&l), want_and, "and {pairs:?}");
        assert_eq!(or.matches(&l), want_or, "or {pairs:?}");
        assert_eq!(not.matches(&l), !a().matches(&l), "not {pairs:?}");
    }
}

#[test]
fn uses_global_looks_through_every_node() {
    assert!(Expr::Global.uses_global());
    assert!(Expr::Not(Box::new(Expr::Global)).uses_global());
    assert!(Expr::Or(vec![Expr::All, Expr::And(vec![Expr::All, Expr::Global])]).uses_global());
    assert!(!Expr::And(vec![Expr::All, Expr::Has("global".to_owned())]).uses_global());
}

#[test]
fn display_quotes_each_value_on_its_own() {
    let e = Expr::In {
        label: "a".to_owned(),
        values: set(&["x", "\"", "'"]),
    };
    assert_eq!(e.to_string(), r#"a in {'"', "'", "x"}"#);
}
