use serde_json::json;

use super::*;

#[test]
fn multi_document_streams_load_with_start_lines() {
    let docs =
        parse_documents("a: 1\n---\n# only a comment\n---\nb: [x, 2, true, null, 1.5]\n").unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].value, json!({"a": 1}));
    assert_eq!(docs[1].value, json!({"b": ["x", 2, true, null, 1.5]}));
    assert_eq!(docs[1].line, 4);
}

#[test]
fn quoted_scalars_stay_strings() {
    let docs = parse_documents("a: '80'\nb: \"true\"\nc: 80\n").unwrap();
    assert_eq!(docs[0].value, json!({"a": "80", "b": "true", "c": 80}));
}

#[test]
fn duplicate_keys_are_refused() {
    let e = parse_documents("a: 1\na: 2\n").unwrap_err();
    assert!(e.message.contains("duplicate key \"a\""), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn syntax_errors_carry_positions() {
    let e = parse_documents("a: [1, 2\nb: c\n").unwrap_err();
    assert!(e.line >= 1, "{e}");
}

#[test]
fn aliases_expand_but_bombs_are_stopped() {
    let docs = parse_documents("x: &a {k: v}\ny: *a\n").unwrap();
    assert_eq!(docs[0].value, json!({"x": {"k": "v"}, "y": {"k": "v"}}));
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let e = parse_documents(&bomb).unwrap_err();
    assert!(e.message.contains("more than"), "{e}");
}

#[test]
fn values_round_trip_through_yaml_text() {
    let v = json!({"apiVersion": "v1", "spec": {"ports": [80, "http"], "on": true, "s": "123", "f": 0.5, "multi": "a\nb"}});
    let text = to_yaml_string(std::slice::from_ref(&v));
    let back = parse_documents(&text).unwrap();
    assert_eq!(back[0].value, v, "{text}");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = parse_documents(&deep).unwrap_err();
    assert!(
        e.message.contains("nesting deeper than") || e.message.contains("recursion limit"),
        "{e}"
    );
    let block: String = (0..200)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect();
    let e = parse_documents(&block).unwrap_err();
    assert!(e.message.contains("nesting deeper than"), "{e}");
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(parse_documents(&ok).is_ok());
}
