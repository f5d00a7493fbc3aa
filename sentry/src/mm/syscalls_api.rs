//! The memory-management calls as Linux defines them: mmap, munmap, mprotect, brk,
//! madvise. The syscall layer decodes arguments and resolves file descriptors; the
//! semantics (alignment, overlap, errno) live here.

use std::sync::Arc;

use super::{AreaKind, Backing, MappedFile, MemoryManager, Vma, MMAP_BASE, MMAP_MIN_ADDR};
use crate::abi::Errno;
use crate::arch::{page_up, PAGE_SIZE, USER_ADDR_END};
use crate::platform::Perms;

pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x100;
pub const MAP_DENYWRITE: u64 = 0x800;
pub const MAP_EXECUTABLE: u64 = 0x1000;
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_NONBLOCK: u64 = 0x1_0000;
pub const MAP_STACK: u64 = 0x2_0000;
pub const MAP_HUGETLB: u64 = 0x4_0000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

/// Flags mmap understands (anything else is ignored by Linux for MAP_PRIVATE/MAP_SHARED,
/// except under MAP_SHARED_VALIDATE, where it is EOPNOTSUPP).
const MAP_KNOWN: u64 = MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_GROWSDOWN
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_FIXED_NOREPLACE;

pub const PROT_READ: u64 = 1;
pub const PROT_WRITE: u64 = 2;
pub const PROT_EXEC: u64 = 4;
const PROT_KNOWN: u64 = PROT_READ | PROT_WRITE | PROT_EXEC;

pub const MADV_NORMAL: u64 = 0;
pub const MADV_RANDOM: u64 = 1;
pub const MADV_SEQUENTIAL: u64 = 2;
pub const MADV_WILLNEED: u64 = 3;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;
pub const MADV_DONTFORK: u64 = 10;
pub const MADV_DOFORK: u64 = 11;
pub const MADV_MERGEABLE: u64 = 12;
pub const MADV_UNMERGEABLE: u64 = 13;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_DONTDUMP: u64 = 16;
pub const MADV_DODUMP: u64 = 17;

/// A decoded mmap request.
pub struct MmapRequest {
    pub addr: u64,
    pub len: u64,
    pub prot: u64,
    pub flags: u64,
    /// The file and offset, unless MAP_ANONYMOUS.
    pub file: Option<(Arc<dyn MappedFile>, u64)>,
}

impl MemoryManager {
    /// mmap(2).
    pub fn mmap(&self, req: MmapRequest) -> Result<u64, Errno> {
        let kind = req.flags & MAP_SHARED_VALIDATE;
        if kind == 0 {
            return Err(Errno::EINVAL);
        }
        if kind == MAP_SHARED_VALIDATE && req.flags & !MAP_KNOWN != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if req.flags & MAP_HUGETLB != 0 {
            // No huge pages in the sandbox; Linux says ENOMEM when none are reserved.
            return Err(Errno::ENOMEM);
        }
        if req.prot & !PROT_KNOWN != 0 {
            return Err(Errno::EINVAL);
        }
        let len = Self::page_len(req.len)?;
        if let Some((_, offset)) = &req.file {
            if !offset.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            offset.checked_add(len).ok_or(Errno::EOVERFLOW)?;
        }
        let fixed = req.flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        if fixed && !req.addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let shared = kind != MAP_PRIVATE;
        let committed = if shared {
            req.file.is_none()
        } else {
            req.prot & PROT_WRITE != 0
        };
        if committed && req.flags & MAP_NORESERVE == 0 {
            self.check_commit(len)?;
        }
        let backing = match req.file {
            Some((file, offset)) => Backing::File { file, offset },
            None => Backing::Anonymous,
        };
        let perms = Perms::from_prot(req.prot);

        let mut st = self.state();
        let start = if fixed {
            let end = req.addr.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_ADDR_END || req.addr < MMAP_MIN_ADDR {
                return Err(if req.addr < MMAP_MIN_ADDR {
                    Errno::EPERM
                } else {
                    Errno::ENOMEM
                });
            }
            if req.flags & MAP_FIXED_NOREPLACE != 0
                && req.flags & MAP_FIXED == 0
                && st.vmas.overlaps(req.addr, end)
            {
                return Err(Errno::EEXIST);
            }
            req.addr
        } else {
            let hint = page_up(req.addr).unwrap_or(0);
            let hint_ok = hint >= MMAP_MIN_ADDR
                && hint
                    .checked_add(len)
                    .is_some_and(|e| e <= MMAP_BASE && !st.vmas.overlaps(hint, e));
            if hint_ok {
                hint
            } else {
                st.vmas
                    .find_gap_top_down(len, MMAP_BASE, MMAP_MIN_ADDR)
                    .ok_or(Errno::ENOMEM)?
            }
        };
        let end = start + len;
        self.unmap_locked(&mut st, start, end);
        st.vmas.insert(Vma {
            start,
            end,
            perms,
            shared,
            backing,
            kind: AreaKind::Plain,
        });
        if req.flags & MAP_POPULATE != 0 && !perms.is_none() {
            let mut page = start;
            while page < end {
                // Populating is advisory: a file shorter than the mapping stops here.
                if self.fault_locked(&st, page, super::Access::Read).is_err() {
                    break;
                }
                page += PAGE_SIZE;
            }
        }
        Ok(start)
    }

    /// Linux's heuristic overcommit (`vm.overcommit_memory = 0`, `__vm_enough_memory`):
    /// memory a mapping may dirty is promised freely, except that one request for more
    /// than all of RAM (and swap: none here) is refused with ENOMEM. RAM is the guest's
    /// memory, sized from the container's limit, so `malloc(2 × limit)` gets NULL as on a
    /// machine of that size. Called for what Linux accounts: private writable mappings,
    /// shared anonymous ones and heap growth, unless MAP_NORESERVE.
    fn check_commit(&self, len: u64) -> Result<(), Errno> {
        if len > self.memory.size() {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// munmap(2).
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = Self::page_len(len).map_err(|_| Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= USER_ADDR_END)
            .ok_or(Errno::EINVAL)?;
        let mut st = self.state();
        let files = shared_files(&st.vmas, addr, end);
        self.unmap_locked(&mut st, addr, end);
        drop(st);
        // What was stored through shared file mappings goes back to files that need it.
        for f in files {
            f.sync();
        }
        Ok(())
    }

    /// mprotect(2).
    pub fn mprotect(&self, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || prot & !(PROT_KNOWN | 0x0100_0000 | 0x0200_0000) != 0
        {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= USER_ADDR_END)
            .ok_or(Errno::ENOMEM)?;
        let perms = Perms::from_prot(prot);
        let mut st = self.state();
        if !st.vmas.covers(addr, end) {
            return Err(Errno::ENOMEM);
        }
        st.vmas.update(addr, end, &mut |v| v.perms = perms);
        self.space.protect(addr, end, perms);
        Ok(())
    }

    /// brk(2): returns the new break, or the old one if the request cannot be met.
    pub fn brk(&self, addr: u64) -> u64 {
        let mut st = self.state();
        let (start, cur) = (st.brk_start, st.brk);
        if addr < start {
            return cur;
        }
        let (Some(old_top), Some(new_top)) = (page_up(cur), page_up(addr)) else {
            return cur;
        };
        if new_top > old_top {
            if new_top > MMAP_BASE
                || st.vmas.overlaps(old_top, new_top)
                || self.check_commit(new_top - old_top).is_err()
            {
                return cur;
            }
            // Extend the heap area (merged into one [heap] for /proc/self/maps).
            let heap_start = st
                .vmas
                .find(old_top.saturating_sub(1))
                .filter(|v| v.kind == AreaKind::Heap)
                .map(|v| v.start)
                .unwrap_or(old_top);
            st.vmas.remove(heap_start, old_top);
            st.vmas.insert(Vma {
                start: heap_start,
                end: new_top,
                perms: Perms::RW,
                shared: false,
                backing: Backing::Anonymous,
                kind: AreaKind::Heap,
            });
        } else if new_top < old_top {
            self.unmap_locked(&mut st, new_top, old_top);
        }
        st.brk = addr;
        addr
    }

    /// madvise(2).
    pub fn madvise(&self, addr: u64, len: u64, advice: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = match page_up(len) {
            Some(0) => return Ok(()),
            Some(l) => l,
            None => return Err(Errno::EINVAL),
        };
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        match advice {
            MADV_DONTNEED | MADV_FREE => {
                let st = self.state();
                if !st.vmas.covers(addr, end) {
                    return Err(Errno::ENOMEM);
                }
                // Private pages go back to zero (or to the file's contents) on next touch.
                self.drop_pages(addr, end);
                Ok(())
            }
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_DONTFORK
            | MADV_DOFORK | MADV_MERGEABLE | MADV_UNMERGEABLE | MADV_HUGEPAGE | MADV_NOHUGEPAGE
            | MADV_DONTDUMP | MADV_DODUMP => {
                if !self.state().vmas.covers(addr, end) {
                    return Err(Errno::ENOMEM);
                }
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The files of the shared file mappings overlapping `[start, end)`.
pub(super) fn shared_files(
    vmas: &super::vma::VmaSet,
    start: u64,
    end: u64,
) -> Vec<std::sync::Arc<dyn super::MappedFile>> {
    vmas.iter()
        .filter(|v| v.shared && v.start < end && start < v.end)
        .filter_map(|v| match &v.backing {
            super::Backing::File { file, .. } => Some(file.clone()),
            super::Backing::Anonymous => None,
        })
        .collect()
}
