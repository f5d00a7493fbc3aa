//! mremap, msync and mincore as Linux defines them (mm/mremap.c, mm/msync.c,
//! mm/mincore.c). Moving an area moves its page-table entries: the frames a range holds are
//! unmapped from the old addresses and mapped at the new ones, never copied.

use super::{AreaKind, Backing, MemoryManager, MmState, Vma, MMAP_BASE, MMAP_MIN_ADDR};
use crate::abi::Errno;
use crate::arch::{page_up, PAGE_SIZE, USER_ADDR_END};
use crate::platform::memory::Gpa;

pub const MREMAP_MAYMOVE: u64 = 1;
pub const MREMAP_FIXED: u64 = 2;
pub const MREMAP_DONTUNMAP: u64 = 4;

pub const MS_ASYNC: u64 = 1;
pub const MS_INVALIDATE: u64 = 2;
pub const MS_SYNC: u64 = 4;

/// Pages mincore reports per round (the state lock is dropped between rounds to copy out).
const MINCORE_CHUNK: u64 = 4096;

/// Whether `b` continues `a` so that Linux would have merged them into one area.
fn continues(a: &Vma, b: &Vma) -> bool {
    if a.end != b.start || a.perms != b.perms || a.shared != b.shared || a.kind != b.kind {
        return false;
    }
    match (&a.backing, &b.backing) {
        (Backing::Anonymous, Backing::Anonymous) => true,
        (
            Backing::File {
                file: fa,
                offset: oa,
            },
            Backing::File {
                file: fb,
                offset: ob,
            },
        ) => {
            let same = std::sync::Arc::ptr_eq(fa, fb) || {
                let id = fa.identity();
                id != (0, 0) && id == fb.identity()
            };
            same && oa.checked_add(a.end - a.start) == Some(*ob)
        }
        _ => false,
    }
}

impl MmState {
    /// The extent of the area containing `addr`, merged with neighbours it continues
    /// (our areas are not merged on insert; Linux's are).
    fn extent(&self, addr: u64) -> Option<(u64, u64)> {
        let first = self.vmas.find(addr)?;
        let (mut start, mut end) = (first.start, first.end);
        let mut cur = first;
        while let Some(prev) = cur.start.checked_sub(1).and_then(|a| self.vmas.find(a)) {
            if !continues(prev, cur) {
                break;
            }
            start = prev.start;
            cur = prev;
        }
        let mut cur = first;
        while let Some(next) = self.vmas.find(cur.end) {
            if !continues(cur, next) {
                break;
            }
            end = next.end;
            cur = next;
        }
        Some((start, end))
    }
}

impl MemoryManager {
    /// mremap(2).
    pub fn mremap(
        &self,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return Err(Errno::EINVAL);
        }
        let may_move = flags & MREMAP_MAYMOVE != 0;
        if flags & MREMAP_FIXED != 0 && !may_move {
            return Err(Errno::EINVAL);
        }
        // MREMAP_DONTUNMAP is always a move and never resizes.
        if flags & MREMAP_DONTUNMAP != 0 && (!may_move || old_len != new_len) {
            return Err(Errno::EINVAL);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        // A zero new length is nonsensical (Linux: EINVAL).
        let new_len = page_up(new_len).filter(|l| *l != 0).ok_or(Errno::EINVAL)?;

        let mut st = self.state();
        if st.vmas.find(addr).is_none() {
            return Err(Errno::EFAULT);
        }
        if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return self.remap_to(&mut st, addr, old_len, new_addr, new_len, flags);
        }
        // Shrinking always works: it only unmaps the tail.
        if old_len >= new_len {
            let tail_end = addr.checked_add(old_len).filter(|e| *e <= USER_ADDR_END);
            match tail_end {
                Some(end) => self.unmap_locked(&mut st, addr + new_len, end),
                None if old_len != new_len => return Err(Errno::EINVAL),
                None => {}
            }
            return Ok(addr);
        }
        let (_, extent_end) = Self::check_resize(&st, addr, old_len, new_len)?;
        // Grow in place when the range reaches the end of its area and room follows.
        let old_end = addr + old_len;
        if old_end == extent_end {
            if let Some(new_end) = addr
                .checked_add(new_len)
                .filter(|e| *e <= USER_ADDR_END && !st.vmas.overlaps(old_end, *e))
            {
                let Some(mut last) = st.vmas.find(old_end - 1).cloned() else {
                    return Err(Errno::EFAULT);
                };
                st.vmas.remove(last.start, last.end);
                last.end = new_end;
                st.vmas.insert(last);
                return Ok(addr);
            }
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let to = st
            .vmas
            .find_gap_top_down(new_len, MMAP_BASE, MMAP_MIN_ADDR)
            .ok_or(Errno::ENOMEM)?;
        self.move_locked(&mut st, addr, old_len, to, new_len, false);
        Ok(to)
    }

    /// The MREMAP_FIXED / MREMAP_DONTUNMAP half of mremap (Linux's `mremap_to`).
    fn remap_to(
        &self,
        st: &mut MmState,
        addr: u64,
        mut old_len: u64,
        new_addr: u64,
        new_len: u64,
        flags: u64,
    ) -> Result<u64, Errno> {
        if !new_addr.is_multiple_of(PAGE_SIZE)
            || new_len > USER_ADDR_END
            || new_addr > USER_ADDR_END - new_len
        {
            return Err(Errno::EINVAL);
        }
        // The old and new ranges may not overlap.
        if addr.saturating_add(old_len) > new_addr && new_addr + new_len > addr {
            return Err(Errno::EINVAL);
        }
        let fixed = flags & MREMAP_FIXED != 0;
        if fixed {
            if new_addr < MMAP_MIN_ADDR {
                return Err(Errno::EPERM);
            }
            self.unmap_locked(st, new_addr, new_addr + new_len);
        }
        if old_len > new_len {
            let end = addr
                .checked_add(old_len)
                .filter(|e| *e <= USER_ADDR_END)
                .ok_or(Errno::EINVAL)?;
            self.unmap_locked(st, addr + new_len, end);
            old_len = new_len;
        }
        Self::check_resize(st, addr, old_len, new_len)?;
        let to = if fixed {
            new_addr
        } else {
            // DONTUNMAP without FIXED: new_addr is only a hint, as for mmap.
            let hint_free = new_addr >= MMAP_MIN_ADDR
                && new_addr + new_len <= MMAP_BASE
                && !st.vmas.overlaps(new_addr, new_addr + new_len);
            if hint_free {
                new_addr
            } else {
                st.vmas
                    .find_gap_top_down(new_len, MMAP_BASE, MMAP_MIN_ADDR)
                    .ok_or(Errno::ENOMEM)?
            }
        };
        let keep_old = flags & MREMAP_DONTUNMAP != 0;
        self.move_locked(st, addr, old_len, to, new_len, keep_old);
        Ok(to)
    }

    /// Linux's `vma_to_resize`: `[addr, addr+old_len)` must lie in one area (merged as
    /// Linux merges), and old_len 0 (duplicating a shared mapping) is refused. Returns the
    /// extent of that area.
    fn check_resize(
        st: &MmState,
        addr: u64,
        old_len: u64,
        new_len: u64,
    ) -> Result<(u64, u64), Errno> {
        let (start, end) = st.extent(addr).ok_or(Errno::EFAULT)?;
        if old_len == 0 {
            // Linux duplicates a shared area here; private ones are EINVAL, and we have
            // no shared pages to duplicate.
            return Err(Errno::EINVAL);
        }
        if old_len > end - addr {
            return Err(Errno::EFAULT);
        }
        if let Some(Backing::File { offset, .. }) = st.vmas.find(addr).map(|v| &v.backing) {
            let at = st.vmas.find(addr).map_or(0, |v| addr - v.start);
            offset
                .checked_add(at)
                .and_then(|o| o.checked_add(new_len))
                .ok_or(Errno::EINVAL)?;
        }
        Ok((start, end))
    }

    /// Move the areas and populated pages of `[from, from+old_len)` to `to`, growing the
    /// last area to `new_len`. With `keep_old` the old areas stay, emptied
    /// (MREMAP_DONTUNMAP): they fault in afresh, zero-filled or from their file.
    fn move_locked(
        &self,
        st: &mut MmState,
        from: u64,
        old_len: u64,
        to: u64,
        new_len: u64,
        keep_old: bool,
    ) {
        let old_end = from + old_len;
        let mut parts: Vec<Vma> = Vec::new();
        let mut at = from;
        while at < old_end {
            let Some(v) = st.vmas.find(at) else {
                break;
            };
            let mut part = v.clone();
            if let Backing::File { offset, .. } = &mut part.backing {
                *offset += at - v.start;
            }
            part.start = at;
            part.end = v.end.min(old_end);
            at = part.end;
            parts.push(part);
        }
        // The frames change owner from the old pages to the new ones.
        let mut frames: Vec<(u64, Gpa)> = Vec::new();
        self.space
            .unmap(from, old_end, &mut |addr, frame| frames.push((addr, frame)));
        if !keep_old {
            st.vmas.remove(from, old_end);
        }
        st.vmas.remove(to, to + new_len);
        let count = parts.len();
        for (i, mut part) in parts.into_iter().enumerate() {
            part.start = to + (part.start - from);
            part.end = if i + 1 == count {
                to + new_len
            } else {
                to + (part.end - from)
            };
            // [heap] and [stack] are where brk and the stack are; a moved copy is neither.
            part.kind = AreaKind::Plain;
            st.vmas.insert(part);
        }
        for (addr, frame) in frames {
            let dest = to + (addr - from);
            // Pages keep their area's rights (there is no copy-on-write sharing whose
            // narrower rights would need keeping).
            let perms = st.vmas.find(dest).map(|v| v.perms);
            let mapped = perms.is_some_and(|p| self.space.map(dest, frame, p).is_ok());
            if !mapped {
                // No page-table memory: the page reads afresh on its next touch.
                tracing::warn!(addr = dest, "mremap could not map a moved page");
                self.space.free_after_flush(vec![frame]);
            }
        }
    }

    /// msync(2). There is no write-back of MAP_SHARED file mappings yet (their pages are
    /// private copies), so once the arguments and the range check out there is nothing
    /// to do.
    pub fn msync(&self, addr: u64, len: u64, flags: u64) -> Result<(), Errno> {
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || !addr.is_multiple_of(PAGE_SIZE)
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Ok(());
        }
        // Linux syncs what is mapped and reports ENOMEM for any hole.
        let st = self.state();
        if !st.vmas.covers(addr, end) {
            return Err(Errno::ENOMEM);
        }
        let files = super::syscalls_api::shared_files(&st.vmas, addr, end);
        drop(st);
        for f in files {
            f.sync();
        }
        Ok(())
    }

    /// mincore(2): one byte per page of `[addr, addr+len)` into guest memory at `vec`,
    /// 1 for a page populated in this address space.
    pub fn mincore(&self, addr: u64, len: u64, vec: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= USER_ADDR_END)
            .ok_or(Errno::ENOMEM)?;
        let pages = (end - addr).div_ceil(PAGE_SIZE);
        if vec.checked_add(pages).is_none_or(|e| e > USER_ADDR_END) {
            return Err(Errno::EFAULT);
        }
        let mut done = 0u64;
        while done < pages {
            let n = (pages - done).min(MINCORE_CHUNK);
            let mut bytes = vec![0u8; n as usize];
            {
                let st = self.state();
                for (i, byte) in bytes.iter_mut().enumerate() {
                    let page = addr + (done + i as u64) * PAGE_SIZE;
                    if st.vmas.find(page).is_none() {
                        return Err(Errno::ENOMEM);
                    }
                    *byte = u8::from(self.space.translate(page).is_some());
                }
            }
            self.copy_out(vec + done, &bytes)?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::platform::Perms;

    fn area(start: u64, end: u64, backing: Backing) -> Vma {
        Vma {
            start,
            end,
            perms: Perms::RW,
            shared: false,
            backing,
            kind: AreaKind::Plain,
        }
    }

    struct Nothing;
    impl super::super::MappedFile for Nothing {
        fn read_at(&self, _: u64, buf: &mut [u8]) -> Result<usize, Errno> {
            buf.fill(0);
            Ok(buf.len())
        }
        fn identity(&self) -> (u64, u64) {
            (0, 0)
        }
        fn path(&self) -> String {
            String::new()
        }
    }

    #[test]
    fn neighbours_linux_would_merge_form_one_extent() {
        let file: Arc<dyn super::super::MappedFile> = Arc::new(Nothing);
        let other: Arc<dyn super::super::MappedFile> = Arc::new(Nothing);
        let mut st = MmState {
            vmas: Default::default(),
            brk_start: 0,
            brk: 0,
        };
        st.vmas.insert(area(0x1000, 0x2000, Backing::Anonymous));
        st.vmas.insert(area(0x2000, 0x4000, Backing::Anonymous));
        let f = |file: &Arc<dyn super::super::MappedFile>, offset| Backing::File {
            file: file.clone(),
            offset,
        };
        st.vmas.insert(area(0x4000, 0x5000, f(&file, 0)));
        st.vmas.insert(area(0x5000, 0x6000, f(&file, 0x1000)));
        st.vmas.insert(area(0x6000, 0x7000, f(&file, 0x3000)));
        st.vmas.insert(area(0x7000, 0x8000, f(&other, 0x4000)));
        assert_eq!(st.extent(0x3000), Some((0x1000, 0x4000)));
        assert_eq!(st.extent(0x4000), Some((0x4000, 0x6000)));
        assert_eq!(st.extent(0x6800), Some((0x6000, 0x7000)));
        assert_eq!(st.extent(0x7000), Some((0x7000, 0x8000)));
        assert_eq!(st.extent(0x9000), None);
    }
}
