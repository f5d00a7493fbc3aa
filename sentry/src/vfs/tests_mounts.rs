//! Tests of the mount table over scratch host directories: lookups, listings and stat
//! through mount points, read-only and writable binds (files and directories), tmpfs
//! (size= and its own st_dev), the empty read-only directory, EXDEV and EBUSY.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::*;

/// A rootfs and a host directory to bind, removed on drop.
struct Fixture {
    dir: PathBuf,
    vfs: Arc<Vfs>,
}

impl Fixture {
    fn src(&self) -> PathBuf {
        self.dir.join("src")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir =
        std::env::temp_dir().join(format!("nanovisor-vfs-mnt-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("rootfs");
    let src = dir.join("src");
    for d in [root.join("etc"), root.join("tmp"), src.join("sub")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(root.join("etc/hosts"), b"guest hosts\n").expect("write");
    std::fs::write(src.join("file"), b"from the host\n").expect("write");
    std::fs::write(src.join("sub/inner"), b"inner\n").expect("write");
    std::os::unix::fs::symlink("/etc/hosts", src.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../etc/hosts", src.join("up")).expect("symlink");
    std::fs::write(dir.join("single"), b"one file\n").expect("write");
    let vfs =
        Vfs::new(super::host_source::HostSource::open_root(&root).expect("rootfs")).expect("vfs");
    Fixture { dir, vfs }
}

fn snap() -> ProcSnapshot {
    ProcSnapshot {
        pid: 1,
        ..ProcSnapshot::default()
    }
}

fn lk() -> Lookup<'static> {
    Lookup::new(b"/", 0, 0, 0o022, &snap)
}

fn bind(p: &Path, readonly: bool) -> Mount {
    Mount::bind(
        super::host_source::HostSource::open_bind(p, readonly).expect("bind source"),
        readonly,
    )
}

fn tmpfs() -> Mount {
    Mount::Tmpfs {
        size: None,
        mode: None,
    }
}

const RDONLY: u32 = libc::O_RDONLY as u32;
const CREAT_W: u32 = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32;

fn read_all(v: &Arc<Vfs>, p: &[u8]) -> Result<Vec<u8>, Errno> {
    let f = v.open(&lk(), p, RDONLY, 0)?;
    let mut out = Vec::new();
    let mut b = [0u8; 64];
    loop {
        match f.read(&mut b, None)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&b[..n]),
        }
    }
}

fn write(v: &Arc<Vfs>, p: &[u8], data: &[u8]) -> Result<(), Errno> {
    let f = v.open(&lk(), p, CREAT_W, 0o644)?;
    assert_eq!(f.write(data, None)?, data.len());
    Ok(())
}

fn names(v: &Arc<Vfs>, p: &[u8]) -> Vec<String> {
    let f = v
        .open(&lk(), p, RDONLY | libc::O_DIRECTORY as u32, 0)
        .expect("opendir");
    let mut out = Vec::new();
    f.readdir(&mut |e, _| {
        if !path::is_dot(&e.name) {
            out.push(String::from_utf8_lossy(&e.name).into_owned());
        }
        true
    })
    .expect("readdir");
    out.sort();
    out
}

#[test]
fn lookups_listings_and_stat_go_through_mount_points() {
    let fx = fixture("lookup");
    let v = &fx.vfs;
    v.mount(b"/mnt/deep/ro", bind(&fx.src(), true))
        .expect("mount at a missing path");
    v.mount(b"/scratch", tmpfs()).expect("tmpfs");
    v.mount(b"/sys", Mount::EmptyReadOnly).expect("sysfs");

    assert_eq!(
        read_all(v, b"/mnt/deep/ro/file"),
        Ok(b"from the host\n".to_vec())
    );
    assert_eq!(
        read_all(v, b"/mnt/deep/ro/sub/inner"),
        Ok(b"inner\n".to_vec())
    );
    // ".." from a mount's root is the mount point's parent, and the walk goes on there.
    assert_eq!(
        read_all(v, b"/mnt/deep/ro/../ro/file"),
        Ok(b"from the host\n".to_vec())
    );
    assert_eq!(
        read_all(v, b"/mnt/deep/ro/../../../etc/hosts"),
        Ok(b"guest hosts\n".to_vec())
    );
    // Links in a bind resolve in the container, never on the host, and cannot climb out.
    assert_eq!(
        read_all(v, b"/mnt/deep/ro/abs"),
        Ok(b"guest hosts\n".to_vec())
    );
    assert_eq!(
        read_all(v, b"/mnt/deep/ro/up"),
        Ok(b"guest hosts\n".to_vec())
    );

    let st = v.stat(&lk(), b"/mnt/deep/ro/file", true).expect("stat");
    assert_eq!(st.size, 14);
    let host = std::fs::metadata(fx.src()).expect("host stat");
    let st = v
        .stat(&lk(), b"/mnt/deep/ro", true)
        .expect("stat mount root");
    assert_eq!(st.ino, std::os::unix::fs::MetadataExt::ino(&host));

    assert!(names(v, b"/").contains(&"scratch".to_string()));
    assert!(names(v, b"/").contains(&"sys".to_string()));
    assert_eq!(names(v, b"/mnt/deep"), vec!["ro"]);
    assert_eq!(names(v, b"/mnt/deep/ro"), vec!["abs", "file", "sub", "up"]);
    assert!(names(v, b"/sys").is_empty());

    // A tmpfs has a device of its own.
    let over = v.stat(&lk(), b"/mnt", true).expect("stat").dev;
    let scratch = v.stat(&lk(), b"/scratch", true).expect("stat");
    assert_ne!(scratch.dev, over);
    assert_eq!(scratch.mode, libc::S_IFDIR | 0o1777);
    write(v, b"/scratch/f", b"x\n").expect("write in tmpfs");
    assert_eq!(
        v.stat(&lk(), b"/scratch/f", true).map(|s| s.dev),
        Ok(scratch.dev)
    );
    assert_eq!(names(v, b"/scratch"), vec!["f"]);
    let mounts =
        String::from_utf8(read_all(v, b"/proc/self/mounts").expect("mounts")).expect("text");
    assert!(mounts.contains("\nnone /mnt/deep/ro bind ro,"), "{mounts}");
    assert!(mounts.contains("\ntmpfs /scratch tmpfs rw,"), "{mounts}");
    // A relative walk that starts inside a mount.
    let inside = Lookup::new(b"/scratch", 0, 0, 0o022, &snap);
    assert!(v.stat(&inside, b"f", true).is_ok());
    assert!(v.stat(&inside, b"../mnt/deep/ro/file", true).is_ok());
}

#[test]
fn read_only_mounts_refuse_writes() {
    let fx = fixture("ro");
    let v = &fx.vfs;
    v.mount(b"/ro", bind(&fx.src(), true)).expect("bind");
    v.mount(b"/sys", Mount::EmptyReadOnly).expect("sysfs");
    let w = libc::O_WRONLY as u32;
    assert_eq!(v.open(&lk(), b"/ro/file", w, 0).err(), Some(Errno::EROFS));
    assert_eq!(
        v.open(&lk(), b"/ro/new", CREAT_W, 0o644).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(v.mkdir(&lk(), b"/ro/d", 0o755), Err(Errno::EROFS));
    assert_eq!(v.unlink(&lk(), b"/ro/file"), Err(Errno::EROFS));
    assert_eq!(v.rmdir(&lk(), b"/ro/sub"), Err(Errno::EROFS));
    assert_eq!(v.chmod(&lk(), b"/ro/file", 0o600, true), Err(Errno::EROFS));
    assert_eq!(v.truncate(&lk(), b"/ro/file", 0), Err(Errno::EROFS));
    assert_eq!(v.symlink(&lk(), b"x", b"/ro/l"), Err(Errno::EROFS));
    assert_eq!(
        v.rename(&lk(), b"/ro/file", &lk(), b"/ro/moved", 0),
        Err(Errno::EROFS)
    );
    assert_eq!(
        v.open(&lk(), b"/sys/x", CREAT_W, 0o644).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(v.mkdir(&lk(), b"/sys/fs", 0o755), Err(Errno::EROFS));
    // The host is untouched.
    assert_eq!(
        std::fs::read(fx.src().join("file")).ok(),
        Some(b"from the host\n".to_vec())
    );
    assert!(!fx.src().join("new").exists());
}

#[test]
fn writable_binds_write_through_to_the_host() {
    let fx = fixture("rw");
    let v = &fx.vfs;
    v.mount(b"/data", bind(&fx.src(), false)).expect("bind");
    write(v, b"/data/out", b"written\n").expect("create");
    assert_eq!(
        std::fs::read(fx.src().join("out")).ok(),
        Some(b"written\n".to_vec())
    );
    // O_TRUNC and O_APPEND on an existing host file.
    write(v, b"/data/file", b"new\n").expect("truncate and write");
    let f = v
        .open(
            &lk(),
            b"/data/file",
            (libc::O_WRONLY | libc::O_APPEND) as u32,
            0,
        )
        .expect("open append");
    assert_eq!(f.write(b"more\n", None), Ok(5));
    assert_eq!(
        std::fs::read(fx.src().join("file")).ok(),
        Some(b"new\nmore\n".to_vec())
    );
    assert_eq!(f.truncate(3), Ok(()));
    assert_eq!(read_all(v, b"/data/file"), Ok(b"new".to_vec()));

    v.mkdir(&lk(), b"/data/dir", 0o750).expect("mkdir");
    let mode = std::fs::metadata(fx.src().join("dir"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o750);
    v.rename(&lk(), b"/data/out", &lk(), b"/data/dir/out2", 0)
        .expect("rename");
    assert!(fx.src().join("dir/out2").is_file());
    v.link(&lk(), b"/data/dir/out2", false, &lk(), b"/data/hard")
        .expect("link");
    v.symlink(&lk(), b"/etc/hosts", b"/data/sl")
        .expect("symlink");
    assert_eq!(
        std::fs::read_link(fx.src().join("sl")).ok(),
        Some(PathBuf::from("/etc/hosts"))
    );
    // The link is followed in the guest, to the guest's /etc/hosts.
    assert_eq!(read_all(v, b"/data/sl"), Ok(b"guest hosts\n".to_vec()));
    v.chmod(&lk(), b"/data/hard", 0o600, true).expect("chmod");
    let mode = std::fs::metadata(fx.src().join("hard"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    v.utimes(
        &lk(),
        b"/data/hard",
        [TimeSpec::At(1000, 0), TimeSpec::At(2000, 0)],
        true,
    )
    .expect("utimes");
    assert_eq!(
        v.stat(&lk(), b"/data/hard", true).map(|s| s.mtime.0),
        Ok(2000)
    );
    v.truncate(&lk(), b"/data/hard", 2).expect("truncate");
    assert_eq!(
        std::fs::metadata(fx.src().join("hard"))
            .map(|m| m.len())
            .ok(),
        Some(2)
    );
    v.unlink(&lk(), b"/data/hard").expect("unlink");
    v.unlink(&lk(), b"/data/dir/out2").expect("unlink");
    v.rmdir(&lk(), b"/data/dir").expect("rmdir");
    assert!(!fx.src().join("dir").exists() && !fx.src().join("hard").exists());
    assert_eq!(v.rmdir(&lk(), b"/data/sub"), Err(Errno::ENOTEMPTY));
}

#[test]
fn renames_and_links_stay_inside_one_mount() {
    let fx = fixture("xdev");
    let v = &fx.vfs;
    v.mount(b"/data", bind(&fx.src(), false)).expect("bind");
    v.mount(b"/scratch", tmpfs()).expect("tmpfs");
    v.mount(b"/data/cache", tmpfs())
        .expect("tmpfs inside a bind");
    assert!(
        fx.src().join("cache").is_dir(),
        "mount point made in the bind source"
    );
    write(v, b"/tmp/t", b"t").expect("write");
    write(v, b"/scratch/s", b"s").expect("write");
    let rename = |a: &[u8], b: &[u8]| v.rename(&lk(), a, &lk(), b, 0);
    assert_eq!(rename(b"/data/file", b"/tmp/file"), Err(Errno::EXDEV));
    assert_eq!(rename(b"/tmp/t", b"/data/t"), Err(Errno::EXDEV));
    assert_eq!(rename(b"/tmp/t", b"/scratch/t"), Err(Errno::EXDEV));
    assert_eq!(rename(b"/scratch/s", b"/data/cache/s"), Err(Errno::EXDEV));
    assert_eq!(
        rename(b"/data/file", b"/data/cache/file"),
        Err(Errno::EXDEV)
    );
    assert_eq!(
        v.link(&lk(), b"/scratch/s", false, &lk(), b"/tmp/s"),
        Err(Errno::EXDEV)
    );
    assert_eq!(rename(b"/scratch/s", b"/scratch/s2"), Ok(()));
    // Mount points (and directories holding them) stay put.
    assert_eq!(rename(b"/scratch", b"/scratch2"), Err(Errno::EBUSY));
    assert_eq!(rename(b"/data/cache", b"/data/cache2"), Err(Errno::EBUSY));
    assert_eq!(v.rmdir(&lk(), b"/scratch"), Err(Errno::EBUSY));
    assert_eq!(v.rmdir(&lk(), b"/data/cache"), Err(Errno::EBUSY));
    v.mkdir(&lk(), b"/tmp/m", 0o755).expect("mkdir");
    v.mount(b"/tmp/m/inner", tmpfs()).expect("tmpfs");
    assert_eq!(rename(b"/tmp/m", b"/tmp/n"), Err(Errno::EBUSY));
    assert_eq!(v.rmdir(&lk(), b"/tmp/m"), Err(Errno::ENOTEMPTY));
}

#[test]
fn file_binds_and_mount_points_in_dev() {
    let fx = fixture("file");
    let v = &fx.vfs;
    let single = fx.dir.join("single");
    v.mount(b"/etc/conf", bind(&single, false))
        .expect("file bind");
    v.mount(b"/etc/hosts", bind(&single, true))
        .expect("file bind over a file");
    v.mount(b"/dev/termination-log", bind(&single, false))
        .expect("file bind in /dev");
    v.mount(b"/dev/shm", tmpfs()).expect("tmpfs in /dev");
    assert_eq!(read_all(v, b"/etc/conf"), Ok(b"one file\n".to_vec()));
    assert_eq!(read_all(v, b"/etc/hosts"), Ok(b"one file\n".to_vec()));
    assert_eq!(
        v.open(&lk(), b"/etc/hosts", libc::O_WRONLY as u32, 0).err(),
        Some(Errno::EROFS)
    );
    write(v, b"/dev/termination-log", b"bye\n").expect("write through a file bind");
    assert_eq!(std::fs::read(&single).ok(), Some(b"bye\n".to_vec()));
    assert_eq!(v.unlink(&lk(), b"/etc/conf"), Err(Errno::EBUSY));
    assert!(names(v, b"/dev").contains(&"termination-log".to_string()));
    assert!(names(v, b"/etc").contains(&"conf".to_string()));
    write(v, b"/dev/shm/seg", b"shared").expect("write in /dev/shm");
    assert_eq!(read_all(v, b"/dev/shm/seg"), Ok(b"shared".to_vec()));
    assert_eq!(
        v.stat(&lk(), b"/dev/null", true)
            .map(|s| s.mode & libc::S_IFMT),
        Ok(libc::S_IFCHR)
    );
    // A directory bind cannot go over a file, nor a file over a directory.
    assert!(v.mount(b"/etc/conf", bind(&fx.src(), true)).is_err());
    assert!(v.mount(b"/tmp", bind(&single, true)).is_err());
    // The sandbox keeps its root, /dev and /proc.
    for p in [&b"/"[..], b"/dev", b"/proc", b"/proc/"] {
        assert!(matches!(v.mount(p, tmpfs()), Err(MountError::Reserved(_))));
    }
}

#[test]
fn tmpfs_size_and_mode() {
    let fx = fixture("size");
    let v = &fx.vfs;
    v.mount(
        b"/small",
        Mount::Tmpfs {
            size: Some(8),
            mode: Some(0o700),
        },
    )
    .expect("tmpfs");
    assert_eq!(
        v.stat(&lk(), b"/small", true).map(|s| s.mode),
        Ok(libc::S_IFDIR | 0o700)
    );
    let f = v.open(&lk(), b"/small/a", CREAT_W, 0o644).expect("create");
    assert_eq!(f.write(b"12345678", None), Ok(8));
    assert_eq!(f.write(b"9", None), Err(Errno::ENOSPC));
    assert_eq!(f.truncate(0), Ok(()));
    assert_eq!(f.write(b"9", Some(0)), Ok(1));
}

#[test]
fn proc_mounts_and_unix_sockets_in_binds() {
    let fx = fixture("proc");
    let v = &fx.vfs;
    v.mount(b"/host-proc", Mount::Proc).expect("proc elsewhere");
    assert!(v.stat(&lk(), b"/host-proc/self", false).is_ok());
    v.mount(b"/run", bind(&fx.src(), false)).expect("bind");
    let sock: Arc<dyn std::any::Any + Send + Sync> = Arc::new(7u32);
    v.bind_socket(&lk(), b"/run/app.sock", Arc::downgrade(&sock))
        .expect("bind a socket in a volume");
    let found = v.bound_socket(&lk(), b"/run/app.sock").expect("connect");
    assert!(Arc::ptr_eq(&found, &sock));
    assert_eq!(
        v.bind_socket(&lk(), b"/run/app.sock", Arc::downgrade(&sock)),
        Err(Errno::EADDRINUSE)
    );
}
