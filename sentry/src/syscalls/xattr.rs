//! Extended attributes. No file system of the sandbox stores them yet, so the calls
//! behave as on a Linux file system without xattr support (vfat, for one): the list is
//! empty and every get, set and remove is EOPNOTSUPP, once the arguments and the file
//! check out. Callers that copy attributes (cp -a, Python's shutil.copystat, tar) treat
//! that as "nothing to copy"; ENOSYS made some of them fail.

use super::fs::{path_arg, stat_at, AT_FDCWD, AT_SYMLINK_NOFOLLOW};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;

const NOTE: &str =
    "no file system stores extended attributes: the list is empty, get/set/remove → EOPNOTSUPP";

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(188, setxattr, Partial, NOTE, sys_setxattr),
    syscall!(189, lsetxattr, Partial, NOTE, sys_lsetxattr),
    syscall!(190, fsetxattr, Partial, NOTE, sys_fsetxattr),
    syscall!(191, getxattr, Partial, NOTE, sys_getxattr),
    syscall!(192, lgetxattr, Partial, NOTE, sys_lgetxattr),
    syscall!(193, fgetxattr, Partial, NOTE, sys_fgetxattr),
    syscall!(194, listxattr, Partial, NOTE, sys_listxattr),
    syscall!(195, llistxattr, Partial, NOTE, sys_llistxattr),
    syscall!(196, flistxattr, Partial, NOTE, sys_flistxattr),
    syscall!(197, removexattr, Partial, NOTE, sys_removexattr),
    syscall!(198, lremovexattr, Partial, NOTE, sys_lremovexattr),
    syscall!(199, fremovexattr, Partial, NOTE, sys_fremovexattr),
];

/// XATTR_NAME_MAX and XATTR_SIZE_MAX.
const NAME_MAX: usize = 255;
const SIZE_MAX: u64 = 65536;
const XATTR_CREATE: u64 = 1;
const XATTR_REPLACE: u64 = 2;

/// The file a call names: a path (following symlinks or not) or a descriptor.
enum Target {
    Path { follow: bool },
    Fd,
}

/// Check that the file exists (ENOENT, ENOTDIR, EBADF, … as for stat).
fn find(t: &Task, target: Target, arg: u64) -> Result<(), Errno> {
    match target {
        Target::Path { follow } => {
            let p = path_arg(t, arg)?;
            let flags = if follow { 0 } else { AT_SYMLINK_NOFOLLOW };
            stat_at(t, AT_FDCWD, &p, flags).map(|_| ())
        }
        Target::Fd => {
            let f = t.files.get(arg as i32)?;
            if f.is_path_only() {
                return Err(Errno::EBADF);
            }
            Ok(())
        }
    }
}

/// An attribute name: 1 to 255 bytes (ERANGE otherwise).
fn check_name(t: &Task, addr: u64) -> Result<(), Errno> {
    let name = t.mm.read_cstring(addr, NAME_MAX + 1).map_err(|e| match e {
        Errno::ENAMETOOLONG => Errno::ERANGE,
        e => e,
    })?;
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(Errno::ERANGE);
    }
    Ok(())
}

fn set(t: &Task, target: Target, a: &[u64; 6]) -> SyscallResult {
    let (name, size, flags) = (a[1], a[3], a[4]);
    if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    check_name(t, name)?;
    if size > SIZE_MAX {
        return Err(Errno::E2BIG);
    }
    find(t, target, a[0])?;
    Err(Errno::EOPNOTSUPP)
}

fn get(t: &Task, target: Target, a: &[u64; 6]) -> SyscallResult {
    find(t, target, a[0])?;
    check_name(t, a[1])?;
    Err(Errno::EOPNOTSUPP)
}

fn list(t: &Task, target: Target, a: &[u64; 6]) -> SyscallResult {
    find(t, target, a[0])?;
    // No names: a list of 0 bytes, whatever the buffer.
    Ok(0)
}

fn remove(t: &Task, target: Target, a: &[u64; 6]) -> SyscallResult {
    check_name(t, a[1])?;
    find(t, target, a[0])?;
    Err(Errno::EOPNOTSUPP)
}

fn sys_setxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(t, Target::Path { follow: true }, a)
}
fn sys_lsetxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(t, Target::Path { follow: false }, a)
}
fn sys_fsetxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set(t, Target::Fd, a)
}
fn sys_getxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(t, Target::Path { follow: true }, a)
}
fn sys_lgetxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(t, Target::Path { follow: false }, a)
}
fn sys_fgetxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get(t, Target::Fd, a)
}
fn sys_listxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(t, Target::Path { follow: true }, a)
}
fn sys_llistxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(t, Target::Path { follow: false }, a)
}
fn sys_flistxattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    list(t, Target::Fd, a)
}
fn sys_removexattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(t, Target::Path { follow: true }, a)
}
fn sys_lremovexattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(t, Target::Path { follow: false }, a)
}
fn sys_fremovexattr(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    remove(t, Target::Fd, a)
}
