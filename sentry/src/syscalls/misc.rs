//! System identity and randomness: uname, sysinfo, getrandom.

use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(
        425,
        io_uring_setup,
        Unsupported,
        "returns ENOSYS: libuv and others fall back to epoll and threads",
        super::enosys
    ),
    syscall!(
        426,
        io_uring_enter,
        Unsupported,
        "returns ENOSYS (no io_uring instances exist)",
        super::enosys
    ),
    syscall!(
        427,
        io_uring_register,
        Unsupported,
        "returns ENOSYS (no io_uring instances exist)",
        super::enosys
    ),
    syscall!(
        326,
        copy_file_range,
        Unsupported,
        "returns ENOSYS: cp, cat and others fall back to read/write",
        super::enosys
    ),
    syscall!(
        322,
        execveat,
        Unsupported,
        "returns ENOSYS: glibc's fexecve falls back to /proc/self/fd",
        super::enosys
    ),
    syscall!(
        319,
        memfd_create,
        Unsupported,
        "returns ENOSYS for now (anonymous overlay files are planned)",
        super::enosys
    ),
    syscall!(63, uname, Full, "", sys_uname),
    syscall!(170, sethostname, Full, "", sys_sethostname),
    syscall!(99, sysinfo, Full, "", sys_sysinfo),
    syscall!(318, getrandom, Full, "", sys_getrandom),
];

/// The kernel release the sandbox reports (what gVisor reports, too: a plain 4.4).
pub const RELEASE: &[u8] = b"4.4.0";
pub const VERSION: &[u8] = b"#1 SMP Sun Jan 10 15:06:54 PST 2016";

/// sethostname: root's (CAP_SYS_ADMIN over the sandbox's own UTS namespace); the name is
/// the sandbox's, so a pod's containers, which share their UTS namespace, all see it.
fn sys_sethostname(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    const HOST_NAME_MAX: u64 = 64;
    if t.creds.euid != 0 {
        return Err(Errno::EPERM);
    }
    if a[1] > HOST_NAME_MAX {
        return Err(Errno::EINVAL);
    }
    let mut name = vec![0u8; a[1] as usize];
    t.mm.copy_in(a[0], &mut name)?;
    *t.kernel.hostname.lock().unwrap_or_else(|e| e.into_inner()) = name;
    Ok(0)
}

fn sys_uname(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // struct utsname: six fields of 65 bytes.
    let mut b = [0u8; 65 * 6];
    let host = t
        .kernel
        .hostname
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    for (i, s) in [
        b"Linux" as &[u8],
        &host,
        RELEASE,
        VERSION,
        b"x86_64",
        b"(none)",
    ]
    .iter()
    .enumerate()
    {
        let n = s.len().min(64);
        b[i * 65..i * 65 + n].copy_from_slice(&s[..n]);
    }
    t.mm.copy_out(a[0], &b).map(|_| 0)
}

fn sys_sysinfo(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // The guest's own memory, as /proc/meminfo shows it: the host's figures would tell
    // the guest about the machine and disagree with what it can allocate.
    let memory = t.mm.guest_memory();
    let procs = t.kernel.processes.all().len().min(u16::MAX as usize) as u16;
    let mut b = [0u8; 112];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &(t.kernel.boot.elapsed().as_secs() as i64).to_le_bytes());
    // Load averages (8..32): the sandbox does not expose the host's.
    put(32, &memory.size().to_le_bytes());
    put(40, &crate::mm::free_bytes(memory).to_le_bytes());
    put(48, &0u64.to_le_bytes()); // sharedram
    put(56, &0u64.to_le_bytes()); // bufferram
    put(64, &0u64.to_le_bytes()); // totalswap
    put(72, &0u64.to_le_bytes()); // freeswap
    put(80, &procs.max(1).to_le_bytes());
    put(88, &0u64.to_le_bytes()); // totalhigh
    put(96, &0u64.to_le_bytes()); // freehigh
    put(104, &1u32.to_le_bytes()); // mem_unit: the figures are in bytes
    t.mm.copy_out(a[0], &b).map(|_| 0)
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

fn sys_getrandom(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (buf, len, flags) = (a[0], a[1], a[2]);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE)
    {
        return Err(Errno::EINVAL);
    }
    // Linux returns at most 32 MiB per call.
    let len = (len as usize).min(32 << 20);
    let mut data = vec![0u8; len.min(1 << 20)];
    let n = data.len();
    // SAFETY: getrandom writes at most `n` bytes into `data`.
    let got = unsafe { libc::getrandom(data.as_mut_ptr().cast(), n, 0) };
    if got < 0 {
        return Err(Errno::EIO);
    }
    t.mm.copy_out(buf, &data[..got as usize])?;
    Ok(got as u64)
}
