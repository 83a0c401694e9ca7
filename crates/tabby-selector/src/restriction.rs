//! Per-label summaries of what a selector needs, for indexing selectors by label.

use std::collections::{BTreeMap, BTreeSet};

use crate::Expr;

/// What a selector requires of one label before it can match.
///
/// A selector's restrictions are necessary conditions only: an endpoint that violates one can
/// be skipped without evaluating the selector, but one that satisfies all of them must still
/// be evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelRestriction {
    /// The selector cannot match unless the label is present (`has(k)`, `k == "v"`, ...).
    pub must_be_present: bool,
    /// The selector cannot match unless the label is absent (`!has(k)`).
    pub must_be_absent: bool,
    /// When set, the selector cannot match unless the label has one of these values.
    /// `Some` of an empty set means the selector can never match (`k == "a" && k == "b"`);
    /// `None` means no limit is known.
    pub allowed_values: Option<BTreeSet<String>>,
}

impl LabelRestriction {
    /// False when the restriction contradicts itself, so the selector matches nothing.
    pub fn is_satisfiable(&self) -> bool {
        !(self.must_be_present && self.must_be_absent)
            && self.allowed_values.as_ref().is_none_or(|v| !v.is_empty())
    }

    fn present(values: Option<BTreeSet<String>>) -> Self {
        Self {
            must_be_present: true,
            must_be_absent: false,
            allowed_values: values,
        }
    }

    /// Both restrictions hold (an operand of `&&`).
    fn intersect(&mut self, other: Self) {
        self.must_be_present |= other.must_be_present;
        self.must_be_absent |= other.must_be_absent;
        self.allowed_values = match (self.allowed_values.take(), other.allowed_values) {
            (None, v) | (v, None) => v,
            (Some(mut a), Some(b)) => {
                a.retain(|v| b.contains(v));
                Some(a)
            }
        };
    }

    /// One of the restrictions holds (an operand of `||`). Returns `None` when nothing is left
    /// to say about the label.
    fn union(self, other: Option<&Self>) -> Option<Self> {
        let must_be_present = self.must_be_present && other.is_some_and(|o| o.must_be_present);
        let must_be_absent = self.must_be_absent && other.is_some_and(|o| o.must_be_absent);
        // A value list survives only when both sides require presence and both limit values.
        let allowed_values = match (
            self.allowed_values,
            other.and_then(|o| o.allowed_values.as_ref()),
        ) {
            (Some(mut a), Some(b)) if must_be_present => {
                a.extend(b.iter().cloned());
                Some(a)
            }
            _ => None,
        };
        (must_be_present || must_be_absent).then_some(Self {
            must_be_present,
            must_be_absent,
            allowed_values,
        })
    }
}

/// Computes the restrictions of `expr` with Calico's rules: leaf operators that need the label
/// give "present" (with the value set for `==` and `in`), `!has` gives "absent", `&&` merges,
/// `||` keeps what every branch agrees on, and any other negation gives nothing.
pub(crate) fn label_restrictions(expr: &Expr) -> BTreeMap<String, LabelRestriction> {
    let mut out = BTreeMap::new();
    match expr {
        Expr::Has(label)
        | Expr::Contains { label, .. }
        | Expr::StartsWith { label, .. }
        | Expr::EndsWith { label, .. } => {
            out.insert(label.clone(), LabelRestriction::present(None));
        }
        Expr::Equals { label, value } => {
            let values = BTreeSet::from([value.clone()]);
            out.insert(label.clone(), LabelRestriction::present(Some(values)));
        }
        Expr::In { label, values } => {
            out.insert(
                label.clone(),
                LabelRestriction::present(Some(values.clone())),
            );
        }
        Expr::Not(operand) => {
            // `!(k == "v")` does not require k to be absent; only `!has(k)` does.
            if let Expr::Has(label) = operand.as_ref() {
                let absent = LabelRestriction {
                    must_be_absent: true,
                    ..LabelRestriction::default()
                };
                out.insert(label.clone(), absent);
            }
        }
        Expr::And(operands) => {
            for op in operands {
                for (label, r) in label_restrictions(op) {
                    out.entry(label).or_default().intersect(r);
                }
            }
        }
        Expr::Or(operands) => {
            let mut iter = operands.iter();
            if let Some(first) = iter.next() {
                out = label_restrictions(first);
                for op in iter {
                    let other = label_restrictions(op);
                    out = std::mem::take(&mut out)
                        .into_iter()
                        .filter_map(|(label, r)| {
                            let merged = r.union(other.get(&label))?;
                            Some((label, merged))
                        })
                        .collect();
                }
            }
        }
        Expr::All | Expr::Global | Expr::NotEquals { .. } | Expr::NotIn { .. } => {}
    }
    out
}

#[cfg(test)]
mod tests;
