//! Process and thread identity, exit, limits, and per-thread registers (FS/GS bases).

use super::{enosys, SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::exit::ExitStatus;
use crate::kernel::task::Task;
use crate::kernel::thread_group::ThreadGroup;
use crate::syscall;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(24, sched_yield, Full, "", sys_sched_yield),
    syscall!(39, getpid, Full, "", sys_getpid),
    syscall!(59, execve, Partial, "ELF programs (static, static-PIE, dynamic with PT_INTERP) and #! scripts (five levels); other threads end first; set-user-ID and set-group-ID bits are ignored", sys_execve),
    syscall!(60, exit, Full, "", sys_exit),
    syscall!(97, getrlimit, Full, "", sys_getrlimit),
    syscall!(102, getuid, Full, "", sys_getuid),
    syscall!(104, getgid, Full, "", sys_getgid),
    syscall!(107, geteuid, Full, "", sys_geteuid),
    syscall!(108, getegid, Full, "", sys_getegid),
    syscall!(105, setuid, Full, "", sys_setuid),
    syscall!(106, setgid, Full, "", sys_setgid),
    syscall!(109, setpgid, Full, "", sys_setpgid),
    syscall!(110, getppid, Full, "", sys_getppid),
    syscall!(111, getpgrp, Full, "", sys_getpgrp),
    syscall!(112, setsid, Full, "", sys_setsid),
    syscall!(113, setreuid, Full, "", sys_setreuid),
    syscall!(114, setregid, Full, "", sys_setregid),
    syscall!(115, getgroups, Full, "", sys_getgroups),
    syscall!(116, setgroups, Partial, "root only (CAP_SETGID); the groups are kept and reported, but file permission checks use the effective gid alone", sys_setgroups),
    syscall!(117, setresuid, Full, "", sys_setresuid),
    syscall!(118, getresuid, Full, "", sys_getresuid),
    syscall!(119, setresgid, Full, "", sys_setresgid),
    syscall!(120, getresgid, Full, "", sys_getresgid),
    syscall!(121, getpgid, Full, "", sys_getpgid),
    syscall!(124, getsid, Full, "", sys_getsid),
    syscall!(157, prctl, Partial, "PR_SET/GET_NAME, PR_SET/GET_DUMPABLE, PR_SET/GET_NO_NEW_PRIVS, PR_GET_SECCOMP, PR_SET/GET_PDEATHSIG, PR_SET/GET_CHILD_SUBREAPER, PR_SET_PTRACER, PR_CAPBSET_READ, PR_SET_VMA; others → EINVAL", sys_prctl),
    syscall!(158, arch_prctl, Partial, "ARCH_SET_FS/GET_FS/SET_GS/GET_GS; CPUID faulting and others → EINVAL", sys_arch_prctl),
    syscall!(160, setrlimit, Full, "", sys_setrlimit),
    syscall!(186, gettid, Full, "", sys_gettid),
    syscall!(204, sched_getaffinity, Full, "", sys_sched_getaffinity),
    syscall!(218, set_tid_address, Full, "", sys_set_tid_address),
    syscall!(231, exit_group, Full, "", sys_exit_group),
    syscall!(273, set_robust_list, Full, "", sys_set_robust_list),
    syscall!(274, get_robust_list, Partial, "the calling thread's (pid 0 or its tid); other threads → EPERM", sys_get_robust_list),
    syscall!(135, personality, Partial, "the persona is recorded, inherited and reported; its flags (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, …) change nothing", sys_personality),
    syscall!(302, prlimit64, Partial, "only the calling process (pid 0 or own pid); others → ESRCH", sys_prlimit64),
    syscall!(334, rseq, Unsupported, "returns ENOSYS; glibc carries on without restartable sequences", enosys),
];

const RLIM_NLIMITS: u64 = 16;

fn sys_sched_yield(_: &mut Task, _: &[u64; 6]) -> SyscallResult {
    std::thread::yield_now();
    Ok(0)
}
fn sys_getpid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.process.pid as u64)
}
fn sys_getppid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    // The parent now: an orphan's is its reaper.
    Ok(t.group.ppid() as u64)
}
fn sys_gettid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.tid as u64)
}
fn sys_getuid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.creds.uid as u64)
}
fn sys_geteuid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.creds.euid as u64)
}
fn sys_getgid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.creds.gid as u64)
}
fn sys_getegid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.creds.egid as u64)
}
fn write_ids(t: &Task, addrs: [u64; 3], ids: [u32; 3]) -> SyscallResult {
    for (addr, id) in addrs.into_iter().zip(ids) {
        t.mm.write_u32(addr, id)?;
    }
    Ok(0)
}
fn sys_getresuid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let ids = [t.creds.uid, t.creds.euid, t.creds.suid];
    write_ids(t, [a[0], a[1], a[2]], ids)
}
fn sys_getresgid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let ids = [t.creds.gid, t.creds.egid, t.creds.sgid];
    write_ids(t, [a[0], a[1], a[2]], ids)
}

// Ids are 32-bit: the kernel reads the low half of each argument.
fn id(arg: u64) -> u32 {
    arg as u32
}
fn sys_setuid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setuid(id(a[0]))?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_setgid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setgid(id(a[0]))?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_setreuid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setreuid(id(a[0]), id(a[1]))?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_setregid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setregid(id(a[0]), id(a[1]))?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_setresuid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setresuid([id(a[0]), id(a[1]), id(a[2])])?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_setresgid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.creds.setresgid([id(a[0]), id(a[1]), id(a[2])])?;
    crate::kernel::process::publish_view(t);
    Ok(0)
}
fn sys_getgroups(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let size = a[0] as i32;
    let n = t.creds.groups.len();
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(n as u64);
    }
    if (size as usize) < n {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = t
        .creds
        .groups
        .iter()
        .flat_map(|g| g.to_le_bytes())
        .collect();
    t.mm.copy_out(a[1], &bytes)?;
    Ok(n as u64)
}
fn sys_setgroups(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let size = a[0] as i32;
    if !t.creds.may_set_groups() {
        return Err(Errno::EPERM);
    }
    if size < 0 || size as usize > crate::kernel::creds::NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; size as usize * 4];
    if size > 0 {
        t.mm.copy_in(a[1], &mut bytes)?;
    }
    let groups = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    t.creds.setgroups(groups).map(|_| 0)
}
fn sys_getpgrp(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(t.group.pgid.load(Ordering::Relaxed) as u64)
}

fn is_self(t: &Task, pid: u64) -> bool {
    pid == 0 || pid as i32 == t.process.pid
}

/// The process `pid` names (0: the caller), if it is in the sandbox.
fn process_named(t: &Task, pid: u64) -> Result<Arc<ThreadGroup>, Errno> {
    match pid as i32 {
        0 => Ok(t.group.clone()),
        p if p < 0 => Err(Errno::ESRCH),
        p => t.kernel.processes.get(p).ok_or(Errno::ESRCH),
    }
}

fn sys_getpgid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    Ok(process_named(t, a[0])?.pgid.load(Ordering::Relaxed) as u64)
}

fn sys_getsid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    Ok(process_named(t, a[0])?.sid.load(Ordering::Relaxed) as u64)
}

/// setpgid(pid, pgid): the caller or one of its children (before the child's execve)
/// joins or starts a process group of the caller's session, as job-control shells do.
fn sys_setpgid(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pgid = a[1] as i32;
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let target = process_named(t, a[0])?;
    let sid = t.group.sid.load(Ordering::Relaxed);
    if target.tgid != t.group.tgid {
        let is_child = t
            .group
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|c| c.pid == target.tgid);
        if !is_child {
            return Err(Errno::ESRCH);
        }
        if target.sid.load(Ordering::Relaxed) != sid {
            return Err(Errno::EPERM);
        }
        if target.execed.load(Ordering::Relaxed) {
            return Err(Errno::EACCES);
        }
    }
    if target.sid.load(Ordering::Relaxed) == target.tgid {
        // A session leader cannot change its group.
        return Err(Errno::EPERM);
    }
    let pgid = if pgid == 0 { target.tgid } else { pgid };
    // A group other than the target's own must already exist in the same session.
    if pgid != target.tgid
        && !t
            .kernel
            .processes
            .all()
            .iter()
            .any(|g| g.pgid.load(Ordering::Relaxed) == pgid && g.sid.load(Ordering::Relaxed) == sid)
    {
        return Err(Errno::EPERM);
    }
    target.pgid.store(pgid, Ordering::Relaxed);
    Ok(0)
}

fn sys_setsid(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let pid = t.group.tgid;
    // A process group leader, or a process whose id names a group, cannot start one.
    if t.kernel
        .processes
        .all()
        .iter()
        .any(|g| g.pgid.load(Ordering::Relaxed) == pid)
    {
        return Err(Errno::EPERM);
    }
    t.group.sid.store(pid, Ordering::Relaxed);
    t.group.pgid.store(pid, Ordering::Relaxed);
    Ok(pid as u64)
}

fn sys_execve(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::kernel::exec::{execve, MAX_ARG_BYTES};
    let path = t.mm.read_cstring(a[0], crate::mm::MAX_STRING)?;
    let argv = t.mm.read_string_array(a[1], MAX_ARG_BYTES)?;
    let envp = t.mm.read_string_array(a[2], MAX_ARG_BYTES)?;
    execve(t, &path, argv, envp)
        .map(|_| 0)
        .map_err(|e| e.errno())
}

const PR_SET_PDEATHSIG: u64 = 1;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
const PR_GET_SECCOMP: u64 = 21;
const PR_CAPBSET_READ: u64 = 23;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_NO_NEW_PRIVS: u64 = 39;
const PR_SET_VMA: u64 = 0x53564d41;
const PR_SET_PTRACER: u64 = 0x59616d61;

fn sys_prctl(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match a[0] {
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            t.mm.copy_in(a[1], &mut name)?;
            let len = name.iter().position(|b| *b == 0).unwrap_or(15).min(15);
            t.process.comm = name[..len].to_vec();
            crate::kernel::process::publish_view(t);
            Ok(0)
        }
        PR_GET_NAME => {
            let mut name = [0u8; 16];
            let n = t.process.comm.len().min(15);
            name[..n].copy_from_slice(&t.process.comm[..n]);
            t.mm.copy_out(a[1], &name).map(|_| 0)
        }
        PR_GET_DUMPABLE => Ok(t.process.dumpable as u64),
        PR_SET_DUMPABLE => match a[1] {
            0 | 1 => {
                t.process.dumpable = a[1] == 1;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        },
        PR_SET_NO_NEW_PRIVS => {
            if a[1] != 1 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            t.process.no_new_privs = true;
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS => Ok(t.process.no_new_privs as u64),
        PR_GET_SECCOMP => Ok(0),
        PR_SET_PDEATHSIG => {
            if a[1] > 64 {
                return Err(Errno::EINVAL);
            }
            t.process.pdeathsig = a[1] as u8;
            Ok(0)
        }
        PR_GET_PDEATHSIG => t.mm.write_u32(a[1], t.process.pdeathsig as u32).map(|_| 0),
        // Capability 0..=40 are in the bounding set of a root process.
        PR_CAPBSET_READ => {
            if a[1] <= 40 {
                Ok(1)
            } else {
                Err(Errno::EINVAL)
            }
        }
        // Naming anonymous memory and Yama's ptracer list only inform debuggers.
        PR_SET_CHILD_SUBREAPER => {
            t.group
                .subreaper
                .store(a[1] != 0, std::sync::atomic::Ordering::SeqCst);
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            let on = t.group.subreaper.load(std::sync::atomic::Ordering::SeqCst);
            t.mm.write_u32(a[1], on as u32).map(|_| 0)
        }
        PR_SET_VMA | PR_SET_PTRACER => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

fn sys_exit(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // Ends this thread only; the process ends with its last thread.
    t.thread_exit = Some(a[0] as u8);
    Ok(0)
}
fn sys_exit_group(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.exit_status = Some(ExitStatus::Exited(a[0] as u8));
    Ok(0)
}

fn sys_set_tid_address(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    t.clear_child_tid = a[0];
    Ok(t.tid as u64)
}

fn sys_set_robust_list(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // struct robust_list_head is 24 bytes; anything else is EINVAL.
    if a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    t.robust_list = (a[0], a[1]);
    Ok(0)
}

fn sys_get_robust_list(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = a[0] as i32;
    if pid < 0 {
        return Err(Errno::ESRCH);
    }
    if pid != 0 && pid != t.tid {
        let exists = t
            .kernel
            .processes
            .all()
            .iter()
            .any(|g| g.tids().contains(&pid));
        return Err(if exists { Errno::EPERM } else { Errno::ESRCH });
    }
    let (head, len) = t.robust_list;
    t.mm.write_u64(a[1], head)?;
    t.mm.write_u64(a[2], len).map(|_| 0)
}

/// personality(0xffffffff) asks; any other value is the new persona. Returns the old.
fn sys_personality(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let old = t.process.personality;
    if a[0] as u32 != u32::MAX {
        t.process.personality = a[0] as u32;
    }
    Ok(old as u64)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

fn canonical(addr: u64) -> bool {
    addr < 0x0000_8000_0000_0000
}

fn sys_arch_prctl(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match a[0] {
        ARCH_SET_FS | ARCH_SET_GS if !canonical(a[1]) => Err(Errno::EPERM),
        ARCH_SET_FS => {
            t.regs.fs_base = a[1];
            Ok(0)
        }
        ARCH_SET_GS => {
            t.regs.gs_base = a[1];
            Ok(0)
        }
        ARCH_GET_FS => t.mm.write_u64(a[1], t.regs.fs_base).map(|_| 0),
        ARCH_GET_GS => t.mm.write_u64(a[1], t.regs.gs_base).map(|_| 0),
        _ => Err(Errno::EINVAL),
    }
}

fn read_rlimit(t: &Task, res: u64) -> Result<(u64, u64), Errno> {
    if res >= RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    Ok(t.rlimits.0[res as usize])
}

fn write_pair(t: &Task, addr: u64, v: (u64, u64)) -> Result<(), Errno> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.0.to_le_bytes());
    b[8..].copy_from_slice(&v.1.to_le_bytes());
    t.mm.copy_out(addr, &b)
}

fn read_pair(t: &Task, addr: u64) -> Result<(u64, u64), Errno> {
    Ok((t.mm.read_u64(addr)?, t.mm.read_u64(addr + 8)?))
}

const RLIMIT_NOFILE: u64 = 7;

fn set_rlimit(t: &mut Task, res: u64, new: (u64, u64)) -> Result<(), Errno> {
    let old = read_rlimit(t, res)?;
    if new.0 > new.1 {
        return Err(Errno::EINVAL);
    }
    // Raising a hard limit needs CAP_SYS_RESOURCE (root's); no one raises
    // RLIMIT_NOFILE's past nr_open.
    if (new.1 > old.1 && t.creds.euid != 0)
        || (res == RLIMIT_NOFILE && new.1 > crate::vfs::fdtable::MAX_FDS as u64)
    {
        return Err(Errno::EPERM);
    }
    t.rlimits.0[res as usize] = new;
    Ok(())
}

fn sys_getrlimit(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let v = read_rlimit(t, a[0])?;
    write_pair(t, a[1], v).map(|_| 0)
}
fn sys_setrlimit(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    read_rlimit(t, a[0])?;
    let new = read_pair(t, a[1])?;
    set_rlimit(t, a[0], new).map(|_| 0)
}
fn sys_prlimit64(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if !is_self(t, a[0]) {
        return Err(Errno::ESRCH);
    }
    let old = read_rlimit(t, a[1])?;
    let new = if a[2] != 0 {
        Some(read_pair(t, a[2])?)
    } else {
        None
    };
    if let Some(new) = new {
        set_rlimit(t, a[1], new)?;
    }
    if a[3] != 0 {
        write_pair(t, a[3], old)?;
    }
    Ok(0)
}

fn sys_sched_getaffinity(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if !is_self(t, a[0]) && a[0] as i32 != t.tid {
        return Err(Errno::ESRCH);
    }
    let len = a[1] as usize;
    // The kernel's cpumask is 8 bytes here; a smaller buffer or one not a multiple of
    // sizeof(long) is EINVAL.
    if len < 8 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let ncpu = crate::kernel::task::guest_cpus();
    let mask: u64 = if ncpu == 64 {
        u64::MAX
    } else {
        (1u64 << ncpu) - 1
    };
    t.mm.copy_out(a[2], &mask.to_le_bytes())?;
    Ok(8)
}
