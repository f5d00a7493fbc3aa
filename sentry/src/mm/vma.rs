//! Virtual memory areas: what a range of guest addresses is, independent of which pages
//! are populated right now.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::abi::Errno;
use crate::platform::Perms;

/// A file that can back a mapping: its pages are read into private frames on fault.
pub trait MappedFile: Send + Sync {
    /// Fill `buf` from `offset`; bytes past the end of the file read as zero.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// For MAP_SHARED: the frame every shared mapping of the file maps for the page at
    /// `offset`, with a reference taken for the caller. None: the file keeps no pages
    /// in guest memory, and its shared mappings are private copies.
    fn shared_frame(
        &self,
        _memory: &std::sync::Arc<crate::platform::memory::GuestMemory>,
        _offset: u64,
    ) -> Option<Result<crate::platform::memory::Gpa, super::AccessError>> {
        None
    }
    /// msync, munmap: write back what shared mappings stored, where the file needs it.
    fn sync(&self) {}
    /// Device and inode, for /proc/self/maps.
    fn identity(&self) -> (u64, u64);
    /// The path shown in /proc/self/maps.
    fn path(&self) -> String;
    /// Which file it is, for a checkpoint (`crate::state::files`). Kinds a checkpoint
    /// cannot carry keep this default, which names them.
    fn save(
        &self,
        _cx: &mut crate::state::SaveContext,
    ) -> Result<crate::state::files::MappedFileState, crate::state::StateError> {
        Err(crate::state::StateError::unsupported(format!(
            "mapped file {}",
            self.path()
        )))
    }
}

/// What backs an area.
#[derive(Clone)]
pub enum Backing {
    /// Zero-filled on first touch.
    Anonymous,
    /// Read from `file` at `offset` + (address − area start).
    File {
        file: Arc<dyn MappedFile>,
        offset: u64,
    },
}

/// How /proc/self/maps names an anonymous area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaKind {
    Plain,
    Heap,
    Stack,
}

/// One area: `[start, end)`, page-aligned.
#[derive(Clone)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub shared: bool,
    pub backing: Backing,
    pub kind: AreaKind,
}

impl Vma {
    /// The part of this area inside `[start, end)`, with the file offset adjusted.
    fn slice(&self, start: u64, end: u64) -> Vma {
        let mut v = self.clone();
        v.start = start.max(self.start);
        v.end = end.min(self.end);
        if let Backing::File { offset, .. } = &mut v.backing {
            *offset += v.start - self.start;
        }
        v
    }
}

/// The set of areas of an address space, ordered and non-overlapping.
#[derive(Default, Clone)]
pub struct VmaSet {
    areas: BTreeMap<u64, Vma>,
}

impl VmaSet {
    /// The area containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.areas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| addr < v.end)
    }

    /// Whether any area overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.areas
            .range(..end)
            .next_back()
            .is_some_and(|(_, v)| v.end > start)
    }

    /// Whether `[start, end)` is covered entirely by areas, without holes.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for (_, v) in self.areas.range(..end) {
            if v.end <= at {
                continue;
            }
            if v.start > at {
                return false;
            }
            at = v.end;
            if at >= end {
                return true;
            }
        }
        at >= end
    }

    /// Insert an area; the caller has removed anything overlapping it.
    pub fn insert(&mut self, vma: Vma) {
        debug_assert!(!self.overlaps(vma.start, vma.end));
        self.areas.insert(vma.start, vma);
    }

    /// Remove `[start, end)` from every area, splitting where needed.
    pub fn remove(&mut self, start: u64, end: u64) {
        let hit: Vec<u64> = self
            .areas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(k, _)| *k)
            .collect();
        for k in hit {
            let Some(v) = self.areas.remove(&k) else {
                continue;
            };
            if v.start < start {
                let left = v.slice(v.start, start);
                self.areas.insert(left.start, left);
            }
            if v.end > end {
                let right = v.slice(end, v.end);
                self.areas.insert(right.start, right);
            }
        }
    }

    /// Apply `f` to the parts of areas inside `[start, end)`, splitting at the edges.
    pub fn update(&mut self, start: u64, end: u64, f: &mut dyn FnMut(&mut Vma)) {
        let parts: Vec<Vma> = self
            .areas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(_, v)| v.slice(start, end))
            .collect();
        self.remove(start, end);
        for mut p in parts {
            f(&mut p);
            self.areas.insert(p.start, p);
        }
    }

    /// The highest gap of `len` bytes that ends at or below `below` and starts at or
    /// above `floor`.
    pub fn find_gap_top_down(&self, len: u64, below: u64, floor: u64) -> Option<u64> {
        self.find_gap_top_down_aligned(len, 1, below, floor)
    }

    /// `find_gap_top_down` for a start that is a multiple of `align` (a power of two).
    pub fn find_gap_top_down_aligned(
        &self,
        len: u64,
        align: u64,
        below: u64,
        floor: u64,
    ) -> Option<u64> {
        let mask = !(align.max(1) - 1);
        // The highest aligned start in the gap [lo, hi), if `len` fits there.
        let fits = |lo: u64, hi: u64| -> Option<u64> {
            let start = hi.checked_sub(len)? & mask;
            (start >= lo.max(floor)).then_some(start)
        };
        let mut top = below;
        for (_, v) in self.areas.range(..below).rev() {
            if v.end < top {
                if let Some(start) = fits(v.end, top) {
                    return Some(start);
                }
            }
            top = top.min(v.start);
            if top <= floor {
                return None;
            }
        }
        fits(floor, top)
    }

    /// All areas in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.areas.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            perms: Perms::RW,
            shared: false,
            backing: Backing::Anonymous,
            kind: AreaKind::Plain,
        }
    }

    #[test]
    fn remove_splits_areas() {
        let mut s = VmaSet::default();
        s.insert(anon(0x1000, 0x5000));
        s.remove(0x2000, 0x3000);
        let v: Vec<_> = s.iter().map(|v| (v.start, v.end)).collect();
        assert_eq!(v, vec![(0x1000, 0x2000), (0x3000, 0x5000)]);
        assert!(s.find(0x2800).is_none());
        assert!(!s.covers(0x1000, 0x5000));
        assert!(s.covers(0x3000, 0x5000));
    }

    #[test]
    fn update_changes_only_the_range() {
        let mut s = VmaSet::default();
        s.insert(anon(0x1000, 0x4000));
        s.update(0x2000, 0x3000, &mut |v| v.perms = Perms::R);
        assert_eq!(s.find(0x1000).map(|v| v.perms), Some(Perms::RW));
        assert_eq!(s.find(0x2000).map(|v| v.perms), Some(Perms::R));
        assert_eq!(s.find(0x3000).map(|v| v.perms), Some(Perms::RW));
    }

    #[test]
    fn gaps_are_found_top_down() {
        let mut s = VmaSet::default();
        s.insert(anon(0x8000, 0x10000));
        assert_eq!(s.find_gap_top_down(0x1000, 0x10000, 0x1000), Some(0x7000));
        assert_eq!(s.find_gap_top_down(0x1000, 0x20000, 0x1000), Some(0x1f000));
        assert_eq!(s.find_gap_top_down(0x10000, 0x10000, 0x1000), None);
    }

    #[test]
    fn aligned_gaps_start_on_the_alignment() {
        let mut s = VmaSet::default();
        s.insert(anon(0x3f000, 0x40000));
        assert_eq!(
            s.find_gap_top_down_aligned(0x2000, 0x10000, 0x3f000, 0x1000),
            Some(0x30000)
        );
        assert_eq!(
            s.find_gap_top_down_aligned(0x2000, 0x10000, 0x50000, 0x1000),
            Some(0x40000)
        );
        assert_eq!(
            s.find_gap_top_down_aligned(0x2000, 0x10000, 0x3f000, 0x31000),
            None
        );
    }
}
