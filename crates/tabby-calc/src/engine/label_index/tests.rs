use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tabby_model::selector::Selector;
use tabby_model::values::Labels;

use super::{ItemId, LabelIndex, MatchChange};
use crate::engine::labels::{Interner, LabelSet};

const SELECTORS: &[&str] = &[
    "all()",
    "a == 'x'",
    "a == 'y'",
    "has(a)",
    "!has(a)",
    "a in {'x', 'y'} && b == 'x'",
    "a != 'x'",
    "b == 'x' || a == 'y'",
    "a == 'x' && a == 'y'",
    "a starts with 'x'",
    "has(b) && !has(c)",
];

#[derive(Debug, Clone)]
enum Op {
    Selector(u8, u8),
    RemoveSelector(u8),
    Item(ItemId, Vec<(u8, u8)>),
    RemoveItem(ItemId),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0..SELECTORS.len() as u8).prop_map(|(id, s)| Op::Selector(id, s)),
        (0u8..6).prop_map(Op::RemoveSelector),
        (0u32..8, prop::collection::vec((0u8..3, 0u8..3), 0..4)).prop_map(|(i, l)| Op::Item(i, l)),
        (0u32..8).prop_map(Op::RemoveItem),
    ]
}

fn labels(pairs: &[(u8, u8)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                ["a", "b", "c"][usize::from(*k)].to_owned(),
                ["x", "y", "z"][usize::from(*v)].to_owned(),
            )
        })
        .collect()
}

proptest! {
    /// After any sequence of changes the index agrees with checking every selector against
    /// every item, and the reported changes, replayed, give the same matches.
    #[test]
    fn agrees_with_brute_force(ops in prop::collection::vec(op(), 1..60)) {
        let mut interner = Interner::default();
        let mut index: LabelIndex<u8> = LabelIndex::default();
        let mut selectors: BTreeMap<u8, Selector> = BTreeMap::new();
        let mut items: BTreeMap<ItemId, Labels> = BTreeMap::new();
        let mut replayed: BTreeSet<(u8, ItemId)> = BTreeSet::new();
        for op in ops {
            let mut out = Vec::new();
            match op {
                Op::Selector(id, s) => {
                    let sel = Selector::parse(SELECTORS[usize::from(s)]).unwrap();
                    selectors.insert(id, sel.clone());
                    index.upsert_selector(id, sel, &mut out);
                }
                Op::RemoveSelector(id) => {
                    selectors.remove(&id);
                    index.remove_selector(&id, &mut out);
                }
                Op::Item(item, pairs) => {
                    let l = labels(&pairs);
                    index.upsert_item(item, LabelSet::merged(&mut interner, [&l]), &mut out);
                    items.insert(item, l);
                }
                Op::RemoveItem(item) => {
                    items.remove(&item);
                    index.remove_item(item, &mut out);
                }
            }
            for MatchChange { selector, item, matched } in out {
                let changed = if matched {
                    replayed.insert((selector, item))
                } else {
                    replayed.remove(&(selector, item))
                };
                prop_assert!(changed, "a change that changes nothing: {selector} {item} {matched}");
            }
            let expected: BTreeSet<(u8, ItemId)> = selectors
                .iter()
                .flat_map(|(s, sel)| {
                    items
                        .iter()
                        .filter(|(_, l)| sel.matches(*l))
                        .map(move |(i, _)| (*s, *i))
                })
                .collect();
            let indexed: BTreeSet<(u8, ItemId)> = selectors
                .keys()
                .flat_map(|s| index.matches_of(s).map(move |i| (*s, i)))
                .collect();
            prop_assert_eq!(&indexed, &expected);
            prop_assert_eq!(&replayed, &expected);
            for i in items.keys() {
                let by: BTreeSet<u8> = index.matched_by(*i).copied().collect();
                let want: BTreeSet<u8> =
                    expected.iter().filter(|(_, x)| x == i).map(|(s, _)| *s).collect();
                prop_assert_eq!(by, want);
            }
        }
    }
}
