//! The initial stack: strings, AT_RANDOM bytes, auxv, envp, argv and argc, laid out as
//! Linux's `create_elf_tables` does.

use super::elf::{ElfInfo, LoadError};
use super::ExecArgs;
use crate::abi::Errno;
use crate::mm::{AreaKind, Backing, MemoryManager, Vma, STACK_TOP};
use crate::platform::Perms;

/// The stack area reserved for the main thread (RLIMIT_STACK's default).
pub const STACK_SIZE: u64 = 8 << 20;
/// Bound on argv + envp bytes (Linux: a quarter of the stack limit).
pub const MAX_ARG_BYTES: usize = (STACK_SIZE / 4) as usize;

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;
const AT_MINSIGSTKSZ: u64 = 51;

fn hwcap() -> u64 {
    std::arch::x86_64::__cpuid(1).edx as u64
}

/// Map the stack and write the initial process stack; returns the initial rsp. `vdso`
/// is the vDSO's base (AT_SYSINFO_EHDR).
pub fn build(
    mm: &MemoryManager,
    info: &ElfInfo,
    args: &ExecArgs<'_>,
    vdso: u64,
) -> Result<u64, LoadError> {
    let total: usize = args.argv.iter().chain(args.envp).map(|s| s.len() + 1).sum();
    if total > MAX_ARG_BYTES {
        return Err(LoadError::Stack(Errno::E2BIG));
    }
    mm.map_fixed(Vma {
        start: STACK_TOP - STACK_SIZE,
        end: STACK_TOP,
        // PT_GNU_STACK with PF_X asks for an executable stack (Linux: VM_EXEC on it).
        perms: if info.exec_stack {
            Perms::RWX
        } else {
            Perms::RW
        },
        shared: false,
        backing: Backing::Anonymous,
        kind: AreaKind::Stack,
    });
    let mut sp = STACK_TOP - 8;
    let push_bytes = |sp: &mut u64, bytes: &[u8]| -> Result<u64, LoadError> {
        *sp -= bytes.len() as u64;
        mm.copy_out(*sp, bytes).map_err(LoadError::Stack)?;
        Ok(*sp)
    };
    let cstr = |s: &[u8]| {
        let mut v = s.to_vec();
        v.push(0);
        v
    };
    let execfn = push_bytes(&mut sp, &cstr(args.path))?;
    let mut envp = Vec::with_capacity(args.envp.len());
    for s in args.envp.iter().rev() {
        envp.push(push_bytes(&mut sp, &cstr(s))?);
    }
    envp.reverse();
    let mut argv = Vec::with_capacity(args.argv.len());
    for s in args.argv.iter().rev() {
        argv.push(push_bytes(&mut sp, &cstr(s))?);
    }
    argv.reverse();
    let platform = push_bytes(&mut sp, b"x86_64\0")?;
    let mut random = [0u8; 16];
    getrandom(&mut random);
    let random_addr = push_bytes(&mut sp, &random)?;

    let auxv: [(u64, u64); 21] = [
        (AT_SYSINFO_EHDR, vdso),
        (AT_HWCAP, hwcap()),
        (AT_PAGESZ, 4096),
        (AT_CLKTCK, 100),
        (AT_PHDR, info.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, info.phnum),
        (AT_BASE, info.interp_base),
        (AT_FLAGS, 0),
        (AT_ENTRY, info.entry),
        (AT_UID, args.uid as u64),
        (AT_EUID, args.uid as u64),
        (AT_GID, args.gid as u64),
        (AT_EGID, args.gid as u64),
        (AT_SECURE, 0),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
        (AT_MINSIGSTKSZ, 2048),
        (AT_NULL, 0),
    ];
    let mut words: Vec<u64> = Vec::new();
    words.push(args.argv.len() as u64);
    words.extend(&argv);
    words.push(0);
    words.extend(&envp);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    sp &= !15;
    if words.len() % 2 == 1 {
        sp -= 8;
    }
    sp -= 8 * words.len() as u64;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mm.copy_out(sp, &bytes).map_err(LoadError::Stack)?;
    Ok(sp)
}

fn getrandom(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    debug_assert_eq!(n, buf.len() as isize);
}
