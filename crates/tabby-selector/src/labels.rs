//! Where selectors read label values from.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// A set of labels a selector can be evaluated against.
///
/// Implement it for merged views (an endpoint's own labels over its profiles' labels) to
/// evaluate without building a map first.
pub trait Labels {
    /// The value of label `key`, or `None` if the label is absent.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Key/value pairs; the first pair with a matching key wins.
impl Labels for [(String, String)] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Key/value pairs; the first pair with a matching key wins.
impl Labels for Vec<(String, String)> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_slice().get_label(key)
    }
}

/// Borrowed key/value pairs (handy for literals); the first pair with a matching key wins.
impl Labels for [(&str, &str)] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// Borrowed key/value pairs; the first pair with a matching key wins.
impl<const N: usize> Labels for [(&str, &str); N] {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_slice().get_label(key)
    }
}
