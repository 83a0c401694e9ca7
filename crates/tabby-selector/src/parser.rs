//! Recursive-descent parser from tokens to [`Expr`].

use std::collections::BTreeSet;

use crate::lexer::{Tok, Token, tokenize};
use crate::{Expr, ParseError};

/// Deepest parenthesis nesting accepted.
///
/// Calico has no limit (Go stacks grow); ours do not, and the parser, the evaluator and the
/// renderer all recurse once per level. No real selector comes near this.
pub const MAX_NESTING: usize = 128;

/// Parses a whole selector; empty (or blank) input is `all()`.
pub(crate) fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens: &tokens,
        next: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Ok(Expr::All);
    }
    let expr = p.or_expr()?;
    let rest = p.peek();
    if rest.tok != Tok::Eof {
        return Err(ParseError::new(
            rest.pos,
            format!(
                "unexpected {} after a complete expression",
                rest.tok.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser<'a, 't> {
    tokens: &'t [Token<'a>],
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a, '_> {
    /// The token stream always ends with `Eof`, which is never consumed, so this never runs
    /// past the end; the fallback only keeps indexing panic-free.
    fn peek(&self) -> Token<'a> {
        self.tokens.get(self.next).copied().unwrap_or(Token {
            tok: Tok::Eof,
            pos: 0,
        })
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.peek();
        if t.tok != Tok::Eof {
            self.next += 1;
        }
        t
    }

    /// `and_expr ("||" and_expr)*`
    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.and_expr()?;
        if self.peek().tok != Tok::Or {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek().tok == Tok::Or {
            self.bump();
            operands.push(self.and_expr()?);
        }
        Ok(Expr::Or(operands))
    }

    /// `operation ("&&" operation)*`
    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.operation()?;
        if self.peek().tok != Tok::And {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.peek().tok == Tok::And {
            self.bump();
            operands.push(self.operation()?);
        }
        Ok(Expr::And(operands))
    }

    /// `"!"* primary`. A run of `!` tokens collapses by parity; a `!` inside parentheses starts
    /// a new run, so `!(!has(a))` keeps both negations, as Calico does.
    fn operation(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let t = self.bump();
        let expr = match t.tok {
            Tok::Has(label) => Expr::Has(label.to_owned()),
            Tok::All => Expr::All,
            Tok::Global => Expr::Global,
            Tok::Label(label) => self.comparison(label)?,
            Tok::LParen => self.group(t.pos)?,
            Tok::Eof => return Err(ParseError::new(t.pos, "unexpected end of selector")),
            other => {
                return Err(ParseError::new(
                    t.pos,
                    format!("unexpected {}", other.describe()),
                ));
            }
        };
        Ok(if negated {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    fn group(&mut self, open_pos: usize) -> Result<Expr, ParseError> {
        if self.depth >= MAX_NESTING {
            return Err(ParseError::new(
                open_pos,
                format!("selector nested too deeply: more than {MAX_NESTING} levels"),
            ));
        }
        self.depth += 1;
        let inner = self.or_expr()?;
        self.depth -= 1;
        let close = self.bump();
        if close.tok != Tok::RParen {
            return Err(ParseError::new(
                close.pos,
                format!("expected ) but found {}", close.tok.describe()),
            ));
        }
        Ok(inner)
    }

    /// `label <op> "value"` or `label [not] in {...}`.
    fn comparison(&mut self, label: &str) -> Result<Expr, ParseError> {
        let op = self.bump();
        let label = label.to_owned();
        let make: fn(String, String) -> Expr = match op.tok {
            Tok::Eq => |label, value| Expr::Equals { label, value },
            Tok::Ne => |label, value| Expr::NotEquals { label, value },
            Tok::Contains => |label, value| Expr::Contains { label, value },
            Tok::StartsWith => |label, value| Expr::StartsWith { label, value },
            Tok::EndsWith => |label, value| Expr::EndsWith { label, value },
            Tok::In => {
                return Ok(Expr::In {
                    label,
                    values: self.set_literal()?,
                });
            }
            Tok::NotIn => {
                return Ok(Expr::NotIn {
                    label,
                    values: self.set_literal()?,
                });
            }
            other => {
                return Err(ParseError::new(
                    op.pos,
                    format!(
                        "expected operator after label {label:?} but found {}",
                        other.describe()
                    ),
                ));
            }
        };
        let value = self.bump();
        match value.tok {
            Tok::Str(s) => Ok(make(label, s.to_owned())),
            other => Err(ParseError::new(
                value.pos,
                format!(
                    "expected string after {} but found {}",
                    op.tok.describe(),
                    other.describe()
                ),
            )),
        }
    }

    /// `"{" [STRING ("," STRING)* [","]] "}"`
    fn set_literal(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let open = self.bump();
        if open.tok != Tok::LBrace {
            return Err(ParseError::new(
                open.pos,
                format!("expected set literal but found {}", open.tok.describe()),
            ));
        }
        let mut values = BTreeSet::new();
        while let Tok::Str(s) = self.peek().tok {
            self.bump();
            values.insert(s.to_owned());
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.bump();
        }
        let close = self.bump();
        if close.tok != Tok::RBrace {
            return Err(ParseError::new(
                close.pos,
                format!("expected }} but found {}", close.tok.describe()),
            ));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests;
