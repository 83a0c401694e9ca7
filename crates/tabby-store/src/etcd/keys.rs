//! The etcd key layout under a prefix `P`:
//!
//! - `P/schema`: the marker that says `P` is a tabby datastore, and its schema version;
//! - `P/compacted`: the revision up to which tabby compacted history (zero-padded decimal, so
//!   that etcd's byte comparison in a transaction is numeric);
//! - `P/resources/KIND/NAMESPACE/NAME`: one object (an empty namespace for cluster-scoped
//!   ones). `%` and `/` inside a part are escaped as `%25` and `%2F`, so any part round-trips.
//!
//! etcd orders keys by bytes, which is not the [`Key`] order once escapes or kinds that are
//! prefixes of others appear, so listings are sorted after reading.

use crate::Key;

/// The schema this build reads and writes, in `P/schema`.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The marker's value.
pub(crate) fn schema_value() -> String {
    format!("{{\"tabby_datastore\":{SCHEMA_VERSION}}}")
}

/// The schema version in a marker value, if it is one.
pub(crate) fn parse_schema(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value)
        .ok()?
        .trim()
        .strip_prefix("{\"tabby_datastore\":")?
        .strip_suffix('}')?
        .parse()
        .ok()
}

/// The compaction watermark's value.
pub(crate) fn compacted_value(revision: i64) -> String {
    format!("{revision:020}")
}

/// The revision in a watermark value.
pub(crate) fn parse_compacted(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The keys of one datastore.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    prefix: String,
}

impl Layout {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Everything of this datastore starts with this.
    pub(crate) fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub(crate) fn schema(&self) -> String {
        format!("{}/schema", self.prefix)
    }

    pub(crate) fn compacted(&self) -> String {
        format!("{}/compacted", self.prefix)
    }

    fn resources(&self) -> String {
        format!("{}/resources/", self.prefix)
    }

    /// The etcd key of an object.
    pub(crate) fn key(&self, key: &Key) -> String {
        format!(
            "{}{}/{}/{}",
            self.resources(),
            escape(&key.kind),
            escape(&key.namespace),
            escape(&key.name)
        )
    }

    /// The key prefix that selects a kind, or a kind in a namespace, or every object. A
    /// namespace without a kind cannot be one prefix; the caller filters.
    pub(crate) fn range(&self, kind: Option<&str>, namespace: Option<&str>) -> String {
        match (kind, namespace) {
            (Some(kind), Some(ns)) => {
                format!("{}{}/{}/", self.resources(), escape(kind), escape(ns))
            }
            (Some(kind), None) => format!("{}{}/", self.resources(), escape(kind)),
            (None, _) => self.resources(),
        }
    }

    /// The object an etcd key names, or `None` for a key that is not one of ours.
    pub(crate) fn parse(&self, etcd_key: &[u8]) -> Option<Key> {
        let text = std::str::from_utf8(etcd_key).ok()?;
        let rest = text.strip_prefix(&self.resources())?;
        let mut parts = rest.split('/');
        let (kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let key = Key::new(unescape(kind)?, unescape(namespace)?, unescape(name)?);
        key.invalid_reason().is_none().then_some(key)
    }
}

/// The end of the etcd range of keys starting with `prefix` (the prefix with its last byte
/// incremented), as etcd's own clients compute it.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (never for our prefixes): "\0" means "to the end of the key space".
    vec![0]
}

fn escape(part: &str) -> String {
    if !part.contains(['%', '/']) {
        return part.to_owned();
    }
    part.replace('%', "%25").replace('/', "%2F")
}

fn unescape(part: &str) -> Option<String> {
    if !part.contains('%') {
        return Some(part.to_owned());
    }
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("25") => out.push('%'),
            Some("2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}
