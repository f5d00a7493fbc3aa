//! Pod network namespaces, named as containerd names them: `/var/run/netns/cni-UUID`, a file
//! with the namespace bind-mounted on it, so that it outlives every process in it and CNI
//! plugins and runsc can enter it by path.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Where named network namespaces live (iproute2's and containerd's place).
pub const NETNS_DIR: &str = "/var/run/netns";

/// Creates a new network namespace at `NETNS_DIR/name`.
pub fn create(name: &str) -> std::io::Result<PathBuf> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // unshare moves the calling thread: do it on a thread of its own that ends right after,
    // so that no thread of ours (or of tokio's) stays in the new namespace.
    let target = path.clone();
    let made = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> std::io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Unmounts and removes a namespace made by [`create`]; a missing one is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
