use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} must parse: {e}"))
}

#[test]
fn equal_canonical_forms_are_equal_selectors_with_equal_ids() {
    let a = sel("a == 'x'&&b in {'q','p','q'}");
    let b = sel(r#"(a == "x" && b in {"p", "q"})"#);
    assert_eq!(a, b);
    assert_eq!(a.id(), b.id());
    let set: HashSet<Selector> = [a, b].into_iter().collect();
    assert_eq!(set.len(), 1);
}

#[test]
fn different_selectors_differ() {
    assert_ne!(sel("has(a)"), sel("!has(a)"));
    assert_ne!(sel("!(!has(a))"), sel("has(a)"));
    assert_ne!(sel("!(!has(a))").id(), sel("has(a)").id());
}

#[test]
fn empty_selector_is_all_with_calicos_id() {
    let s = sel("");
    assert!(s.is_all());
    assert_eq!(s, Selector::all());
    assert_eq!(s, Selector::default());
    assert_eq!(s.canonical(), "all()");
    assert_eq!(s.id(), "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug");
}

#[test]
fn only_plain_all_counts_as_all() {
    assert!(sel(" ( all() ) ").is_all());
    assert!(sel("!!all()").is_all());
    assert!(!sel("global()").is_all());
    assert!(!sel("all() && all()").is_all());
    assert!(!sel("!all()").is_all());
}

#[test]
fn uses_global_finds_nested_global() {
    assert!(sel("global()").uses_global());
    assert!(sel("has(a) || !(global() && has(b))").uses_global());
    assert!(!sel("has(global) && global == 'x'").uses_global());
}

#[test]
fn display_and_debug_show_the_canonical_form() {
    let s = sel("a=='b'");
    assert_eq!(s.to_string(), r#"a == "b""#);
    assert_eq!(format!("{s:?}"), r#"Selector("a == \"b\"")"#);
}

#[test]
fn from_str_parses() {
    let s: Selector = "has(a)".parse().expect("has(a) is a valid selector");
    assert_eq!(s.canonical(), "has(a)");
    let e = "a b"
        .parse::<Selector>()
        .expect_err("a bare label pair is invalid");
    assert_eq!(
        e.to_string(),
        r#"at position 2: expected operator after label "a""#
    );
}

#[test]
fn id_is_stable_across_calls_and_clones() {
    let s = sel("has(a)");
    let id = s.id();
    assert_eq!(s.id(), id);
    assert_eq!(s.clone().id(), id);
    assert_eq!(id, "s:JpRGrxZ4kdS6g7WoF-uG_g7qlh2ipw2zGYBMpQ");
}

#[test]
fn matches_accepts_every_label_container() {
    let s = sel("a == 'x' && b in {'p', 'q'} && has(c)");
    let pairs = [("a", "x"), ("b", "q"), ("c", "")];
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let btree: BTreeMap<String, String> = owned.iter().cloned().collect();
    let hash: HashMap<String, String> = owned.iter().cloned().collect();
    assert!(s.matches(&btree));
    assert!(s.matches(&hash));
    assert!(s.matches(&owned));
    assert!(s.matches(owned.as_slice()));
    assert!(s.matches(&pairs));
    assert!(s.matches(&pairs[..]));
    assert!(!s.matches(&pairs[..2]));
    assert!(s.matches(&&btree));
}

#[test]
fn expr_exposes_the_tree() {
    let s = sel("has(a) || !has(b)");
    let Expr::Or(ops) = s.expr() else {
        panic!("a top-level || must give an Or node");
    };
    assert_eq!(ops.len(), 2);
}
