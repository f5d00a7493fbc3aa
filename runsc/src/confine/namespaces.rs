//! The sandbox process's host namespaces, and the empty root it ends up in.
//!
//! These are the namespaces of the *sentry*, which confine it; the container's namespaces
//! (`linux.namespaces` of the spec) are emulated by the sentry for the guest and do not
//! need host namespaces of their own. Of the spec's list only the network namespace path
//! matters here: the pod's network lives there.
//!
//! What the sandbox process gets:
//! - mount: always; it is what makes [`pivot_to_empty`] possible without touching the
//!   host, and every mount is made private first so nothing propagates either way.
//! - IPC and UTS: always; cheap, and they cut the sentry off from the host's SysV IPC
//!   objects and host name.
//! - network: joined (`setns`) when the spec names a path; otherwise the process stays in
//!   the namespace it was started in (its creator may have made one for it).
//! - PID: not here. `unshare(CLONE_NEWPID)` puts only later *children* in a new
//!   namespace, and the sandbox makes no children (its seccomp policy forbids them); the
//!   PID namespace of the sandbox itself comes from its parent: `runsc create` starts it
//!   as pid 1 of a new one ([`spawn_in_new_pid_namespace`]).
//! - user: none; the sandbox runs as host root with almost no capabilities (see `caps`).
//!
//! Namespaces belong to threads: [`unshare`] must run while the process has one thread,
//! else threads started earlier would stay in the host's namespaces.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, Context as _};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The pid of the process whose mount namespace [`unshare`] made (0: none yet). A check
/// that [`pivot_to_empty`] cannot pivot the host's own mount namespace.
static UNSHARED_MOUNT_PID: AtomicU32 = AtomicU32::new(0);

/// Where the empty root is mounted before the pivot: the first of these that exists. The
/// mount is in our own mount namespace, so it hides nothing from the host.
const NEW_ROOT_CANDIDATES: [&str; 3] = ["/tmp", "/run", "/mnt"];

/// Which host namespaces [`unshare`] gives the sandbox process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceSet {
    /// A new mount namespace, with every mount private (needed by [`pivot_to_empty`]).
    pub mount: bool,
    /// A new IPC namespace.
    pub ipc: bool,
    /// A new UTS namespace.
    pub uts: bool,
    /// The network namespace to join (`/var/run/netns/NAME`, `/proc/PID/ns/net`); `None`
    /// keeps the current one.
    pub network: Option<PathBuf>,
}

impl Default for NamespaceSet {
    fn default() -> NamespaceSet {
        NamespaceSet {
            mount: true,
            ipc: true,
            uts: true,
            network: None,
        }
    }
}

impl NamespaceSet {
    /// The sandbox's namespaces for a bundle: always mount, IPC and UTS; the network
    /// namespace the spec names by path, if any (one without a path is left to whoever
    /// starts the sandbox process).
    pub fn from_oci(spec: &Spec) -> NamespaceSet {
        let network = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|list| {
                list.iter()
                    .find(|ns| ns.typ() == LinuxNamespaceType::Network)
                    .and_then(|ns| ns.path().clone())
            });
        NamespaceSet {
            network,
            ..NamespaceSet::default()
        }
    }
}

/// Join the network namespace, then enter new mount, IPC and UTS namespaces, and make
/// every mount private (`MS_REC | MS_PRIVATE` on `/`). Call it first thing, while the
/// process has a single thread: it fails otherwise.
pub fn unshare(spec: &NamespaceSet) -> anyhow::Result<()> {
    let threads = super::thread_count().context("counting this process's threads")?;
    if threads != 1 {
        bail!(
            "entering namespaces needs a single-threaded process, this one has {threads} \
             threads (namespaces belong to threads: the others would stay outside)"
        );
    }
    if let Some(path) = &spec.network {
        let file = File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("joining network namespace {}", path.display()))?;
    }
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWNS, spec.mount);
    flags.set(CloneFlags::CLONE_NEWIPC, spec.ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, spec.uts);
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).with_context(|| format!("unshare({flags:?})"))?;
    if spec.mount {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("making every mount private (MS_REC|MS_PRIVATE on /)")?;
        UNSHARED_MOUNT_PID.store(std::process::id(), Ordering::SeqCst);
    }
    Ok(())
}

/// Spawn `cmd` as pid 1 of a new PID namespace, so the sandbox process sees no other
/// host process (and none can be reached by pid from it). `unshare(CLONE_NEWPID)` applies
/// to the calling thread's later children, so it runs on a thread of its own that ends
/// with the spawn: the caller's other children stay where they were.
///
/// Being pid 1 changes one thing for the sandbox process: signals it has no handler for
/// are not delivered from its own namespace, and from outside only SIGKILL and SIGSTOP
/// are forced. runsc stops a sandbox with SIGKILL and talks to it over its socket.
pub fn spawn_in_new_pid_namespace(
    cmd: &mut std::process::Command,
) -> anyhow::Result<std::process::Child> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWPID)
                    .context("unshare(CLONE_NEWPID) for the sandbox process")?;
                cmd.spawn().map_err(anyhow::Error::from)
            })
            .join()
            .map_err(|_| anyhow!("the thread spawning the sandbox process panicked"))?
    })
}

/// Replace the process's file tree by an empty, read-only tmpfs: mount it, bind the
/// `keep` paths into it read-only at the same paths, `pivot_root` into it, detach the old
/// root and `chdir("/")`. Every thread moves with it (they share one mount namespace and
/// root). Descriptors opened before (the rootfs directory, `/dev/kvm`, the VM, guest
/// memory, sockets, log files) keep working; paths stop resolving, `/proc` included.
///
/// `keep`: absolute host paths that must stay reachable by path (usually none: pass what
/// is needed as open descriptors instead). Needs [`unshare`] with `mount` first, and
/// `CAP_SYS_ADMIN`.
pub fn pivot_to_empty(keep: &[&Path]) -> anyhow::Result<()> {
    if UNSHARED_MOUNT_PID.load(Ordering::SeqCst) != std::process::id() {
        bail!("refusing to pivot_root: this process has not entered a mount namespace of its own (call unshare first)");
    }
    if same_mount_namespace_as_init() {
        bail!("refusing to pivot_root: this process is in the init process's mount namespace");
    }
    // The host's /proc goes away with the old root: keep its task list for `caps`.
    super::keep_task_dir().context("keeping /proc/self/task for the capability drop")?;

    // Open what we keep before the new root hides anything (it may be mounted above it).
    let kept = keep
        .iter()
        .map(|p| KeptPath::open(p))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let new_root = NEW_ROOT_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            anyhow!("none of {NEW_ROOT_CANDIDATES:?} exists to mount the empty root on")
        })?;
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("nanovisor-root"),
        new_root,
        Some("tmpfs"),
        hardened,
        Some("size=64k,nr_inodes=256,mode=0755"),
    )
    .with_context(|| format!("mounting the empty root (tmpfs) on {}", new_root.display()))?;

    for k in &kept {
        k.bind_into(new_root)?;
    }

    nix::unistd::chdir(new_root).with_context(|| format!("chdir {}", new_root.display()))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one, where the
    // umount below detaches it (pivot_root(2), "NOTES").
    nix::unistd::pivot_root(".", ".").context("pivot_root into the empty root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("chdir / in the empty root")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hardened,
        None::<&str>,
    )
    .context("remounting the empty root read-only")?;
    Ok(())
}

/// Whether our mount namespace is pid 1's (when that can be read at all).
fn same_mount_namespace_as_init() -> bool {
    match (
        std::fs::metadata("/proc/self/ns/mnt"),
        std::fs::metadata("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt as _;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    }
}

/// A host path kept across the pivot: opened (`O_PATH`) before the new root exists.
struct KeptPath {
    path: PathBuf,
    fd: OwnedFd,
    is_dir: bool,
}

impl KeptPath {
    fn open(path: &Path) -> anyhow::Result<KeptPath> {
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            bail!("kept path {}: must be absolute, without ..", path.display());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .with_context(|| format!("opening kept path {}", path.display()))?;
        let is_dir = file
            .metadata()
            .with_context(|| format!("stat of kept path {}", path.display()))?
            .is_dir();
        Ok(KeptPath {
            path: path.to_path_buf(),
            fd: file.into(),
            is_dir,
        })
    }

    /// Bind the kept object read-only at `root` + its path.
    fn bind_into(&self, root: &Path) -> anyhow::Result<()> {
        let rel = self.path.strip_prefix("/").unwrap_or(&self.path);
        let target = root.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {} in the empty root", parent.display()))?;
        }
        if self.is_dir {
            std::fs::create_dir_all(&target)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o444)
                .open(&target)
                .map(drop)
        }
        .with_context(|| format!("creating mount point {}", target.display()))?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("binding {} into the empty root", self.path.display()))?;
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .with_context(|| format!("making {} read-only", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    #[test]
    fn from_oci_takes_the_network_path_only() {
        let ns = |typ, path: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(typ);
            if let Some(p) = path {
                b = b.path(p);
            }
            b.build().expect("namespace")
        };
        let spec = SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(vec![
                        ns(LinuxNamespaceType::Pid, None),
                        ns(LinuxNamespaceType::Network, Some("/var/run/netns/cni-1")),
                        ns(LinuxNamespaceType::Ipc, Some("/proc/7/ns/ipc")),
                    ])
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec");
        let set = NamespaceSet::from_oci(&spec);
        assert_eq!(
            set.network.as_deref(),
            Some(Path::new("/var/run/netns/cni-1"))
        );
        assert!(set.mount && set.ipc && set.uts);

        let bare = SpecBuilder::default().build().expect("spec");
        assert_eq!(NamespaceSet::from_oci(&bare), NamespaceSet::default());
    }

    #[test]
    fn unshare_refuses_a_threaded_process() {
        // The test harness runs this on a thread of its own: more than one thread.
        let err = unshare(&NamespaceSet::default()).expect_err("must refuse");
        assert!(format!("{err:#}").contains("single-threaded"), "{err:#}");
    }

    /// In a forked child (single-threaded, so `unshare` accepts it): enter the
    /// namespaces, pivot with one kept directory, check the root is read-only, then exec
    /// busybox (through an fd opened before) to list what is left.
    #[test]
    fn pivot_leaves_an_empty_tree() {
        use std::ffi::CString;
        use std::os::unix::process::CommandExt as _;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/busybox").exists() {
            eprintln!("skipped: needs root and /usr/bin/busybox");
            return;
        }
        let keep = std::env::temp_dir().join(format!("nv-keep-{}", std::process::id()));
        std::fs::create_dir_all(&keep).expect("keep dir");
        std::fs::write(keep.join("kept.txt"), "x").expect("kept file");
        let busybox = File::open("/usr/bin/busybox").expect("busybox");
        let args: Vec<CString> = ["busybox", "ls", "-a", "/", keep.to_str().expect("utf-8")]
            .iter()
            .map(|s| CString::new(*s).expect("arg"))
            .collect();
        let keep2 = keep.clone();
        let mut cmd = std::process::Command::new("/nonexistent");
        cmd.stderr(std::process::Stdio::inherit());
        // SAFETY: the hook runs in the forked child before exec; it touches only this
        // (single-threaded) child. It allocates, which glibc's fork makes safe.
        unsafe {
            cmd.pre_exec(move || {
                let fail = |what: String| {
                    let msg = format!("pre_exec: {what}\n");
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    std::io::Error::from_raw_os_error(libc::EPERM)
                };
                let set = NamespaceSet {
                    network: Some(PathBuf::from("/proc/self/ns/net")),
                    ..NamespaceSet::default()
                };
                unshare(&set).map_err(|e| fail(format!("{e:#}")))?;
                pivot_to_empty(&[&keep2]).map_err(|e| fail(format!("{e:#}")))?;
                if libc::mkdir(c"/x".as_ptr(), 0o755) == 0
                    || std::io::Error::last_os_error().raw_os_error() != Some(libc::EROFS)
                {
                    return Err(fail("the new root is writable".into()));
                }
                let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
                argv.push(std::ptr::null());
                let env = [c"PATH=/".as_ptr(), std::ptr::null()];
                libc::fexecve(busybox.as_raw_fd(), argv.as_ptr(), env.as_ptr());
                Err(fail(format!(
                    "fexecve: {}",
                    std::io::Error::last_os_error()
                )))
            });
        }
        let out = cmd.output();
        let _ = std::fs::remove_dir_all(&keep);
        let out = out.expect("running busybox after the pivot");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
        let top = keep.iter().nth(1).expect("top directory").to_string_lossy();
        let expected = format!("/:\n.\n..\n{top}\n\n{}:\n.\n..\nkept.txt\n", keep.display());
        assert_eq!(stdout, expected, "{stderr}");
        // And this process still sees the host's tree.
        assert!(Path::new("/proc/self/status").exists());
    }

    #[test]
    fn pivot_refuses_without_a_mount_namespace() {
        let err = pivot_to_empty(&[]).expect_err("must refuse");
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
    }
}
