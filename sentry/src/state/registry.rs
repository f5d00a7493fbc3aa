//! Object identity across a checkpoint.
//!
//! Kernel objects are shared through `Arc`s: one open file description in several fd
//! tables, one fd table or address space in several threads, one pipe behind two ends.
//! Saving gives each shared object a small id the first time it is met (keyed by its
//! address, which is stable while the frozen sandbox holds it) and saves it once;
//! restoring builds each id once and hands out clones of the same `Arc`, so sharing
//! comes back as it was.

use std::collections::HashMap;
use std::sync::Arc;

use super::StateError;

/// Saving: ids by object address, and the saved form of each id.
pub struct SaveTable<S> {
    ids: HashMap<usize, u32>,
    saved: Vec<Option<S>>,
}

impl<S> Default for SaveTable<S> {
    fn default() -> Self {
        SaveTable {
            ids: HashMap::new(),
            saved: Vec::new(),
        }
    }
}

/// The key of a shared object: its address (metadata of a `dyn` pointer dropped).
pub fn key_of<T: ?Sized>(obj: &Arc<T>) -> usize {
    Arc::as_ptr(obj) as *const () as usize
}

impl<S> SaveTable<S> {
    /// The id already given to the object at `key`.
    pub fn get(&self, key: usize) -> Option<u32> {
        self.ids.get(&key).copied()
    }

    /// A new id for the object at `key`, to be filled by [`SaveTable::fill`] once its
    /// state is made (reserving first lets saving it meet it again: a cycle gets the id).
    pub fn reserve(&mut self, key: usize) -> u32 {
        let id = self.saved.len() as u32;
        self.ids.insert(key, id);
        self.saved.push(None);
        id
    }

    pub fn fill(&mut self, id: u32, state: S) {
        if let Some(slot) = self.saved.get_mut(id as usize) {
            *slot = Some(state);
        }
    }

    /// The saved states in id order. A reserved id never filled (its save failed, so
    /// the checkpoint failed too) cannot occur in a finished checkpoint.
    pub fn into_states(self) -> Vec<S> {
        self.saved.into_iter().flatten().collect()
    }
}

/// Restoring: the saved states by id, each built at most once.
pub struct RestoreTable<S, T: ?Sized> {
    what: &'static str,
    states: Vec<Option<S>>,
    built: Vec<Option<Arc<T>>>,
}

impl<S, T: ?Sized> RestoreTable<S, T> {
    pub fn new(what: &'static str, states: Vec<S>) -> Self {
        let n = states.len();
        RestoreTable {
            what,
            states: states.into_iter().map(Some).collect(),
            built: (0..n).map(|_| None).collect(),
        }
    }

    /// The object `id` if it is built already.
    pub fn built(&self, id: u32) -> Option<Arc<T>> {
        self.built.get(id as usize).and_then(|b| b.clone())
    }

    /// Take the saved state of `id` to build it (exactly once; a second take while the
    /// first build runs is a cycle the saved form cannot have).
    pub fn take(&mut self, id: u32) -> Result<S, StateError> {
        let what = self.what;
        self.states
            .get_mut(id as usize)
            .ok_or_else(|| StateError::invalid(format!("{what} {id} does not exist")))?
            .take()
            .ok_or_else(|| StateError::invalid(format!("{what} {id} refers to itself")))
    }

    pub fn put(&mut self, id: u32, obj: Arc<T>) {
        if let Some(slot) = self.built.get_mut(id as usize) {
            *slot = Some(obj);
        }
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_objects_get_one_id() {
        let a = Arc::new(1u8);
        let b = Arc::new(2u8);
        let mut t: SaveTable<u8> = SaveTable::default();
        let ia = t.reserve(key_of(&a));
        t.fill(ia, 1);
        assert_eq!(t.get(key_of(&a.clone())), Some(ia));
        assert_eq!(t.get(key_of(&b)), None);
        let ib = t.reserve(key_of(&b));
        t.fill(ib, 2);
        assert_eq!(t.into_states(), vec![1, 2]);
    }

    #[test]
    fn restore_builds_each_id_once_and_refuses_bad_ids() {
        let mut r: RestoreTable<u8, u8> = RestoreTable::new("file", vec![7]);
        assert_eq!(r.take(0).expect("state"), 7);
        assert!(r.take(0).is_err(), "a second take is a cycle");
        assert!(r.take(5).is_err(), "no such id");
        r.put(0, Arc::new(7));
        assert_eq!(r.built(0).as_deref(), Some(&7));
    }
}
