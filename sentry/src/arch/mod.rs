//! x86-64 architectural state of a guest thread, as the sentry sees it.

pub mod fpu;

use serde::{Deserialize, Serialize};

/// The size of a page on x86-64.
pub const PAGE_SIZE: u64 = 4096;

/// The highest user address plus one: the top of the lower canonical half (47 bits).
pub const USER_ADDR_END: u64 = 0x0000_8000_0000_0000;

/// Linux's user segment selectors (arch/x86/include/asm/segment.h): guests may read them.
pub const USER_CS: u64 = 0x33;
pub const USER_DS: u64 = 0x2b;

/// RFLAGS bits a guest may change (CF, PF, AF, ZF, SF, TF, DF, OF, AC, ID); IOPL, NT,
/// IF and VM stay ours, as in Linux's `FIX_EFLAGS`.
pub const RFLAGS_USER_MASK: u64 =
    0x0001 | 0x0004 | 0x0010 | 0x0040 | 0x0080 | 0x0100 | 0x0400 | 0x0800 | 0x4_0000 | 0x20_0000;
/// Bit 1 is always set; IF is set so the guest sees what it sees on Linux.
pub const RFLAGS_FIXED: u64 = 0x2 | 0x200;

/// Round `addr` down to a page boundary.
pub const fn page_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// Round `addr` up to a page boundary, or `None` if that overflows.
pub const fn page_up(addr: u64) -> Option<u64> {
    match addr.checked_add(PAGE_SIZE - 1) {
        Some(a) => Some(a & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// General-purpose registers, instruction pointer, flags and segment bases of a guest
/// thread while it is stopped in the sentry. FPU/SSE/AVX state stays in the vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
}

impl UserRegs {
    /// The six syscall arguments in ABI order (rdi, rsi, rdx, r10, r8, r9).
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    /// RFLAGS as they may be loaded for ring 3: the guest's bits and our fixed ones.
    pub fn sanitized_rflags(&self) -> u64 {
        (self.rflags & RFLAGS_USER_MASK) | RFLAGS_FIXED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rflags_never_grant_io_privilege() {
        let regs = UserRegs {
            rflags: u64::MAX,
            ..Default::default()
        };
        let f = regs.sanitized_rflags();
        assert_eq!(f & 0x3000, 0, "IOPL must stay 0");
        assert_eq!(f & 0x4000, 0, "NT must stay clear");
        assert_eq!(f & 0x200, 0x200, "IF set");
    }

    #[test]
    fn page_rounding() {
        assert_eq!(page_down(0x1fff), 0x1000);
        assert_eq!(page_up(0x1001), Some(0x2000));
        assert_eq!(page_up(u64::MAX), None);
    }
}
