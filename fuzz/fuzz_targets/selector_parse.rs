//! Parses arbitrary UTF-8 as a selector. Whatever parses must render a canonical form that
//! parses back to the same selector, up to the one shape Calico's canonical form cannot keep:
//! `!(!x)` renders as `!!x`, which parses as `x`.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tabby_selector::{Expr, Selector};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sel) = Selector::parse(input) else {
        return;
    };
    let reparsed = Selector::parse(sel.canonical()).unwrap_or_else(|e| {
        panic!(
            "canonical {:?} of {input:?} does not parse: {e}",
            sel.canonical()
        )
    });
    let collapsed = collapse_adjacent_nots(sel.expr());
    assert_eq!(reparsed.expr(), &collapsed, "input {input:?}");
    if collapsed == *sel.expr() {
        assert_eq!(reparsed, sel);
        assert_eq!(reparsed.id(), sel.id());
    }
    // The canonical form of the re-parsed selector is a fixed point.
    let again = Selector::parse(reparsed.canonical()).expect("fixed point parses");
    assert_eq!(again, reparsed);

    // Evaluation and restrictions must not panic, and re-parsing keeps the meaning.
    let _ = sel.label_restrictions();
    let _ = sel.uses_global();
    let mut labels = BTreeMap::new();
    assert_eq!(sel.matches(&labels), reparsed.matches(&labels));
    labels.insert("a".to_owned(), "x".to_owned());
    labels.insert("b".to_owned(), String::new());
    assert_eq!(sel.matches(&labels), reparsed.matches(&labels));
});

/// What re-parsing the canonical string yields: runs of directly nested `Not`s collapse by
/// parity, because their rendering is a run of adjacent `!` tokens.
fn collapse_adjacent_nots(e: &Expr) -> Expr {
    match e {
        Expr::Not(inner) => match inner.as_ref() {
            Expr::Not(x) => collapse_adjacent_nots(x),
            _ => Expr::Not(Box::new(collapse_adjacent_nots(inner))),
        },
        Expr::And(ops) => Expr::And(ops.iter().map(collapse_adjacent_nots).collect()),
        Expr::Or(ops) => Expr::Or(ops.iter().map(collapse_adjacent_nots).collect()),
        leaf => leaf.clone(),
    }
}
