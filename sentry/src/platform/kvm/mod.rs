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
use pagetable::{pte_frame, PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITE};

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
        let pdpt = self.kernel.lock().unwrap_or_else(|e| e.into_inner()).pdpt;
        let space = KvmAddressSpace::restore(self.memory.clone(), root, pdpt)?;
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

impl KvmPlatform {
    /// The `/dev/kvm` handle (for capability queries).
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }
}
