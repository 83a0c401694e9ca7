//! Property tests: random ASTs render to canonical strings that parse back to the same tree,
//! noisy but equivalent spellings parse to the same tree, and evaluation agrees with an
//! independent reference evaluator.

use std::collections::{BTreeMap, BTreeSet};
use tabby_test_util::Dice;

use proptest::prelude::*;
use tabby_selector::{Expr, Selector};

/// Keys drawn from a small pool so that random label maps often hit them; the pool includes
/// words that are keywords elsewhere in the grammar.
const KEYS: &[&str] = &[
    "a",
    "b",
    "app",
    "x.y/z-1_Q",
    "contains",
    "in",
    "not",
    "has",
    "all",
    "global",
    "starts",
];

const VALUES: &[&str] = &[
    "",
    "v",
    "w",
    "vw",
    "it's",
    "say \"hi\"",
    "é日本",
    " && ",
    "a b",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_./-]{1,12}",
    ]
}

/// Any UTF-8 value that a string literal can hold: not both quote kinds.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_owned),
        1 => any::<String>().prop_filter("a literal cannot hold both quote kinds", |v| {
            !(v.contains('"') && v.contains('\''))
        }),
    ]
}

fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(value(), 0..4)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key().prop_map(Expr::Has),
        (key(), value()).prop_map(|(label, value)| Expr::Equals { label, value }),
        (key(), value()).prop_map(|(label, value)| Expr::NotEquals { label, value }),
        (key(), value()).prop_map(|(label, value)| Expr::Contains { label, value }),
        (key(), value()).prop_map(|(label, value)| Expr::StartsWith { label, value }),
        (key(), value()).prop_map(|(label, value)| Expr::EndsWith { label, value }),
        (key(), value_set()).prop_map(|(label, values)| Expr::In { label, values }),
        (key(), value_set()).prop_map(|(label, values)| Expr::NotIn { label, values }),
    ]
}

/// Trees the parser can produce and whose canonical form is a fixed point: And/Or have two or
/// more operands and no Not sits directly under another Not (Calico renders `!(!x)` as `!!x`,
/// which parses back as `x`).
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| match e {
                Expr::Not(operand) => *operand,
                other => Expr::Not(Box::new(other)),
            }),
            prop::collection::vec(inner.clone(), 2..5).prop_map(Expr::And),
            prop::collection::vec(inner, 2..5).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..6)
}

/// Evaluation written independently of the crate's, straight from the language reference.
fn reference_matches(e: &Expr, labels: &BTreeMap<String, String>) -> bool {
    let get = |k: &String| labels.get(k).map(String::as_str);
    match e {
        Expr::All | Expr::Global => true,
        Expr::Has(k) => labels.contains_key(k),
        Expr::Equals { label, value } => get(label).is_some_and(|v| v == value),
        Expr::NotEquals { label, value } => get(label).is_none_or(|v| v != value),
        Expr::Contains { label, value } => get(label).is_some_and(|v| v.contains(value.as_str())),
        Expr::StartsWith { label, value } => {
            get(label).is_some_and(|v| v.starts_with(value.as_str()))
        }
        Expr::EndsWith { label, value } => get(label).is_some_and(|v| v.ends_with(value.as_str())),
        Expr::In { label, values } => get(label).is_some_and(|v| values.contains(v)),
        Expr::NotIn { label, values } => get(label).is_none_or(|v| !values.contains(v)),
        Expr::Not(op) => !reference_matches(op, labels),
        Expr::And(ops) => {
            ops.iter()
                .filter(|op| !reference_matches(op, labels))
                .count()
                == 0
        }
        Expr::Or(ops) => {
            ops.iter()
                .filter(|op| reference_matches(op, labels))
                .count()
                > 0
        }
    }
}

// ===== noisy rendering =====

/// Blanks for the noisy renderer, drawn from the shared seeded dice.
trait Blanks {
    /// Optional blanks: none, a space, or a run of spaces and tabs.
    fn blank(&mut self) -> &'static str;
    /// Mandatory blanks between two words.
    fn gap(&mut self) -> &'static str;
}

impl Blanks for Dice {
    fn blank(&mut self) -> &'static str {
        const BLANKS: [&str; 6] = ["", "", " ", "  ", "\t", " \t "];
        BLANKS[self.below(BLANKS.len())]
    }

    fn gap(&mut self) -> &'static str {
        const GAPS: [&str; 4] = [" ", "  ", "\t", " \t"];
        GAPS[self.below(GAPS.len())]
    }
}

/// Where a node is rendered: decides which parentheses are required.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    OrOperand,
    Other,
}

fn quoted(value: &str, dice: &mut Dice) -> String {
    let single_ok = !value.contains('\'');
    let double_ok = !value.contains('"');
    if single_ok && (!double_ok || dice.one_in(2)) {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    }
}

/// Renders `e` in a spelling that must parse to the same tree: random blanks, quote styles,
/// operator spellings, set order, duplicates and trailing commas, redundant parentheses and
/// pairs of `!`, and parentheses dropped where precedence makes them unnecessary.
fn noisy(e: &Expr, ctx: Ctx, dice: &mut Dice) -> String {
    if ctx == Ctx::Top && *e == Expr::All && dice.one_in(3) {
        return dice.blank().to_owned();
    }
    let (body, is_operand) = match e {
        Expr::All => (format!("all({})", dice.blank()), true),
        Expr::Global => (format!("global({})", dice.blank()), true),
        Expr::Has(k) => (format!("has({}{k}{})", dice.blank(), dice.blank()), true),
        Expr::Equals { label, value } => (binary(label, "==", value, dice), true),
        Expr::NotEquals { label, value } => (binary(label, "!=", value, dice), true),
        Expr::Contains { label, value } => {
            let op = format!("{}contains{}", dice.gap(), dice.gap());
            (format!("{label}{op}{}", quoted(value, dice)), true)
        }
        Expr::StartsWith { label, value } => (two_word(label, "starts", value, dice), true),
        Expr::EndsWith { label, value } => (two_word(label, "ends", value, dice), true),
        Expr::In { label, values } => (set(label, "in", values, dice), true),
        Expr::NotIn { label, values } => {
            let op = format!("not{}in", dice.pick(&["", " ", "\t", "  "]));
            (set(label, &op, values, dice), true)
        }
        Expr::Not(op) => (format!("!{}", noisy(op, Ctx::Other, dice)), true),
        Expr::And(ops) => {
            let parts: Vec<String> = ops.iter().map(|op| noisy(op, Ctx::Other, dice)).collect();
            let sep = format!("{}&&{}", dice.blank(), dice.blank());
            let bare = matches!(ctx, Ctx::Top | Ctx::OrOperand) && dice.one_in(2);
            group(parts.join(&sep), bare, dice)
        }
        Expr::Or(ops) => {
            let parts: Vec<String> = ops
                .iter()
                .map(|op| noisy(op, Ctx::OrOperand, dice))
                .collect();
            let sep = format!("{}||{}", dice.blank(), dice.blank());
            let bare = ctx == Ctx::Top && dice.one_in(2);
            group(parts.join(&sep), bare, dice)
        }
    };
    let mut out = body;
    if is_operand && dice.one_in(4) {
        out = format!("({}{out}{})", dice.blank(), dice.blank());
    }
    if is_operand && dice.one_in(5) {
        out = format!("!{}!{}{out}", dice.blank(), dice.blank());
    }
    format!("{}{out}{}", dice.blank(), dice.blank())
}

/// An And/Or body; returns whether the result is a single operand (parenthesised).
fn group(body: String, bare: bool, dice: &mut Dice) -> (String, bool) {
    if bare {
        (body, false)
    } else {
        (format!("({}{body}{})", dice.blank(), dice.blank()), true)
    }
}

fn binary(label: &str, op: &str, value: &str, dice: &mut Dice) -> String {
    format!(
        "{label}{}{op}{}{}",
        dice.blank(),
        dice.blank(),
        quoted(value, dice)
    )
}

fn two_word(label: &str, first: &str, value: &str, dice: &mut Dice) -> String {
    let between = dice.pick(&["", " ", "  ", "\t"]);
    format!(
        "{label}{}{first}{between}with{}{}",
        dice.gap(),
        dice.blank(),
        quoted(value, dice)
    )
}

fn set(label: &str, op: &str, values: &BTreeSet<String>, dice: &mut Dice) -> String {
    let mut items: Vec<String> = Vec::new();
    for v in values.iter().rev() {
        items.push(quoted(v, dice));
        if dice.one_in(4) {
            items.push(quoted(v, dice));
        }
    }
    if items.len() > 1 && dice.one_in(2) {
        items.swap(0, 1);
    }
    let sep = format!("{},{}", dice.blank(), dice.blank());
    let trailing = if !items.is_empty() && dice.one_in(3) {
        ","
    } else {
        ""
    };
    format!(
        "{label}{}{op}{}{{{}{}{trailing}{}}}",
        dice.gap(),
        dice.blank(),
        dice.blank(),
        items.join(&sep),
        dice.blank()
    )
}

// ===== properties =====

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_form_parses_back_to_the_same_tree(e in expr()) {
        let canonical = e.to_string();
        let sel = Selector::parse(&canonical)
            .map_err(|err| TestCaseError::fail(format!("{canonical:?}: {err}")))?;
        prop_assert_eq!(sel.expr(), &e);
        prop_assert_eq!(sel.canonical(), canonical.as_str());
        let again = Selector::parse(sel.canonical())
            .map_err(|err| TestCaseError::fail(format!("{canonical:?}: {err}")))?;
        prop_assert_eq!(&again, &sel);
        prop_assert_eq!(again.id(), sel.id());
    }

    #[test]
    fn noisy_spellings_parse_to_the_same_selector(e in expr(), seed in any::<u64>()) {
        let text = noisy(&e, Ctx::Top, &mut Dice(seed));
        let sel = Selector::parse(&text)
            .map_err(|err| TestCaseError::fail(format!("{text:?}: {err}")))?;
        prop_assert_eq!(sel.expr(), &e, "{:?}", text);
        prop_assert_eq!(sel.id(), Selector::parse(&e.to_string()).expect("canonical parses").id());
    }

    #[test]
    fn matching_agrees_with_the_reference_evaluator(
        e in expr(),
        maps in prop::collection::vec(label_map(), 1..8),
    ) {
        let sel = Selector::parse(&e.to_string())
            .map_err(|err| TestCaseError::fail(format!("{e}: {err}")))?;
        let reparsed = Selector::parse(sel.canonical()).expect("canonical parses");
        for labels in &maps {
            let want = reference_matches(&e, labels);
            prop_assert_eq!(sel.matches(labels), want, "{} on {:?}", sel, labels);
            prop_assert_eq!(reparsed.matches(labels), want);
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_reaches_a_fixed_point(
        input in prop_oneof![
            any::<String>(),
            r#"[ \t()!{},'"=&|a-c.hasinotlgbl é]{0,40}"#,
        ],
        labels in label_map(),
    ) {
        if let Ok(sel) = Selector::parse(&input) {
            // One round collapses `!(!x)` into `x`; after that the canonical form is stable.
            let once = Selector::parse(sel.canonical())
                .map_err(|err| TestCaseError::fail(format!("{sel}: {err}")))?;
            let twice = Selector::parse(once.canonical())
                .map_err(|err| TestCaseError::fail(format!("{once}: {err}")))?;
            prop_assert_eq!(&twice, &once);
            prop_assert_eq!(sel.matches(&labels), once.matches(&labels));
        }
    }
}
