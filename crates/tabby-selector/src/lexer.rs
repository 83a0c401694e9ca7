//! Tokenizer for the selector language.
//!
//! Works on bytes: every position where the input is split holds an ASCII byte, so slicing the
//! `&str` there can never land inside a multi-byte character.

use crate::ParseError;

/// Longest label key the language accepts, in bytes (Calico's `MaxLabelLength`).
pub const MAX_LABEL_LEN: usize = 512;

/// What a token is; identifiers and string literals borrow from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Label(&'a str),
    Str(&'a str),
    Has(&'a str),
    All,
    Global,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Eof,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Label(l) => format!("label {l:?}"),
            Self::Str(s) => format!("string {s:?}"),
            Self::Has(l) => format!("\"has({l})\""),
            Self::All => "\"all()\"".to_owned(),
            Self::Global => "\"global()\"".to_owned(),
            Self::LParen => "\"(\"".to_owned(),
            Self::RParen => "\")\"".to_owned(),
            Self::LBrace => "\"{\"".to_owned(),
            Self::RBrace => "\"}\"".to_owned(),
            Self::Comma => "\",\"".to_owned(),
            Self::Eq => "\"==\"".to_owned(),
            Self::Ne => "\"!=\"".to_owned(),
            Self::Not => "\"!\"".to_owned(),
            Self::And => "\"&&\"".to_owned(),
            Self::Or => "\"||\"".to_owned(),
            Self::In => "\"in\"".to_owned(),
            Self::NotIn => "\"not in\"".to_owned(),
            Self::Contains => "\"contains\"".to_owned(),
            Self::StartsWith => "\"starts with\"".to_owned(),
            Self::EndsWith => "\"ends with\"".to_owned(),
            Self::Eof => "end of selector".to_owned(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok<'a>,
    pub(crate) pos: usize,
}

/// Splits `input` into tokens, always ending with [`Tok::Eof`].
///
/// The whole input is tokenized before parsing starts, as Calico does, so a lexical error wins
/// over a grammatical one earlier in the input.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut lx = Lexer {
        input,
        bytes: input.as_bytes(),
        pos: 0,
    };
    let mut tokens: Vec<Token<'_>> = Vec::with_capacity(input.len() / 3 + 2);
    loop {
        lx.skip_whitespace();
        let start = lx.pos;
        let Some(&b) = lx.bytes.get(start) else {
            tokens.push(Token {
                tok: Tok::Eof,
                pos: start,
            });
            return Ok(tokens);
        };
        // After a label only an operator may follow, so words lex differently there.
        let last_label = match tokens.last() {
            Some(Token {
                tok: Tok::Label(label),
                ..
            }) => Some(*label),
            _ => None,
        };
        let tok = match b {
            b'(' => lx.single(Tok::LParen),
            b')' => lx.single(Tok::RParen),
            b'{' => lx.single(Tok::LBrace),
            b'}' => lx.single(Tok::RBrace),
            b',' => lx.single(Tok::Comma),
            b'"' | b'\'' => lx.string_literal(b)?,
            b'=' => lx.double(b'=', Tok::Eq, "expected ==")?,
            b'&' => lx.double(b'&', Tok::And, "expected &&")?,
            b'|' => lx.double(b'|', Tok::Or, "expected ||")?,
            b'!' => {
                if lx.bytes.get(start + 1) == Some(&b'=') {
                    lx.pos += 2;
                    Tok::Ne
                } else {
                    lx.single(Tok::Not)
                }
            }
            _ => match last_label {
                Some(label) => lx.operator_word(label)?,
                None => lx.word()?,
            },
        };
        tokens.push(Token { tok, pos: start });
    }
}

struct Lexer<'a> {
    input: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn at_word_boundary(&self) -> bool {
        self.bytes.get(self.pos).is_none_or(|&b| !is_ident_byte(b))
    }

    /// Consumes `word` if the input continues with it (no boundary check).
    fn eat(&mut self, word: &str) -> bool {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn single(&mut self, tok: Tok<'a>) -> Tok<'a> {
        self.pos += 1;
        tok
    }

    /// `==`, `&&` and `||`: the first byte alone is an error.
    fn double(&mut self, second: u8, tok: Tok<'a>, message: &str) -> Result<Tok<'a>, ParseError> {
        if self.bytes.get(self.pos + 1) == Some(&second) {
            self.pos += 2;
            Ok(tok)
        } else {
            Err(ParseError::new(self.pos, message))
        }
    }

    /// A quoted literal with no escapes: it ends at the next matching quote.
    fn string_literal(&mut self, quote: u8) -> Result<Tok<'a>, ParseError> {
        let start = self.pos;
        let body_start = start + 1;
        let Some(len) = self.bytes[body_start..].iter().position(|&b| b == quote) else {
            return Err(ParseError::new(start, "unterminated string"));
        };
        let end = body_start + len;
        self.pos = end + 1;
        Ok(Tok::Str(&self.input[body_start..end]))
    }

    /// A run of identifier bytes of 1..=512 bytes.
    fn identifier(&mut self) -> Result<&'a str, ParseError> {
        let start = self.pos;
        let len = self.bytes[start..]
            .iter()
            .take_while(|&&b| is_ident_byte(b))
            .count();
        if len == 0 {
            return Err(ParseError::new(start, "expected identifier"));
        }
        if len > MAX_LABEL_LEN {
            return Err(ParseError::new(
                start,
                format!("label too long: {len} bytes, at most {MAX_LABEL_LEN} allowed"),
            ));
        }
        self.pos = start + len;
        Ok(&self.input[start..self.pos])
    }

    /// Whatever may start an operand: `has(..)`, `all()`, `global()` or a label.
    fn word(&mut self) -> Result<Tok<'a>, ParseError> {
        if self.eat("has(") {
            self.skip_whitespace();
            let label = self.identifier()?;
            self.skip_whitespace();
            if !self.eat(")") {
                return Err(ParseError::new(self.pos, "no closing ')' after has("));
            }
            return Ok(Tok::Has(label));
        }
        for (word, tok, message) in [
            ("all(", Tok::All, "no closing ')' after all("),
            ("global(", Tok::Global, "no closing ')' after global("),
        ] {
            if self.eat(word) {
                self.skip_whitespace();
                if !self.eat(")") {
                    return Err(ParseError::new(self.pos, message));
                }
                return Ok(tok);
            }
        }
        self.identifier().map(Tok::Label)
    }

    /// After a label only a word operator may follow (`==` and `!=` were handled as punctuation).
    /// Keywords are contextual, so `contains contains "contains"` lexes as label, operator,
    /// string.
    fn operator_word(&mut self, label: &str) -> Result<Tok<'a>, ParseError> {
        const OPERATORS: [(&[&str], Tok<'static>); 5] = [
            (&["contains"], Tok::Contains),
            (&["starts", "with"], Tok::StartsWith),
            (&["ends", "with"], Tok::EndsWith),
            (&["not", "in"], Tok::NotIn),
            (&["in"], Tok::In),
        ];
        let start = self.pos;
        for (words, tok) in OPERATORS {
            if self.eat_operator(words) {
                return Ok(tok);
            }
            self.pos = start;
        }
        Err(ParseError::new(
            start,
            format!("expected operator after label {label:?}"),
        ))
    }

    /// Matches the words of one operator. Any run of spaces and tabs (including none) may follow
    /// each word, and a word boundary must follow the last run: Calico trims before it checks, so
    /// `starts with b` is rejected while `in b` lexes (and fails later in the parser).
    fn eat_operator(&mut self, words: &[&str]) -> bool {
        for word in words {
            if !self.eat(word) {
                return false;
            }
            if words.len() > 1 {
                self.skip_whitespace();
            }
        }
        self.at_word_boundary()
    }
}

/// `[a-zA-Z0-9_./-]`
pub(crate) const fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

#[cfg(test)]
mod tests;
