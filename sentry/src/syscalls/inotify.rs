//! inotify_init, inotify_init1, inotify_add_watch and inotify_rm_watch. The instance and
//! the watches live in `vfs::inotify`; the events come from the file system's changes
//! (`vfs::notify`).

use super::fs::{base_dir, nofile, path_arg, with_lookup, O_CLOEXEC, O_NONBLOCK};
use super::{SyscallDef, SyscallResult};
use crate::abi::Errno;
use crate::kernel::task::Task;
use crate::syscall;
use crate::vfs::inotify::{self, Inotify, IN_DONT_FOLLOW};
use crate::vfs::FileDescription;
use std::sync::Arc;

pub const SYSCALLS: &[SyscallDef] = &[
    syscall!(253, inotify_init, Partial, "see inotify_init1", sys_inotify_init),
    syscall!(254, inotify_add_watch, Partial, "events of the sandbox's own changes (create, delete, move, modify, attrib, delete_self, move_self); IN_ACCESS, IN_OPEN and IN_CLOSE_* are never raised; changes made outside the sandbox are not seen", sys_inotify_add_watch),
    syscall!(255, inotify_rm_watch, Full, "", sys_inotify_rm_watch),
    syscall!(294, inotify_init1, Partial, "IN_ACCESS, IN_OPEN and IN_CLOSE_* are never raised; changes made outside the sandbox are not seen", sys_inotify_init1),
];

fn do_init(t: &mut Task, flags: u64) -> SyscallResult {
    let flags = flags as u32;
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = Inotify::new(flags & O_NONBLOCK);
    t.files
        .install(file, flags & O_CLOEXEC != 0, nofile(t))
        .map(|fd| fd as u64)
}

fn sys_inotify_init(t: &mut Task, _: &[u64; 6]) -> SyscallResult {
    do_init(t, 0)
}

fn sys_inotify_init1(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_init(t, a[0])
}

/// The inotify instance behind file `f` (EINVAL for any other file, as Linux says).
fn instance(f: &Arc<dyn FileDescription>) -> Result<&Inotify, Errno> {
    f.as_any().downcast_ref::<Inotify>().ok_or(Errno::EINVAL)
}

fn sys_inotify_add_watch(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    let inotify = instance(&f)?;
    let mask = a[2] as u32;
    let p = path_arg(t, a[1])?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    let base = base_dir(t, super::fs::AT_FDCWD, &p)?;
    let vfs = t.fs.vfs.clone();
    let follow = mask & IN_DONT_FOLLOW == 0;
    let st = with_lookup(t, &base, |lk| vfs.stat(lk, &p, follow))?;
    // Linux asks for read permission on what is watched.
    if !crate::vfs::permits(&st, t.creds.euid, t.creds.egid, 4) {
        return Err(Errno::EACCES);
    }
    let is_dir = st.mode & libc::S_IFMT == libc::S_IFDIR;
    inotify
        .add_watch(&vfs.watches, inotify::key_of(&st), is_dir, mask)
        .map(|wd| wd as u64)
}

fn sys_inotify_rm_watch(t: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let f = t.files.get(a[0] as i32)?;
    instance(&f)?.rm_watch(a[1] as i32).map(|_| 0)
}
