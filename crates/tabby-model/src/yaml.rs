//! YAML in and out, through plain JSON values: documents are read into `serde_json::Value` so
//! that YAML and JSON take one path to typed resources (and one kind of field-path error).
//!
//! The loader is built on the parser's event stream rather than `YamlLoader`, to bound alias
//! expansion (a "billion laughs" file must not exhaust memory), to refuse duplicate keys, and
//! to know the line on which each document starts.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::{Event, Yaml, YamlEmitter};

/// Most nodes a file may expand to through aliases, far above any real manifest.
const MAX_NODES: usize = 5_000_000;

/// Deepest nesting accepted, as serde_json's limit: deeper values would overflow the stack
/// when later deserialised or dropped (both recurse).
const MAX_DEPTH: usize = 128;

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} column {column}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// Column as the parser reports it.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDocument {
    /// The document as a JSON value.
    pub value: Value,
    /// 1-based line where it starts.
    pub line: usize,
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

struct Builder {
    docs: Vec<YamlDocument>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    doc_line: usize,
    nodes: usize,
    error: Option<YamlError>,
}

fn err_at(mark: &Marker, message: impl Into<String>) -> YamlError {
    YamlError {
        line: mark.line(),
        column: mark.col() + 1,
        message: message.into(),
    }
}

fn scalar_value(v: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if style != TScalarStyle::Plain {
        return Ok(Value::String(v));
    }
    if let Some(tag) = tag
        && tag.handle == "tag:yaml.org,2002:"
        && tag.suffix == "str"
    {
        return Ok(Value::String(v));
    }
    Ok(match Yaml::from_str(&v) {
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => return Err(format!("{r:?} is not a finite number")),
        },
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::String(v),
    })
}

fn key_string(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".to_owned()),
        _ => Err("a mapping key must be a scalar".to_owned()),
    }
}

impl Builder {
    fn size_of(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(Self::size_of).sum::<usize>(),
            Value::Object(m) => 1 + m.values().map(Self::size_of).sum::<usize>(),
            _ => 1,
        }
    }

    fn insert(
        &mut self,
        value: Value,
        anchor: usize,
        weight: usize,
        mark: &Marker,
    ) -> Result<(), YamlError> {
        self.nodes += weight;
        if self.nodes > MAX_NODES {
            return Err(err_at(
                mark,
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            ));
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), weight));
        }
        match self.stack.last_mut() {
            None => self.docs.push(YamlDocument {
                value,
                line: self.doc_line,
            }),
            Some(Frame::Seq(items, _)) => items.push(value),
            Some(Frame::Map(map, key, _)) => match key.take() {
                None => *key = Some(key_string(value).map_err(|m| err_at(mark, m))?),
                Some(k) => {
                    if map.contains_key(&k) {
                        return Err(err_at(mark, format!("duplicate key {k:?} in mapping")));
                    }
                    map.insert(k, value);
                }
            },
        }
        Ok(())
    }

    fn handle(&mut self, ev: Event, mark: &Marker) -> Result<(), YamlError> {
        match ev {
            Event::DocumentStart => self.doc_line = mark.line(),
            Event::Scalar(v, style, anchor, tag) => {
                let value = scalar_value(v, style, tag.as_ref()).map_err(|m| err_at(mark, m))?;
                self.insert(value, anchor, 1, mark)?;
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                return Err(err_at(
                    mark,
                    format!("nesting deeper than {MAX_DEPTH} levels"),
                ));
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(Map::new(), None, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, a)) => (Value::Array(items), a),
                    Some(Frame::Map(map, _, a)) => (Value::Object(map), a),
                    None => return Err(err_at(mark, "unbalanced collection end")),
                };
                let weight = if anchor > 0 { Self::size_of(&value) } else { 0 };
                // Collections were counted node by node as they filled; only record the anchor.
                self.insert(value, anchor, 1, mark)?;
                if anchor > 0
                    && let Some(entry) = self.anchors.get_mut(&anchor)
                {
                    entry.1 = weight;
                }
            }
            Event::Alias(id) => {
                let Some((value, weight)) = self.anchors.get(&id).cloned() else {
                    return Err(err_at(mark, "alias to an unknown anchor"));
                };
                self.insert(value, 0, weight, mark)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_none()
            && let Err(e) = self.handle(ev, &mark)
        {
            self.error = Some(e);
        }
    }
}

/// Reads every document of a YAML stream. Empty documents (only comments) are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<YamlDocument>, YamlError> {
    let mut builder = Builder {
        docs: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        doc_line: 1,
        nodes: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder
        .docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .collect())
}

fn to_yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml).collect()),
        Value::Object(m) => Yaml::Hash(
            m.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v)))
                .collect(),
        ),
    }
}

/// Renders values as a YAML stream, one document each, separated by `---`.
pub fn to_yaml_string(values: &[Value]) -> String {
    let mut out = String::new();
    for v in values {
        let mut doc = String::new();
        let mut emitter = YamlEmitter::new(&mut doc);
        emitter.multiline_strings(true);
        // Writing into a String cannot fail.
        let _ = emitter.dump(&to_yaml(v));
        out.push_str(&doc);
        out.push('\n');
    }
    out
}

impl fmt::Display for YamlDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_yaml_string(std::slice::from_ref(&self.value)))
    }
}

#[cfg(test)]
mod tests;
