//! Round trips of open files, fd tables, mapped files and the file systems behind them:
//! saved from a container file system over scratch host directories, carried through
//! postcard, and restored over the same directories opened anew.

use std::sync::Arc;
use std::time::Duration;

use super::super::SaveContext;
use super::fixture::{Dirs, Parts};
use crate::abi::Errno;
use crate::vfs::epoll::{CtlOp, Epoll, EPOLLIN};
use crate::vfs::eventfd::{EventFd, EFD_SEMAPHORE};
use crate::vfs::file::{FileDescription, Stat};
use crate::vfs::pipe::new_pipe;
use crate::vfs::signalfd::SignalFd;
use crate::vfs::timerfd::{TimerFd, CLOCK_MONOTONIC};
use crate::vfs::{FdTable, FsContext, Lookup, ProcSnapshot, Vfs};

const RDONLY: u32 = libc::O_RDONLY as u32;
const RDWR: u32 = libc::O_RDWR as u32;
const CREAT_W: u32 = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32;
const LIMIT: u64 = 1024;

fn snap() -> ProcSnapshot {
    ProcSnapshot {
        pid: 7,
        cmdline: b"app\0--serve\0".to_vec(),
        ..ProcSnapshot::default()
    }
}

fn lk() -> Lookup<'static> {
    Lookup::new(b"/", 0, 0, 0o022, &snap)
}

fn open(v: &Arc<Vfs>, p: &[u8], flags: u32) -> Arc<dyn FileDescription> {
    v.open(&lk(), p, flags, 0o644)
        .unwrap_or_else(|e| panic!("open {}: {e:?}", String::from_utf8_lossy(p)))
}

fn read_all(f: &dyn FileDescription) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 256];
    loop {
        match f.read(&mut b, None) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
}

fn read_path(v: &Arc<Vfs>, p: &[u8]) -> Result<Vec<u8>, Errno> {
    let f = v.open(&lk(), p, RDONLY, 0)?;
    Ok(read_all(&*f))
}

fn stat(v: &Arc<Vfs>, p: &[u8]) -> Result<Stat, Errno> {
    v.stat(&lk(), p, false)
}

fn names(f: &dyn FileDescription) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    f.readdir(&mut |e, _| {
        out.push(e.name.clone());
        true
    })
    .expect("readdir");
    out
}

fn file<T: FileDescription>(f: Arc<T>) -> Arc<dyn FileDescription> {
    f
}

/// What the tests check after the restore, noted before the checkpoint.
struct Before {
    new_ino: u64,
    scratch: Stat,
    dir_rest: Vec<Vec<u8>>,
    tmpfile_ino: u64,
}

/// Make a container with something of every kind in its file system and fd table.
fn populate(v: &Arc<Vfs>) -> (Arc<FdTable>, Before, Arc<()>) {
    let l = lk();
    // The overlay: a file, a directory with a link to it and a hard link, a whiteout
    // over a rootfs file, a copied-up rootfs file, a socket's name.
    let f = open(v, b"/tmp/new.txt", CREAT_W);
    assert_eq!(f.write(b"hello world", None), Ok(11));
    v.mkdir(&l, b"/tmp/d", 0o750).expect("mkdir");
    v.symlink(&l, b"../new.txt", b"/tmp/d/link")
        .expect("symlink");
    v.link(&l, b"/tmp/new.txt", false, &l, b"/tmp/d/hard")
        .expect("link");
    v.unlink(&l, b"/data/gone.txt").expect("unlink");
    let hosts = open(v, b"/etc/hosts", (libc::O_WRONLY | libc::O_APPEND) as u32);
    assert_eq!(hosts.write(b"10.0.0.1 db\n", None), Ok(12));
    let socket = Arc::new(());
    let weak: std::sync::Weak<dyn std::any::Any + Send + Sync> = Arc::downgrade(&socket) as _;
    v.bind_socket(&l, b"/tmp/sock", weak).expect("bind");
    // The mounts: a file in the tmpfs, a new file in the volume.
    let s = open(v, b"/scratch/s.txt", CREAT_W);
    assert_eq!(s.write(b"in tmpfs", None), Ok(8));
    let made = open(v, b"/vol/made.txt", CREAT_W);
    assert_eq!(made.write(b"made in the volume", None), Ok(18));

    let t = Arc::new(FdTable::new());
    let put = |fd: i32, f: Arc<dyn FileDescription>, cloexec: bool| {
        t.install_at(fd, f, cloexec, LIMIT).expect("install");
    };
    put(0, open(v, b"/dev/null", RDWR), false);
    let new = open(v, b"/tmp/new.txt", RDWR);
    assert_eq!(new.read(&mut [0u8; 6], None), Ok(6));
    put(1, new.clone(), false);
    put(2, new, true);
    let (r, w) = new_pipe(0);
    w.set_status_flags(libc::O_NONBLOCK as u32);
    assert_eq!(w.write(b"buffered", None), Ok(8));
    let r = file(r);
    put(3, r.clone(), false);
    put(4, file(w), false);
    put(5, file(EventFd::new(5, EFD_SEMAPHORE)), false);
    let ep = Arc::new(Epoll::new());
    ep.ctl(CtlOp::Add, 3, &r, EPOLLIN, 42).expect("epoll_ctl");
    put(6, file(ep), true);
    let tool = open(v, b"/bin/tool", RDONLY);
    assert_eq!(tool.seek(2, 0), Ok(2));
    put(7, tool, false);
    let data = open(v, b"/data", RDONLY | libc::O_DIRECTORY as u32);
    let mut first = None;
    data.readdir(&mut |e, _| {
        if first.is_some() {
            return false;
        }
        first = Some(e.name.clone());
        true
    })
    .expect("readdir");
    let dir_rest = {
        let again = open(v, b"/data", RDONLY);
        names(&*again).into_iter().skip(1).collect()
    };
    put(8, data, false);
    put(9, open(v, b"/etc", libc::O_PATH as u32), false);
    let cmdline = open(v, b"/proc/self/cmdline", RDONLY);
    assert_eq!(cmdline.read(&mut [0u8; 4], None), Ok(4));
    put(10, cmdline, false);
    let timer = TimerFd::new(CLOCK_MONOTONIC, libc::O_NONBLOCK as u32);
    timer.set(Duration::from_secs(100), Duration::from_secs(1), false);
    put(11, file(Arc::new(timer)), false);
    put(
        12,
        file(Arc::new(SignalFd::new(1 << (libc::SIGUSR1 - 1), 0))),
        false,
    );
    let notes = open(v, b"/vol/notes.txt", (libc::O_RDWR | libc::O_APPEND) as u32);
    assert_eq!(notes.read(&mut [0u8; 1], None), Ok(1));
    put(13, notes, false);
    put(14, open(v, b"/etc/single", RDONLY), false);
    let tmpfile = open(v, b"/tmp", (libc::O_TMPFILE | libc::O_RDWR) as u32);
    assert_eq!(tmpfile.write(b"anonymous", None), Ok(9));
    let tmpfile_ino = tmpfile.stat().expect("stat").ino;
    put(20, tmpfile, false);
    let before = Before {
        new_ino: stat(v, b"/tmp/new.txt").expect("stat").ino,
        scratch: stat(v, b"/scratch/s.txt").expect("stat"),
        dir_rest,
        tmpfile_ino,
    };
    (t, before, socket)
}

#[test]
fn files_tables_and_trees_come_back() {
    let dirs = Dirs::new("roundtrip");
    let vfs = dirs.container();
    let (table, before, _socket) = populate(&vfs);
    let ctx = FsContext::new(vfs.clone(), b"/data").expect("cwd");
    let maps: Vec<_> = [&b"/tmp/new.txt"[..], b"/bin/tool", b"/dev/zero"]
        .iter()
        .map(|p| open(&vfs, p, RDONLY).mappable().expect("mappable"))
        .collect();

    let mut cx = SaveContext::default();
    let table_id = cx.fd_table_id(&table).expect("save fd table");
    assert_eq!(cx.fd_table_id(&table).expect("again"), table_id);
    let fs = cx.fs_context(&ctx).expect("save fs context");
    let vfs_id = fs.vfs;
    let saved_maps = maps
        .iter()
        .map(|m| cx.mapped_file(m))
        .collect::<Result<Vec<_>, _>>()
        .expect("save mapped files");
    let parts = Parts::from_save(cx, vec![fs], saved_maps);
    // Only one description for fds 1 and 2; two pipe ends, one buffer.
    assert_eq!(parts.files.len(), 15);
    assert_eq!(parts.vfs.pipes.len(), 1);
    assert_eq!(parts.vfs.file_systems.len(), 1);
    let mut parts = parts.round_trip();
    // The sandbox is gone; only the host directories stay.
    drop((table, ctx, maps, vfs));

    let mut rx = parts.restore(dirs.sources(vfs_id, dirs.specs()));
    let t = rx.fd_table(table_id).expect("restore fd table");
    let fs = std::mem::take(&mut parts.fs);
    let ctx = rx
        .fs_context(fs.into_iter().next().expect("fs"))
        .expect("restore fs context");
    let maps: Vec<_> = std::mem::take(&mut parts.maps)
        .into_iter()
        .map(|m| rx.mapped_file(m).expect("restore mapped file"))
        .collect();
    let v = ctx.vfs.clone();
    assert_eq!(ctx.cwd, b"/data");

    // The same fds, close-on-exec flags and sharing.
    let fds: Vec<i32> = t.list().iter().map(|(fd, _)| *fd).collect();
    assert_eq!(fds, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 20]);
    let get = |fd| t.get(fd).expect("fd");
    assert!(t.get_with_flags(2).expect("fd 2").1);
    assert!(!t.get_with_flags(1).expect("fd 1").1);
    assert!(Arc::ptr_eq(&get(1), &get(2)));
    assert_eq!(get(0).path(), "/dev/null");
    assert_eq!(get(0).write(b"x", None), Ok(1));

    // The overlay file, at its offset, and the same inode as its names.
    assert_eq!(get(1).path(), "/tmp/new.txt");
    assert_eq!(read_all(&*get(1)), b"world");
    assert_eq!(stat(&v, b"/tmp/new.txt").map(|s| s.ino), Ok(before.new_ino));
    assert_eq!(get(1).stat().map(|s| s.ino), Ok(before.new_ino));
    assert_eq!(get(1).write(b"!", None), Ok(1));
    assert_eq!(read_path(&v, b"/tmp/d/hard"), Ok(b"hello world!".to_vec()));

    // The epoll sees the pipe's buffered data; the pipe ends share their buffer.
    let ep = get(6);
    let ep = ep.as_any().downcast_ref::<Epoll>().expect("epoll");
    assert_eq!(ep.harvest(8), vec![(EPOLLIN, 42)]);
    let mut b = [0u8; 32];
    assert_eq!(get(3).read(&mut b, None), Ok(8));
    assert_eq!(&b[..8], b"buffered");
    assert_eq!(get(3).read(&mut b, None), Err(Errno::EAGAIN));
    assert_ne!(get(4).status_flags() & libc::O_NONBLOCK as u32, 0);
    assert_eq!(get(4).write(b"more", None), Ok(4));
    assert_eq!(get(3).read(&mut b, None), Ok(4));
    assert_eq!(get(3).path(), get(4).path());

    // eventfd (a semaphore), timerfd, signalfd.
    assert_eq!(get(5).read(&mut b, None), Ok(8));
    assert_eq!(u64::from_ne_bytes(b[..8].try_into().expect("8 bytes")), 1);
    let timer = get(11);
    let timer = timer.as_any().downcast_ref::<TimerFd>().expect("timerfd");
    let (left, interval) = timer.get();
    assert!(
        left > Duration::from_secs(90) && left <= Duration::from_secs(100),
        "{left:?}"
    );
    assert_eq!(interval, Duration::from_secs(1));
    assert_ne!(get(11).status_flags() & libc::O_NONBLOCK as u32, 0);
    let sfd = get(12);
    let sfd = sfd.as_any().downcast_ref::<SignalFd>().expect("signalfd");
    assert_eq!(sfd.mask(), 1 << (libc::SIGUSR1 - 1));

    // Host files, reopened at their offsets: rootfs, volume (appending), bound file.
    assert_eq!(read_all(&*get(7)), b"LF-tool-bytes");
    assert_eq!(get(7).path(), "/bin/tool");
    assert_eq!(read_all(&*get(13)), b"otes\n");
    assert_eq!(get(13).write(b"more notes\n", None), Ok(11));
    let on_host = std::fs::read(dirs.path("vol/notes.txt")).expect("read");
    assert_eq!(on_host, b"notes\nmore notes\n");
    assert_eq!(read_all(&*get(14)), b"one file\n");
    assert_eq!(get(14).write(b"x", None), Err(Errno::EBADF));

    // The directory goes on where getdents stopped; O_PATH and /proc descriptions.
    assert_eq!(names(&*get(8)), before.dir_rest);
    assert!(get(9).is_path_only());
    assert_eq!(
        get(9).stat().map(|s| s.mode & libc::S_IFMT),
        Ok(libc::S_IFDIR)
    );
    assert_eq!(get(9).path(), "/etc");
    assert_eq!(read_all(&*get(10)), b"--serve\0");
    assert_eq!(get(10).path(), "/proc/7/cmdline");

    // The O_TMPFILE file: unnamed, its data and inode number kept.
    let anon = get(20);
    assert_eq!(
        anon.stat().map(|s| (s.ino, s.nlink)),
        Ok((before.tmpfile_ino, 0))
    );
    assert_eq!(anon.read(&mut b, Some(0)), Ok(9));

    // The tree: links, whiteouts, copy-ups, the socket's (dead) name, the mounts.
    assert_eq!(read_path(&v, b"/tmp/d/link"), Ok(b"hello world!".to_vec()));
    assert_eq!(
        stat(&v, b"/tmp/d/hard").map(|s| (s.ino, s.nlink)),
        Ok((before.new_ino, 2))
    );
    assert_eq!(
        stat(&v, b"/tmp/d").map(|s| s.mode),
        Ok(libc::S_IFDIR | 0o750)
    );
    assert_eq!(stat(&v, b"/data/gone.txt").err(), Some(Errno::ENOENT));
    assert_eq!(
        read_path(&v, b"/data/lower.txt"),
        Ok(b"from the rootfs\n".to_vec())
    );
    assert_eq!(
        read_path(&v, b"/etc/hosts"),
        Ok(b"127.0.0.1 localhost\n10.0.0.1 db\n".to_vec())
    );
    assert_eq!(
        stat(&v, b"/tmp/sock").map(|s| s.mode & libc::S_IFMT),
        Ok(libc::S_IFSOCK)
    );
    assert_eq!(
        v.bound_socket(&lk(), b"/tmp/sock").err(),
        Some(Errno::ECONNREFUSED)
    );
    let scratch = stat(&v, b"/scratch/s.txt").expect("stat");
    assert_eq!(
        (scratch.dev, scratch.ino),
        (before.scratch.dev, before.scratch.ino)
    );
    assert_eq!(read_path(&v, b"/scratch/s.txt"), Ok(b"in tmpfs".to_vec()));
    assert_eq!(
        read_path(&v, b"/vol/made.txt"),
        Ok(b"made in the volume".to_vec())
    );
    let l = lk();
    assert_eq!(v.mkdir(&l, b"/sys/x", 0o755).err(), Some(Errno::EROFS));
    assert_eq!(
        v.mkdir(&l, b"/etc/single/x", 0o755).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(v.readlink(&l, b"/altproc/self").ok(), Some(b"7".to_vec()));
    // The tmpfs's limit came back: 1 MiB holds no 2 MiB.
    let big = open(&v, b"/scratch/big", CREAT_W);
    assert_eq!(big.write(&vec![1u8; 2 << 20], None), Err(Errno::ENOSPC));

    // Mapped files read what they did.
    let mut page = [0u8; 16];
    assert_eq!(maps[0].read_at(0, &mut page), Ok(12));
    assert_eq!(&page[..12], b"hello world!");
    assert_eq!(maps[1].path(), "/bin/tool");
    assert_eq!(maps[1].read_at(1, &mut page), Ok(14));
    assert_eq!(&page[..3], b"ELF");
    assert_eq!(maps[2].path(), "/dev/zero");
}

#[test]
fn stdio_of_an_init_is_the_containers_new_stdio() {
    let dirs = Dirs::new("stdio");
    let fd = |name: &str| -> std::os::fd::OwnedFd {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dirs.path(name))
            .expect("open")
            .into()
    };
    let init = Arc::new(FdTable::with_host_fds([fd("in"), fd("out"), fd("err")]).expect("stdio"));
    init.set_stdio_owner("web");
    init.get(1)
        .expect("stdout")
        .set_status_flags(libc::O_APPEND as u32);
    let exec =
        Arc::new(FdTable::with_host_fds([fd("xin"), fd("xout"), fd("xerr")]).expect("stdio"));

    let mut cx = SaveContext::default();
    let init_id = cx.fd_table_id(&init).expect("save");
    let exec_id = cx.fd_table_id(&exec).expect("save");
    let mut parts = Parts::from_save(cx, Vec::new(), Vec::new()).round_trip();
    drop((init, exec));

    let mut rx = parts.restore(Default::default());
    rx.vfs.give_stdio(
        "web",
        "web-restored",
        [fd("new-in"), fd("new-out"), fd("new-err")],
    );
    let init = rx.fd_table(init_id).expect("restore");
    let out = init.get(1).expect("stdout");
    assert_eq!(out.write(b"after restore\n", None), Ok(14));
    assert_ne!(out.status_flags() & libc::O_APPEND as u32, 0);
    assert_eq!(
        std::fs::read(dirs.path("new-out")).expect("read"),
        b"after restore\n"
    );
    assert_eq!(std::fs::read(dirs.path("out")).expect("read"), b"");
    // Labelled with the container's new id for the next checkpoint.
    let mut again = SaveContext::default();
    again.fd_table_id(&init).expect("save again");
    match again.files.into_states().first() {
        Some(super::FileState::Stdio(s)) => {
            assert_eq!(s.container.as_deref(), Some("web-restored"));
            assert_eq!(s.slot, Some(0));
        }
        _ => panic!("fd 0 is not saved as stdio"),
    }
    // An exec's stdio has nobody at the other end any more.
    let exec = rx.fd_table(exec_id).expect("restore");
    let out = exec.get(1).expect("stdout");
    assert_eq!(out.path(), "/dev/null");
    assert_eq!(out.write(b"lost", None), Ok(4));
}

#[test]
fn what_cannot_be_saved_is_named() {
    struct Odd;
    impl FileDescription for Odd {
        fn stat(&self) -> Result<Stat, Errno> {
            Ok(Stat::default())
        }
        fn path(&self) -> String {
            "odd:[1]".into()
        }
        fn status_flags(&self) -> u32 {
            0
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }
    let t = Arc::new(FdTable::new());
    t.install(file(Arc::new(Odd)), false, LIMIT)
        .expect("install");
    let err = SaveContext::default()
        .fd_table_id(&t)
        .expect_err("cannot save");
    assert!(err.to_string().contains("odd:[1]"), "{err}");
}

#[test]
fn epolls_nested_and_shared_come_back_shared() {
    let (r, w) = new_pipe(0);
    let r = file(r);
    let inner = Arc::new(Epoll::new());
    inner.ctl(CtlOp::Add, 3, &r, EPOLLIN, 1).expect("ctl");
    let inner = file(inner);
    let outer = Arc::new(Epoll::new());
    outer.ctl(CtlOp::Add, 4, &inner, EPOLLIN, 2).expect("ctl");
    let t = Arc::new(FdTable::new());
    for (fd, f) in [(3, r), (4, inner), (5, file(outer)), (6, file(w))] {
        t.install_at(fd, f, false, LIMIT).expect("install");
    }
    let mut cx = SaveContext::default();
    let id = cx.fd_table_id(&t).expect("save");
    let mut parts = Parts::from_save(cx, Vec::new(), Vec::new()).round_trip();
    drop(t);
    let mut rx = parts.restore(Default::default());
    let t = rx.fd_table(id).expect("restore");
    let outer = t.get(5).expect("outer");
    let outer = outer.as_any().downcast_ref::<Epoll>().expect("epoll");
    assert!(outer.harvest(8).is_empty());
    assert_eq!(t.get(6).expect("w").write(b"x", None), Ok(1));
    assert_eq!(outer.harvest(8), vec![(EPOLLIN, 2)]);
    let inner = t.get(4).expect("inner");
    let inner = inner.as_any().downcast_ref::<Epoll>().expect("epoll");
    assert_eq!(inner.harvest(8), vec![(EPOLLIN, 1)]);
    assert_eq!(outer.nesting(), 1);
}
