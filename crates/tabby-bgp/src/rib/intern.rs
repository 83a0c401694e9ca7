//! One shared copy of each distinct set of path attributes. A peer's 100,000 routes typically
//! carry a handful of attribute sets (BIRD packs hundreds of prefixes per UPDATE, and every
//! route this node originates or exports to one neighbour looks alike), so the RIBs hold
//! pointers into this set instead of a copy per route.

use std::collections::HashSet;
use std::sync::Arc;

use crate::wire::PathAttrs;

/// Interned attribute sets; entries nobody else points to any more are dropped when the set
/// has doubled since its last sweep, so its size follows the live routes' distinct sets.
#[derive(Debug)]
pub(crate) struct Interner {
    set: HashSet<Arc<PathAttrs>>,
    sweep_at: usize,
}

/// The smallest size at which a sweep happens (sweeping a few entries is not worth a pass).
const MIN_SWEEP: usize = 1024;

impl Default for Interner {
    fn default() -> Self {
        Self {
            set: HashSet::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

impl Interner {
    /// The shared copy of `attrs`.
    pub(crate) fn intern(&mut self, attrs: PathAttrs) -> Arc<PathAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return a.clone();
        }
        self.insert(Arc::new(attrs))
    }

    /// The shared copy of what `attrs` points to (`attrs` itself when it is the first).
    pub(crate) fn intern_arc(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some(a) = self.set.get(&*attrs) {
            return a.clone();
        }
        self.insert(attrs)
    }

    fn insert(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = (self.set.len() * 2).max(MIN_SWEEP);
        }
        self.set.insert(attrs.clone());
        attrs
    }

    /// Distinct attribute sets held (some may no longer be used until the next sweep).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}
