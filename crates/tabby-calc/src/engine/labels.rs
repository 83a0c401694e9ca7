//! Compact label sets for hundreds of thousands of endpoints: keys and values are interned, so
//! the label `projectcalico.org/namespace=shop` is stored once however many endpoints carry it.

use crate::engine::fast_hash::FastSet;
use std::sync::Arc;

use tabby_model::selector::Labels as SelectorLabels;
use tabby_model::values::Labels;

/// Interned strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: FastSet<Arc<str>>,
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
    #[cfg(test)]
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

    /// Interns a plain label map.
    pub(crate) fn from_labels(interner: &mut Interner, labels: &Labels) -> Self {
        // A BTreeMap iterates in key order already.
        Self(
            labels
                .iter()
                .map(|(k, v)| (interner.intern(k), interner.intern(v)))
                .collect(),
        )
    }

    /// `self` over `inherited`, in order of precedence: the first that has a key decides its
    /// value. All are sorted, so this is a merge with no hashing.
    pub(crate) fn layered(&self, inherited: &[Arc<Self>]) -> Self {
        let Some((first, rest)) = inherited.split_first() else {
            return self.clone();
        };
        let mut out = merge(&self.0, &first.0);
        for layer in rest {
            out = merge(&out, &layer.0);
        }
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

type Pair = (Arc<str>, Arc<str>);

/// Merges two key-sorted lists; `over` wins where both have a key.
fn merge(over: &[Pair], under: &[Pair]) -> Vec<Pair> {
    let mut out = Vec::with_capacity(over.len() + under.len());
    let (mut i, mut j) = (0, 0);
    while i < over.len() && j < under.len() {
        match over[i].0.cmp(&under[j].0) {
            std::cmp::Ordering::Less => {
                out.push(over[i].clone());
                i += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(over[i].clone());
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(under[j].clone());
                j += 1;
            }
        }
    }
    out.extend_from_slice(&over[i..]);
    out.extend_from_slice(&under[j..]);
    out
}
