//! Which selectors match which labelled items, kept up to date as either side changes.
//!
//! Each selector is filed under the one label its restrictions say it needs that has the
//! fewest items (a `key == value` pair, else a key it needs present); only selectors with no
//! usable restriction are checked against every item. Items are filed under every label they
//! carry. So an item that changes is checked only against the selectors filed under its
//! labels (plus those it matched before), and a new selector only against the items filed
//! under its label: the cost follows the number of plausible matches, not the total.

use crate::engine::fast_hash::{FastMap, FastSet};
use std::hash::Hash;
use std::sync::Arc;

use tabby_model::selector::Selector;

use super::labels::LabelSet;

/// Handle of an item (an endpoint or a network set).
pub(crate) type ItemId = u32;

/// A match that started or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MatchChange<S> {
    pub(crate) selector: S,
    pub(crate) item: ItemId,
    pub(crate) matched: bool,
}

#[derive(Debug, Clone)]
enum Placement {
    /// Its restrictions contradict each other: it matches nothing.
    Never,
    /// Filed under each of these values of a label.
    Values(Arc<str>, Vec<Arc<str>>),
    /// Filed under a label it needs present.
    Key(Arc<str>),
    /// Checked against every item.
    Everywhere,
}

#[derive(Debug)]
struct SelectorEntry {
    selector: Selector,
    placement: Placement,
}

type ByLabel<T> = FastMap<Arc<str>, FastMap<Arc<str>, FastSet<T>>>;

/// The index. `S` names a selector (an IP set, a policy).
#[derive(Debug)]
pub(crate) struct LabelIndex<S> {
    selectors: FastMap<S, SelectorEntry>,
    selectors_by_value: ByLabel<S>,
    selectors_by_key: FastMap<Arc<str>, FastSet<S>>,
    selectors_everywhere: FastSet<S>,
    items: FastMap<ItemId, LabelSet>,
    items_by_label: ByLabel<ItemId>,
    /// Labels that some selector has needed: only these are filed, so labels no selector
    /// looks at (pod-template-hash, version, ...) cost nothing.
    indexed_keys: FastSet<Arc<str>>,
    matches: FastMap<S, FastSet<ItemId>>,
    matched_by: FastMap<ItemId, FastSet<S>>,
}

impl<S> Default for LabelIndex<S> {
    fn default() -> Self {
        Self {
            selectors: FastMap::default(),
            selectors_by_value: FastMap::default(),
            selectors_by_key: FastMap::default(),
            selectors_everywhere: FastSet::default(),
            items: FastMap::default(),
            items_by_label: FastMap::default(),
            indexed_keys: FastSet::default(),
            matches: FastMap::default(),
            matched_by: FastMap::default(),
        }
    }
}

fn file<T: Hash + Eq>(map: &mut ByLabel<T>, key: &Arc<str>, value: &Arc<str>, t: T) {
    map.entry(key.clone())
        .or_default()
        .entry(value.clone())
        .or_default()
        .insert(t);
}

fn unfile<T: Hash + Eq>(map: &mut ByLabel<T>, key: &str, value: &str, t: &T) {
    if let Some(values) = map.get_mut(key) {
        if let Some(set) = values.get_mut(value) {
            set.remove(t);
            if set.is_empty() {
                values.remove(value);
            }
        }
        if values.is_empty() {
            map.remove(key);
        }
    }
}

impl<S: Clone + Eq + Hash> LabelIndex<S> {
    /// Adds or replaces a selector, reporting the matches that change.
    pub(crate) fn upsert_selector(
        &mut self,
        id: S,
        selector: Selector,
        out: &mut Vec<MatchChange<S>>,
    ) {
        if let Some(old) = self.selectors.get(&id) {
            if old.selector == selector {
                return;
            }
            self.unplace(&id);
        }
        let restrictions = selector.label_restrictions();
        for (key, r) in &restrictions {
            if r.must_be_present {
                self.ensure_indexed(key);
            }
        }
        let placement = self.placement_for(&selector);
        // Every other `key in {values}` restriction narrows the candidates cheaply before the
        // selector itself is evaluated: a set lookup per candidate instead of a full match.
        let narrowing: Vec<Vec<&FastSet<ItemId>>> = restrictions
            .iter()
            .filter(|(key, _)| !matches!(&placement, Placement::Values(k, _) if **k == ***key))
            .filter_map(|(key, r)| {
                let values = r.allowed_values.as_ref().filter(|_| r.must_be_present)?;
                let postings = self.items_by_label.get(key.as_str());
                Some(
                    values
                        .iter()
                        .filter_map(|v| postings.and_then(|m| m.get(v.as_str())))
                        .collect(),
                )
            })
            .collect();
        let plausible = |item: &ItemId| {
            narrowing
                .iter()
                .all(|sets| sets.iter().any(|s| s.contains(item)))
        };
        let candidates: Vec<ItemId> = match &placement {
            Placement::Never => Vec::new(),
            Placement::Values(key, values) => values
                .iter()
                .filter_map(|v| self.items_by_label.get(key).and_then(|m| m.get(v)))
                .flatten()
                .copied()
                .collect(),
            Placement::Key(key) => self
                .items_by_label
                .get(key)
                .into_iter()
                .flat_map(|m| m.values().flatten())
                .copied()
                .collect(),
            Placement::Everywhere => self.items.keys().copied().collect(),
        };
        let now: FastSet<ItemId> = candidates
            .into_iter()
            .filter(|item| plausible(item) && selector.matches(&self.items[item]))
            .collect();
        self.place(&id, &placement);
        self.selectors.insert(
            id.clone(),
            SelectorEntry {
                selector,
                placement,
            },
        );
        let before = self.matches.remove(&id).unwrap_or_default();
        for item in before.difference(&now) {
            self.unlink(&id, *item);
            out.push(MatchChange {
                selector: id.clone(),
                item: *item,
                matched: false,
            });
        }
        for item in now.difference(&before) {
            self.matched_by.entry(*item).or_default().insert(id.clone());
            out.push(MatchChange {
                selector: id.clone(),
                item: *item,
                matched: true,
            });
        }
        if !now.is_empty() {
            self.matches.insert(id, now);
        }
    }

    /// Removes a selector, reporting the matches that end.
    pub(crate) fn remove_selector(&mut self, id: &S, out: &mut Vec<MatchChange<S>>) {
        if self.selectors.contains_key(id) {
            self.unplace(id);
            self.selectors.remove(id);
        }
        for item in self.matches.remove(id).unwrap_or_default() {
            self.unlink(id, item);
            out.push(MatchChange {
                selector: id.clone(),
                item,
                matched: false,
            });
        }
    }

    /// Adds or relabels an item, reporting the matches that change.
    pub(crate) fn upsert_item(
        &mut self,
        item: ItemId,
        labels: LabelSet,
        out: &mut Vec<MatchChange<S>>,
    ) {
        let old = self.items.remove(&item);
        if old.as_ref() == Some(&labels) {
            self.items.insert(item, labels);
            return;
        }
        let old = old.unwrap_or_default();
        self.refile(item, &old, &labels);
        let mut candidates: FastSet<S> = self.selectors_everywhere.clone();
        for (k, v) in labels.iter() {
            if let Some(set) = self.selectors_by_value.get(k).and_then(|m| m.get(v)) {
                candidates.extend(set.iter().cloned());
            }
            if let Some(set) = self.selectors_by_key.get(k) {
                candidates.extend(set.iter().cloned());
            }
        }
        let before = self.matched_by.remove(&item).unwrap_or_default();
        candidates.extend(before.iter().cloned());
        let now: FastSet<S> = candidates
            .into_iter()
            .filter(|s| self.selectors[s].selector.matches(&labels))
            .collect();
        for s in before.difference(&now) {
            if let Some(set) = self.matches.get_mut(s) {
                set.remove(&item);
                if set.is_empty() {
                    self.matches.remove(s);
                }
            }
            out.push(MatchChange {
                selector: s.clone(),
                item,
                matched: false,
            });
        }
        for s in now.difference(&before) {
            self.matches.entry(s.clone()).or_default().insert(item);
            out.push(MatchChange {
                selector: s.clone(),
                item,
                matched: true,
            });
        }
        if !now.is_empty() {
            self.matched_by.insert(item, now);
        }
        self.items.insert(item, labels);
    }

    /// Files an item under its new labels; both sets are sorted by key, so only the pairs
    /// that changed are touched.
    fn refile(&mut self, item: ItemId, old: &LabelSet, new: &LabelSet) {
        let indexed = &self.indexed_keys;
        let by_label = &mut self.items_by_label;
        let (mut a, mut b) = (
            old.iter().filter(|(k, _)| indexed.contains(*k)).peekable(),
            new.iter().filter(|(k, _)| indexed.contains(*k)).peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                    if va != vb {
                        unfile(by_label, ka, va, &item);
                        file(by_label, kb, vb, item);
                    }
                    a.next();
                    b.next();
                }
                (Some((ka, va)), Some((kb, _))) if ka < kb => {
                    unfile(by_label, ka, va, &item);
                    a.next();
                }
                (Some((ka, va)), None) => {
                    unfile(by_label, ka, va, &item);
                    a.next();
                }
                (_, Some((kb, vb))) => {
                    file(by_label, kb, vb, item);
                    b.next();
                }
            }
        }
    }

    /// Starts filing items under a label, the first time a selector needs it.
    fn ensure_indexed(&mut self, key: &str) {
        if self.indexed_keys.contains(key) {
            return;
        }
        let key: Arc<str> = Arc::from(key);
        for (item, labels) in &self.items {
            if let Some(v) = labels.get(&key) {
                file(&mut self.items_by_label, &key, v, *item);
            }
        }
        self.indexed_keys.insert(key);
    }

    /// Removes an item, reporting the matches that end.
    pub(crate) fn remove_item(&mut self, item: ItemId, out: &mut Vec<MatchChange<S>>) {
        let Some(old) = self.items.remove(&item) else {
            return;
        };
        for (k, v) in old.iter().filter(|(k, _)| self.indexed_keys.contains(*k)) {
            unfile(&mut self.items_by_label, k, v, &item);
        }
        for s in self.matched_by.remove(&item).unwrap_or_default() {
            if let Some(set) = self.matches.get_mut(&s) {
                set.remove(&item);
                if set.is_empty() {
                    self.matches.remove(&s);
                }
            }
            out.push(MatchChange {
                selector: s,
                item,
                matched: false,
            });
        }
    }

    /// Items a selector matches.
    pub(crate) fn matches_of(&self, id: &S) -> impl Iterator<Item = ItemId> + '_ {
        self.matches.get(id).into_iter().flatten().copied()
    }

    /// Whether a selector matches anything.
    pub(crate) fn has_matches(&self, id: &S) -> bool {
        self.matches.contains_key(id)
    }

    /// Selectors that match an item.
    pub(crate) fn matched_by(&self, item: ItemId) -> impl Iterator<Item = &S> + '_ {
        self.matched_by.get(&item).into_iter().flatten()
    }

    /// How many items carry a label (with the given value, or any value).
    fn population(&self, key: &str, value: Option<&str>) -> usize {
        let Some(values) = self.items_by_label.get(key) else {
            return 0;
        };
        match value {
            Some(v) => values.get(v).map_or(0, |s| s.len()),
            None => values.values().map(|s| s.len()).sum(),
        }
    }

    fn placement_for(&self, selector: &Selector) -> Placement {
        let restrictions = selector.label_restrictions();
        if restrictions.values().any(|r| !r.is_satisfiable()) {
            return Placement::Never;
        }
        let mut best: Option<(usize, Placement)> = None;
        for (key, r) in &restrictions {
            if !r.must_be_present {
                continue;
            }
            let (cost, placement) = match &r.allowed_values {
                Some(values) => (
                    values
                        .iter()
                        .map(|v| self.population(key, Some(v)))
                        .sum::<usize>(),
                    Placement::Values(
                        Arc::from(key.as_str()),
                        values.iter().map(|v| Arc::from(v.as_str())).collect(),
                    ),
                ),
                None => (
                    self.population(key, None),
                    Placement::Key(Arc::from(key.as_str())),
                ),
            };
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, placement));
            }
        }
        best.map_or(Placement::Everywhere, |(_, p)| p)
    }

    fn place(&mut self, id: &S, placement: &Placement) {
        match placement {
            Placement::Never => {}
            Placement::Values(key, values) => {
                for v in values {
                    file(&mut self.selectors_by_value, key, v, id.clone());
                }
            }
            Placement::Key(key) => {
                self.selectors_by_key
                    .entry(key.clone())
                    .or_default()
                    .insert(id.clone());
            }
            Placement::Everywhere => {
                self.selectors_everywhere.insert(id.clone());
            }
        }
    }

    fn unplace(&mut self, id: &S) {
        let Some(entry) = self.selectors.get(id) else {
            return;
        };
        match entry.placement.clone() {
            Placement::Never => {}
            Placement::Values(key, values) => {
                for v in values {
                    unfile(&mut self.selectors_by_value, &key, &v, id);
                }
            }
            Placement::Key(key) => {
                if let Some(set) = self.selectors_by_key.get_mut(&key) {
                    set.remove(id);
                    if set.is_empty() {
                        self.selectors_by_key.remove(&key);
                    }
                }
            }
            Placement::Everywhere => {
                self.selectors_everywhere.remove(id);
            }
        }
    }

    fn unlink(&mut self, id: &S, item: ItemId) {
        if let Some(set) = self.matched_by.get_mut(&item) {
            set.remove(id);
            if set.is_empty() {
                self.matched_by.remove(&item);
            }
        }
    }
}

#[cfg(test)]
mod tests;
