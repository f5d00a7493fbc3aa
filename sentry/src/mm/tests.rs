//! The memory manager against an in-memory page table (no KVM): how it behaves when
//! guest memory runs out, and the heuristic overcommit check of mmap and brk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::syscalls_api::{
    MmapRequest, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE,
};
use super::{Access, AccessError, MappedFile, MemoryManager};
use crate::abi::Errno;
use crate::arch::PAGE_SIZE;
use crate::platform::memory::{Gpa, GuestMemory};
use crate::platform::{AddressSpace, Perms, PlatformError};

/// Page-table entries in a map; frames are handed straight back on unmap.
struct TableSpace {
    pages: Mutex<BTreeMap<u64, (Gpa, Perms)>>,
    memory: Arc<GuestMemory>,
}

impl AddressSpace for TableSpace {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn map(&self, addr: u64, frame: Gpa, perms: Perms) -> Result<Option<Gpa>, PlatformError> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pages.insert(addr, (frame, perms)).map(|(f, _)| f))
    }
    fn unmap(&self, start: u64, end: u64, released: &mut dyn FnMut(u64, Gpa)) {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<u64> = pages.range(start..end).map(|(a, _)| *a).collect();
        for addr in gone {
            if let Some((frame, _)) = pages.remove(&addr) {
                released(addr, frame);
            }
        }
    }
    fn checkpoint(&self) -> (Gpa, Vec<Gpa>) {
        (0, Vec::new())
    }
    fn free_after_flush(&self, frames: Vec<Gpa>) {
        for f in frames {
            self.memory.free_frame(f);
        }
    }
    fn protect(&self, start: u64, end: u64, perms: Perms) {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        for (_, entry) in pages.range_mut(start..end) {
            entry.1 = perms;
        }
    }
    fn translate(&self, addr: u64) -> Option<(Gpa, Perms)> {
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        pages.get(&addr).copied()
    }
    fn for_each_page(&self, start: u64, end: u64, visit: &mut dyn FnMut(u64, Gpa, Perms)) {
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        for (addr, (frame, perms)) in pages.range(start..end) {
            visit(*addr, *frame, *perms);
        }
    }
    fn resident_pages(&self) -> (u64, u64) {
        // No high-water mark kept here: the count now stands for both.
        let n = self.pages.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        (n, n)
    }
}

/// A memory manager over `pages` pages of guest memory.
fn manager(pages: u64) -> MemoryManager {
    let memory = Arc::new(GuestMemory::new(pages * PAGE_SIZE).expect("memfd"));
    let space = Arc::new(TableSpace {
        pages: Mutex::default(),
        memory: memory.clone(),
    });
    MemoryManager::new(space, memory)
}

fn anon(len: u64, prot: u64, flags: u64) -> MmapRequest {
    MmapRequest {
        addr: 0,
        len,
        prot,
        flags: flags | MAP_ANONYMOUS,
        file: None,
    }
}

const RW: u64 = PROT_READ | PROT_WRITE;

#[test]
fn one_mapping_larger_than_memory_is_enomem() {
    let mm = manager(64);
    let all = 64 * PAGE_SIZE;
    assert_eq!(mm.mmap(anon(2 * all, RW, MAP_PRIVATE)), Err(Errno::ENOMEM));
    assert_eq!(
        mm.mmap(anon(2 * all, RW, MAP_SHARED)),
        Err(Errno::ENOMEM),
        "shared anonymous memory is accounted too"
    );
    // Exactly all of memory is promised (Linux's test is `pages > totalram`), and so is
    // any number of such promises: only single requests are judged.
    assert!(mm.mmap(anon(all, RW, MAP_PRIVATE)).is_ok());
    assert!(mm.mmap(anon(all, RW, MAP_PRIVATE)).is_ok());
    // What Linux does not account: reservations, read-only and MAP_NORESERVE memory.
    assert!(mm.mmap(anon(8 * all, PROT_READ, MAP_PRIVATE)).is_ok());
    assert!(mm.mmap(anon(8 * all, 0, MAP_PRIVATE)).is_ok());
    assert!(mm
        .mmap(anon(8 * all, RW, MAP_PRIVATE | MAP_NORESERVE))
        .is_ok());
}

#[test]
fn heap_growth_larger_than_memory_is_refused() {
    let mm = manager(64);
    let base = 0x40_0000;
    mm.set_brk_start(base);
    let too_far = base + 65 * PAGE_SIZE;
    assert_eq!(mm.brk(too_far), base, "brk keeps the old break on failure");
    let fine = base + 16 * PAGE_SIZE;
    assert_eq!(mm.brk(fine), fine);
    // Each step is judged alone, as Linux's brk accounts the increment.
    assert_eq!(mm.brk(fine + 60 * PAGE_SIZE), fine + 60 * PAGE_SIZE);
}

#[test]
fn touching_more_than_memory_runs_out_of_frames() {
    let mm = manager(32);
    let len = 64 * PAGE_SIZE;
    let at = mm
        .mmap(anon(len, RW, MAP_PRIVATE | MAP_NORESERVE))
        .expect("mapped");
    let mut touched = 0;
    let err = loop {
        match mm.fault(at + touched * PAGE_SIZE, Access::Write) {
            Ok(()) => touched += 1,
            Err(e) => break e,
        }
        assert!(touched <= 64, "more pages than memory");
    };
    assert_eq!(err, AccessError::NoMemory);
    assert!(touched <= 32, "touched {touched} of 32 frames");
    assert_eq!(super::free_bytes(mm.guest_memory()), 0);
    // A syscall that needs a frame gets ENOMEM rather than a fault.
    assert_eq!(
        mm.copy_out(at + (len - PAGE_SIZE), b"x"),
        Err(Errno::ENOMEM)
    );
    // Giving memory back lets the guest go on.
    mm.munmap(at, len).expect("munmap");
    assert_eq!(super::free_bytes(mm.guest_memory()), 32 * PAGE_SIZE);
}

/// A one-page file.
struct OnePage;

impl MappedFile for OnePage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if offset >= PAGE_SIZE {
            return Ok(0);
        }
        buf.fill(7);
        Ok(buf.len())
    }
    fn identity(&self) -> (u64, u64) {
        (0, 0)
    }
    fn path(&self) -> String {
        "/one-page".into()
    }
}

#[test]
fn a_page_past_the_end_of_a_file_is_not_out_of_memory() {
    let mm = manager(32);
    let at = mm
        .mmap(MmapRequest {
            addr: 0,
            len: 2 * PAGE_SIZE,
            prot: PROT_READ,
            flags: MAP_PRIVATE,
            file: Some((Arc::new(OnePage), 0)),
        })
        .expect("mapped");
    assert_eq!(mm.fault(at, Access::Read), Ok(()));
    assert_eq!(
        mm.fault(at + PAGE_SIZE, Access::Read),
        Err(AccessError::BeyondFile)
    );
    let mut byte = [0u8];
    assert_eq!(mm.copy_in(at + PAGE_SIZE, &mut byte), Err(Errno::EFAULT));
}

/// A fresh in-memory page table for a forked child, over the same guest memory as `mm`.
fn child_space(mm: &MemoryManager) -> Arc<dyn AddressSpace> {
    Arc::new(TableSpace {
        pages: Mutex::default(),
        memory: mm.guest_memory().clone(),
    })
}

#[test]
fn shared_anonymous_pages_untouched_before_fork_are_shared_after_it() {
    let parent = manager(64);
    let len = 4 * PAGE_SIZE;
    let at = parent.mmap(anon(len, RW, MAP_SHARED)).expect("mapped");
    // Only the first page is touched before the fork.
    parent.copy_out(at, b"p").expect("parent writes");
    let child = parent.fork(child_space(&parent)).expect("fork");
    // The child writes a page nobody had touched; the parent must see it.
    child
        .copy_out(at + 2 * PAGE_SIZE, b"c")
        .expect("child writes");
    let mut b = [0u8; 1];
    parent
        .copy_in(at + 2 * PAGE_SIZE, &mut b)
        .expect("parent reads");
    assert_eq!(&b, b"c", "the child's write is visible to the parent");
    child.copy_in(at, &mut b).expect("child reads");
    assert_eq!(&b, b"p", "the parent's write is visible to the child");
    // Private memory stays private.
    let private = parent.mmap(anon(len, RW, MAP_PRIVATE)).expect("mapped");
    let child = parent.fork(child_space(&parent)).expect("fork");
    child.copy_out(private, b"c").expect("child writes");
    parent.copy_in(private, &mut b).expect("parent reads");
    assert_eq!(&b, &[0], "a private page is the child's own");
}
