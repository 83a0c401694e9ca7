//! Loading files of resources: YAML or JSON, one document or many, `kind: List` (and
//! `…List` kinds, as kubectl and calicoctl print them). Every document is parsed, defaulted and
//! checked; the result is either every resource of the file or every error in it, so that a
//! caller can apply all or nothing.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::check::FieldIssue;
use crate::kind::Kind;
use crate::resource::{Resource, describe};
use crate::yaml::{YamlError, parse_documents};

/// How to load a file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace given to namespaced resources that name none (kubectl's `-n`, else `default`).
    pub default_namespace: String,
    /// When true, a document naming another namespace than `default_namespace` is an error
    /// (an explicit `-n` was given).
    pub enforce_namespace: bool,
    /// Fill in Calico's defaults (as its API server does on create).
    pub apply_defaults: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_owned(),
            enforce_namespace: false,
            apply_defaults: true,
        }
    }
}

/// A resource and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// 1-based document number in the file (items of a List count one each).
    pub document: usize,
    /// The resource, defaulted and checked.
    pub resource: Resource,
    /// Things accepted that the user should know about.
    pub warnings: Vec<FieldIssue>,
}

/// A problem with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentIssue {
    /// The file (or `-` for standard input).
    pub source: String,
    /// 1-based document number.
    pub document: usize,
    /// `Kind "name"` when known.
    pub object: Option<String>,
    /// The field and the reason.
    pub issue: FieldIssue,
}

impl fmt::Display for DocumentIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}: ", self.source, self.document)?;
        if let Some(obj) = &self.object {
            write!(f, "{obj}: ")?;
        }
        write!(f, "{}", self.issue)
    }
}

/// Why a file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid YAML or JSON.
    #[error("{file}: {error}")]
    Syntax {
        /// The file.
        file: String,
        /// Where and what.
        error: YamlError,
    },
    /// One or more documents are invalid; all of them are listed.
    #[error("{}", render_issues(.0))]
    Invalid(Vec<DocumentIssue>),
    /// The file holds no resources.
    #[error("{file}: no resources found")]
    Empty {
        /// The file.
        file: String,
    },
}

fn render_issues(issues: &[DocumentIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads raw documents from YAML or JSON text (JSON is YAML, but serde_json's messages are
/// clearer for JSON input, so text that starts like JSON is read as a JSON stream).
fn raw_documents(text: &str, source: &str) -> Result<Vec<(Value, usize)>, LoadError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            match item {
                Ok(Value::Array(items)) => out.extend(items.into_iter().map(|v| (v, 0))),
                Ok(v) => out.push((v, 0)),
                Err(e) => {
                    return Err(LoadError::Syntax {
                        file: source.to_owned(),
                        error: YamlError {
                            line: e.line(),
                            column: e.column(),
                            message: e.to_string(),
                        },
                    });
                }
            }
        }
        return Ok(out);
    }
    parse_documents(text)
        .map(|docs| docs.into_iter().map(|d| (d.value, d.line)).collect())
        .map_err(|error| LoadError::Syntax {
            file: source.to_owned(),
            error,
        })
}

/// Loads every resource of a file. All or nothing: any invalid document makes this an error
/// that lists every problem of every document.
pub fn load(text: &str, source: &str, opts: &LoadOptions) -> Result<Vec<Loaded>, LoadError> {
    let raw = raw_documents(text, source)?;
    let mut issues = Vec::new();
    let mut loaded = Vec::new();
    let mut document = 0;
    let issue =
        |document: usize, object: Option<String>, path: String, reason: String| DocumentIssue {
            source: source.to_owned(),
            document,
            object,
            issue: FieldIssue { path, reason },
        };
    for (value, _line) in raw {
        let items = match expand_list(value) {
            Ok(items) => items,
            Err(reason) => {
                document += 1;
                issues.push(issue(document, None, String::new(), reason));
                continue;
            }
        };
        for item in items {
            document += 1;
            match load_one(item, opts) {
                Ok((resource, warnings)) => loaded.push(Loaded {
                    document,
                    resource,
                    warnings,
                }),
                Err((object, errors)) => {
                    for e in errors {
                        issues.push(issue(document, object.clone(), e.path, e.reason));
                    }
                }
            }
        }
    }
    let mut first_seen: HashMap<(Kind, String, String), usize> = HashMap::new();
    for l in &loaded {
        let r = &l.resource;
        let key = (r.kind(), r.namespace().to_owned(), r.name().to_owned());
        if let Some(first) = first_seen.get(&key) {
            issues.push(issue(
                l.document,
                Some(r.describe()),
                "metadata.name".to_owned(),
                format!("the same object is already defined by document {first}"),
            ));
        } else {
            first_seen.insert(key, l.document);
        }
    }
    if !issues.is_empty() {
        issues.sort_by_key(|i| i.document);
        return Err(LoadError::Invalid(issues));
    }
    if loaded.is_empty() {
        return Err(LoadError::Empty {
            file: source.to_owned(),
        });
    }
    Ok(loaded)
}

/// Expands `kind: List` (and `FooList`) documents into their items.
fn expand_list(value: Value) -> Result<Vec<Value>, String> {
    let Value::Object(mut map) = value else {
        return Err("a document must be a mapping with apiVersion and kind".to_owned());
    };
    let is_list = map
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    if !is_list {
        return Ok(vec![Value::Object(map)]);
    }
    match map.remove("items") {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(_) => Err("items: a List's items must be a sequence".to_owned()),
    }
}

type DocFailure = (Option<String>, Vec<FieldIssue>);

fn load_one(value: Value, opts: &LoadOptions) -> Result<(Resource, Vec<FieldIssue>), DocFailure> {
    let fail = |object: Option<String>, path: &str, reason: String| {
        (
            object,
            vec![FieldIssue {
                path: path.to_owned(),
                reason,
            }],
        )
    };
    let Value::Object(mut map) = value else {
        return Err(fail(
            None,
            "",
            "a document must be a mapping with apiVersion and kind".into(),
        ));
    };
    // Name the object in messages even when the body does not parse.
    let meta = map.get("metadata");
    let raw_name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let raw_ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let raw_kind = map.get("kind").and_then(Value::as_str).map(str::to_owned);
    let api_version = match map.remove("apiVersion") {
        Some(Value::String(v)) => v,
        Some(_) => return Err(fail(raw_kind, "apiVersion", "must be a string".into())),
        None => return Err(fail(raw_kind, "apiVersion", "is required".into())),
    };
    let kind_name = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(_) => return Err(fail(None, "kind", "must be a string".into())),
        None => return Err(fail(None, "kind", "is required".into())),
    };
    let kind =
        Kind::from_type(&api_version, &kind_name).map_err(|reason| fail(None, "kind", reason))?;
    let mut resource = Resource::from_body(kind, Value::Object(map))
        .map_err(|e| (Some(describe(kind, &raw_ns, &raw_name)), vec![e]))?;

    let info = kind.info();
    let meta = resource.meta_mut();
    let mut errors = Vec::new();
    if info.namespaced {
        match &meta.namespace {
            None => meta.namespace = Some(opts.default_namespace.clone()),
            Some(ns) if opts.enforce_namespace && *ns != opts.default_namespace => {
                errors.push(FieldIssue {
                    path: "metadata.namespace".into(),
                    reason: format!(
                        "{ns:?} does not match the namespace {:?} given on the command line",
                        opts.default_namespace
                    ),
                })
            }
            Some(_) => {}
        }
    } else if let Some(ns) = &meta.namespace {
        errors.push(FieldIssue {
            path: "metadata.namespace".into(),
            reason: format!("{kind} is cluster-scoped and takes no namespace (found {ns:?})"),
        });
    }
    if opts.apply_defaults {
        resource.apply_defaults();
    }
    let (check_errors, warnings) = resource.check();
    errors.extend(check_errors);
    if errors.is_empty() {
        Ok((resource, warnings))
    } else {
        Err((Some(resource.describe()), errors))
    }
}

#[cfg(test)]
mod tests;
