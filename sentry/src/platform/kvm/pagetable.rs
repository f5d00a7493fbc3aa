//! x86-64 4-level page tables written by the sentry into guest physical memory.
//!
//! The user half (PML4 entries 0..256) belongs to one address space; PML4 entry 511
//! points at the kernel half shared by every address space (the ring-0 stub, IDT,
//! per-vCPU GDT/TSS and stacks). Intermediate entries grant everything; the leaf entry
//! carries the page's real rights.

use crate::arch::{PAGE_SIZE, USER_ADDR_END};
use crate::platform::memory::{Gpa, GuestMemory, MemoryError};
use crate::platform::Perms;

pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITE: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
/// In a PDPT or PD entry: it maps a 1 GiB or 2 MiB page instead of naming a table.
pub const PTE_LARGE: u64 = 1 << 7;
pub const PTE_NX: u64 = 1 << 63;
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Index of the PML4 entry that maps the kernel half.
pub const KERNEL_PML4_INDEX: usize = 511;

/// Rights that intermediate entries grant: the leaf decides.
const TABLE_ENTRY: u64 = PTE_PRESENT | PTE_WRITE | PTE_USER;

fn index(addr: u64, level: u32) -> u64 {
    (addr >> (12 + 9 * level)) & 0x1ff
}

/// The leaf entry for a user page.
pub fn user_pte(frame: Gpa, perms: Perms) -> u64 {
    // x86 cannot express write-only or exec-only pages: present implies readable.
    let mut pte = frame | PTE_PRESENT | PTE_USER | PTE_ACCESSED;
    if perms.write {
        pte |= PTE_WRITE | PTE_DIRTY;
    }
    if !perms.exec {
        pte |= PTE_NX;
    }
    if perms.is_none() {
        // PROT_NONE pages are never present in hardware; callers do not map them.
        pte &= !PTE_PRESENT;
    }
    pte
}

/// The rights a present leaf entry grants.
pub fn pte_perms(pte: u64) -> Perms {
    Perms {
        read: pte & PTE_PRESENT != 0,
        write: pte & PTE_WRITE != 0,
        exec: pte & PTE_NX == 0,
    }
}

/// Frame address in an entry.
pub fn pte_frame(pte: u64) -> Gpa {
    pte & PTE_ADDR_MASK
}

/// One set of page tables, identified by its PML4 frame.
pub struct PageTables {
    root: Gpa,
}

impl PageTables {
    /// New tables whose kernel half points at `kernel_pdpt`.
    pub fn new(mem: &GuestMemory, kernel_pdpt: Gpa) -> Result<PageTables, MemoryError> {
        let root = mem.alloc_frame()?;
        // Leaves decide: only the stub's entry page is user-visible in the kernel half.
        mem.write_u64(
            root + 8 * KERNEL_PML4_INDEX as u64,
            kernel_pdpt | PTE_PRESENT | PTE_WRITE | PTE_USER,
        );
        Ok(PageTables { root })
    }

    /// Tables in guest memory already (a restored checkpoint's), rooted at `root`. The
    /// kernel-half entry is written again, so it can only point at the VM's own.
    pub fn restore(
        mem: &GuestMemory,
        root: Gpa,
        kernel_pdpt: Gpa,
    ) -> Result<PageTables, MemoryError> {
        if !root.is_multiple_of(PAGE_SIZE)
            || root.checked_add(PAGE_SIZE).is_none_or(|e| e > mem.size())
        {
            return Err(MemoryError::InvalidState(format!(
                "page-table root {root:#x}"
            )));
        }
        mem.write_u64(
            root + 8 * KERNEL_PML4_INDEX as u64,
            kernel_pdpt | PTE_PRESENT | PTE_WRITE | PTE_USER,
        );
        Ok(PageTables { root })
    }

    /// The PML4 frame (the value loaded into CR3).
    pub fn root(&self) -> Gpa {
        self.root
    }

    /// The address of the leaf entry for `addr`, creating tables on the way if `create`.
    fn leaf_slot(
        &self,
        mem: &GuestMemory,
        addr: u64,
        create: bool,
    ) -> Result<Option<Gpa>, MemoryError> {
        let mut table = self.root;
        for level in (1..4).rev() {
            let slot = table + 8 * index(addr, level);
            let entry = mem.read_u64(slot);
            if entry & PTE_PRESENT != 0 {
                table = pte_frame(entry);
                continue;
            }
            if !create {
                return Ok(None);
            }
            let next = mem.alloc_frame()?;
            mem.write_u64(slot, next | TABLE_ENTRY);
            table = next;
        }
        Ok(Some(table + 8 * index(addr, 0)))
    }

    /// Set the leaf entry for `addr`; returns where it lives and the previous entry.
    pub fn set(&self, mem: &GuestMemory, addr: u64, pte: u64) -> Result<(Gpa, u64), MemoryError> {
        debug_assert!(addr < USER_ADDR_END && addr.is_multiple_of(PAGE_SIZE));
        let slot = self
            .leaf_slot(mem, addr, true)?
            .ok_or(MemoryError::Exhausted(0))?;
        let old = mem.read_u64(slot);
        mem.write_u64(slot, pte);
        Ok((slot, old))
    }

    /// The leaf entry for `addr`, or 0.
    pub fn get(&self, mem: &GuestMemory, addr: u64) -> u64 {
        match self.leaf_slot(mem, addr, false) {
            Ok(Some(slot)) => mem.read_u64(slot),
            _ => 0,
        }
    }

    /// Visit every non-zero leaf in `[start, end)` of the user half, skipping absent
    /// subtrees. `visit(addr, slot, old)` returns the new entry to store at `slot`.
    pub fn update_range(
        &self,
        mem: &GuestMemory,
        start: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, Gpa, u64) -> u64,
    ) {
        let end = end.min(USER_ADDR_END);
        if start < end {
            self.walk(mem, self.root, 3, 0, start, end, visit);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        mem: &GuestMemory,
        table: Gpa,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, Gpa, u64) -> u64,
    ) {
        let span = 1u64 << (12 + 9 * level);
        let first = if start > base {
            (start - base) / span
        } else {
            0
        };
        for i in first..512 {
            let addr = base + i * span;
            if addr >= end {
                break;
            }
            let slot = table + 8 * i;
            let entry = mem.read_u64(slot);
            if entry & PTE_PRESENT == 0 && (level > 0 || entry == 0) {
                continue;
            }
            if level == 0 {
                let new = visit(addr, slot, entry);
                if new != entry {
                    mem.write_u64(slot, new);
                }
            } else {
                self.walk(
                    mem,
                    pte_frame(entry),
                    level - 1,
                    addr,
                    start.max(addr),
                    end,
                    visit,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (GuestMemory, PageTables) {
        let mem = GuestMemory::new(256 * PAGE_SIZE).expect("memory");
        let kpdpt = mem.alloc_frame().expect("frame");
        let pt = PageTables::new(&mem, kpdpt).expect("tables");
        (mem, pt)
    }

    #[test]
    fn map_and_translate() {
        let (mem, pt) = setup();
        let frame = mem.alloc_frame().expect("frame");
        pt.set(&mem, 0x40_0000, user_pte(frame, Perms::RX))
            .expect("map");
        let pte = pt.get(&mem, 0x40_0000);
        assert_eq!(pte_frame(pte), frame);
        assert_eq!(pte_perms(pte), Perms::RX);
        assert_eq!(pt.get(&mem, 0x40_1000), 0);
    }

    #[test]
    fn kernel_half_is_shared() {
        let (mem, pt) = setup();
        let e = mem.read_u64(pt.root() + 8 * 511);
        assert_ne!(e & PTE_PRESENT, 0);
        assert_eq!(pte_frame(e), pte_frame(mem.read_u64(pt.root() + 8 * 511)));
    }

    #[test]
    fn update_range_visits_only_present_leaves_in_range() {
        let (mem, pt) = setup();
        for addr in [0x1000u64, 0x2000, 0x20_0000, 0x7fff_ffff_f000] {
            let f = mem.alloc_frame().expect("frame");
            pt.set(&mem, addr, user_pte(f, Perms::RW)).expect("map");
        }
        let mut seen = vec![];
        pt.update_range(&mem, 0x2000, 0x8000_0000_0000, &mut |a, _, e| {
            seen.push(a);
            e & !PTE_WRITE
        });
        assert_eq!(seen, vec![0x2000, 0x20_0000, 0x7fff_ffff_f000]);
        assert!(!pte_perms(pt.get(&mem, 0x2000)).write);
        assert!(pte_perms(pt.get(&mem, 0x1000)).write);
    }
}
