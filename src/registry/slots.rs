//! Values by id for ids the ledger hands out itself, in order from 1 (users, and their stream
//! versions): a vector indexed by id, so there is no key, no hash and no spare half of a hash
//! map per entry (issue 7: at 200,000 users the registry's user map was 21 MiB). An id far
//! beyond the others (more than `DENSE_GAP_MAX` past the vector's end) or negative goes to a
//! map instead, so no id can make the vector huge.

use std::collections::HashMap;

/// How far past the dense vector's end an id may be and still extend it.
pub const DENSE_GAP_MAX: usize = 4_096;

#[derive(Debug, Clone)]
pub struct IdSlots<T> {
    dense: Vec<Option<T>>,
    sparse: HashMap<i64, T>,
    count: usize,
}

impl<T> Default for IdSlots<T> {
    fn default() -> Self {
        Self { dense: Vec::new(), sparse: HashMap::new(), count: 0 }
    }
}

impl<T: Clone> IdSlots<T> {
    pub fn get(&self, id: i64) -> Option<&T> {
        match usize::try_from(id) {
            Ok(slot) if slot < self.dense.len() => self.dense[slot].as_ref(),
            _ => self.sparse.get(&id),
        }
    }

    /// Puts `value` at `id`; returns the value it replaces.
    pub fn insert(&mut self, id: i64, value: T) -> Option<T> {
        let old = match usize::try_from(id) {
            Ok(slot) if slot < self.dense.len() => self.dense[slot].replace(value),
            Ok(slot) if slot <= self.dense.len() + DENSE_GAP_MAX => {
                // Ids below `dense.len()` are never in `sparse`: move the gap's ones over.
                let from = self.dense.len();
                self.dense.resize(slot + 1, None);
                for gap in from..slot {
                    self.dense[gap] = self.sparse.remove(&(gap as i64));
                }
                self.dense[slot] = Some(value);
                self.sparse.remove(&id)
            }
            _ => self.sparse.insert(id, value),
        };
        self.count += usize::from(old.is_none());
        old
    }

    pub fn remove(&mut self, id: i64) -> Option<T> {
        let old = match usize::try_from(id) {
            Ok(slot) if slot < self.dense.len() => self.dense[slot].take(),
            _ => self.sparse.remove(&id),
        };
        self.count -= usize::from(old.is_some());
        old
    }

    /// How many ids hold a value.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every (id, value) in ascending id order.
    pub fn sorted(&self) -> Vec<(i64, T)> {
        let mut entries: Vec<(i64, T)> = self
            .dense
            .iter()
            .enumerate()
            .filter_map(|(slot, value)| Some((slot as i64, value.clone()?)))
            .chain(self.sparse.iter().map(|(id, value)| (*id, value.clone())))
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        entries
    }

    pub fn shrink_to_fit(&mut self) {
        self.dense.shrink_to_fit();
        self.sparse.shrink_to_fit();
    }
}

impl<T: Clone> FromIterator<(i64, T)> for IdSlots<T> {
    fn from_iter<I: IntoIterator<Item = (i64, T)>>(entries: I) -> Self {
        let mut slots = Self::default();
        for (id, value) in entries {
            slots.insert(id, value);
        }
        slots.shrink_to_fit();
        slots
    }
}

/// Given values by id in the dense vector and beyond it, when they are put, replaced and
/// removed, then every lookup answers as a map of id → value would.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_slots_hold_dense_and_far_ids_alike() {
        let mut slots = IdSlots::default();
        for id in [1, 2, 3] {
            assert_eq!(slots.insert(id, format!("u{id}")), None);
        }
        let far = 1_000_000_000_000;
        slots.insert(far, "far".to_string());
        slots.insert(-5, "negative".to_string());
        // Beyond the vector but within the gap: first kept aside, then the vector grows over it.
        let aside = 3 + DENSE_GAP_MAX as i64 + 10;
        slots.insert(aside, "aside".to_string());
        slots.insert(10, "ten".to_string());
        assert_eq!(slots.insert(aside, "aside again".to_string()).as_deref(), Some("aside"));
        slots.insert(12 + DENSE_GAP_MAX as i64, "grows".to_string());
        assert_eq!(slots.len(), 8);
        assert_eq!(slots.get(far).map(String::as_str), Some("far"));
        assert_eq!(slots.get(-5).map(String::as_str), Some("negative"));
        assert_eq!(slots.get(aside).map(String::as_str), Some("aside again"));
        assert!(slots.sparse.keys().all(|id| usize::try_from(*id).map_or(true, |slot| slot >= slots.dense.len())));
        assert!(slots.dense.len() < 2 * DENSE_GAP_MAX + 32, "a far id never grows the vector");
        assert_eq!(slots.remove(2).as_deref(), Some("u2"));
        assert_eq!((slots.remove(2), slots.get(2), slots.len()), (None, None, 7));
        assert_eq!(slots.remove(far).as_deref(), Some("far"));
        assert_eq!((slots.get(far), slots.get(4), slots.get(i64::MIN)), (None, None, None));
        let sorted = slots.sorted();
        assert!(sorted.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(sorted.first().map(|(id, _)| *id), Some(-5));
        let rebuilt: IdSlots<String> = sorted.clone().into_iter().collect();
        assert_eq!(rebuilt.sorted(), sorted);
    }
}
