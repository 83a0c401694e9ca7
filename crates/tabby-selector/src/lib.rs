//! Calico's label selector language: parsing, canonical form, unique ID, evaluation against
//! labels, and per-label restrictions for indexing.
//!
//! This crate owns the selector language and nothing else: it does no I/O, keeps no global
//! state and knows nothing about the resources selectors appear in. Behaviour follows
//! libcalico-go exactly (see `reference/calico-facts.md` section 4), so canonical strings and
//! IDs agree with Calico's.
//!
//! Key types:
//! - [`Selector`]: a parsed selector with its cached canonical string; [`Selector::parse`],
//!   [`Selector::matches`], [`Selector::id`], [`Selector::label_restrictions`].
//! - [`Expr`]: the public AST, for callers that walk selectors.
//! - [`Labels`]: what selectors are evaluated against.
//! - [`LabelRestriction`]: what a selector needs of one label.
//! - [`ParseError`]: why a string was rejected, with a byte position.

mod error;
mod expr;
mod id;
mod labels;
mod lexer;
mod parser;
mod restriction;
mod selector;

pub use self::error::ParseError;
pub use self::expr::Expr;
pub use self::id::make_unique_id as unique_id;
pub use self::labels::Labels;
pub use self::lexer::MAX_LABEL_LEN;
pub use self::parser::MAX_NESTING;
pub use self::restriction::LabelRestriction;
pub use self::selector::Selector;
