//! The guest frames that hold an overlay (tmpfs) file's pages once it is mapped
//! MAP_SHARED: every shared mapping of the file, in any process, maps these same frames,
//! so a store through one mapping is seen through the others at once (SQLite's WAL
//! index, LMDB's map, a linker writing its output). read and write go through them too:
//! a page cached here is the file's truth (the inode's bytes may be older, and a
//! checkpoint saves both). The cache holds one reference to each frame and each mapping
//! its own; pages stay cached as long as the inode lives.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::arch::PAGE_SIZE;
use crate::platform::memory::{Gpa, GuestMemory};

pub struct PageCache {
    memory: Arc<GuestMemory>,
    /// Page index (file offset / PAGE_SIZE) → frame.
    pages: BTreeMap<u64, Gpa>,
}

impl PageCache {
    pub fn new(memory: Arc<GuestMemory>) -> PageCache {
        PageCache {
            memory,
            pages: BTreeMap::new(),
        }
    }

    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.memory
    }

    pub fn get(&self, index: u64) -> Option<Gpa> {
        self.pages.get(&index).copied()
    }

    /// Take `frame` (one reference, now the cache's) as page `index`.
    pub fn insert(&mut self, index: u64, frame: Gpa) {
        if let Some(old) = self.pages.insert(index, frame) {
            self.memory.free_frame(old);
        }
    }

    /// The cached pages overlapping `[offset, offset + len)`: (file offset of the
    /// overlap, frame, offset in the frame, length).
    fn overlaps(&self, offset: u64, len: usize) -> Vec<(u64, Gpa, usize, usize)> {
        let Some(end) = offset.checked_add(len as u64) else {
            return Vec::new();
        };
        if len == 0 {
            return Vec::new();
        }
        let first = offset / PAGE_SIZE;
        let last = (end - 1) / PAGE_SIZE;
        self.pages
            .range(first..=last)
            .map(|(index, frame)| {
                let page_start = index * PAGE_SIZE;
                let from = offset.max(page_start);
                let to = end.min(page_start + PAGE_SIZE);
                (
                    from,
                    *frame,
                    (from - page_start) as usize,
                    (to - from) as usize,
                )
            })
            .collect()
    }

    /// Copy `data`, written at file offset `offset`, into the pages it overlaps.
    pub fn write(&self, offset: u64, data: &[u8]) {
        for (at, frame, in_page, n) in self.overlaps(offset, data.len()) {
            let from = (at - offset) as usize;
            self.memory
                .write(frame + in_page as u64, &data[from..from + n]);
        }
    }

    /// Lay the cached pages over `buf`, which holds the file read at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        for (at, frame, in_page, n) in self.overlaps(offset, buf.len()) {
            let from = (at - offset) as usize;
            self.memory
                .read(frame + in_page as u64, &mut buf[from..from + n]);
        }
    }

    /// Zero `[from, to)` in the cached pages (a punched hole, a truncated tail).
    pub fn zero(&self, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let Ok(len) = usize::try_from(to - from) else {
            return;
        };
        for (_, frame, in_page, n) in self.overlaps(from, len) {
            self.memory.zero(frame + in_page as u64, n);
        }
    }

    /// Zero everything cached at and past file offset `from` (the file shrank).
    pub fn zero_from(&self, from: u64) {
        if let Some((&last, _)) = self.pages.last_key_value() {
            self.zero(from, (last + 1).saturating_mul(PAGE_SIZE));
        }
    }

    /// (page index, frame) of every cached page, for a checkpoint.
    pub fn entries(&self) -> Vec<(u64, Gpa)> {
        self.pages.iter().map(|(i, f)| (*i, *f)).collect()
    }

    /// Put back a checkpoint's pages: the frames' references are the restored
    /// allocator's already.
    pub fn restored(memory: Arc<GuestMemory>, entries: Vec<(u64, Gpa)>) -> PageCache {
        PageCache {
            memory,
            pages: entries.into_iter().collect(),
        }
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        for frame in std::mem::take(&mut self.pages).into_values() {
            self.memory.free_frame(frame);
        }
    }
}
