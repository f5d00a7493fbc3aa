//! Tests of the whole file system over a scratch host directory: resolution, the
//! overlay (copy-up, whiteouts, merged listings, rename), /dev and /proc.

use super::*;

struct Fixture {
    dir: std::path::PathBuf,
    vfs: Arc<Vfs>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir =
        std::env::temp_dir().join(format!("nanovisor-vfs-it-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
    std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
    std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
    std::fs::write(dir.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("write");
    std::fs::write(dir.join("bin/tool"), b"\x7fELF").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("/etc/hosts", dir.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../etc", dir.join("bin/up")).expect("symlink");
    std::os::unix::fs::symlink("loop", dir.join("loop")).expect("symlink");
    std::os::unix::fs::symlink("/../../../../etc/hosts", dir.join("escape")).expect("symlink");
    let vfs =
        Vfs::new(super::host_source::HostSource::open_root(&dir).expect("rootfs")).expect("vfs");
    Fixture { dir, vfs }
}

fn snap() -> ProcSnapshot {
    ProcSnapshot {
        pid: 1,
        exe: b"/bin/tool".to_vec(),
        ..ProcSnapshot::default()
    }
}

fn lk(base: &[u8]) -> Lookup<'_> {
    Lookup::new(base, 0, 0, 0o022, &snap)
}

fn read_all(f: &Arc<dyn FileDescription>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 64];
    loop {
        match f.read(&mut b, None) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
}

fn names(vfs: &Arc<Vfs>, p: &[u8]) -> Vec<String> {
    let f = vfs
        .open(
            &lk(b"/"),
            p,
            libc::O_RDONLY as u32 | libc::O_DIRECTORY as u32,
            0,
        )
        .expect("opendir");
    let mut v = Vec::new();
    f.readdir(&mut |e, _| {
        v.push(String::from_utf8_lossy(&e.name).into_owned());
        true
    })
    .expect("readdir");
    v.sort();
    v
}

const RDONLY: u32 = libc::O_RDONLY as u32;
const CREAT_W: u32 = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32;

#[test]
fn symlinks_resolve_inside_the_sandbox() {
    let fx = fixture("links");
    let v = &fx.vfs;
    let f = v
        .open(&lk(b"/"), b"/abs", RDONLY, 0)
        .expect("open via abs link");
    assert_eq!(read_all(&f), b"127.0.0.1 localhost\n");
    assert!(v.open(&lk(b"/bin"), b"up/hosts", RDONLY, 0).is_ok());
    // A link pointing "above" the root stays in the sandbox root.
    assert!(v.open(&lk(b"/"), b"/escape", RDONLY, 0).is_ok());
    assert_eq!(
        v.open(&lk(b"/"), b"/loop", RDONLY, 0).err(),
        Some(Errno::ELOOP)
    );
    assert_eq!(
        v.open(&lk(b"/"), b"/abs", RDONLY | libc::O_NOFOLLOW as u32, 0)
            .err(),
        Some(Errno::ELOOP)
    );
    assert_eq!(
        v.readlink(&lk(b"/"), b"/abs").ok(),
        Some(b"/etc/hosts".to_vec())
    );
    assert_eq!(v.readlink(&lk(b"/"), b"/etc").err(), Some(Errno::EINVAL));
    assert_eq!(
        v.stat(&lk(b"/"), b"/abs", false)
            .map(|s| s.mode & libc::S_IFMT),
        Ok(libc::S_IFLNK)
    );
    assert_eq!(
        v.stat(&lk(b"/"), b"/abs", true)
            .map(|s| s.mode & libc::S_IFMT),
        Ok(libc::S_IFREG)
    );
}

#[test]
fn path_errors_match_linux() {
    let fx = fixture("errors");
    let v = &fx.vfs;
    let l = lk(b"/");
    assert_eq!(v.stat(&l, b"/nope", true).err(), Some(Errno::ENOENT));
    assert_eq!(
        v.stat(&l, b"/etc/hosts/x", true).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(v.stat(&l, b"/etc/hosts/", true).err(), Some(Errno::ENOTDIR));
    assert_eq!(v.stat(&l, b"", true).err(), Some(Errno::ENOENT));
    let long = vec![b'a'; 256];
    assert_eq!(v.stat(&l, &long, true).err(), Some(Errno::ENAMETOOLONG));
    assert_eq!(
        v.stat(&l, b"/../../etc/./hosts", true).map(|s| s.size),
        Ok(20)
    );
    assert_eq!(
        v.open(&l, b"/etc", libc::O_WRONLY as u32, 0).err(),
        Some(Errno::EISDIR)
    );
    assert_eq!(
        v.open(&l, b"/etc/hosts", RDONLY | libc::O_DIRECTORY as u32, 0)
            .err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        v.open(
            &l,
            b"/etc/hosts",
            (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) as u32,
            0o644
        )
        .err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        v.open(&l, b"/tmp/new/", CREAT_W, 0o644).err(),
        Some(Errno::EISDIR)
    );
    assert_eq!(v.mkdir(&l, b"/etc", 0o755).err(), Some(Errno::EEXIST));
    assert_eq!(v.rmdir(&l, b"/etc").err(), Some(Errno::ENOTEMPTY));
    assert_eq!(v.rmdir(&l, b"/etc/hosts").err(), Some(Errno::ENOTDIR));
    assert_eq!(v.unlink(&l, b"/etc").err(), Some(Errno::EISDIR));
    assert_eq!(v.rmdir(&l, b"/tmp/.").err(), Some(Errno::EINVAL));
    assert_eq!(v.rmdir(&l, b"/").err(), Some(Errno::EBUSY));
}

#[test]
fn writes_go_to_the_overlay_only() {
    let fx = fixture("overlay");
    let v = &fx.vfs;
    let l = lk(b"/tmp");
    let f = v.open(&l, b"x", CREAT_W, 0o666).expect("create");
    assert_eq!(f.write(b"b\n", None), Ok(2));
    let st = f.stat().expect("stat");
    assert_eq!(st.mode, libc::S_IFREG | 0o644);
    let f = v.open(&l, b"/tmp/x", RDONLY, 0).expect("reopen");
    assert_eq!(read_all(&f), b"b\n");
    assert!(!fx.dir.join("tmp/x").exists());
    // Writing a host file copies it up; the host copy is untouched.
    let f = v
        .open(
            &l,
            b"/etc/hosts",
            (libc::O_WRONLY | libc::O_APPEND) as u32,
            0,
        )
        .expect("open w");
    assert_eq!(f.write(b"::1 v6\n", None), Ok(7));
    let f = v.open(&l, b"/etc/hosts", RDONLY, 0).expect("open r");
    assert_eq!(read_all(&f), b"127.0.0.1 localhost\n::1 v6\n");
    assert_eq!(
        std::fs::read(fx.dir.join("etc/hosts")).ok(),
        Some(b"127.0.0.1 localhost\n".to_vec())
    );
    assert_eq!(names(v, b"/etc"), vec![".", "..", "hosts"]);
    // Truncation through a path.
    v.truncate(&l, b"/etc/hosts", 3).expect("truncate");
    assert_eq!(v.stat(&l, b"/etc/hosts", true).map(|s| s.size), Ok(3));
}

#[test]
fn whiteouts_hide_host_entries() {
    let fx = fixture("whiteout");
    let v = &fx.vfs;
    let l = lk(b"/");
    v.unlink(&l, b"/etc/hosts").expect("unlink");
    assert_eq!(v.stat(&l, b"/etc/hosts", true).err(), Some(Errno::ENOENT));
    assert_eq!(names(v, b"/etc"), vec![".", ".."]);
    assert!(fx.dir.join("etc/hosts").exists());
    v.rmdir(&l, b"/etc").expect("rmdir");
    assert!(!names(v, b"/").contains(&"etc".to_string()));
    // A new directory of the same name is opaque.
    v.mkdir(&l, b"/etc", 0o755).expect("mkdir");
    assert_eq!(names(v, b"/etc"), vec![".", ".."]);
    assert_eq!(v.stat(&l, b"/etc/hosts", true).err(), Some(Errno::ENOENT));
    // The root lists host entries, overlay entries, /dev and /proc.
    let root = names(v, b"/");
    for n in ["bin", "tmp", "etc", "dev", "proc", "abs"] {
        assert!(root.contains(&n.to_string()), "{n} missing from {root:?}");
    }
}

#[test]
fn rename_link_symlink_and_chmod() {
    let fx = fixture("rename");
    let v = &fx.vfs;
    let l = lk(b"/");
    // A host directory moves with its lower contents.
    v.rename(&l, b"/etc", &l, b"/tmp/etc2", 0)
        .expect("rename dir");
    assert_eq!(v.stat(&l, b"/etc", true).err(), Some(Errno::ENOENT));
    assert_eq!(v.stat(&l, b"/tmp/etc2/hosts", true).map(|s| s.size), Ok(20));
    assert_eq!(
        v.rename(&l, b"/tmp", &l, b"/tmp/etc2/t", 0).err(),
        Some(Errno::EINVAL)
    );
    // Files.
    v.rename(&l, b"/tmp/etc2/hosts", &l, b"/hosts", 0)
        .expect("rename file");
    assert_eq!(names(v, b"/tmp/etc2"), vec![".", ".."]);
    v.mkdir(&l, b"/d", 0o700).expect("mkdir");
    assert_eq!(
        v.rename(&l, b"/hosts", &l, b"/d", 0).err(),
        Some(Errno::EISDIR)
    );
    assert_eq!(
        v.rename(&l, b"/d", &l, b"/hosts", 0).err(),
        Some(Errno::ENOTDIR)
    );
    assert_eq!(
        v.rename(&l, b"/hosts", &l, b"/bin/tool", ops::RENAME_NOREPLACE)
            .err(),
        Some(Errno::EEXIST)
    );
    v.rename(&l, b"/hosts", &l, b"/bin/tool", ops::RENAME_EXCHANGE)
        .expect("exchange");
    assert_eq!(v.stat(&l, b"/hosts", true).map(|s| s.size), Ok(4));
    // Hard links share the inode.
    v.link(&l, b"/hosts", false, &l, b"/h2").expect("link");
    let (a, b) = (v.stat(&l, b"/hosts", true), v.stat(&l, b"/h2", true));
    assert_eq!(a.map(|s| (s.ino, s.nlink)), b.map(|s| (s.ino, s.nlink)));
    assert_eq!(v.stat(&l, b"/h2", true).map(|s| s.nlink), Ok(2));
    assert_eq!(
        v.link(&l, b"/d", false, &l, b"/d2").err(),
        Some(Errno::EPERM)
    );
    v.symlink(&l, b"hosts", b"/sl").expect("symlink");
    assert_eq!(v.stat(&l, b"/sl", true).map(|s| s.size), Ok(4));
    assert_eq!(v.symlink(&l, b"x", b"/sl").err(), Some(Errno::EEXIST));
    v.chmod(&l, b"/h2", 0o600, true).expect("chmod");
    assert_eq!(
        v.stat(&l, b"/hosts", true).map(|s| s.mode & 0o7777),
        Ok(0o600)
    );
}

#[test]
fn dev_and_proc() {
    let fx = fixture("devproc");
    let v = &fx.vfs;
    let l = lk(b"/");
    let null = v
        .open(&l, b"/dev/null", libc::O_RDWR as u32, 0)
        .expect("null");
    assert_eq!(null.write(b"x", None), Ok(1));
    assert_eq!(v.open(&l, b"/dev/tty", RDONLY, 0).err(), Some(Errno::ENXIO));
    assert_eq!(
        v.readlink(&l, b"/proc/self/exe").ok(),
        Some(b"/bin/tool".to_vec())
    );
    assert_eq!(v.readlink(&l, b"/proc/self").ok(), Some(b"1".to_vec()));
    let st = v.stat(&l, b"/proc/self/exe", true).expect("follow exe");
    assert_eq!(st.size, 4);
    assert!(names(v, b"/dev").contains(&"urandom".to_string()));
    assert_eq!(v.mkdir(&l, b"/proc/x", 0o755).err(), Some(Errno::EACCES));
    let exe = FsContext::new(v.clone(), b"/bin")
        .expect("ctx")
        .open_exec(b"tool")
        .expect("exec");
    assert_eq!(exe.path(), "/bin/tool");
    let ctx = FsContext::new(v.clone(), b"/").expect("ctx");
    assert_eq!(ctx.open_exec(b"/etc/hosts").err(), Some(Errno::EACCES));
    assert_eq!(ctx.open_exec(b"/etc").err(), Some(Errno::EACCES));
    assert_eq!(ctx.open_exec(b"/nope").err(), Some(Errno::ENOENT));
    // busybox re-executes itself through /proc/self/exe.
    let me = ctx
        .open_exec_with(b"/proc/self/exe", &snap)
        .expect("exec via /proc/self/exe");
    assert_eq!(me.path(), "/bin/tool");
}

#[test]
fn directory_offsets_resume() {
    let fx = fixture("dents");
    let v = &fx.vfs;
    let f = v.open(&lk(b"/"), b"/", RDONLY, 0).expect("open /");
    let mut first = Vec::new();
    f.readdir(&mut |e, _| {
        if first.len() == 2 {
            return false;
        }
        first.push(e.name.clone());
        true
    })
    .expect("readdir");
    let mut rest = Vec::new();
    f.readdir(&mut |e, _| {
        rest.push(e.name.clone());
        true
    })
    .expect("readdir");
    assert_eq!(first.len(), 2);
    assert!(!rest.contains(&first[0]));
    assert_eq!(f.seek(0, 0), Ok(0));
    let mut again = 0;
    f.readdir(&mut |_, _| {
        again += 1;
        true
    })
    .expect("readdir");
    assert_eq!(again, first.len() + rest.len());
}
