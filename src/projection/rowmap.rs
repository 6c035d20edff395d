//! Rows by id, for ids the ledger hands out itself in order from 1 (`enrol` and
//! `user_enrolments` in the projection fold, the writer's open streams): ids are grouped in
//! pages of `PAGE` consecutive ids, and each page holds only its present rows, packed in id
//! order beside their 16-bit offsets. A full page costs its rows' size and two bytes a row: an
//! ordered map grown by ascending inserts keeps its nodes about half full (issue 7: the fold of
//! 1.2 million rows took 213 MiB, 177 bytes a row), a vector indexed by id keeps a slot for
//! every id ever handed out, and one grown by doubling may hold twice what it needs. A page is
//! allocated whole when its first row comes (ids arrive in order, so it fills); removed rows
//! give their space back when a page is three-quarters empty, so memory stays within four
//! times the rows held (plus one page), never the ids handed out. Putting or removing a row
//! moves at most one page's rows.
//!
//! An id far beyond the pages (more than `GAP_PAGES` pages past the end) or negative goes to
//! an ordered side map instead, so no id can make the page table huge. Iteration is in
//! ascending id order, as the tables' keys are compared and loaded.

use std::collections::BTreeMap;

/// Ids per page.
const PAGE: usize = 1_024;

/// How many pages past the end an id may be and still extend the page table.
const GAP_PAGES: usize = 4;

/// The rows of one page, in offset order.
#[derive(Clone)]
struct Page<T> {
    offsets: Vec<u16>,
    rows: Vec<T>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self { offsets: Vec::new(), rows: Vec::new() }
    }
}

#[derive(Clone)]
pub struct RowMap<T> {
    pages: Vec<Page<T>>,
    /// Ids below 0 or at or beyond `dense_end()`: never an id the pages cover.
    sparse: BTreeMap<i64, T>,
    len: usize,
}

impl<T> Default for RowMap<T> {
    fn default() -> Self {
        Self { pages: Vec::new(), sparse: BTreeMap::new(), len: 0 }
    }
}

impl<T> RowMap<T> {
    /// The first id beyond the pages.
    fn dense_end(&self) -> i64 {
        (self.pages.len() * PAGE) as i64
    }

    /// The (page, offset) of an id the pages cover.
    fn place(&self, id: i64) -> Option<(usize, u16)> {
        let at = usize::try_from(id).ok()?;
        (at < self.pages.len() * PAGE).then_some((at / PAGE, (at % PAGE) as u16))
    }

    pub fn get(&self, id: &i64) -> Option<&T> {
        match self.place(*id) {
            Some((page, offset)) => {
                let page = &self.pages[page];
                page.offsets.binary_search(&offset).ok().map(|i| &page.rows[i])
            }
            None => self.sparse.get(id),
        }
    }

    pub fn get_mut(&mut self, id: &i64) -> Option<&mut T> {
        match self.place(*id) {
            Some((page, offset)) => {
                let page = &mut self.pages[page];
                page.offsets.binary_search(&offset).ok().map(|i| &mut page.rows[i])
            }
            None => self.sparse.get_mut(id),
        }
    }

    /// Puts `row` at `id`; returns the row it replaces.
    pub fn insert(&mut self, id: i64, row: T) -> Option<T> {
        if self.place(id).is_none() {
            match usize::try_from(id) {
                Ok(at) if at / PAGE <= self.pages.len() + GAP_PAGES => self.extend_to(at / PAGE),
                _ => {
                    let old = self.sparse.insert(id, row);
                    self.len += usize::from(old.is_none());
                    return old;
                }
            }
        }
        let (page, offset) = self.place(id).expect("the pages cover the id after extend_to");
        let old = Self::put(&mut self.pages[page], offset, row);
        self.len += usize::from(old.is_none());
        old
    }

    fn put(page: &mut Page<T>, offset: u16, row: T) -> Option<T> {
        match page.offsets.binary_search(&offset) {
            Ok(i) => Some(std::mem::replace(&mut page.rows[i], row)),
            Err(i) => {
                if page.rows.capacity() == 0 {
                    // A page is allocated whole, once: grown by doubling, its discarded smaller
                    // copies fragmented the heap (a 1M-event fold: 115 MiB of rows, 230 MiB RSS).
                    page.offsets.reserve_exact(PAGE);
                    page.rows.reserve_exact(PAGE);
                }
                page.offsets.insert(i, offset);
                page.rows.insert(i, row);
                None
            }
        }
    }

    /// Extends the page table through `last_page`, moving the side map's rows it now covers.
    fn extend_to(&mut self, last_page: usize) {
        let from = self.dense_end();
        self.pages.resize_with(last_page + 1, Page::default);
        let covered: Vec<i64> = self.sparse.range(from..self.dense_end()).map(|(id, _)| *id).collect();
        for id in covered {
            let row = self.sparse.remove(&id).expect("a key just listed");
            let (page, offset) = self.place(id).expect("covered by the new pages");
            Self::put(&mut self.pages[page], offset, row);
        }
    }

    pub fn remove(&mut self, id: &i64) -> Option<T> {
        let old = match self.place(*id) {
            Some((page, offset)) => {
                let page = &mut self.pages[page];
                let i = page.offsets.binary_search(&offset).ok()?;
                page.offsets.remove(i);
                let row = page.rows.remove(i);
                if page.rows.len() * 4 < page.rows.capacity() {
                    page.offsets.shrink_to_fit();
                    page.rows.shrink_to_fit();
                }
                Some(row)
            }
            None => self.sparse.remove(id),
        };
        self.len -= usize::from(old.is_some());
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every (id, row) in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &T)> + '_ {
        let dense = self.pages.iter().enumerate().flat_map(|(number, page)| {
            let base = (number * PAGE) as i64;
            page.offsets.iter().zip(&page.rows).map(move |(offset, row)| (base + i64::from(*offset), row))
        });
        let below = self.sparse.range(..0).map(|(id, row)| (*id, row));
        let beyond = self.sparse.range(self.dense_end()..).map(|(id, row)| (*id, row));
        below.chain(dense).chain(beyond)
    }

    pub fn keys(&self) -> impl Iterator<Item = i64> + '_ {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.iter().map(|(_, row)| row)
    }
}

impl<T: PartialEq> PartialEq for RowMap<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for RowMap<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for RowMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T> FromIterator<(i64, T)> for RowMap<T> {
    fn from_iter<I: IntoIterator<Item = (i64, T)>>(rows: I) -> Self {
        let mut map = Self::default();
        for (id, row) in rows {
            map.insert(id, row);
        }
        map
    }
}

/// Given rows put, replaced and removed at ids on the pages, just past them, far beyond them and
/// below zero, then every lookup and the iteration order answer as an ordered map's would.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_map_answers_as_an_ordered_map_for_near_far_and_negative_ids() {
        let mut map = RowMap::default();
        let mut model = BTreeMap::new();
        let far = 1_000_000_000_000_i64;
        let just_beyond = (PAGE * (GAP_PAGES + 2)) as i64 + 7;
        let ids = [1, 2, 3, far, -5, i64::MIN, i64::MAX, just_beyond, 10, 1_030, just_beyond + 1, 5_000, 3, far];
        for (n, id) in ids.into_iter().enumerate() {
            assert_eq!(map.insert(id, n), model.insert(id, n), "insert {id}");
        }
        // `just_beyond` went to the side map, then the pages grew over it: it moved to a page.
        assert!(map.place(just_beyond).is_some() && !map.sparse.contains_key(&just_beyond));
        assert!(map.pages.len() < 16, "a far id never grows the pages");
        for id in [2, far, -5, 9, 1_030, i64::MIN] {
            assert_eq!(map.remove(&id), model.remove(&id), "remove {id}");
        }
        if let Some(row) = map.get_mut(&10) {
            *row = 99;
        }
        model.insert(10, 99);
        assert_eq!(map.len(), model.len());
        for id in [0, 1, 2, 3, 10, just_beyond, far, -5, i64::MAX, 4_096, 1 << 40] {
            assert_eq!(map.get(&id), model.get(&id), "get {id}");
        }
        let listed: Vec<(i64, usize)> = map.iter().map(|(id, row)| (id, *row)).collect();
        let expected: Vec<(i64, usize)> = model.iter().map(|(id, row)| (*id, *row)).collect();
        assert_eq!(listed, expected);
        let rebuilt: RowMap<usize> = expected.into_iter().collect();
        assert_eq!(rebuilt, map);
        // A page emptied gives its space back.
        let mut full: RowMap<u64> = (0..PAGE as i64).map(|id| (id, 0)).collect();
        for id in 0..PAGE as i64 - 1 {
            full.remove(&id);
        }
        assert!(full.pages[0].rows.capacity() < 8, "{}", full.pages[0].rows.capacity());
        assert_eq!(full.keys().collect::<Vec<_>>(), vec![PAGE as i64 - 1]);
    }
}
