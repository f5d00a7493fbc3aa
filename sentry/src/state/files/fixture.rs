//! Fixtures for checkpoint tests without KVM: a kernel over a platform that makes no
//! address spaces, a container file system over scratch host directories (a rootfs, a
//! volume to bind, a file to bind), and the round trip of saved parts through postcard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::super::registry::RestoreTable;
use super::super::vfs::{FsContextState, VfsObjects, VfsRestore};
use super::super::{RestoreContext, SaveContext};
use super::{FdTableState, FileState, MappedFileState};
use crate::kernel::task::{AddressSpaceFactory, Kernel};
use crate::platform::memory::{Gpa, GuestMemory};
use crate::platform::{AddressSpace, Context, PlatformError};
use crate::sandbox::{HostSource, MountKind, MountSpec};
use crate::vfs::{Mount, Vfs};

/// A platform for tests that never run guest code.
struct NoPlatform {
    memory: Arc<GuestMemory>,
}

impl AddressSpaceFactory for NoPlatform {
    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        Err(PlatformError::MissingCapability(
            "address spaces (unit test)",
        ))
    }
    fn restore_address_space(&self, _root: Gpa) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        Err(PlatformError::MissingCapability(
            "address spaces (unit test)",
        ))
    }
    fn memory(&self) -> Arc<GuestMemory> {
        self.memory.clone()
    }
    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Err(PlatformError::MissingCapability("contexts (unit test)"))
    }
}

/// A kernel with a loopback-only network stack and no platform, shared by the tests.
pub(crate) fn kernel() -> Arc<Kernel> {
    static KERNEL: OnceLock<Arc<Kernel>> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            use netstack::acl::{Acl, AuditLog, Policy};
            let acl = Arc::new(Acl::new(Policy::default(), AuditLog::discard("test")));
            let stack = netstack::stack::Stack::new(Default::default(), acl).expect("stack");
            let memory = Arc::new(GuestMemory::new(16 * 4096).expect("guest memory"));
            Kernel::new(Arc::new(NoPlatform { memory }), b"test", Arc::new(stack))
        })
        .clone()
}

/// Scratch host directories, removed on drop:
/// - `rootfs/`: etc/hosts, bin/tool (mode 755), data/{lower.txt,gone.txt}, tmp/;
/// - `vol/notes.txt`: a volume to bind writable at /vol;
/// - `single`: a file to bind read-only at /etc/single.
pub(crate) struct Dirs {
    pub dir: PathBuf,
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Dirs {
    pub fn new(name: &str) -> Dirs {
        let dir = std::env::temp_dir().join(format!("nv-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("rootfs");
        for d in ["etc", "bin", "data", "tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(dir.join("vol")).expect("mkdir");
        std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("write");
        std::fs::write(root.join("bin/tool"), b"\x7fELF-tool-bytes").expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            root.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(root.join("data/lower.txt"), b"from the rootfs\n").expect("write");
        std::fs::write(root.join("data/gone.txt"), b"deleted in the overlay\n").expect("write");
        std::fs::write(dir.join("vol/notes.txt"), b"notes\n").expect("write");
        std::fs::write(dir.join("single"), b"one file\n").expect("write");
        Dirs { dir }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The container's file system as a sandbox sets it up: the rootfs, a tmpfs at
    /// /scratch (1 MiB), the volume at /vol, the file at /etc/single, an empty read-only
    /// directory at /sys and /proc again at /altproc.
    pub fn container(&self) -> Arc<Vfs> {
        let vfs = Vfs::new(HostSource::open_root(&self.rootfs()).expect("rootfs")).expect("vfs");
        let mounts = [
            (
                &b"/scratch"[..],
                Mount::Tmpfs {
                    size: Some(1 << 20),
                    mode: None,
                },
            ),
            (b"/vol", Mount::bind(bind(&self.path("vol"), false), false)),
            (
                b"/etc/single",
                Mount::bind(bind(&self.path("single"), true), true),
            ),
            (b"/sys", Mount::EmptyReadOnly),
            (b"/altproc", Mount::Proc),
        ];
        for (dest, m) in mounts {
            vfs.mount(dest, m).expect("mount");
        }
        vfs
    }

    /// The container's mounts as a restoring runtime gives them: the binds opened anew
    /// (at destinations spelled differently), and the kinds a restore takes from the
    /// checkpoint instead.
    pub fn specs(&self) -> Vec<MountSpec> {
        vec![
            spec(
                b"/scratch",
                MountKind::Tmpfs {
                    size: None,
                    mode: None,
                },
            ),
            spec(
                b"/vol/",
                MountKind::Bind {
                    source: bind(&self.path("vol"), false),
                    readonly: false,
                },
            ),
            spec(
                b"//etc/./single",
                MountKind::Bind {
                    source: bind(&self.path("single"), true),
                    readonly: true,
                },
            ),
            spec(b"/sys", MountKind::EmptyReadOnly),
            spec(b"/altproc", MountKind::Proc),
        ]
    }

    /// The sources of file system `vfs` for a restore.
    pub fn sources(
        &self,
        vfs: u32,
        specs: Vec<MountSpec>,
    ) -> HashMap<u32, (HostSource, Vec<MountSpec>)> {
        let root = HostSource::open_root(&self.rootfs()).expect("rootfs");
        HashMap::from([(vfs, (root, specs))])
    }
}

pub(crate) fn bind(p: &Path, readonly: bool) -> HostSource {
    HostSource::open_bind(p, readonly).expect("bind source")
}

pub(crate) fn spec(dest: &[u8], kind: MountKind) -> MountSpec {
    MountSpec {
        destination: dest.to_vec(),
        kind,
    }
}

/// What the tests save: the parts of a `SandboxState` this module makes.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Parts {
    pub vfs: VfsObjects,
    pub files: Vec<FileState>,
    pub fd_tables: Vec<FdTableState>,
    pub fs: Vec<FsContextState>,
    pub maps: Vec<MappedFileState>,
}

impl Parts {
    /// The parts a save made (the saved objects' tables emptied into them).
    pub fn from_save(
        mut cx: SaveContext,
        fs: Vec<FsContextState>,
        maps: Vec<MappedFileState>,
    ) -> Parts {
        Parts {
            vfs: std::mem::take(&mut cx.vfs).finish(),
            files: std::mem::take(&mut cx.files).into_states(),
            fd_tables: std::mem::take(&mut cx.fd_tables).into_states(),
            fs,
            maps,
        }
    }

    /// Through postcard and back, as a checkpoint image carries them.
    pub fn round_trip(&self) -> Parts {
        let bytes = postcard::to_stdvec(self).expect("encode");
        postcard::from_bytes(&bytes).expect("decode")
    }

    /// A restore of these parts (their files, tables and file systems; the rest is
    /// kept for the test to use).
    pub fn restore(
        &mut self,
        sources: HashMap<u32, (HostSource, Vec<MountSpec>)>,
    ) -> RestoreContext {
        RestoreContext {
            files: RestoreTable::new("open file", std::mem::take(&mut self.files)),
            fd_tables: RestoreTable::new("fd table", std::mem::take(&mut self.fd_tables)),
            mms: RestoreTable::new("address space", Vec::new()),
            vfs: VfsRestore::new(std::mem::take(&mut self.vfs), sources),
            kernel: kernel(),
        }
    }
}
