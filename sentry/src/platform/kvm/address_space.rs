//! A guest address space on KVM: the user half of one set of page tables.
//!
//! New mappings are written straight into the tables: a translation that was absent
//! cannot be cached by the CPU (or a shadow MMU). Removing or narrowing a mapping bumps
//! `generation`; a vCPU that sees a new generation reloads CR3 before returning to the
//! guest, which drops every cached user translation.
//!
//! Every change to an entry that was present is also queued in `pending`: before the
//! guest runs again, a vCPU has the stub write those entries once more from inside the
//! guest, so a shadow-paging hypervisor sees them (see `stub.rs`).
//!
//! A leaf entry that is non-zero holds a frame; it is present unless the page is
//! PROT_NONE, in which case the frame stays recorded so mprotect can bring it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::pagetable::{pte_frame, pte_perms, user_pte, PageTables, PTE_PRESENT};
use crate::platform::memory::{Gpa, GuestMemory};
use crate::platform::{AddressSpace, Perms, PlatformError};

/// Page-table changes not yet seen inside the guest.
#[derive(Default)]
struct Pending {
    /// Addresses of changed entries that were present.
    slots: Vec<Gpa>,
    /// Frames unmapped by those changes, with the generation that unmapped them: freed
    /// once no vCPU can still hold a translation from before that generation.
    frames: Vec<(u64, Gpa)>,
    /// Batches taken by a vCPU and not yet applied.
    in_flight: usize,
    /// vCPUs running this address space right now: their kicker and the generation they
    /// entered with (they flushed everything older on entry).
    running: std::collections::HashMap<usize, (crate::platform::kick::Kicker, u64)>,
}

impl Pending {
    /// Frames no vCPU can reach any more: every change is rewritten inside the guest,
    /// and every running vCPU entered after the generation that freed them.
    fn take_free_frames(&mut self) -> Vec<Gpa> {
        if !self.slots.is_empty() || self.in_flight != 0 {
            return Vec::new();
        }
        let oldest_running = self
            .running
            .values()
            .map(|(_, g)| *g)
            .min()
            .unwrap_or(u64::MAX);
        let (free, keep): (Vec<_>, Vec<_>) = self
            .frames
            .drain(..)
            .partition(|(g, _)| *g <= oldest_running);
        self.frames = keep;
        free.into_iter().map(|(_, f)| f).collect()
    }
}

pub struct KvmAddressSpace {
    memory: Arc<GuestMemory>,
    tables: Mutex<PageTables>,
    root: u64,
    generation: AtomicU64,
    /// Changed entries waiting to be rewritten from inside the guest, and the frames
    /// they let go of.
    pending: Mutex<Pending>,
    /// Pages holding a frame now, and the most there ever were (RSS and its high-water
    /// mark).
    resident: AtomicU64,
    peak: AtomicU64,
}

impl KvmAddressSpace {
    pub(super) fn new(
        memory: Arc<GuestMemory>,
        kernel_pdpt: Gpa,
    ) -> Result<KvmAddressSpace, PlatformError> {
        let tables = PageTables::new(&memory, kernel_pdpt)?;
        let root = tables.root();
        Ok(KvmAddressSpace {
            memory,
            tables: Mutex::new(tables),
            root,
            generation: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
            resident: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// Tables restored from a checkpoint, in guest memory already, holding `pages`
    /// pages: `root` must be an allocated frame whose kernel-half entry points at
    /// `kernel_pdpt`, as every address space's does.
    pub(super) fn restore(
        memory: Arc<GuestMemory>,
        root: u64,
        kernel_pdpt: Gpa,
        pages: u64,
    ) -> Result<KvmAddressSpace, PlatformError> {
        let tables = PageTables::restore(&memory, root, kernel_pdpt)?;
        Ok(KvmAddressSpace {
            memory,
            tables: Mutex::new(tables),
            root,
            generation: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
            resident: AtomicU64::new(pages),
            peak: AtomicU64::new(pages),
        })
    }

    /// Run `f` on the tables, which no vCPU may have run yet (a restore's working-set
    /// pass: a change made here needs no rewrite from inside the guest).
    pub(super) fn with_tables<R>(&self, f: impl FnOnce(&GuestMemory, &PageTables) -> R) -> R {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        f(&self.memory, &tables)
    }

    /// The value to load into CR3.
    pub(super) fn root(&self) -> u64 {
        self.root
    }

    /// Bumped whenever a translation a vCPU may have cached goes away or narrows.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Translations may be stale from now on: bump the generation and kick every vCPU
    /// running with an older one, so it re-enters (flushing its TLB) soon.
    fn invalidate(&self) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let p = self.pending();
        for (kicker, entered) in p.running.values() {
            if *entered < generation {
                kicker.kick();
            }
        }
    }

    /// A vCPU is about to run this address space, having flushed up to `generation`.
    pub(super) fn enter(
        &self,
        vcpu: usize,
        kicker: crate::platform::kick::Kicker,
        generation: u64,
    ) {
        self.pending().running.insert(vcpu, (kicker, generation));
    }

    /// A vCPU has stopped running this address space.
    pub(super) fn exit(&self, vcpu: usize) {
        let frames = {
            let mut p = self.pending();
            p.running.remove(&vcpu);
            p.take_free_frames()
        };
        self.free_frames(frames);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self, slots: impl IntoIterator<Item = Gpa>) {
        self.pending().slots.extend(slots);
    }

    /// Take at most `max` queued entry addresses (the stub rewrites each with the value it
    /// holds then); the caller applies them and then calls `batch_done`. With nothing
    /// queued and no batch in flight, the frames waiting for that moment come back
    /// instead: every stale translation to them is gone.
    pub(super) fn take_pending(&self, max: usize) -> (Vec<Gpa>, Vec<Gpa>) {
        let mut p = self.pending();
        if p.slots.is_empty() {
            let frames = p.take_free_frames();
            return (Vec::new(), frames);
        }
        let n = p.slots.len().min(max);
        p.in_flight += 1;
        let batch = p.slots.drain(..n).collect();
        (batch, Vec::new())
    }

    /// Whether another vCPU is still rewriting entries (this one must not run user code
    /// before it is done: the guest may hold translations those writes remove).
    pub(super) fn rewrites_in_flight(&self) -> bool {
        self.pending().in_flight != 0
    }

    /// A batch from `take_pending` has been written from inside the guest.
    pub(super) fn batch_done(&self) {
        let mut p = self.pending();
        p.in_flight = p.in_flight.saturating_sub(1);
    }

    /// Free frames given back by `take_pending`.
    pub(super) fn free_frames(&self, frames: Vec<Gpa>) {
        for f in frames {
            self.memory.free_frame(f);
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, PageTables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AddressSpace for KvmAddressSpace {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn checkpoint(&self) -> (Gpa, Vec<Gpa>) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        (self.root, pending.frames.iter().map(|(_, f)| *f).collect())
    }

    fn map(&self, addr: u64, frame: Gpa, perms: Perms) -> Result<Option<Gpa>, PlatformError> {
        let new = user_pte(frame, perms);
        let (slot, old) = self.tables().set(&self.memory, addr, new)?;
        if old == 0 {
            let now = self.resident.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak.fetch_max(now, Ordering::Relaxed);
            return Ok(None);
        }
        if old & PTE_PRESENT != 0 && old != new {
            self.queue([slot]);
            if pte_frame(old) != frame || !perms.covers(pte_perms(old)) {
                self.invalidate();
            }
        }
        Ok(Some(pte_frame(old)))
    }

    fn unmap(&self, start: u64, end: u64, released: &mut dyn FnMut(u64, Gpa)) {
        let mut any = false;
        let mut changed = Vec::new();
        self.tables()
            .update_range(&self.memory, start, end, &mut |addr, slot, pte| {
                // A PROT_NONE page is not present but still holds its frame.
                released(addr, pte_frame(pte));
                self.resident.fetch_sub(1, Ordering::Relaxed);
                if pte & PTE_PRESENT != 0 {
                    changed.push(slot);
                    any = true;
                }
                0
            });
        self.queue(changed);
        if any {
            self.invalidate();
        }
    }

    fn free_after_flush(&self, frames: Vec<Gpa>) {
        let generation = self.generation();
        let free = {
            let mut p = self.pending();
            p.frames.extend(frames.into_iter().map(|f| (generation, f)));
            p.take_free_frames()
        };
        self.free_frames(free);
    }

    fn protect(&self, start: u64, end: u64, perms: Perms) {
        let mut narrowed = false;
        let mut changed = Vec::new();
        self.tables()
            .update_range(&self.memory, start, end, &mut |_, slot, pte| {
                let new = user_pte(pte_frame(pte), perms);
                if pte & PTE_PRESENT != 0 && new != pte {
                    changed.push(slot);
                    narrowed |= !perms.covers(pte_perms(pte));
                }
                new
            });
        self.queue(changed);
        if narrowed {
            self.invalidate();
        }
    }

    fn for_each_page(&self, start: u64, end: u64, visit: &mut dyn FnMut(u64, Gpa, Perms)) {
        self.tables()
            .update_range(&self.memory, start, end, &mut |addr, _, pte| {
                let perms = if pte & PTE_PRESENT != 0 {
                    pte_perms(pte)
                } else {
                    Perms::NONE
                };
                visit(addr, pte_frame(pte), perms);
                pte
            });
    }

    fn translate(&self, addr: u64) -> Option<(Gpa, Perms)> {
        let pte = self.tables().get(&self.memory, addr & !0xfff);
        (pte & PTE_PRESENT != 0).then(|| (pte_frame(pte), pte_perms(pte)))
    }

    fn resident_pages(&self) -> (u64, u64) {
        (
            self.resident.load(Ordering::Relaxed),
            self.peak.load(Ordering::Relaxed),
        )
    }
}

impl Drop for KvmAddressSpace {
    fn drop(&mut self) {
        // The table frames are not given back: a shadow MMU may still hold shadow pages
        // for them, and reusing a frame as a page table with host-side writes would bring
        // those stale entries back to life. Recycling them needs a full shadow flush
        // (memslot re-registration), which is left for when address spaces churn (exec).
        let tables = self.tables();
        tracing::trace!(
            root = format_args!("{:#x}", tables.root()),
            "address space retired"
        );
    }
}
