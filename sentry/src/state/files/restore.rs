//! Rebuilding each kind of description and mapped file from its saved form, checking
//! every value first: a state that does not make sense is `StateError::Invalid` naming
//! the object, and what this host cannot give back (a file gone from the rootfs) is
//! `StateError::Restore`.

use std::sync::Arc;
use std::time::Duration;

use super::{check, FileState, HostFileState, MappedFileState, NodeState, StdioState};
use super::{DirFileState, EpollState, RestoreContext, StateError};
use crate::abi::Errno;
use crate::mm::MappedFile;
use crate::vfs::dev::DevNode;
use crate::vfs::dir::{DirFile, PathFile};
use crate::vfs::epoll::{Epoll, EP_MAX_NESTS};
use crate::vfs::eventfd::EventFd;
use crate::vfs::fdtable::MAX_FDS;
use crate::vfs::file::{DirEntry, FileDescription};
use crate::vfs::host::HostNode;
use crate::vfs::hostfd::HostFd;
use crate::vfs::hostfile::{self, HostFile};
use crate::vfs::node::Node;
use crate::vfs::pipe::PipeEnd;
use crate::vfs::proc::{ContentFile, ProcNode, ProcSnapshot};
use crate::vfs::signalfd::SignalFd;
use crate::vfs::timerfd::{self, TimerFd};
use crate::vfs::tmpfs::{self, Inode, Kind, TmpFile};

/// Description `id` from its saved form.
pub(super) fn file(
    cx: &mut RestoreContext,
    id: u32,
    state: FileState,
) -> Result<Arc<dyn FileDescription>, StateError> {
    let what = format!("open file {id}");
    let bad = |why: String| StateError::invalid(format!("{what}: {why}"));
    Ok(match state {
        FileState::Dev { node, flags } => {
            check::status_flags(&what, flags)?;
            let device = matches!(
                node,
                DevNode::Null | DevNode::Zero | DevNode::Full | DevNode::Random | DevNode::Urandom
            );
            if !device {
                return Err(bad(format!(
                    "/dev entry {node:?} is not an openable device"
                )));
            }
            node.open(flags).map_err(|errno| StateError::Restore {
                what: what.clone(),
                errno,
            })?
        }
        FileState::Dir(s) => dir(cx, &what, s)?,
        FileState::Path(s) => {
            check::shown_path(&what, &s.path)?;
            let vfs = cx.vfs(s.vfs)?;
            let node = node(cx, &what, s.vfs, s.node)?;
            Arc::new(PathFile::new(vfs, node, s.path, s.flags))
        }
        FileState::Host(s) => host_file(cx, &what, s)?,
        FileState::Stdio(s) => stdio(cx, &what, s)?,
        FileState::Tmp(s) => {
            check::shown_path(&what, &s.path)?;
            check::status_flags(&what, s.flags)?;
            let inode = regular_inode(cx, &what, s.inode)?;
            Arc::new(TmpFile::restore(inode, s.path, s.flags, s.pos))
        }
        FileState::Pipe(s) => {
            check::status_flags(&what, s.flags)?;
            let buf = cx.vfs.pipe(s.pipe)?;
            PipeEnd::restore(buf, s.write_end, s.flags)
        }
        FileState::EventFd(s) => {
            check::status_flags(&what, s.flags)?;
            EventFd::restore(s.count, s.semaphore, s.flags)
                .ok_or_else(|| bad(format!("eventfd count {}", s.count)))?
        }
        FileState::Epoll(s) => epoll(cx, &what, s)?,
        FileState::TimerFd(s) => {
            check::status_flags(&what, s.flags)?;
            let clocks = [
                timerfd::CLOCK_REALTIME,
                timerfd::CLOCK_MONOTONIC,
                timerfd::CLOCK_BOOTTIME,
                timerfd::CLOCK_REALTIME_ALARM,
                timerfd::CLOCK_BOOTTIME_ALARM,
            ];
            if !clocks.contains(&s.clock) {
                return Err(bad(format!("timerfd clock {}", s.clock)));
            }
            Arc::new(TimerFd::restore(
                s.clock,
                s.flags,
                s.remaining_ns.map(Duration::from_nanos),
                Duration::from_nanos(s.interval_ns),
                s.ticks,
            ))
        }
        FileState::SignalFd(s) => {
            check::status_flags(&what, s.flags)?;
            let f = SignalFd::new(s.mask, s.flags);
            f.set_status_flags(s.flags);
            Arc::new(f)
        }
        FileState::Inet(s) => {
            let stack = cx.kernel.net.clone();
            crate::net::inet::InetSocket::restore(&stack, &s).map_err(|errno| {
                StateError::Restore {
                    what: format!("{what} (a socket)"),
                    errno,
                }
            })?
        }
        FileState::Content(s) => {
            check::shown_path(&what, &s.path)?;
            check::status_flags(&what, s.flags)?;
            Arc::new(ContentFile::restore(
                s.data,
                s.path,
                s.stat.into(),
                s.flags,
                s.pos,
            ))
        }
    })
}

fn dir(
    cx: &mut RestoreContext,
    what: &str,
    s: DirFileState,
) -> Result<Arc<dyn FileDescription>, StateError> {
    check::shown_path(what, &s.path)?;
    let vfs = cx.vfs(s.vfs)?;
    let node = node(cx, what, s.vfs, s.node)?;
    if !node.is_dir() {
        return Err(StateError::invalid(format!("{what}: not a directory")));
    }
    let listing = match s.listing {
        None => None,
        Some(l) => {
            let mut out = Vec::with_capacity(l.len());
            for e in l {
                check::listed_name(what, &e.name)?;
                out.push(DirEntry {
                    ino: e.ino,
                    kind: e.kind,
                    name: e.name,
                });
            }
            Some(out)
        }
    };
    let pos = usize::try_from(s.pos)
        .map_err(|_| StateError::invalid(format!("{what}: position {}", s.pos)))?;
    Ok(Arc::new(DirFile::restore(
        vfs,
        node,
        s.path,
        s.parent_ino,
        s.flags,
        listing,
        pos,
    )))
}

/// A regular file of the rootfs or a bind, opened again under its root.
fn host_file(
    cx: &mut RestoreContext,
    what: &str,
    s: HostFileState,
) -> Result<Arc<dyn FileDescription>, StateError> {
    check::shown_path(what, &s.path)?;
    check::rel_path(what, &s.rel)?;
    check::status_flags(what, s.flags)?;
    let vfs = cx.vfs(s.vfs)?;
    let node = host_node(cx, what, s.vfs, &s.root, &s.rel, &s.path)?;
    let failed = |errno| StateError::Restore {
        what: format!("{what} ({})", String::from_utf8_lossy(&s.path)),
        errno,
    };
    if node.stat.mode & libc::S_IFMT != libc::S_IFREG {
        // Host devices, FIFOs and sockets are never opened for the guest.
        return Err(failed(Errno::EACCES));
    }
    let writes = s.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
    let fd = if writes {
        // As it was opened (no O_TRUNC: the file is as the guest left it).
        let keep = (libc::O_ACCMODE | libc::O_APPEND) as u32;
        node.fs.open_rw(&s.rel, s.flags & keep).map_err(failed)?
    } else {
        cx.vfs
            .read_fd(s.vfs, &s.root, &node.fs, &s.rel)
            .map_err(failed)?
    };
    Ok(Arc::new(HostFile::restore(
        vfs,
        fd,
        Arc::new(node),
        s.path,
        s.flags,
        s.pos,
    )))
}

/// The host entry `rel` under the root `root` of file system `vfs`, as it is now.
fn host_node(
    cx: &mut RestoreContext,
    what: &str,
    vfs: u32,
    root: &super::HostRootRef,
    rel: &[u8],
    shown: &[u8],
) -> Result<HostNode, StateError> {
    let hr = cx.vfs.host_root(vfs, root)?;
    let failed = |errno| StateError::Restore {
        what: format!("{what} ({})", String::from_utf8_lossy(shown)),
        errno,
    };
    hr.lookup(rel)
        .map_err(failed)?
        .ok_or_else(|| failed(Errno::ENOENT))
}

/// A container init's stdio becomes the container's new stdio; anyone else's reads as
/// /dev/null (the other end of it is gone with the old sandbox's clients).
fn stdio(
    cx: &mut RestoreContext,
    what: &str,
    s: StdioState,
) -> Result<Arc<dyn FileDescription>, StateError> {
    check::status_flags(what, s.flags)?;
    match (s.container, s.slot) {
        (Some(container), Some(slot)) if slot < 3 => {
            let (fd, now) = cx.vfs.stdio_fd(&container, slot)?;
            let f = HostFd::restore(fd, slot, now, s.flags).map_err(|e| StateError::Restore {
                what: format!("stdio {slot} of container {container:?}"),
                errno: Errno::from_io(&e),
            })?;
            Ok(Arc::new(f))
        }
        (Some(container), slot) => Err(StateError::invalid(format!(
            "{what}: stdio {slot:?} of container {container:?}"
        ))),
        (None, slot) => {
            tracing::info!("{what}: host stdio {slot:?} of a process other than an init now reads as /dev/null");
            DevNode::Null
                .open(s.flags)
                .map_err(|errno| StateError::Restore {
                    what: what.to_string(),
                    errno,
                })
        }
    }
}

fn epoll(
    cx: &mut RestoreContext,
    what: &str,
    s: EpollState,
) -> Result<Arc<dyn FileDescription>, StateError> {
    let ep = Arc::new(Epoll::new());
    for e in s.entries {
        if e.fd < 0 || e.fd as usize >= MAX_FDS {
            return Err(StateError::invalid(format!("{what}: watches fd {}", e.fd)));
        }
        let target = cx.file(e.file)?;
        if !target.pollable() {
            // Linux: epoll_ctl refuses such a file (EPERM), so no epoll has one.
            return Err(StateError::invalid(format!(
                "{what}: watches {}, which cannot be polled",
                target.path()
            )));
        }
        ep.restore_entry(e.fd, &target, e.events, e.data, e.edge)
            .map_err(|_| StateError::invalid(format!("{what}: fd {} is watched twice", e.fd)))?;
    }
    if ep.nesting() > EP_MAX_NESTS {
        return Err(StateError::invalid(format!(
            "{what}: epoll instances nest more than {EP_MAX_NESTS} deep"
        )));
    }
    Ok(ep)
}

/// In-memory inode `id`, which must be a regular file.
fn regular_inode(cx: &mut RestoreContext, what: &str, id: u32) -> Result<Arc<Inode>, StateError> {
    let inode = cx.vfs.inode(id)?;
    if !matches!(inode.lock().kind, Kind::File { .. }) {
        return Err(StateError::invalid(format!(
            "{what}: inode {id} is not a regular file"
        )));
    }
    Ok(inode)
}

/// A directory or O_PATH description's node, in file system `vfs`.
fn node(
    cx: &mut RestoreContext,
    what: &str,
    vfs: u32,
    state: NodeState,
) -> Result<Node, StateError> {
    Ok(match state {
        NodeState::Tmp(id) => Node::Tmp(cx.vfs.inode(id)?),
        NodeState::Host { root, rel } => {
            check::rel_path(what, &rel)?;
            Node::Host(Arc::new(host_node(cx, what, vfs, &root, &rel, &rel)?))
        }
        NodeState::Dev(d) => Node::Dev(d),
        NodeState::Proc(p) => {
            check::shown_path(what, &p.rel)?;
            let snap = ProcSnapshot {
                pid: p.pid,
                uid: p.uid,
                gid: p.gid,
                ..ProcSnapshot::default()
            };
            Node::Proc(ProcNode {
                snap: Arc::new(snap),
                rel: p.rel,
                mounts: Arc::new(p.mounts),
            })
        }
    })
}

/// The file behind a restored memory area.
pub(super) fn mapped(
    cx: &mut RestoreContext,
    state: MappedFileState,
) -> Result<Arc<dyn MappedFile>, StateError> {
    Ok(match state {
        MappedFileState::Host {
            vfs,
            root,
            rel,
            path,
        } => {
            let what = format!("mapped file {path}");
            check::rel_path(&what, &rel)?;
            check::shown_path(&what, path.as_bytes())?;
            let v = cx.vfs(vfs)?;
            let node = host_node(cx, &what, vfs, &root, &rel, path.as_bytes())?;
            let fd = cx
                .vfs
                .read_fd(vfs, &root, &node.fs, &rel)
                .map_err(|errno| StateError::Restore {
                    what: what.clone(),
                    errno,
                })?;
            hostfile::restored_mapping(v, fd, Arc::new(node), path)
        }
        MappedFileState::Tmp { inode, path } => {
            let what = format!("mapped file {path}");
            check::shown_path(&what, path.as_bytes())?;
            tmpfs::restored_mapping(regular_inode(cx, &what, inode)?, path)
        }
        MappedFileState::Zero => crate::vfs::dev::zero_mapping(),
        MappedFileState::Image { file } => crate::loader::restored_image(cx.file(file)?),
    })
}
