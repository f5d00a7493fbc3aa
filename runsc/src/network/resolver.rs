//! Which resolvers a sandbox's DNS proxy forwards to, and the resolv.conf its guest gets:
//! from the resolv.conf the container would have had — the one its runtime binds at
//! `/etc/resolv.conf` (a pod's: cluster DNS, search domains, `ndots`), else its root file
//! system's own.

use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

use netstack::dns::resolv_conf::ResolvConf;
use oci_spec::runtime::Spec;

/// Largest resolv.conf read (glibc's is a few hundred bytes).
const MAX_LEN: u64 = 64 << 10;

/// The resolv.conf of a container with `spec` whose bundle is `bundle` and root `rootfs`.
/// None when there is none to read (the guest's then names the proxy alone, and the
/// proxy forwards only to a policy's upstreams).
pub fn for_container(spec: &Spec, bundle: &Path, rootfs: &Path) -> Option<ResolvConf> {
    let bound = spec.mounts().as_ref().and_then(|mounts| {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new("/etc/resolv.conf"))
            .and_then(|m| m.source().clone())
    });
    match bound {
        // The runtime's own file (containerd writes one per pod): trusted like config.json.
        Some(source) => {
            let path = if source.is_absolute() {
                source
            } else {
                bundle.join(source)
            };
            read_limited(std::fs::File::open(&path))
                .inspect_err(|e| tracing::warn!("reading {}: {e}", path.display()))
                .ok()
                .map(|text| ResolvConf::parse(&text))
        }
        None => from_rootfs(rootfs),
    }
}

/// The resolv.conf of the root file system `rootfs`, resolved inside it (an image's
/// symbolic link cannot lead out of it to a host file).
pub fn from_rootfs(rootfs: &Path) -> Option<ResolvConf> {
    let file = open_in_root(rootfs, "etc/resolv.conf")
        .inspect_err(|e| tracing::debug!("no resolv.conf in {}: {e}", rootfs.display()))
        .ok()?;
    let text = read_limited(Ok(std::fs::File::from(file))).ok()?;
    Some(ResolvConf::parse(&text))
}

fn read_limited(file: std::io::Result<std::fs::File>) -> std::io::Result<String> {
    let mut text = String::new();
    file?.take(MAX_LEN).read_to_string(&mut text)?;
    Ok(text)
}

/// open(`rel`) under the directory `root` with openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS): `..` and symbolic links stay inside `root`.
fn open_in_root(root: &Path, rel: &str) -> std::io::Result<OwnedFd> {
    let dir = std::fs::File::open(root)?;
    let rel = CString::new(rel).map_err(std::io::Error::other)?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `rel` (a NUL-terminated string) and `how` (a valid open_how
    // of the size passed) and returns a new fd or -1; `dir` stays open across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_in_the_root_stays_in_the_root() {
        let root = std::env::temp_dir().join(format!("nv-resolver-{}", std::process::id()));
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(
            root.join("real.conf"),
            "nameserver 10.9.8.7\nsearch in.root\n",
        )
        .expect("write");
        // Absolute: resolved from the root file system's root, not the host's.
        std::os::unix::fs::symlink("/real.conf", etc.join("resolv.conf")).expect("symlink");
        let c = from_rootfs(&root).expect("read");
        assert_eq!(c.search, vec!["in.root"]);
        // A link to a host file that is not in the root: nothing.
        std::fs::remove_file(etc.join("resolv.conf")).expect("rm");
        std::os::unix::fs::symlink("/etc/hostname", etc.join("resolv.conf")).expect("symlink");
        assert_eq!(from_rootfs(&root), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
