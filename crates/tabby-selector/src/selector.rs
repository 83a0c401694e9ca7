//! The parsed selector: AST plus its cached canonical form.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::restriction::label_restrictions;
use crate::{Expr, LabelRestriction, Labels, ParseError, id, parser};

/// A parsed label selector.
///
/// Two selectors are equal exactly when their canonical strings are, which is also when their
/// IDs are: that is Calico's notion of selector identity.
#[derive(Clone)]
pub struct Selector {
    expr: Expr,
    canonical: Box<str>,
    /// Computed up front rather than on first use: a lazily filled cell would give the type
    /// interior mutability, which makes it a poor map key, and hashing costs about as much as
    /// parsing a short selector.
    id: Box<str>,
}

impl Selector {
    /// Parses a selector. Empty or blank input is `all()`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parser::parse(s).map(Self::from_expr)
    }

    /// The selector that matches everything, `all()`.
    pub fn all() -> Self {
        Self::from_expr(Expr::All)
    }

    /// A selector from an AST built or rewritten by the caller. Its canonical string is the
    /// AST's rendering, so an AST that no parse could produce (an `And` of one operand) still
    /// gets a stable identity.
    pub fn from_expr(expr: Expr) -> Self {
        let canonical = expr.to_string();
        let id = id::make_unique_id("s", &canonical).into_boxed_str();
        Self {
            expr,
            canonical: canonical.into_boxed_str(),
            id,
        }
    }

    /// The root of the AST, for callers that need to walk it.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Calico's canonical string (its `String()`): the identity of the selector.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Calico's unique ID, `s:` + base64url(SHA-224(`s:` + canonical)); used to name IP sets.
    pub fn id(&self) -> String {
        self.id.to_string()
    }

    /// Evaluates the selector against a set of labels. Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.expr.matches(labels)
    }

    /// Per label, what the selector requires before it can match; labels it says nothing
    /// definite about are left out.
    pub fn label_restrictions(&self) -> BTreeMap<String, LabelRestriction> {
        label_restrictions(&self.expr)
    }

    /// True for `all()` and the empty selector, which match everything without looking at
    /// labels. Only that form counts: `global()` has a meaning of its own, and other
    /// tautologies such as `all() && all()` are not recognised.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// True if `global()` occurs anywhere; validation forbids it in most selector fields.
    pub fn uses_global(&self) -> bool {
        self.expr.uses_global()
    }
}

impl Default for Selector {
    /// `all()`, the meaning of an omitted selector.
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector").field(&self.canonical).finish()
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

#[cfg(test)]
mod tests;
