//! Where the ring-0 stub and its tables live in the kernel half of every address space,
//! and the segment layout (Linux's, so guests read the selectors they expect).

/// Base of the kernel half we use: PML4 entry 511.
pub const KERNEL_BASE: u64 = 0xffff_ff80_0000_0000;
/// The stub's entry page (syscall targets; user-readable, see `stub.rs`).
pub const ENTRY_KVA: u64 = KERNEL_BASE;
/// The stub's ring-0 code page.
pub const STUB_KVA: u64 = KERNEL_BASE + 0x1000;
/// The IDT page (256 gates × 16 bytes).
pub const IDT_KVA: u64 = KERNEL_BASE + 0x2000;
/// All of guest physical memory, mapped supervisor-only with 2 MiB pages, so the stub
/// can rewrite page-table entries itself (see `address_space.rs`).
pub const PHYSMAP_KVA: u64 = KERNEL_BASE + 0x40_0000_0000;
/// Per-vCPU areas start here, one [`VCPU_STRIDE`] each.
pub const VCPU_AREA_KVA: u64 = KERNEL_BASE + 0x20_0000;
/// Per vCPU: GDT+TSS page, IST stack page, kernel stack page, page-table write queue,
/// and an unmapped guard page.
pub const VCPU_STRIDE: u64 = 0x8000;
/// Offsets inside a vCPU area.
pub const GDT_OFFSET: u64 = 0;
pub const TSS_OFFSET: u64 = 0x80;
/// The TSS's I/O permission bitmap follows it: ports 0..256 (32 bytes) and the 0xff
/// byte the CPU requires after the last one.
pub const TSS_IOMAP_OFFSET: u64 = 104;
pub const TSS_LIMIT: u32 = 104 + 32 + 1 - 1;
pub const IST_STACK_OFFSET: u64 = 0x1000;
pub const KERNEL_STACK_OFFSET: u64 = 0x2000;
pub const PTE_QUEUE_OFFSET: u64 = 0x4000;
/// Entry addresses one queue page holds.
pub const PTE_QUEUE_CAPACITY: usize = 4096 / 8;
/// vCPUs the kernel-half layout has room for (one per guest thread).
pub const MAX_VCPUS: usize = 4096;

/// Offsets of the syscall targets in the entry page (see `stub.rs`).
pub const ENTRY_SYSCALL: u64 = 0x00;
pub const ENTRY_SYSCALL_COMPAT: u64 = 0x10;
/// Offsets in the ring-0 stub page.
pub const STUB_IRET: u64 = 0x00;
pub const STUB_FLUSH_IRET: u64 = 0x10;
pub const STUB_APPLY_PTES: u64 = 0x20;
pub const STUB_VECTORS: u64 = 0x40;
pub const STUB_VECTOR_SIZE: u64 = 0x10;

/// Port numbers the stub writes to: one per exception vector (0..32), and these.
pub const PORT_SYSCALL: u16 = 0xff;
pub const PORT_SYSCALL_COMPAT: u16 = 0xfe;
pub const PORT_PTES_APPLIED: u16 = 0xfd;

/// GDT selectors, as in Linux's `asm/segment.h`.
pub const KERNEL_CS: u16 = 0x10;
pub const KERNEL_DS: u16 = 0x18;
pub const USER32_CS: u16 = 0x23;
pub const USER_DS: u16 = 0x2b;
pub const USER_CS: u16 = 0x33;
pub const TSS_SELECTOR: u16 = 0x40;
/// GDT entries: null, unused, kernel code/data, user code32/data/code64, unused, TSS (2).
pub const GDT_ENTRIES: usize = 10;

/// Vectors whose gates may be raised from ring 3 with `int N` (int3, into), as in Linux.
pub const USER_GATE_VECTORS: [u8; 2] = [3, 4];
/// Vectors that run on the IST stack: NMI, double fault, machine check.
pub const IST_VECTORS: [u8; 3] = [2, 8, 18];

/// The kernel-virtual base of vCPU `index`'s area.
pub const fn vcpu_area(index: usize) -> u64 {
    VCPU_AREA_KVA + index as u64 * VCPU_STRIDE
}

/// The raw 8-byte GDT descriptors for the code and data segments.
pub const fn gdt_code_data() -> [u64; 8] {
    [
        0,                     // null
        0,                     // 0x08: unused (Linux's KERNEL32_CS)
        0x00af_9b00_0000_ffff, // 0x10: kernel code, 64-bit, DPL 0
        0x00cf_9300_0000_ffff, // 0x18: kernel data
        0x00cf_fb00_0000_ffff, // 0x23: user code, 32-bit, DPL 3
        0x00cf_f300_0000_ffff, // 0x2b: user data, DPL 3
        0x00af_fb00_0000_ffff, // 0x33: user code, 64-bit, DPL 3
        0,
    ]
}

/// The two 8-byte halves of a 64-bit available-TSS descriptor.
pub const fn tss_descriptor(base: u64, limit: u32) -> [u64; 2] {
    let low = (limit as u64 & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89u64 << 40) // present, DPL 0, type 9 (available 64-bit TSS)
        | (((limit as u64 >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// A 16-byte interrupt gate to `handler` in the kernel code segment.
pub const fn idt_gate(handler: u64, dpl: u8, ist: u8) -> [u64; 2] {
    let low = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | ((ist as u64 & 7) << 32)
        | ((0x8e | ((dpl as u64 & 3) << 5)) << 40) // present, interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let [lo, hi] = tss_descriptor(0xffff_ff80_1220_0080, 103);
        assert_eq!(lo & 0xffff, 103);
        assert_eq!((lo >> 16) & 0xff_ffff, 0x20_0080);
        assert_eq!((lo >> 40) & 0xff, 0x89);
        assert_eq!((lo >> 56) & 0xff, 0x12);
        assert_eq!(hi, 0xffff_ff80);
    }

    #[test]
    fn gate_splits_handler_address() {
        let [lo, hi] = idt_gate(0xffff_ff80_0000_0040, 3, 1);
        assert_eq!(lo & 0xffff, 0x0040);
        assert_eq!((lo >> 48) & 0xffff, 0x0000);
        assert_eq!((lo >> 16) & 0xffff, KERNEL_CS as u64);
        assert_eq!((lo >> 32) & 7, 1);
        assert_eq!((lo >> 40) & 0xff, 0xee);
        assert_eq!(hi, 0xffff_ff80);
    }

    #[test]
    fn vcpu_areas_fit_in_the_kernel_half() {
        assert!(vcpu_area(MAX_VCPUS) > vcpu_area(MAX_VCPUS - 1));
        assert!(vcpu_area(MAX_VCPUS) - KERNEL_BASE < 1 << 39);
    }
}
