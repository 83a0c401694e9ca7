//! The validation walker: tracks the field path while a resource is checked, and collects every
//! problem rather than stopping at the first, so one run of `tabby apply` lists them all.

use std::fmt;

/// One problem found in a resource, at a field path such as `spec.ingress[0].action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    /// Dotted field path with `[i]` list indices; empty for the document as a whole.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub reason: String,
}

impl fmt::Display for FieldIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Field(String),
    Index(usize),
}

/// Walks a resource, remembering where it is, and collects errors and warnings.
#[derive(Debug, Default)]
pub struct Checker {
    path: Vec<Segment>,
    errors: Vec<FieldIssue>,
    warnings: Vec<FieldIssue>,
}

impl Checker {
    /// A checker at the document root.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the path extended by a field name.
    pub fn field<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Segment::Field(name.to_owned()));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` with the path extended by a list index.
    pub fn item<R>(&mut self, index: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Segment::Index(index));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` on each element of an optional list, under `name[i]`.
    pub fn each<T>(&mut self, name: &str, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.field(name, |c| {
            for (i, item) in items.iter().enumerate() {
                c.item(i, |c| f(c, item));
            }
        });
    }

    /// Records an error at the current path.
    pub fn error(&mut self, reason: impl Into<String>) {
        let path = self.render_path();
        self.errors.push(FieldIssue {
            path,
            reason: reason.into(),
        });
    }

    /// Records an error at a field below the current path.
    pub fn error_at(&mut self, field: &str, reason: impl Into<String>) {
        self.field(field, |c| c.error(reason));
    }

    /// Records a warning (accepted, but the user should know) at the current path.
    pub fn warn(&mut self, reason: impl Into<String>) {
        let path = self.render_path();
        self.warnings.push(FieldIssue {
            path,
            reason: reason.into(),
        });
    }

    /// Whether any error has been recorded so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The collected errors and warnings.
    pub fn finish(self) -> (Vec<FieldIssue>, Vec<FieldIssue>) {
        (self.errors, self.warnings)
    }

    fn render_path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_fields_and_indices() {
        let mut c = Checker::new();
        c.field("spec", |c| {
            c.field("ingress", |c| {
                c.item(0, |c| c.error_at("destination", "bad"));
            })
        });
        c.error("top");
        let (errors, _) = c.finish();
        assert_eq!(errors[0].to_string(), "spec.ingress[0].destination: bad");
        assert_eq!(errors[1].to_string(), "top");
    }
}
