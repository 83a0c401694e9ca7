use super::*;

fn toks(input: &str) -> Vec<Tok<'_>> {
    tokenize(input)
        .unwrap_or_else(|e| panic!("{input:?} must tokenize: {e}"))
        .into_iter()
        .map(|t| t.tok)
        .collect()
}

fn lex_error(input: &str) -> ParseError {
    match tokenize(input) {
        Ok(tokens) => panic!("{input:?} must not tokenize, got {tokens:?}"),
        Err(e) => e,
    }
}

#[test]
fn compact_forms_need_no_spaces() {
    use Tok::*;
    assert_eq!(toks(r#"a=="b""#), [Label("a"), Eq, Str("b"), Eof]);
    assert_eq!(
        toks(r#"a notin"bar"&&!has(foo)||b in"c""#),
        [
            Label("a"),
            NotIn,
            Str("bar"),
            And,
            Not,
            Has("foo"),
            Or,
            Label("b"),
            In,
            Str("c"),
            Eof
        ]
    );
}

#[test]
fn keywords_are_labels_where_a_label_is_expected() {
    use Tok::*;
    assert_eq!(
        toks(r#"contains contains "contains""#),
        [Label("contains"), Contains, Str("contains"), Eof]
    );
    assert_eq!(toks("in in {}"), [Label("in"), In, LBrace, RBrace, Eof]);
    assert_eq!(toks(r#"has == "x""#), [Label("has"), Eq, Str("x"), Eof]);
    assert_eq!(toks(r#"all != "x""#), [Label("all"), Ne, Str("x"), Eof]);
}

#[test]
fn two_word_operators_accept_any_run_of_blanks_between_words() {
    use Tok::*;
    for input in [
        r#"a starts with "x""#,
        r#"a startswith "x""#,
        "a starts  \t with \"x\"",
    ] {
        assert_eq!(
            toks(input),
            [Label("a"), StartsWith, Str("x"), Eof],
            "{input}"
        );
    }
    assert_eq!(
        toks(r#"a endswith"x""#),
        [Label("a"), EndsWith, Str("x"), Eof]
    );
    assert_eq!(
        toks("a not\tin {}"),
        [Label("a"), NotIn, LBrace, RBrace, Eof]
    );
}

#[test]
fn operator_words_need_a_word_boundary() {
    for input in [
        r#"label inf "value""#,
        r#"label ends withs "value""#,
        r#"label starts foo "value""#,
        r#"label squiggles "value""#,
        r#"a containsx "v""#,
        "a notinx {}",
    ] {
        let e = lex_error(input);
        assert!(
            e.message.starts_with("expected operator after label"),
            "{input}: {e}"
        );
    }
}

#[test]
fn two_word_operators_check_the_boundary_after_trailing_blanks() {
    // Calico trims blanks after the last word before checking, so the next label glues on.
    let e = lex_error("b starts with b");
    assert_eq!(e.message, r#"expected operator after label "b""#);
    assert_eq!(e.position, 2);
    // One-word operators check right after the word.
    assert_eq!(
        toks("b in b"),
        [Tok::Label("b"), Tok::In, Tok::Label("b"), Tok::Eof]
    );
}

#[test]
fn error_display_names_position_and_label() {
    let e = lex_error("a == 'x' && b c");
    assert_eq!(
        e.to_string(),
        r#"at position 14: expected operator after label "b""#
    );
}

#[test]
fn single_punctuation_halves_are_errors() {
    assert_eq!(lex_error(r#"label = "value""#).message, "expected ==");
    assert_eq!(lex_error(r#"a == "b" & has(foo)"#).message, "expected &&");
    assert_eq!(lex_error(r#"a == "b" | has(foo)"#).message, "expected ||");
}

#[test]
fn strings_end_at_the_next_matching_quote_without_escapes() {
    use Tok::*;
    assert_eq!(toks(r#"a == "it's""#), [Label("a"), Eq, Str("it's"), Eof]);
    assert_eq!(
        toks(r#"a == 'say "hi"'"#),
        [Label("a"), Eq, Str(r#"say "hi""#), Eof]
    );
    assert_eq!(toks(r#"a == "\""#), [Label("a"), Eq, Str("\\"), Eof]);
    assert_eq!(
        toks(r#"a == "é ü 日本""#),
        [Label("a"), Eq, Str("é ü 日本"), Eof]
    );
    let e = lex_error(r#"label == "value"#);
    assert_eq!((e.position, e.message.as_str()), (9, "unterminated string"));
    assert_eq!(lex_error("'FOO").message, "unterminated string");
}

#[test]
fn functions_allow_blanks_inside_parentheses() {
    use Tok::*;
    assert_eq!(toks("has( \tfoo )"), [Has("foo"), Eof]);
    assert_eq!(toks("all( )"), [All, Eof]);
    assert_eq!(toks("global(\t)"), [Global, Eof]);
}

#[test]
fn unclosed_or_empty_functions_are_errors() {
    assert_eq!(lex_error("all(").message, "no closing ')' after all(");
    assert_eq!(lex_error("global(").message, "no closing ')' after global(");
    assert_eq!(lex_error("has(foo").message, "no closing ')' after has(");
    assert_eq!(
        lex_error("has(foo bar)").message,
        "no closing ')' after has("
    );
    assert_eq!(lex_error("has()").message, "expected identifier");
    assert_eq!(lex_error("has( )").message, "expected identifier");
}

#[test]
fn labels_take_slash_dot_dash_underscore_and_upper_case() {
    use Tok::*;
    assert_eq!(
        toks("has(projectcalico.org/Name_x-y)"),
        [Has("projectcalico.org/Name_x-y"), Eof]
    );
}

#[test]
fn labels_are_limited_to_512_bytes() {
    let ok = "a".repeat(MAX_LABEL_LEN);
    assert_eq!(toks(&format!("has({ok})")), [Tok::Has(&ok), Tok::Eof]);
    let long = "a".repeat(MAX_LABEL_LEN + 1);
    let e = lex_error(&format!("{long} == \"v\""));
    assert!(e.message.starts_with("label too long"), "{e}");
    let e = lex_error(&format!("has({long})"));
    assert!(e.message.starts_with("label too long"), "{e}");
}

#[test]
fn only_space_and_tab_are_whitespace() {
    use Tok::*;
    assert_eq!(toks(" \t has(a)\t "), [Has("a"), Eof]);
    assert_eq!(lex_error("has(a)\n").message, "expected identifier");
    assert_eq!(lex_error("\u{a0}has(a)").position, 0);
}

#[test]
fn non_ascii_outside_strings_is_rejected_without_panicking() {
    for input in [
        "é",
        "a é",
        "a == \"x\" && é",
        "has(é)",
        "a in {é}",
        "日本 == 'x'",
    ] {
        let _ = lex_error(input);
    }
}

#[test]
fn positions_are_byte_offsets() {
    let t = tokenize("é == 'x'").err();
    assert_eq!(t.map(|e| e.position), Some(0));
    let t = tokenize("has(a) && 'é' ==").expect("lexes");
    let positions: Vec<usize> = t.iter().map(|t| t.pos).collect();
    assert_eq!(positions, [0, 7, 10, 15, 17]);
}
