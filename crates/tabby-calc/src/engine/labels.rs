//! Compact label sets for hundreds of thousands of endpoints: keys and values are interned, so
//! the label `projectcalico.org/namespace=shop` is stored once however many endpoints carry it.

use std::collections::HashSet;
use std::sync::Arc;

use tabby_model::selector::Labels as SelectorLabels;
use tabby_model::values::Labels;

/// Interned strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let new: Arc<str> = Arc::from(s);
        self.strings.insert(new.clone());
        new
    }

    /// Forgets strings nobody else holds, so that churn does not grow the table for ever.
    pub(crate) fn collect_garbage(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// Labels sorted by key, with interned strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct LabelSet(Box<[(Arc<str>, Arc<str>)]>);

impl LabelSet {
    /// `layers` in order of precedence: the first layer that has a key decides its value.
    pub(crate) fn merged<'a>(
        interner: &mut Interner,
        layers: impl IntoIterator<Item = &'a Labels>,
    ) -> Self {
        let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        for layer in layers {
            for (k, v) in layer {
                if out.iter().all(|(have, _)| **have != **k) {
                    out.push((interner.intern(k), interner.intern(v)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Self(out.into_boxed_slice())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Arc<str>> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }
}

impl SelectorLabels for LabelSet {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(|v| &**v)
    }
}
