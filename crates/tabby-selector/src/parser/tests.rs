use super::*;

fn parsed(input: &str) -> Expr {
    parse(input).unwrap_or_else(|e| panic!("{input:?} must parse: {e}"))
}

fn canonical(input: &str) -> String {
    parsed(input).to_string()
}

fn rejected(input: &str) -> ParseError {
    match parse(input) {
        Ok(e) => panic!("{input:?} must be rejected, parsed as {e}"),
        Err(e) => e,
    }
}

fn has(l: &str) -> Expr {
    Expr::Has(l.to_owned())
}

fn eq(l: &str, v: &str) -> Expr {
    Expr::Equals {
        label: l.to_owned(),
        value: v.to_owned(),
    }
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

#[test]
fn empty_and_blank_input_is_all() {
    assert_eq!(parsed(""), Expr::All);
    assert_eq!(parsed(" \t "), Expr::All);
    assert_eq!(parsed(" (all() )"), Expr::All);
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        parsed("has(a) || has(b) && has(c)"),
        Expr::Or(vec![has("a"), Expr::And(vec![has("b"), has("c")])])
    );
    assert_eq!(
        parsed("has(a) && has(b) || has(c)"),
        Expr::Or(vec![Expr::And(vec![has("a"), has("b")]), has("c")])
    );
}

#[test]
fn not_binds_tighter_than_and() {
    assert_eq!(
        parsed("!has(a) && has(b)"),
        Expr::And(vec![not(has("a")), has("b")])
    );
}

#[test]
fn chains_of_the_same_operator_form_one_node() {
    assert_eq!(
        parsed("has(a) && has(b) && has(c)"),
        Expr::And(vec![has("a"), has("b"), has("c")])
    );
}

#[test]
fn parenthesised_groups_are_never_flattened() {
    assert_eq!(
        canonical(r#"(a=="b" && c=="d") && e=="f""#),
        r#"((a == "b" && c == "d") && e == "f")"#
    );
    assert_eq!(canonical("((has(a)))"), "has(a)");
}

#[test]
fn adjacent_nots_collapse_by_parity() {
    assert_eq!(parsed("!!has(a)"), has("a"));
    assert_eq!(parsed("! ! ! has(a)"), not(has("a")));
    assert_eq!(parsed("!!!!all()"), Expr::All);
}

#[test]
fn nots_separated_by_a_parenthesis_stay_nested() {
    assert_eq!(parsed("!(!has(a))"), not(not(has("a"))));
    assert_eq!(canonical("!(!has(a))"), "!!has(a)");
    // ... which is why that canonical string is not a fixed point.
    assert_eq!(canonical("!!has(a)"), "has(a)");
}

#[test]
fn not_renders_without_extra_parentheses() {
    assert_eq!(canonical(r#"!k == "v""#), r#"!k == "v""#);
    assert_eq!(canonical("! (has( b)||! has(a ))"), "!(has(b) || !has(a))");
    assert_eq!(
        canonical(r#"! (a == "b"&&! c != "d")"#),
        r#"!(a == "b" && !c != "d")"#
    );
}

#[test]
fn sets_are_sorted_bytewise_and_deduplicated() {
    assert_eq!(
        canonical(r#"a in {"z", "z", "x", "y", "x", "a"}"#),
        r#"a in {"a", "x", "y", "z"}"#
    );
    assert_eq!(
        canonical(r#"a not in {"a", "B"}"#),
        r#"a not in {"B", "a"}"#
    );
}

#[test]
fn sets_may_be_empty_or_end_with_one_comma() {
    assert_eq!(canonical("a in {}"), "a in {}");
    assert_eq!(canonical(r#"a in {"x",}"#), r#"a in {"x"}"#);
    assert_eq!(canonical("a not in { }"), "a not in {}");
    rejected(r#"a in {"x",,}"#);
    rejected("a in {,}");
    rejected(r#"a in {"x" "y"}"#);
}

#[test]
fn values_are_double_quoted_unless_they_contain_a_double_quote() {
    assert_eq!(canonical("a == 'a'"), r#"a == "a""#);
    assert_eq!(canonical(r#"a == "'""#), r#"a == "'""#);
    assert_eq!(canonical(r#"a == '"'"#), r#"a == '"'"#);
    assert_eq!(
        canonical(r#"a in {"'", '"', "c"}"#),
        r#"a in {'"', "'", "c"}"#
    );
}

#[test]
fn word_operators_have_one_canonical_spelling() {
    assert_eq!(canonical(r#"a startswith '"'"#), r#"a starts with '"'"#);
    assert_eq!(canonical(r#"a   ends  with "x""#), r#"a ends with "x""#);
    assert_eq!(canonical(r#"a notin {"x"}"#), r#"a not in {"x"}"#);
    assert_eq!(canonical(r#"a contains"x""#), r#"a contains "x""#);
}

#[test]
fn functions_render_canonically() {
    assert_eq!(canonical("global( )"), "global()");
    assert_eq!(canonical("has( a )"), "has(a)");
    assert_eq!(canonical("!all()"), "!all()");
}

#[test]
fn values_may_hold_any_utf8() {
    assert_eq!(parsed("a == 'é && 日本'"), eq("a", "é && 日本"));
}

#[test]
fn calico_bad_selectors_are_rejected() {
    for input in [
        "b == b",
        "'b1' == b",
        "b",
        "a b",
        "!",
        "foo == \"bar\" &",
        "foo == \"bar\" |",
        "foo != ||",
        "foo in {\"\", ||",
        "foo in \"\"",
        "foo in {\"\"",
        "\"FOO",
        "'FOO",
        "(a == \"foo\"",
        ")",
        "()",
        "a == \"b\" || %",
        "has(foo) &&",
        "has(foo) ||",
        "b contains b",
        "b starts with b",
        "a == \"b\")",
        "(",
        "a ==",
        "a in",
        "a (",
        "all() all()",
        "a == \"b\" c == \"d\"",
    ] {
        rejected(input);
    }
}

#[test]
fn errors_point_at_the_offending_token() {
    let e = rejected(r#"a == "b" && b == c"#);
    assert_eq!(e.position, 17);
    assert!(e.message.starts_with("expected string"), "{e}");
    let e = rejected("has(a) &&");
    assert_eq!(
        (e.position, e.message.as_str()),
        (9, "unexpected end of selector")
    );
    let e = rejected("foo in \"\"");
    assert_eq!(e.position, 7);
    assert!(e.message.starts_with("expected set literal"), "{e}");
    let e = rejected("(has(a)");
    assert!(e.message.starts_with("expected )"), "{e}");
    let e = rejected("has(a) has(b)");
    assert_eq!(e.position, 7);
}

#[test]
fn nesting_is_limited_to_avoid_stack_overflow() {
    let ok = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(parsed(&ok), has("a"));
    let deep = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let e = rejected(&deep);
    assert!(e.message.contains("nested too deeply"), "{e}");
    // A long run of `(` fails fast instead of recursing once per byte.
    rejected(&"(".repeat(100_000));
    rejected(&"!(".repeat(100_000));
}

#[test]
fn long_flat_chains_do_not_recurse() {
    let chain = vec!["has(a)"; 10_000].join(" && ");
    let Expr::And(ops) = parsed(&chain) else {
        panic!("a chain of && must parse to one And node");
    };
    assert_eq!(ops.len(), 10_000);
    let nots = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(parsed(&nots), not(has("a")));
}
