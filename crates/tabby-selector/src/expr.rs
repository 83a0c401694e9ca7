//! The selector AST, its canonical rendering and its evaluation.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::Labels;

/// One node of a parsed selector.
///
/// The shapes mirror Calico's AST so that canonical strings (and therefore IDs) agree:
/// parentheses leave no node of their own, `And`/`Or` hold two or more operands and are never
/// flattened into an enclosing group, and only `!` tokens written next to each other collapse.
/// `Display` renders the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything; only meaningful in an entity rule's namespace selector.
    Global,
    /// `has(label)`: the label is present, with any value (including "").
    Has(String),
    /// `label == "value"`: present and equal.
    Equals {
        /// Label key.
        label: String,
        /// Value the label must have.
        value: String,
    },
    /// `label != "value"`: absent, or present with another value.
    NotEquals {
        /// Label key.
        label: String,
        /// Value the label must not have.
        value: String,
    },
    /// `label contains "value"`: present and the value is a substring.
    Contains {
        /// Label key.
        label: String,
        /// Substring to look for.
        value: String,
    },
    /// `label starts with "value"`: present and the value is a prefix.
    StartsWith {
        /// Label key.
        label: String,
        /// Required prefix.
        value: String,
    },
    /// `label ends with "value"`: present and the value is a suffix.
    EndsWith {
        /// Label key.
        label: String,
        /// Required suffix.
        value: String,
    },
    /// `label in {...}`: present with one of the values (never true for an empty set).
    In {
        /// Label key.
        label: String,
        /// Allowed values; a set because the canonical form sorts and de-duplicates them.
        values: BTreeSet<String>,
    },
    /// `label not in {...}`: absent, or present with none of the values.
    NotIn {
        /// Label key.
        label: String,
        /// Forbidden values.
        values: BTreeSet<String>,
    },
    /// `!operand`.
    Not(Box<Self>),
    /// `(a && b && ...)`, two or more operands, evaluated left to right with short-circuit.
    And(Vec<Self>),
    /// `(a || b || ...)`, two or more operands, evaluated left to right with short-circuit.
    Or(Vec<Self>),
}

impl Expr {
    /// Evaluates this node against `labels`.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Self::All | Self::Global => true,
            Self::Has(label) => labels.get_label(label).is_some(),
            Self::Equals { label, value } => labels.get_label(label) == Some(value.as_str()),
            Self::NotEquals { label, value } => labels.get_label(label) != Some(value.as_str()),
            Self::Contains { label, value } => labels
                .get_label(label)
                .is_some_and(|v| v.contains(value.as_str())),
            Self::StartsWith { label, value } => labels
                .get_label(label)
                .is_some_and(|v| v.starts_with(value.as_str())),
            Self::EndsWith { label, value } => labels
                .get_label(label)
                .is_some_and(|v| v.ends_with(value.as_str())),
            Self::In { label, values } => {
                labels.get_label(label).is_some_and(|v| values.contains(v))
            }
            Self::NotIn { label, values } => {
                labels.get_label(label).is_none_or(|v| !values.contains(v))
            }
            Self::Not(operand) => !operand.matches(labels),
            Self::And(operands) => operands.iter().all(|op| op.matches(labels)),
            Self::Or(operands) => operands.iter().any(|op| op.matches(labels)),
        }
    }

    /// The same expression reading every label under `prefix`: how a namespace or service
    /// account selector becomes a selector on the `pcns.`/`pcsa.` labels endpoints inherit.
    pub fn with_label_prefix(&self, prefix: &str) -> Self {
        let p = |label: &str| format!("{prefix}{label}");
        match self {
            Self::All => Self::All,
            Self::Global => Self::Global,
            Self::Has(label) => Self::Has(p(label)),
            Self::Equals { label, value } => Self::Equals {
                label: p(label),
                value: value.clone(),
            },
            Self::NotEquals { label, value } => Self::NotEquals {
                label: p(label),
                value: value.clone(),
            },
            Self::Contains { label, value } => Self::Contains {
                label: p(label),
                value: value.clone(),
            },
            Self::StartsWith { label, value } => Self::StartsWith {
                label: p(label),
                value: value.clone(),
            },
            Self::EndsWith { label, value } => Self::EndsWith {
                label: p(label),
                value: value.clone(),
            },
            Self::In { label, values } => Self::In {
                label: p(label),
                values: values.clone(),
            },
            Self::NotIn { label, values } => Self::NotIn {
                label: p(label),
                values: values.clone(),
            },
            Self::Not(operand) => Self::Not(Box::new(operand.with_label_prefix(prefix))),
            Self::And(operands) => Self::And(
                operands
                    .iter()
                    .map(|o| o.with_label_prefix(prefix))
                    .collect(),
            ),
            Self::Or(operands) => Self::Or(
                operands
                    .iter()
                    .map(|o| o.with_label_prefix(prefix))
                    .collect(),
            ),
        }
    }

    /// True if `global()` occurs anywhere in this subtree.
    pub fn uses_global(&self) -> bool {
        match self {
            Self::Global => true,
            Self::Not(operand) => operand.uses_global(),
            Self::And(operands) | Self::Or(operands) => operands.iter().any(Self::uses_global),
            _ => false,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all()"),
            Self::Global => f.write_str("global()"),
            Self::Has(label) => write!(f, "has({label})"),
            Self::Equals { label, value } => write_op(f, label, " == ", value),
            Self::NotEquals { label, value } => write_op(f, label, " != ", value),
            Self::Contains { label, value } => write_op(f, label, " contains ", value),
            Self::StartsWith { label, value } => write_op(f, label, " starts with ", value),
            Self::EndsWith { label, value } => write_op(f, label, " ends with ", value),
            Self::In { label, values } => write_set(f, label, " in {", values),
            Self::NotIn { label, values } => write_set(f, label, " not in {", values),
            Self::Not(operand) => write!(f, "!{operand}"),
            Self::And(operands) => write_group(f, operands, " && "),
            Self::Or(operands) => write_group(f, operands, " || "),
        }
    }
}

fn write_op(f: &mut fmt::Formatter<'_>, label: &str, op: &str, value: &str) -> fmt::Result {
    f.write_str(label)?;
    f.write_str(op)?;
    write_quoted(f, value)
}

fn write_set(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    op_and_brace: &str,
    values: &BTreeSet<String>,
) -> fmt::Result {
    f.write_str(label)?;
    f.write_str(op_and_brace)?;
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, value)?;
    }
    f.write_char('}')
}

/// The language has no escapes, so the quote is chosen to suit the value.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

fn write_group(f: &mut fmt::Formatter<'_>, operands: &[Expr], sep: &str) -> fmt::Result {
    f.write_char('(')?;
    for (i, op) in operands.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{op}")?;
    }
    f.write_char(')')
}

#[cfg(test)]
mod tests;
