//! The stub: the only guest code that is not the guest's own. Two pages.
//!
//! It does nothing but turn traps into exits. The *entry page* holds the `syscall`
//! targets: an `out` to [`PORT_SYSCALL`](super::layout::PORT_SYSCALL). It is mapped
//! user-readable because kvm_pvm enters the LSTAR target without leaving ring 3; the TSS
//! I/O bitmap opens that one port to ring 3 for the same reason. On hardware KVM the
//! target runs in ring 0 and the bitmap is moot. A guest that jumps there itself only
//! makes a syscall.
//!
//! The *ring-0 page* holds the exception vectors and the way back to ring 3. Each vector
//! pushes a uniform frame (a zero error code where the CPU pushes none, and CR2 for page
//! faults) and `out`s to the port numbered like the vector. The sentry reads the frame,
//! handles the trap, and re-enters at `iret`/`flush_iret` with a fresh `iretq` frame on
//! the kernel stack. `sysretq` is never used: it triple-faults on kvm_pvm.
//!
//! Layout (offsets fixed in `layout.rs`):
//!   entry page: 0x00 syscall entry (LSTAR), 0x10 compat syscall entry (CSTAR)
//!   ring-0 page: 0x00 iretq, 0x10 reload CR3 (flush TLB) + iretq,
//!                0x20 rewrite queued page-table entries (rsi = array of their addresses,
//!                     rcx = count), exit,
//!                0x40 + 16·v exception vector v, v in 0..32
//!
//! Why the guest writes page-table entries itself: on a shadow-paging hypervisor
//! (kvm_pvm) KVM only notices changes to guest page tables that the guest makes; a write
//! from the sentry's side of the memfd leaves stale translations behind. The sentry
//! writes every entry directly and also queues each change of a present entry; the stub
//! writes the entry again from inside the guest, which KVM traps and honours. It writes
//! the value the entry holds at that moment (read, then written back), never a value
//! captured earlier: the sentry may have changed the entry again in between.

use std::arch::global_asm;

global_asm!(
    r#"
    .pushsection .rodata.nanovisor_stub, "a"
    .p2align 12
    .globl nanovisor_entry_start
nanovisor_entry_start:
    outb %al, $0xff
    ud2
    .p2align 4
    outb %al, $0xfe
    ud2
    .p2align 4
    .globl nanovisor_entry_end
nanovisor_entry_end:
    .p2align 12
    .globl nanovisor_stub_start
nanovisor_stub_start:
    iretq
    .p2align 4
    pushq %rax
    movq %cr3, %rax
    movq %rax, %cr3
    popq %rax
    iretq
    .p2align 4
1:
    testq %rcx, %rcx
    jz 2f
    movq (%rsi), %rdx
    movq (%rdx), %rax
    movq %rax, (%rdx)
    addq $8, %rsi
    decq %rcx
    jmp 1b
2:
    outb %al, $0xfd
    ud2
    .p2align 6
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 4
    .if (\v == 8) | (\v == 10) | (\v == 11) | (\v == 12) | (\v == 13) | (\v == 14) | (\v == 17) | (\v == 21) | (\v == 29) | (\v == 30)
    .else
    pushq $0
    .endif
    .if \v == 14
    pushq %rax
    movq %cr2, %rax
    xchgq %rax, (%rsp)
    .endif
    outb %al, $\v
    ud2
    .endr
    .p2align 4
    .globl nanovisor_stub_end
nanovisor_stub_end:
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    static nanovisor_entry_start: u8;
    static nanovisor_entry_end: u8;
    static nanovisor_stub_start: u8;
    static nanovisor_stub_end: u8;
}

/// The entry page's machine code (syscall targets).
pub fn entry_code() -> &'static [u8] {
    // SAFETY: both symbols are defined in the read-only section above, in order, so the
    // bytes between them are initialized, immutable and live for the program's life.
    unsafe {
        let start = std::ptr::addr_of!(nanovisor_entry_start);
        let end = std::ptr::addr_of!(nanovisor_entry_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The ring-0 page's machine code (return paths and exception vectors).
pub fn code() -> &'static [u8] {
    // SAFETY: as for `entry_code`.
    unsafe {
        let start = std::ptr::addr_of!(nanovisor_stub_start);
        let end = std::ptr::addr_of!(nanovisor_stub_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::*;
    use super::*;

    #[test]
    fn entry_points_are_where_the_layout_says() {
        let e = entry_code();
        assert_eq!(&e[ENTRY_SYSCALL as usize..][..2], &[0xe6, 0xff]); // out %al, $0xff
        assert_eq!(&e[ENTRY_SYSCALL_COMPAT as usize..][..2], &[0xe6, 0xfe]);
        let c = code();
        assert!(c.len() <= 4096);
        assert_eq!(c[STUB_IRET as usize..][..2], [0x48, 0xcf]); // iretq
                                                                // Vector 0 pushes a zero error code, then outs to port 0.
        let v0 = &c[STUB_VECTORS as usize..];
        assert_eq!(&v0[..4], &[0x6a, 0x00, 0xe6, 0x00]);
        // Vector 13 (#GP) has a CPU error code: straight to out.
        let v13 = &c[(STUB_VECTORS + 13 * STUB_VECTOR_SIZE) as usize..];
        assert_eq!(&v13[..2], &[0xe6, 13]);
        assert_eq!(c.len() as u64, STUB_VECTORS + 32 * STUB_VECTOR_SIZE);
    }
}
