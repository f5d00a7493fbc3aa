//! The KVM platform: one VM per sandbox, one vCPU per guest thread, no guest OS.
//!
//! The sentry writes everything the CPU needs in long mode (page tables, GDT, IDT, TSS
//! and a ring-0 stub of a few instructions) straight into guest physical memory. Guest
//! code runs in ring 3; every `syscall` and exception goes through the stub to an I/O
//! port exit, so the sentry sees it as a return from `KVM_RUN`.
//!
//! Locking: `KvmPlatform::kernel` (the kernel-half tables) is taken only while creating
//! a vCPU. Each address space's tables are behind its own mutex; vCPUs only read them.

mod address_space;
pub mod layout;
mod pagetable;
mod stub;
pub mod tsc;
mod vcpu;
mod working_set;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, VmFd};

pub use address_space::KvmAddressSpace;
pub use vcpu::KvmContext;
use vcpu::VcpuFeatures;
pub use working_set::WorkingSet;

use super::memory::{Gpa, GuestMemory};
use super::{Platform, PlatformError};
use layout::*;
use pagetable::{pte_frame, PTE_LARGE, PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE};

/// What a kernel-half page is for, and so its rights.
#[derive(Clone, Copy)]
enum KernelPage {
    /// The stub's syscall targets: executable from ring 3 (see `stub.rs`).
    UserEntry,
    /// Ring-0 code.
    Code,
    /// Read-only tables (IDT).
    ReadOnly,
    /// GDT/TSS and stacks.
    Data,
}

/// XSAVE feature bits we enable when the host offers them: x87, SSE, AVX, AVX-512.
const XCR0_WANTED: u64 = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80;

/// The kernel half shared by all address spaces: its top table and what it maps.
struct KernelSpace {
    /// The PDPT that PML4 entry 511 of every address space points to.
    pdpt: Gpa,
    /// Each vCPU's area (GDT/TSS, IST stack, kernel stack, page-table write queue), by
    /// vCPU index: built once, and reused by a restored VM's vCPU of the same index.
    vcpu_areas: Vec<[Gpa; 4]>,
}

/// What a checkpoint keeps of the platform: guest memory's allocator and where the
/// kernel half is (its pages are in guest memory, so in the image).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct KvmPlatformState {
    pub memory_size: u64,
    pub allocator: super::memory::AllocatorState,
    pub kernel_pdpt: Gpa,
    pub vcpu_areas: Vec<[Gpa; 4]>,
    /// The XSAVE features guest FPU images hold: a restore needs the same.
    pub xcr0: u64,
    /// Whether the accessed bits of user pages record a working set (`working_set.rs`)
    /// rather than being set in every entry.
    pub working_set: bool,
}

/// A KVM virtual machine with the ring-0 stub installed.
pub struct KvmPlatform {
    kvm: Kvm,
    vm: VmFd,
    memory: Arc<GuestMemory>,
    kernel: Mutex<KernelSpace>,
    features: VcpuFeatures,
    next_vcpu: AtomicUsize,
    working_set: Mutex<working_set::Tracker>,
    /// What each frame is to the address spaces restored so far, by frame number
    /// (restore-time only: see [`check_restored_tables`]).
    restored_frames: Mutex<FrameUses>,
}

impl KvmPlatform {
    /// Open `/dev/kvm` and build a VM with `memory_size` bytes of guest physical memory.
    pub fn new(memory_size: u64) -> Result<KvmPlatform, PlatformError> {
        let kvm = Kvm::new()
            .map_err(|e| PlatformError::OpenKvm(std::io::Error::from_raw_os_error(e.errno())))?;
        let memory = GuestMemory::new(memory_size)?;
        let platform = KvmPlatform::with_memory(kvm, memory, None)?;
        platform.install_stub()?;
        Ok(platform)
    }

    /// A VM over guest memory restored from a checkpoint, whose kernel half (stub, IDT,
    /// vCPU areas) is in that memory already.
    pub fn restore(
        memory: GuestMemory,
        state: &KvmPlatformState,
        working_set: WorkingSet,
    ) -> Result<KvmPlatform, PlatformError> {
        let kvm = Kvm::new()
            .map_err(|e| PlatformError::OpenKvm(std::io::Error::from_raw_os_error(e.errno())))?;
        let mut platform = KvmPlatform::with_memory(kvm, memory, Some(state))?;
        platform.working_set =
            Mutex::new(working_set::Tracker::new(working_set, state.working_set));
        if platform.features.xcr0 != state.xcr0 {
            return Err(PlatformError::Incompatible(format!(
                "the checkpoint's FPU state has XSAVE features {:#x}, this host's KVM offers {:#x}",
                state.xcr0, platform.features.xcr0
            )));
        }
        Ok(platform)
    }

    /// This platform's state for a checkpoint (the guest must not run meanwhile).
    pub fn state(&self) -> KvmPlatformState {
        let kernel = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        KvmPlatformState {
            memory_size: self.memory.size(),
            allocator: self.memory.allocator_state(),
            kernel_pdpt: kernel.pdpt,
            vcpu_areas: kernel.vcpu_areas.clone(),
            xcr0: self.features.xcr0,
            working_set: self.working_set().recorded(),
        }
    }

    fn working_set(&self) -> std::sync::MutexGuard<'_, working_set::Tracker> {
        self.working_set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start prefaulting the working set of the address spaces restored so far, if
    /// their image records one (see `working_set.rs`).
    pub fn start_prefault(&self) {
        working_set::prefault(self.memory.clone(), self.working_set().take_frames());
    }

    fn with_memory(
        kvm: Kvm,
        memory: GuestMemory,
        restored: Option<&KvmPlatformState>,
    ) -> Result<KvmPlatform, PlatformError> {
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(PlatformError::MissingCapability(name));
            }
        }
        let sync_regs =
            kvm.check_extension_int(Cap::SyncRegs) as u32 & kvm_bindings::KVM_SYNC_X86_REGS != 0;
        let vm = kvm
            .create_vm()
            .map_err(PlatformError::kvm("KVM_CREATE_VM"))?;
        let memory_size = memory.size();
        let memory = Arc::new(memory);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size,
            userspace_addr: memory.host_base(),
        };
        // SAFETY: the region is the whole of `memory`'s mapping, which stays mapped for
        // as long as the VM exists (the platform owns both and drops the VM first).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(PlatformError::kvm("KVM_SET_USER_MEMORY_REGION"))?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(PlatformError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let xcr0 = supported_xcr0(&cpuid) & XCR0_WANTED;
        let xsave_size = xsave_size(&cpuid, xcr0);

        let kernel = match restored {
            Some(state) => {
                let frames = std::iter::once(state.kernel_pdpt)
                    .chain(state.vcpu_areas.iter().flatten().copied());
                for f in frames {
                    if !f.is_multiple_of(4096) || f >= state.allocator.next {
                        return Err(PlatformError::Incompatible(format!(
                            "kernel-half frame {f:#x} is not an allocated frame"
                        )));
                    }
                }
                if state.vcpu_areas.len() > MAX_VCPUS {
                    return Err(PlatformError::Incompatible(format!(
                        "{} vCPU areas",
                        state.vcpu_areas.len()
                    )));
                }
                KernelSpace {
                    pdpt: state.kernel_pdpt,
                    vcpu_areas: state.vcpu_areas.clone(),
                }
            }
            None => KernelSpace {
                pdpt: memory.alloc_frame()?,
                vcpu_areas: Vec::new(),
            },
        };
        let platform = KvmPlatform {
            kvm,
            vm,
            memory,
            kernel: Mutex::new(kernel),
            features: VcpuFeatures {
                cpuid,
                xcr0,
                xsave_size,
                sync_regs,
            },
            next_vcpu: AtomicUsize::new(0),
            working_set: Mutex::new(working_set::Tracker::default()),
            restored_frames: Mutex::new(FrameUses::default()),
        };
        tracing::debug!(
            sync_regs,
            xcr0 = format_args!("{xcr0:#x}"),
            restored = restored.is_some(),
            "KVM platform ready"
        );
        Ok(platform)
    }

    /// Copy the stub and build the IDT in the kernel half.
    fn install_stub(&self) -> Result<(), PlatformError> {
        let mem = &self.memory;
        let entry = mem.alloc_frame()?;
        mem.write(entry, stub::entry_code());
        let code = mem.alloc_frame()?;
        mem.write(code, stub::code());
        let idt = mem.alloc_frame()?;
        for vector in 0..32u8 {
            let handler = STUB_KVA + STUB_VECTORS + vector as u64 * STUB_VECTOR_SIZE;
            let dpl = if USER_GATE_VECTORS.contains(&vector) {
                3
            } else {
                0
            };
            let ist = if IST_VECTORS.contains(&vector) { 1 } else { 0 };
            let [lo, hi] = idt_gate(handler, dpl, ist);
            mem.write_u64(idt + vector as u64 * 16, lo);
            mem.write_u64(idt + vector as u64 * 16 + 8, hi);
        }
        let kernel = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        self.map_physmap(&kernel)?;
        self.map_kernel_page(&kernel, ENTRY_KVA, entry, KernelPage::UserEntry)?;
        self.map_kernel_page(&kernel, STUB_KVA, code, KernelPage::Code)?;
        self.map_kernel_page(&kernel, IDT_KVA, idt, KernelPage::ReadOnly)?;
        Ok(())
    }

    /// Map all of guest physical memory at [`PHYSMAP_KVA`] with 2 MiB supervisor pages.
    fn map_physmap(&self, kernel: &KernelSpace) -> Result<(), PlatformError> {
        const PTE_LARGE: u64 = 1 << 7;
        let mem = &self.memory;
        let mut gpa = 0;
        while gpa < mem.size() {
            let kva = PHYSMAP_KVA + gpa;
            let pdpt_slot = kernel.pdpt + 8 * ((kva >> 30) & 0x1ff);
            let entry = mem.read_u64(pdpt_slot);
            let pd = if entry & PTE_PRESENT != 0 {
                pte_frame(entry)
            } else {
                let pd = mem.alloc_frame()?;
                mem.write_u64(pdpt_slot, pd | PTE_PRESENT | PTE_WRITE | PTE_USER);
                pd
            };
            mem.write_u64(
                pd + 8 * ((kva >> 21) & 0x1ff),
                gpa | PTE_PRESENT | PTE_WRITE | PTE_LARGE | PTE_NX,
            );
            gpa += 1 << 21;
        }
        Ok(())
    }

    /// Map one page of the kernel half. Only ever adds mappings, so no vCPU can hold a
    /// stale translation for it.
    fn map_kernel_page(
        &self,
        kernel: &KernelSpace,
        kva: u64,
        frame: Gpa,
        kind: KernelPage,
    ) -> Result<(), PlatformError> {
        let mem = &self.memory;
        let mut table = kernel.pdpt;
        for level in [2u32, 1] {
            let slot = table + 8 * ((kva >> (12 + 9 * level)) & 0x1ff);
            let entry = mem.read_u64(slot);
            table = if entry & PTE_PRESENT != 0 {
                pte_frame(entry)
            } else {
                let next = mem.alloc_frame()?;
                // The leaf decides; the entry page needs the user bit on the way.
                mem.write_u64(slot, next | PTE_PRESENT | PTE_WRITE | PTE_USER);
                next
            };
        }
        let pte = frame
            | PTE_PRESENT
            | match kind {
                KernelPage::UserEntry => PTE_USER,
                KernelPage::Code => 0,
                KernelPage::ReadOnly => PTE_NX,
                KernelPage::Data => PTE_WRITE | PTE_NX,
            };
        mem.write_u64(table + 8 * ((kva >> 12) & 0x1ff), pte);
        Ok(())
    }

    /// Allocate and map vCPU `index`'s GDT/TSS page, stacks and page-table write queue;
    /// returns their frames.
    fn build_vcpu_area(&self, index: usize) -> Result<[Gpa; 4], PlatformError> {
        let mem = &self.memory;
        let area = vcpu_area(index);
        let existing = self
            .kernel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .vcpu_areas
            .get(index)
            .copied();
        let [tables, ist, stack, queue] = match existing {
            // A restored VM: the area is in guest memory and mapped; written afresh below.
            Some(frames) => frames,
            None => [
                mem.alloc_frame()?,
                mem.alloc_frame()?,
                mem.alloc_frame()?,
                mem.alloc_frame()?,
            ],
        };
        for (i, d) in gdt_code_data().iter().enumerate() {
            mem.write_u64(tables + GDT_OFFSET + 8 * i as u64, *d);
        }
        let [lo, hi] = tss_descriptor(area + TSS_OFFSET, TSS_LIMIT);
        mem.write_u64(tables + GDT_OFFSET + TSS_SELECTOR as u64, lo);
        mem.write_u64(tables + GDT_OFFSET + TSS_SELECTOR as u64 + 8, hi);
        // TSS: RSP0 at offset 4, IST1 at offset 36, then the I/O bitmap: every port
        // closed to ring 3 but the two syscall ports (see `stub.rs`).
        let tss = tables + TSS_OFFSET;
        mem.write_u64(tss + 4, area + KERNEL_STACK_OFFSET + 0x1000);
        mem.write_u64(tss + 36, area + IST_STACK_OFFSET + 0x1000);
        mem.write(tss + 102, &(TSS_IOMAP_OFFSET as u16).to_le_bytes());
        let mut iomap = [0xffu8; 33];
        iomap[(PORT_SYSCALL / 8) as usize] &= !(1 << (PORT_SYSCALL % 8));
        iomap[(PORT_SYSCALL_COMPAT / 8) as usize] &= !(1 << (PORT_SYSCALL_COMPAT % 8));
        mem.write(tss + TSS_IOMAP_OFFSET, &iomap);
        let mut kernel = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        if existing.is_none() {
            kernel.vcpu_areas.push([tables, ist, stack, queue]);
        }
        self.map_kernel_page(&kernel, area, tables, KernelPage::Data)?;
        self.map_kernel_page(&kernel, area + IST_STACK_OFFSET, ist, KernelPage::Data)?;
        self.map_kernel_page(&kernel, area + KERNEL_STACK_OFFSET, stack, KernelPage::Data)?;
        self.map_kernel_page(&kernel, area + PTE_QUEUE_OFFSET, queue, KernelPage::Data)?;
        Ok([tables, ist, stack, queue])
    }
}

/// The XSAVE features the host's KVM supports (CPUID leaf 0xD, subleaf 0: EDX:EAX).
fn supported_xcr0(cpuid: &CpuId) -> u64 {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0xd && e.index == 0)
        .map(|e| e.eax as u64 | (e.edx as u64) << 32)
        .unwrap_or(0x3)
}

/// Bytes of a standard-format XSAVE image holding the features in `xcr0`: the legacy
/// area and header (576 bytes), then each enabled component at its CPUID offset.
fn xsave_size(cpuid: &CpuId, xcr0: u64) -> usize {
    let mut size = 576usize;
    for e in cpuid
        .as_slice()
        .iter()
        .filter(|e| e.function == 0xd && (2..63).contains(&e.index))
    {
        if xcr0 & (1 << e.index) != 0 {
            size = size.max(e.ebx as usize + e.eax as usize);
        }
    }
    size.min(4096)
}

impl Platform for KvmPlatform {
    type Context = KvmContext;

    fn memory(&self) -> &Arc<GuestMemory> {
        &self.memory
    }

    fn new_address_space(&self) -> Result<Arc<dyn super::AddressSpace>, PlatformError> {
        let pdpt = self.kernel.lock().unwrap_or_else(|e| e.into_inner()).pdpt;
        Ok(Arc::new(KvmAddressSpace::new(self.memory.clone(), pdpt)?))
    }

    fn restore_address_space(
        &self,
        root: Gpa,
    ) -> Result<Arc<dyn super::AddressSpace>, PlatformError> {
        let (pdpt, pages) = {
            let k = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
            let pages = check_restored_tables(&self.memory, root, &mut self.restored_frames(&k))?;
            (k.pdpt, pages)
        };
        let space = KvmAddressSpace::restore(self.memory.clone(), root, pdpt, pages)?;
        space.with_tables(|memory, tables| self.working_set().restored(memory, tables));
        Ok(Arc::new(space))
    }

    fn new_context(&self) -> Result<KvmContext, PlatformError> {
        let index = self.next_vcpu.fetch_add(1, Ordering::Relaxed);
        if index >= MAX_VCPUS {
            return Err(PlatformError::TooManyContexts(MAX_VCPUS));
        }
        let frames = self.build_vcpu_area(index)?;
        let vcpu = self
            .vm
            .create_vcpu(index as u64)
            .map_err(PlatformError::kvm("KVM_CREATE_VCPU"))?;
        KvmContext::new(vcpu, index, self.memory.clone(), frames, &self.features)
    }
}

/// What a frame is to the address spaces restored so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameUse {
    Unused,
    /// The kernel half's (its PDPT, a vCPU's area).
    Kernel,
    /// A page table of one address space.
    Table,
    /// A page mapped to the guest (by one address space or several: frames are shared).
    Page,
}

/// [`FrameUse`] of every frame below the allocator's `next` (a byte each).
#[derive(Default)]
struct FrameUses(Vec<FrameUse>);

impl FrameUses {
    fn new(next: Gpa, kernel: &KernelSpace) -> FrameUses {
        let mut uses = FrameUses(vec![
            FrameUse::Unused;
            (next / crate::arch::PAGE_SIZE) as usize
        ]);
        for f in std::iter::once(kernel.pdpt).chain(kernel.vcpu_areas.iter().flatten().copied()) {
            if let Some(u) = uses.slot(f) {
                *u = FrameUse::Kernel;
            }
        }
        uses
    }

    /// What is wrong with `frame` as a page of data the sentry writes (see
    /// [`KvmPlatform::check_restored_data_frame`]), if anything; `free` is the allocator's.
    fn data_frame_problem(&mut self, frame: Gpa, free: &[Gpa]) -> Option<String> {
        match self.slot(frame) {
            None => Some("is not an allocated frame".to_owned()),
            Some(_) if free.contains(&frame) => Some("is a free frame".to_owned()),
            Some(FrameUse::Unused | FrameUse::Page) => None,
            Some(u) => Some(format!("is a {u:?} frame")),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The use of `frame`, if it is an aligned frame the allocator handed out.
    fn slot(&mut self, frame: Gpa) -> Option<&mut FrameUse> {
        if !frame.is_multiple_of(crate::arch::PAGE_SIZE) {
            return None;
        }
        self.0
            .get_mut(usize::try_from(frame / crate::arch::PAGE_SIZE).ok()?)
    }
}

/// Checks the user half of page tables restored from an image (guest memory and the
/// kernel state come from a file: neither is trusted) before anything walks them, and
/// records what each frame they name is. The root, every table a present entry names and
/// every page a present leaf maps must be a frame the allocator handed out, so no later
/// walk reads, or maps to the guest, anything outside guest memory. A table must be no
/// other table (of this address space or another: the tables are trees, and checking them,
/// like every later walk, reads each table once), no kernel frame (restoring writes the
/// root's kernel entry) and no page mapped to the guest; a page must be no table and no
/// kernel frame, or the guest could rewrite its own mappings or the kernel half.
///
/// Returns how many pages the tables hold (the address space's resident set).
fn check_restored_tables(
    memory: &GuestMemory,
    root: Gpa,
    uses: &mut FrameUses,
) -> Result<u64, PlatformError> {
    // PML4 entries 0..256 map the user half (below `USER_ADDR_END`); the rest are the kernel's.
    const USER_PML4_ENTRIES: u64 = 256;
    let invalid = |what: String| {
        PlatformError::Memory(super::memory::MemoryError::InvalidState(format!(
            "page tables at {root:#x}: {what}"
        )))
    };
    match uses.slot(root) {
        Some(u) if *u == FrameUse::Unused => *u = FrameUse::Table,
        Some(u) => return Err(invalid(format!("the root is already a {u:?} frame"))),
        None => return Err(invalid("the root is not an allocated frame".to_owned())),
    }
    // (table, level): level 3 is the PML4.
    let mut todo = vec![(root, 3u32)];
    let mut pages = 0;
    while let Some((table, level)) = todo.pop() {
        let entries = if level == 3 { USER_PML4_ENTRIES } else { 512 };
        for i in 0..entries {
            let entry = memory.read_u64(table + 8 * i);
            // A PROT_NONE page is a leaf that holds its frame without being present:
            // mprotect makes it present again and munmap frees its frame, so it is
            // checked like any page.
            let holds_frame = if level == 0 {
                entry != 0
            } else {
                entry & PTE_PRESENT != 0
            };
            if !holds_frame {
                continue;
            }
            let frame = pte_frame(entry);
            let at = || format!("entry {i} of the level-{level} table at {table:#x}");
            // The sentry maps 4 KiB pages only: a large-page bit would have the CPU map
            // 2 MiB or 1 GiB from `frame` on, kernel frames and all.
            if level > 0 && entry & PTE_LARGE != 0 {
                return Err(invalid(format!("{} maps a large page", at())));
            }
            let Some(u) = uses.slot(frame) else {
                return Err(invalid(format!(
                    "{} names frame {frame:#x}, which is not an allocated frame",
                    at()
                )));
            };
            let want = if level > 0 {
                FrameUse::Table
            } else {
                FrameUse::Page
            };
            match (*u, want) {
                (FrameUse::Unused, _) | (FrameUse::Page, FrameUse::Page) => *u = want,
                (was, _) => {
                    return Err(invalid(format!(
                    "{} names frame {frame:#x} as a {want:?}, but it is already a {was:?} frame",
                    at()
                )))
                }
            }
            if level > 0 {
                todo.push((frame, level - 1));
            } else {
                pages += 1;
            }
        }
    }
    Ok(pages)
}

impl KvmPlatform {
    /// The restore-time map of frame uses, made on first use from the allocator and the
    /// kernel half `kernel` (whose lock the caller holds, taken first).
    fn restored_frames(&self, kernel: &KernelSpace) -> std::sync::MutexGuard<'_, FrameUses> {
        let mut uses = self
            .restored_frames
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if uses.is_empty() {
            *uses = FrameUses::new(self.memory.allocator_state().next, kernel);
        }
        uses
    }

    /// Checks that `frame`, named by a restored state as a page of data the sentry writes
    /// (the vvar page), is an allocated frame that is neither the kernel half's nor a page
    /// table of an address space restored so far: writing it must not rewrite a mapping.
    pub fn check_restored_data_frame(&self, what: &str, frame: Gpa) -> Result<(), PlatformError> {
        let allocator = self.memory.allocator_state();
        // Lock order as in `restore_address_space`: the kernel half, then the uses.
        let k = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        match self
            .restored_frames(&k)
            .data_frame_problem(frame, &allocator.free)
        {
            None => Ok(()),
            Some(why) => Err(PlatformError::Memory(
                super::memory::MemoryError::InvalidState(format!("{what} frame {frame:#x} {why}")),
            )),
        }
    }

    /// The `/dev/kvm` handle (for capability queries).
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::memory::MemoryError;

    const TABLE: u64 = PTE_PRESENT | PTE_WRITE | PTE_USER;
    const PAGE: u64 = 4096;

    /// Guest memory with three pages mapped under a root (frames 2..=5 the tables, 6..=8
    /// the pages; 0 and 1 the kernel's; 13 frames allocated); returns it, the root and the
    /// leaf table.
    fn tables() -> (GuestMemory, Gpa, Gpa) {
        let mem = GuestMemory::new(64 * PAGE).expect("memory");
        for _ in 0..2 {
            mem.alloc_frame().expect("kernel frame");
        }
        let root = mem.alloc_frame().expect("frame");
        let l2 = mem.alloc_frame().expect("frame");
        let l1 = mem.alloc_frame().expect("frame");
        let l0 = mem.alloc_frame().expect("frame");
        mem.write_u64(root, l2 | TABLE);
        mem.write_u64(l2, l1 | TABLE);
        mem.write_u64(l1, l0 | TABLE);
        for i in 0..3 {
            let page = mem.alloc_frame().expect("frame");
            mem.write_u64(l0 + 8 * i, page | PTE_PRESENT | PTE_USER);
        }
        // Frames 9..=12: allocated, mapped nowhere.
        for _ in 0..4 {
            mem.alloc_frame().expect("frame");
        }
        // A kernel-half entry is not the user's to check.
        mem.write_u64(root + 8 * 511, (1 << 40) | TABLE);
        (mem, root, l0)
    }

    fn uses(mem: &GuestMemory) -> FrameUses {
        let kernel = KernelSpace {
            pdpt: 0,
            vcpu_areas: vec![[PAGE, PAGE, PAGE, PAGE]],
        };
        FrameUses::new(mem.allocator_state().next, &kernel)
    }

    fn refusal(mem: &GuestMemory, root: Gpa) -> String {
        match check_restored_tables(mem, root, &mut uses(mem)) {
            Err(PlatformError::Memory(MemoryError::InvalidState(what))) => what,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn restored_page_tables_are_checked_before_anything_walks_them() {
        let (mem, root, l0) = tables();
        let mut u = uses(&mem);
        let pages = check_restored_tables(&mem, root, &mut u).expect("sound tables");
        assert_eq!(pages, 3);
        assert_eq!(u.slot(4 * PAGE).copied(), Some(FrameUse::Table));
        assert_eq!(u.slot(7 * PAGE).copied(), Some(FrameUse::Page));
        // A second address space may not reuse those tables.
        assert!(check_restored_tables(&mem, root, &mut u).is_err());

        // A root outside what was allocated, unaligned, or a kernel frame.
        assert!(refusal(&mem, 60 * PAGE).contains("root is not an allocated frame"));
        assert!(refusal(&mem, root + 8).contains("root is not an allocated frame"));
        assert!(refusal(&mem, PAGE).contains("root is already a Kernel frame"));

        let (l2, l1) = (3 * PAGE, 4 * PAGE);
        let cases: [(Gpa, u64, &str); 10] = [
            // A table entry naming a frame past guest memory: a later walk would read there.
            (
                l2 + 8 * 7,
                0x4c58_941f_f000 | TABLE,
                "frame 0x4c58941ff000, which is not an allocated frame",
            ),
            // A leaf mapping a frame never allocated.
            (
                l0 + 8 * 9,
                (50 * PAGE) | PTE_PRESENT,
                "frame 0x32000, which is not an allocated frame",
            ),
            // A large page (2 MiB here), which would map frames nobody checked.
            (
                l1 + 8 * 4,
                (9 * PAGE) | TABLE | PTE_LARGE,
                "maps a large page",
            ),
            // A cycle, or a table met twice: not a tree.
            (l1 + 8 * 4, root | TABLE, "already a Table frame"),
            (l1 + 8 * 4, l0 | TABLE, "already a Table frame"),
            // A table that is a mapped page (met either way round), a page that is a table
            // or the kernel's.
            (l1 + 8 * 4, (7 * PAGE) | TABLE, "names frame 0x7000 as a"),
            (
                l0 + 8 * 9,
                l1 | PTE_PRESENT | PTE_WRITE,
                "as a Page, but it is already a Table frame",
            ),
            (
                l0 + 8 * 9,
                PTE_PRESENT | PTE_WRITE,
                "as a Page, but it is already a Kernel frame",
            ),
            // A PROT_NONE leaf (not present, holding its frame) is a page like any
            // other: mprotect would map it, munmap would free it.
            (
                l0 + 8 * 9,
                l1 | PTE_USER,
                "as a Page, but it is already a Table frame",
            ),
            (
                l0 + 8 * 9,
                (50 * PAGE) | PTE_USER,
                "frame 0x32000, which is not an allocated frame",
            ),
        ];
        for (slot, entry, expected) in cases {
            mem.write_u64(slot, entry);
            let what = refusal(&mem, root);
            assert!(what.contains(expected), "{entry:#x} at {slot:#x}: {what}");
            mem.write_u64(slot, 0);
        }
        // The vvar page may be any allocated frame but a table, the kernel's or a free one.
        let mut u = uses(&mem);
        check_restored_tables(&mem, root, &mut u).expect("sound tables");
        assert_eq!(u.data_frame_problem(7 * PAGE, &[]), None, "a mapped page");
        assert_eq!(
            u.data_frame_problem(12 * PAGE, &[]),
            None,
            "an unmapped one"
        );
        for (frame, why) in [
            (13 * PAGE, "is not an allocated frame"),
            (1 << 40, "is not an allocated frame"),
            (7 * PAGE + 8, "is not an allocated frame"),
            (12 * PAGE, "is a free frame"),
            (0, "is a Kernel frame"),
            (PAGE, "is a Kernel frame"),
            (root, "is a Table frame"),
            (l1, "is a Table frame"),
        ] {
            let problem = u.data_frame_problem(frame, &[12 * PAGE]);
            assert_eq!(problem.as_deref(), Some(why), "frame {frame:#x}");
        }

        // A page mapped twice is a shared page, not an error.
        mem.write_u64(l0 + 8 * 9, (7 * PAGE) | PTE_PRESENT);
        check_restored_tables(&mem, root, &mut uses(&mem)).expect("sound again");
    }
}
