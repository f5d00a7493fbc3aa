//! The working set a checkpoint image records: which of its guest's pages a restored
//! guest touches first, so a restore can map them ahead of the guest.
//!
//! Why: on a shadow-paging hypervisor (kvm_pvm) a restored guest's first touch of each
//! page is an exit that installs one shadow entry (~20 µs here), and a Node server's
//! first request after a restore touches ~1,500 pages. KVM installs up to 8 neighbouring
//! entries on such a fault, but only for guest pages whose host page is mapped writable
//! in this process, and `memory.img` is mapped private, read-only until written. Making
//! the working set's host pages writable ahead (`MADV_POPULATE_WRITE`, which copies
//! them: the price is their size in private memory per sandbox) lets KVM prefetch, and
//! the guest's first request takes about half as many exits.
//!
//! The record is the accessed bits of the guest's own page tables, which travel in the
//! image with the rest of guest memory. The sentry sets the bit in every entry it
//! writes, so in an ordinary image every present page looks used. `runsc image build`
//! restores its first image with [`WorkingSet::Record`]: every user leaf's bit is
//! cleared before the VM has ever run (no shadow entry can hold a stale copy yet), the
//! app serves a few requests, during which KVM sets the bit of each page it walks, and
//! the image checkpointed then records what a restored guest touched.

use super::pagetable::{pte_frame, PageTables, PTE_ACCESSED, PTE_PRESENT};
use crate::platform::memory::{Gpa, GuestMemory};

/// What a restore does with its image's working set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkingSet {
    /// Make the recorded pages writable in the sandbox process, on a thread of their own
    /// while the sandbox starts (nothing, if the image records no working set).
    #[default]
    Prefault,
    /// Start a record: clear every user page's accessed bit, so the next checkpoint's
    /// image records what the guest touches from now on.
    Record,
    /// Neither: the guest faults every page in itself.
    Ignore,
}

/// A restored platform's part in it.
#[derive(Default)]
pub(super) struct Tracker {
    mode: WorkingSet,
    /// Whether the accessed bits of user pages are a record (else they are all set).
    recorded: bool,
    /// Frames of recorded pages, gathered from each restored address space.
    frames: Vec<Gpa>,
}

impl Tracker {
    pub(super) fn new(mode: WorkingSet, image_recorded: bool) -> Tracker {
        Tracker {
            mode,
            recorded: image_recorded || mode == WorkingSet::Record,
            frames: Vec::new(),
        }
    }

    /// Whether a checkpoint of this VM records a working set.
    pub(super) fn recorded(&self) -> bool {
        self.recorded
    }

    /// An address space just restored, before any vCPU has run it.
    pub(super) fn restored(&mut self, memory: &GuestMemory, tables: &PageTables) {
        match self.mode {
            WorkingSet::Record => clear_accessed(memory, tables),
            WorkingSet::Prefault if self.recorded => {
                accessed_frames(memory, tables, &mut self.frames)
            }
            WorkingSet::Prefault | WorkingSet::Ignore => {}
        }
    }

    /// The frames to prefault, sorted, each once (taken: a second call has none).
    pub(super) fn take_frames(&mut self) -> Vec<Gpa> {
        let mut frames = std::mem::take(&mut self.frames);
        frames.sort_unstable();
        frames.dedup();
        frames
    }
}

fn clear_accessed(memory: &GuestMemory, tables: &PageTables) {
    tables.update_range(memory, 0, u64::MAX, &mut |_, _, pte| {
        if pte & PTE_PRESENT != 0 {
            pte & !PTE_ACCESSED
        } else {
            pte
        }
    });
}

fn accessed_frames(memory: &GuestMemory, tables: &PageTables, out: &mut Vec<Gpa>) {
    tables.update_range(memory, 0, u64::MAX, &mut |_, _, pte| {
        if pte & (PTE_PRESENT | PTE_ACCESSED) == PTE_PRESENT | PTE_ACCESSED {
            out.push(pte_frame(pte));
        }
        pte
    });
}

/// Make `frames` (sorted) writable in this process on a thread of their own. It changes
/// no page's content, so the guest may run meanwhile; a failure only costs the speed-up.
pub(super) fn prefault(memory: std::sync::Arc<GuestMemory>, frames: Vec<Gpa>) {
    if frames.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("prefault".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            match memory.populate_writable(&frames) {
                Ok(()) => tracing::debug!(
                    pages = frames.len(),
                    us = start.elapsed().as_micros() as u64,
                    "working set prefaulted"
                ),
                Err(e) => tracing::info!(pages = frames.len(), "working set not prefaulted: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::info!("working set not prefaulted: no thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::kvm::pagetable::user_pte;
    use crate::platform::Perms;

    fn tables_with(memory: &GuestMemory, pages: &[(u64, Gpa)]) -> PageTables {
        let pdpt = memory.alloc_frame().unwrap();
        let tables = PageTables::new(memory, pdpt).unwrap();
        for &(addr, frame) in pages {
            tables
                .set(memory, addr, user_pte(frame, Perms::from_prot(3)))
                .unwrap();
        }
        tables
    }

    #[test]
    fn a_record_starts_with_no_page_accessed() {
        let memory = GuestMemory::new(64 << 20).unwrap();
        let (a, b) = (memory.alloc_frame().unwrap(), memory.alloc_frame().unwrap());
        let tables = tables_with(&memory, &[(0x40_0000, a), (0x7f00_0000, b)]);
        let mut record = Tracker::new(WorkingSet::Record, false);
        record.restored(&memory, &tables);
        assert!(record.recorded());
        assert_eq!(tables.get(&memory, 0x40_0000) & PTE_ACCESSED, 0);
        assert_eq!(tables.get(&memory, 0x7f00_0000) & PTE_ACCESSED, 0);
        assert_ne!(tables.get(&memory, 0x40_0000) & PTE_PRESENT, 0);

        // The guest touched one page since: only it is prefaulted.
        let slot_value = tables.get(&memory, 0x7f00_0000) | PTE_ACCESSED;
        tables.set(&memory, 0x7f00_0000, slot_value).unwrap();
        let mut prefault = Tracker::new(WorkingSet::Prefault, true);
        prefault.restored(&memory, &tables);
        prefault.restored(&memory, &tables);
        assert_eq!(prefault.take_frames(), vec![b]);
        assert!(prefault.take_frames().is_empty());
    }

    #[test]
    fn an_image_without_a_record_prefaults_nothing() {
        let memory = GuestMemory::new(64 << 20).unwrap();
        let a = memory.alloc_frame().unwrap();
        let tables = tables_with(&memory, &[(0x40_0000, a)]);
        for mode in [WorkingSet::Prefault, WorkingSet::Ignore] {
            let mut t = Tracker::new(mode, false);
            t.restored(&memory, &tables);
            assert!(!t.recorded());
            assert!(t.take_frames().is_empty());
        }
        let mut ignore = Tracker::new(WorkingSet::Ignore, true);
        ignore.restored(&memory, &tables);
        assert!(ignore.recorded());
        assert!(ignore.take_frames().is_empty());
    }
}
