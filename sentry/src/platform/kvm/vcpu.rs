//! One vCPU: enters ring 3 through the stub's `iretq` and turns each exit back into a
//! [`Trap`].
//!
//! Entering: the sentry writes an `iretq` frame (rip, cs, rflags, rsp, ss) at the top of
//! this vCPU's kernel stack, loads the guest's general registers, points `rsp` at the
//! frame and `rip` at the stub's `iret` (or `flush_iret`, which reloads CR3 first).
//! Leaving: `syscall` exits on [`PORT_SYSCALL`] with the user rip/rflags in rcx/r11 and
//! the user rsp untouched; an exception exits on the port numbered like its vector with
//! the CPU's frame (plus error code, plus CR2 for #PF) on the kernel or IST stack.

use std::sync::Arc;

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, kvm_xcrs, CpuId, Msrs};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use super::address_space::KvmAddressSpace;
use super::layout::*;
use crate::arch::UserRegs;
use crate::platform::memory::{Gpa, GuestMemory};
use crate::platform::{Context, Fault, PlatformError, Trap};

const MSR_EFER_SCE: u64 = 1 << 0;
const MSR_EFER_LME: u64 = 1 << 8;
const MSR_EFER_LMA: u64 = 1 << 10;
const MSR_EFER_NXE: u64 = 1 << 11;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SFMASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
/// Flags cleared on `syscall` entry, as Linux does: TF, DF, IF, IOPL, AC, NT.
const SFMASK: u64 = 0x4_7700;
const CR0_PE_MP_ET_NE_WP_AM_PG: u64 = 0x8005_0033;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// Stub page faults in a row before the vCPU is declared broken.
const MAX_STUB_RETRIES: u32 = 1000;
/// Size of the `iretq` frame: rip, cs, rflags, rsp, ss.
const IRET_FRAME: u64 = 5 * 8;

/// What every vCPU of a VM is set up with.
pub(super) struct VcpuFeatures {
    pub cpuid: CpuId,
    /// XSAVE features enabled (XCR0).
    pub xcr0: u64,
    /// Bytes of a standard-format XSAVE image for `xcr0`.
    pub xsave_size: usize,
    /// Whether KVM_CAP_SYNC_REGS lets registers travel in the run structure.
    pub sync_regs: bool,
}

pub struct KvmContext {
    vcpu: VcpuFd,
    index: usize,
    memory: Arc<GuestMemory>,
    /// Frames of the GDT/TSS page, the IST stack, the kernel stack, the PTE queue.
    frames: [Gpa; 4],
    sregs: kvm_sregs,
    sync_regs: bool,
    /// What the vCPU last ran with; a change needs KVM_SET_SREGS.
    loaded: Option<(u64, u64, u64)>,
    seen_generation: u64,
    /// Where the vCPU stopped: in ring 3 (the way back is to load the user registers
    /// directly) or in ring 0 (the way back is the stub's `iretq`).
    stopped_in_user: bool,
    /// Whether a `syscall` leaves the vCPU in ring 3 (kvm_pvm) rather than ring 0
    /// (hardware); learnt from the first syscall exit.
    syscall_stays_in_user: Option<bool>,
    xcr0: u64,
    xsave_size: usize,
    /// Page faults taken by the stub itself in a row (see `decode_exit`).
    stub_retries: u32,
}

fn segment(selector: u16, code: bool, dpl: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

impl KvmContext {
    pub(super) fn new(
        vcpu: VcpuFd,
        index: usize,
        memory: Arc<GuestMemory>,
        frames: [Gpa; 4],
        features: &VcpuFeatures,
    ) -> Result<KvmContext, PlatformError> {
        let VcpuFeatures {
            cpuid,
            xcr0,
            xsave_size,
            sync_regs,
        } = features;
        let (xcr0, xsave_size, sync_regs) = (*xcr0, *xsave_size, *sync_regs);
        let mut cpuid = cpuid.clone();
        for e in cpuid.as_mut_slice() {
            if e.function == 1 {
                // Initial APIC id = vCPU index; OSXSAVE mirrors CR4.
                e.ebx = (e.ebx & 0x00ff_ffff) | ((index as u32 & 0xff) << 24);
                if xcr0 & 0x4 != 0 {
                    e.ecx |= 1 << 27;
                }
            }
        }
        vcpu.set_cpuid2(&cpuid)
            .map_err(PlatformError::kvm("KVM_SET_CPUID2"))?;

        let area = vcpu_area(index);
        let mut sregs = vcpu
            .get_sregs()
            .map_err(PlatformError::kvm("KVM_GET_SREGS"))?;
        sregs.cs = segment(KERNEL_CS, true, 0, true);
        sregs.ss = segment(KERNEL_DS, false, 0, false);
        let null_data = kvm_segment {
            selector: 0,
            dpl: 3,
            ..segment(0, false, 3, false)
        };
        sregs.ds = null_data;
        sregs.es = null_data;
        sregs.fs = null_data;
        sregs.gs = null_data;
        sregs.gdt.base = area + GDT_OFFSET;
        sregs.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
        sregs.idt.base = IDT_KVA;
        sregs.idt.limit = 256 * 16 - 1;
        sregs.tr = kvm_segment {
            base: area + TSS_OFFSET,
            limit: TSS_LIMIT,
            selector: TSS_SELECTOR,
            type_: 11, // busy 64-bit TSS
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.ldt = kvm_segment {
            unusable: 1,
            ..Default::default()
        };
        sregs.cr0 = CR0_PE_MP_ET_NE_WP_AM_PG;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if xcr0 & 0x4 != 0 {
            sregs.cr4 |= CR4_OSXSAVE;
        }
        sregs.efer = MSR_EFER_SCE | MSR_EFER_LME | MSR_EFER_LMA | MSR_EFER_NXE;

        let msrs = Msrs::from_entries(&[
            msr(
                MSR_STAR,
                ((USER32_CS as u64) << 48) | ((KERNEL_CS as u64) << 32),
            ),
            msr(MSR_LSTAR, ENTRY_KVA + ENTRY_SYSCALL),
            msr(MSR_CSTAR, ENTRY_KVA + ENTRY_SYSCALL_COMPAT),
            msr(MSR_SFMASK, SFMASK),
            msr(MSR_KERNEL_GS_BASE, 0),
            msr(MSR_TSC_AUX, index as u64),
        ])
        .map_err(|_| PlatformError::UnexpectedExit("building the MSR list".into()))?;
        let set = vcpu
            .set_msrs(&msrs)
            .map_err(PlatformError::kvm("KVM_SET_MSRS"))?;
        if set != msrs.as_slice().len() {
            return Err(PlatformError::MissingCapability("setting the syscall MSRs"));
        }

        // The guest vDSO reads the TSC as the host's (see `tsc.rs`).
        super::tsc::align_to_host(&vcpu);

        if sregs.cr4 & CR4_OSXSAVE != 0 {
            // XCR0 can only be set once CR4.OSXSAVE is on.
            vcpu.set_sregs(&sregs)
                .map_err(PlatformError::kvm("KVM_SET_SREGS"))?;
            let mut xcrs = kvm_xcrs {
                nr_xcrs: 1,
                ..Default::default()
            };
            xcrs.xcrs[0].xcr = 0;
            xcrs.xcrs[0].value = xcr0;
            vcpu.set_xcrs(&xcrs)
                .map_err(PlatformError::kvm("KVM_SET_XCRS"))?;
        }

        let mut ctx = KvmContext {
            vcpu,
            index,
            memory,
            frames,
            sregs,
            sync_regs,
            loaded: None,
            seen_generation: 0,
            stopped_in_user: false,
            syscall_stays_in_user: None,
            xcr0,
            xsave_size,
            stub_retries: 0,
        };
        if sync_regs {
            ctx.vcpu.set_sync_valid_reg(SyncReg::Register);
        }
        Ok(ctx)
    }

    /// Which vCPU this is (also its APIC id and TSC_AUX).
    pub fn index(&self) -> usize {
        self.index
    }

    fn kernel_stack_top(&self) -> u64 {
        vcpu_area(self.index) + KERNEL_STACK_OFFSET + 0x1000
    }

    /// Guest physical address of a kernel-virtual address on this vCPU's stacks.
    fn stack_gpa(&self, kva: u64) -> Option<Gpa> {
        let area = vcpu_area(self.index);
        let off = kva.checked_sub(area)?;
        match off & !0xfff {
            IST_STACK_OFFSET => Some(self.frames[1] + (off & 0xfff)),
            KERNEL_STACK_OFFSET => Some(self.frames[2] + (off & 0xfff)),
            _ => None,
        }
    }

    fn read_stack(&self, rsp: u64, words: &mut [u64]) -> Option<()> {
        let n = words.len();
        for (i, w) in words.iter_mut().enumerate() {
            let kva = rsp.checked_add(8 * i as u64)?;
            // The whole frame must lie in one stack page.
            if kva & 0xfff > 0xff8 && i + 1 < n {
                return None;
            }
            *w = self.memory.read_u64(self.stack_gpa(kva)?);
        }
        Some(())
    }

    fn get_regs(&mut self) -> Result<kvm_regs, PlatformError> {
        if self.sync_regs {
            Ok(self.vcpu.sync_regs().regs)
        } else {
            self.vcpu
                .get_regs()
                .map_err(PlatformError::kvm("KVM_GET_REGS"))
        }
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), PlatformError> {
        if self.sync_regs {
            self.vcpu.sync_regs_mut().regs = *regs;
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            self.vcpu
                .set_regs(regs)
                .map_err(PlatformError::kvm("KVM_SET_REGS"))
        }
    }

    /// Enter ring 0 with our segments, `want`'s CR3 and FS/GS bases.
    fn load_kernel_state(&mut self, want: (u64, u64, u64)) -> Result<(), PlatformError> {
        self.sregs.cr3 = want.0;
        self.sregs.fs.base = want.1;
        self.sregs.gs.base = want.2;
        self.vcpu
            .set_sregs(&self.sregs)
            .map_err(PlatformError::kvm("KVM_SET_SREGS"))?;
        self.loaded = Some(want);
        self.stopped_in_user = false;
        Ok(())
    }

    /// Have the stub rewrite, from inside the guest, every page-table entry the sentry
    /// changed while it was present (see `stub.rs` for why). Returns whether a kick
    /// arrived meanwhile (the caller must not enter the guest then).
    fn apply_pending(
        &mut self,
        space: &KvmAddressSpace,
        want: (u64, u64, u64),
    ) -> Result<bool, PlatformError> {
        let mut kicked = false;
        let mut waited = std::time::Duration::ZERO;
        loop {
            let (batch, frames) = space.take_pending(PTE_QUEUE_CAPACITY);
            if batch.is_empty() {
                space.free_frames(frames);
                // Another vCPU is rewriting entries: user code must not run on
                // translations those writes remove. It finishes in microseconds; if it
                // failed instead (its thread is ending the sandbox), do not wait forever.
                if space.rewrites_in_flight() && waited < std::time::Duration::from_secs(1) {
                    let t = std::time::Instant::now();
                    std::thread::yield_now();
                    waited += t.elapsed();
                    continue;
                }
                return Ok(kicked);
            }
            if self.stopped_in_user || self.loaded != Some(want) {
                if let Err(e) = self.load_kernel_state(want) {
                    space.batch_done();
                    return Err(e);
                }
            }
            let queue = self.frames[3];
            for (i, slot) in batch.iter().enumerate() {
                self.memory
                    .write_u64(queue + 8 * i as u64, PHYSMAP_KVA + slot);
            }
            let k = kvm_regs {
                rsi: vcpu_area(self.index) + PTE_QUEUE_OFFSET,
                rcx: batch.len() as u64,
                rsp: self.kernel_stack_top(),
                rip: STUB_KVA + STUB_APPLY_PTES,
                rflags: 0x2,
                ..Default::default()
            };
            // The writes are idempotent: after a kick, run the batch again.
            loop {
                if let Err(e) = self.set_regs(&k) {
                    space.batch_done();
                    return Err(e);
                }
                match self.vcpu.run() {
                    Ok(VcpuExit::IoOut(PORT_PTES_APPLIED, _)) => break,
                    // See `decode_exit`: a reflected page fault on the physmap; the
                    // writes are idempotent, so run the batch again.
                    Ok(VcpuExit::IoOut(14, _)) if self.stub_retries < MAX_STUB_RETRIES => {
                        self.stub_retries += 1;
                        tracing::debug!("page fault while rewriting entries; retrying");
                    }
                    Ok(VcpuExit::Intr) => {}
                    Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                    Ok(other) => {
                        let msg = format!("applying page-table writes: {other:?}");
                        space.batch_done();
                        return Err(PlatformError::UnexpectedExit(msg));
                    }
                    Err(e) => {
                        space.batch_done();
                        return Err(PlatformError::kvm("KVM_RUN (page-table writes)")(e));
                    }
                }
                kicked = true;
                self.vcpu.set_kvm_immediate_exit(0);
            }
            space.batch_done();
        }
    }

    /// Resume in ring 3 straight from ring 3: load the user registers as they are.
    fn enter_direct(&mut self, regs: &UserRegs) -> Result<(), PlatformError> {
        let k = kvm_regs {
            rax: regs.rax,
            rbx: regs.rbx,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rsi: regs.rsi,
            rdi: regs.rdi,
            rsp: regs.rsp,
            rbp: regs.rbp,
            r8: regs.r8,
            r9: regs.r9,
            r10: regs.r10,
            r11: regs.r11,
            r12: regs.r12,
            r13: regs.r13,
            r14: regs.r14,
            r15: regs.r15,
            rip: regs.rip,
            rflags: regs.sanitized_rflags(),
        };
        self.set_regs(&k)
    }

    /// Resume in ring 3 from ring 0 through the stub's `iretq` at `entry`.
    fn enter_via_iret(&mut self, regs: &UserRegs, entry: u64) -> Result<(), PlatformError> {
        let top = self.kernel_stack_top();
        let frame = top - IRET_FRAME;
        let gpa = self
            .stack_gpa(frame)
            .ok_or_else(|| PlatformError::UnexpectedExit("kernel stack layout".into()))?;
        for (i, v) in [
            regs.rip,
            USER_CS as u64,
            regs.sanitized_rflags(),
            regs.rsp,
            USER_DS as u64,
        ]
        .into_iter()
        .enumerate()
        {
            self.memory.write_u64(gpa + 8 * i as u64, v);
        }
        let k = kvm_regs {
            rax: regs.rax,
            rbx: regs.rbx,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rsi: regs.rsi,
            rdi: regs.rdi,
            rsp: frame,
            rbp: regs.rbp,
            r8: regs.r8,
            r9: regs.r9,
            r10: regs.r10,
            r11: regs.r11,
            r12: regs.r12,
            r13: regs.r13,
            r14: regs.r14,
            r15: regs.r15,
            rip: STUB_KVA + entry,
            rflags: 0x2,
        };
        self.set_regs(&k)
    }

    /// Copy the guest's general registers (except rsp/rip/rflags) out of the vCPU.
    fn copy_gprs(k: &kvm_regs, regs: &mut UserRegs) {
        regs.rax = k.rax;
        regs.rbx = k.rbx;
        regs.rcx = k.rcx;
        regs.rdx = k.rdx;
        regs.rsi = k.rsi;
        regs.rdi = k.rdi;
        regs.rbp = k.rbp;
        regs.r8 = k.r8;
        regs.r9 = k.r9;
        regs.r10 = k.r10;
        regs.r11 = k.r11;
        regs.r12 = k.r12;
        regs.r13 = k.r13;
        regs.r14 = k.r14;
        regs.r15 = k.r15;
    }

    fn decode_exception(&mut self, vector: u8, regs: &mut UserRegs) -> Result<Trap, PlatformError> {
        let k = self.get_regs()?;
        let mut words = [0u64; 7];
        let n = if vector == Fault::PAGE_FAULT { 7 } else { 6 };
        self.read_stack(k.rsp, &mut words[..n]).ok_or_else(|| {
            PlatformError::UnexpectedExit(format!(
                "exception {vector} with rsp {:#x} off the kernel stacks",
                k.rsp
            ))
        })?;
        let (address, f) = if n == 7 {
            (words[0], &words[1..])
        } else {
            (0, &words[..])
        };
        let (error_code, rip, cs, rflags, rsp) = (f[0], f[1], f[2], f[3], f[4]);
        if cs & 3 != 3 {
            return Err(PlatformError::KernelFault {
                vector,
                rip,
                error_code,
            });
        }
        Self::copy_gprs(&k, regs);
        regs.rip = rip;
        regs.rflags = rflags;
        regs.rsp = rsp;
        Ok(Trap::Fault(Fault {
            vector,
            error_code,
            address,
        }))
    }
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

impl Context for KvmContext {
    fn arm_kicks(&mut self) {
        // A kick either finds this thread in KVM_RUN (the signal makes it return) or
        // before it: then the handler sets `immediate_exit`, and the next KVM_RUN returns
        // at once (EINTR) instead of running the guest until its next trap. The byte lives
        // in the vCPU's kvm_run mapping, which outlives the thread's use of it (the thread
        // publishes null before it lets the context go).
        let immediate_exit: *const std::sync::atomic::AtomicU8 =
            std::ptr::addr_of_mut!(self.vcpu.get_kvm_run().immediate_exit).cast();
        crate::platform::kick::publish_immediate_exit(immediate_exit);
    }

    fn fpu_state(&mut self) -> Result<Vec<u8>, PlatformError> {
        let xsave = self
            .vcpu
            .get_xsave()
            .map_err(PlatformError::kvm("KVM_GET_XSAVE"))?;
        let bytes: Vec<u8> = xsave.region.iter().flat_map(|w| w.to_le_bytes()).collect();
        Ok(bytes[..self.xsave_size].to_vec())
    }

    fn set_fpu_state(&mut self, image: &[u8]) -> Result<(), PlatformError> {
        let mut xsave = kvm_bindings::kvm_xsave::default();
        let n = image.len().min(self.xsave_size).min(4096);
        for (i, chunk) in image[..n].chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            xsave.region[i] = u32::from_le_bytes(w);
        }
        // SAFETY: we enable no dynamically sized XSAVE features (AMX), so the kernel
        // reads no more than the 4096-byte `kvm_xsave` we pass.
        unsafe { self.vcpu.set_xsave(&xsave) }.map_err(PlatformError::kvm("KVM_SET_XSAVE"))
    }

    fn fpu_size(&self) -> usize {
        self.xsave_size
    }

    fn fpu_features(&self) -> u64 {
        self.xcr0
    }

    fn switch(
        &mut self,
        space: &dyn crate::platform::AddressSpace,
        regs: &mut UserRegs,
    ) -> Result<Trap, PlatformError> {
        let space = space
            .as_any()
            .downcast_ref::<KvmAddressSpace>()
            .ok_or(PlatformError::ForeignAddressSpace)?;
        let want = (space.root(), regs.fs_base, regs.gs_base);
        if self.apply_pending(space, want)? {
            return Ok(Trap::Interrupted);
        }
        let generation = space.generation();
        let flush = generation != self.seen_generation;
        self.seen_generation = generation;
        space.enter(
            self.index,
            crate::platform::kick::Kicker::current(),
            generation,
        );
        let result = self.run_entered(regs, flush, want);
        space.exit(self.index);
        result
    }
}

impl KvmContext {
    /// Enter the guest (the caller has registered this vCPU as running the address
    /// space) and decode the exit.
    fn run_entered(
        &mut self,
        regs: &mut UserRegs,
        flush: bool,
        want: (u64, u64, u64),
    ) -> Result<Trap, PlatformError> {
        if self.stopped_in_user && !flush && self.loaded == Some(want) {
            self.enter_direct(regs)?;
        } else {
            if self.stopped_in_user || self.loaded != Some(want) {
                self.load_kernel_state(want)?;
            }
            self.enter_via_iret(regs, if flush { STUB_FLUSH_IRET } else { STUB_IRET })?;
        }

        let port = match self.vcpu.run() {
            Ok(VcpuExit::IoOut(port, _)) => port,
            Ok(VcpuExit::Shutdown) => {
                return Err(PlatformError::UnexpectedExit(
                    "triple fault (KVM_EXIT_SHUTDOWN)".into(),
                ))
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return Err(PlatformError::UnexpectedExit(format!(
                    "KVM entry failed: reason {reason:#x} on cpu {cpu}"
                )))
            }
            Ok(VcpuExit::Intr) => return self.interrupted(regs),
            Ok(other) => return Err(PlatformError::UnexpectedExit(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return self.interrupted(regs)
            }
            Err(e) => return Err(PlatformError::kvm("KVM_RUN")(e)),
        };
        self.decode_exit(port, regs)
    }
}

impl KvmContext {
    /// KVM_RUN was cut short by a kick. Work out where the guest stood so `regs` stays
    /// the thread's true state.
    fn interrupted(&mut self, regs: &mut UserRegs) -> Result<Trap, PlatformError> {
        self.vcpu.set_kvm_immediate_exit(0);
        let k = self
            .vcpu
            .get_regs()
            .map_err(PlatformError::kvm("KVM_GET_REGS"))?;
        if k.rip < crate::arch::USER_ADDR_END {
            // In user code: take its registers as they are now.
            Self::copy_gprs(&k, regs);
            regs.rip = k.rip;
            regs.rsp = k.rsp;
            regs.rflags = k.rflags;
            self.stopped_in_user = true;
            return Ok(Trap::Interrupted);
        }
        let iret_paths = STUB_KVA + STUB_IRET..STUB_KVA + STUB_APPLY_PTES;
        if iret_paths.contains(&k.rip) {
            // On the way back to user code, which has not run: `regs` is still right and
            // the way back can be started again from scratch.
            self.stopped_in_user = false;
            return Ok(Trap::Interrupted);
        }
        // In the middle of a trap (a syscall or exception entry): it exits within a few
        // instructions, so let it, and report that trap; the caller checks for pending
        // work after every trap anyway.
        let port = loop {
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, _)) => break port,
                Ok(VcpuExit::Intr) => {}
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Ok(other) => {
                    return Err(PlatformError::UnexpectedExit(format!(
                        "finishing a trap after a kick: {other:?}"
                    )))
                }
                Err(e) => return Err(PlatformError::kvm("KVM_RUN (after a kick)")(e)),
            }
            self.vcpu.set_kvm_immediate_exit(0);
        };
        self.decode_exit(port, regs)
    }

    /// Turn a stub exit on `port` into a trap.
    fn decode_exit(&mut self, port: u16, regs: &mut UserRegs) -> Result<Trap, PlatformError> {
        self.stopped_in_user = false;
        match port {
            PORT_SYSCALL => {
                let stays = match self.syscall_stays_in_user {
                    Some(stays) => stays,
                    None => {
                        let sregs = self
                            .vcpu
                            .get_sregs()
                            .map_err(PlatformError::kvm("KVM_GET_SREGS"))?;
                        let stays = sregs.cs.dpl == 3;
                        tracing::debug!(vcpu = self.index, stays, "syscall entry privilege learnt");
                        self.syscall_stays_in_user = Some(stays);
                        stays
                    }
                };
                self.stopped_in_user = stays;
                let k = self.get_regs()?;
                Self::copy_gprs(&k, regs);
                regs.rip = k.rcx;
                regs.rflags = k.r11;
                regs.rsp = k.rsp;
                Ok(Trap::Syscall)
            }
            PORT_SYSCALL_COMPAT => {
                // A 32-bit `syscall` from compatibility mode: not supported, like gVisor.
                let k = self.get_regs()?;
                Self::copy_gprs(&k, regs);
                regs.rip = k.rcx;
                regs.rflags = k.r11;
                regs.rsp = k.rsp;
                Ok(Trap::Fault(Fault {
                    vector: Fault::INVALID_OPCODE,
                    error_code: 0,
                    address: 0,
                }))
            }
            v if v < 32 => match self.decode_exception(v as u8, regs) {
                // kvm_pvm now and then reflects a page fault on the stub's own pages
                // (its kernel stack, under flush_iret) after dropping shadow pages; the
                // way back to user code has not changed anything, so start it again.
                Err(PlatformError::KernelFault {
                    vector: 14, rip, ..
                }) if (STUB_KVA + STUB_IRET..STUB_KVA + STUB_APPLY_PTES).contains(&rip)
                    && self.stub_retries < MAX_STUB_RETRIES =>
                {
                    self.stub_retries += 1;
                    tracing::debug!(rip = format_args!("{rip:#x}"), "stub page fault; retrying");
                    self.stopped_in_user = false;
                    Ok(Trap::Interrupted)
                }
                other => {
                    self.stub_retries = 0;
                    other
                }
            },
            other => Err(PlatformError::UnexpectedExit(format!(
                "I/O exit on port {other:#x}"
            ))),
        }
    }
}
