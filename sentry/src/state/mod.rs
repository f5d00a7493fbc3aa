//! Checkpoint and restore of a whole sandbox's kernel: the serialized form of every
//! kernel object, and how each is saved and rebuilt.
//!
//! A checkpoint is taken with every guest thread stopped at the freeze gate, its
//! registers final (a thread that was blocked in a syscall was interrupted, and its
//! syscall rewound so that it runs again after the restore, as Linux restarts a syscall
//! a stopped process was in). So no in-flight syscall is ever saved: the state is
//! registers, address spaces, and objects.
//!
//! Guest memory is not in here: it goes to the image's `memory.img` as it is, frame by
//! frame; this state records which frames are in use and the page-table roots.
//!
//! Encoding: `postcard` (compact, serde). Decoding trusts nothing: the version is
//! checked first, every id is checked against its table when used, and every value is
//! validated where it is rebuilt (frames inside guest memory, fds within limits, …).
//! The size of the whole is capped by the image reader before it gets here.

mod error;
pub mod files;
pub mod kernel;
pub mod mm;
pub mod net;
pub mod platform;
pub mod registry;
pub mod sandbox;
pub mod vfs;

use serde::{Deserialize, Serialize};

pub use error::StateError;
use registry::{RestoreTable, SaveTable};

/// The version of this serialized form; any change to a saved struct bumps it, and a
/// state of another version is refused. 2: credentials carry saved ids and groups.
/// 3: a process's parent is its thread group's alone (ProcessInfo has no ppid).
/// 4: process group and session are the thread group's (setpgid of a child), with the
/// subreaper flag and whether it has run execve.
pub const STATE_VERSION: u32 = 4;

/// Everything of a sandbox but its guest memory's contents.
#[derive(Serialize, Deserialize)]
pub struct SandboxState {
    pub version: u32,
    pub platform: platform::PlatformState,
    pub kernel: kernel::KernelState,
    pub vfs: vfs::VfsObjects,
    pub files: Vec<files::FileState>,
    pub fd_tables: Vec<files::FdTableState>,
    pub mms: Vec<mm::MmState>,
    pub containers: Vec<ContainerState>,
    /// The sandbox's vvar frame (the vDSO's clock page), if a program mapped it.
    pub vvar_frame: Option<crate::platform::memory::Gpa>,
}

/// One container of the sandbox (a pod has several).
#[derive(Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Its file system's id.
    pub vfs: u32,
    /// Its init's pid, once started.
    pub init: Option<i32>,
}

/// The leading version, decoded alone so that a state of another version is refused
/// by its version, not by whatever its fields fail to decode as.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

pub fn encode(state: &SandboxState) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(state).map_err(|e| StateError::Encode(e.to_string()))
}

pub fn decode(bytes: &[u8]) -> Result<SandboxState, StateError> {
    let (head, _) = postcard::take_from_bytes::<VersionOnly>(bytes)
        .map_err(|e| StateError::Decode(e.to_string()))?;
    if head.version != STATE_VERSION {
        return Err(StateError::Version {
            found: head.version,
            expected: STATE_VERSION,
        });
    }
    let (state, rest) = postcard::take_from_bytes::<SandboxState>(bytes)
        .map_err(|e| StateError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(StateError::Decode(format!(
            "{} bytes after the end of the state",
            rest.len()
        )));
    }
    Ok(state)
}

/// What saving shares between objects: the tables of shared objects met so far.
#[derive(Default)]
pub struct SaveContext {
    pub files: SaveTable<files::FileState>,
    pub fd_tables: SaveTable<files::FdTableState>,
    pub mms: SaveTable<mm::MmState>,
    pub vfs: vfs::VfsSave,
    /// Frames address spaces unmapped but had not freed yet: free in the restored VM.
    pub deferred_frames: Vec<crate::platform::memory::Gpa>,
}

/// What restoring shares between objects: the saved states by id and what is built.
pub struct RestoreContext {
    pub files: RestoreTable<files::FileState, dyn crate::vfs::file::FileDescription>,
    pub fd_tables: RestoreTable<files::FdTableState, crate::vfs::FdTable>,
    pub mms: RestoreTable<mm::MmState, crate::mm::MemoryManager>,
    pub vfs: vfs::VfsRestore,
    pub kernel: std::sync::Arc<crate::kernel::task::Kernel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_state() -> SandboxState {
        SandboxState {
            version: STATE_VERSION,
            platform: platform::PlatformState {
                memory_size: 1 << 20,
                allocator: Default::default(),
                kernel_pdpt: 0,
                vcpu_areas: vec![[4096, 8192, 12288, 16384]],
                xcr0: 7,
                working_set: true,
            },
            kernel: kernel::KernelState {
                hostname: b"sandbox".to_vec(),
                next_tid: 5,
                uptime_ns: 1_000_000,
                processes: Vec::new(),
                threads: Vec::new(),
            },
            vfs: Default::default(),
            files: Vec::new(),
            fd_tables: vec![files::FdTableState {
                slots: vec![(0, 0, false)],
            }],
            mms: Vec::new(),
            containers: vec![ContainerState {
                id: "c".into(),
                vfs: 0,
                init: Some(1),
            }],
            vvar_frame: Some(4096),
        }
    }

    #[test]
    fn a_state_round_trips() {
        let bytes = encode(&small_state()).expect("encode");
        let back = decode(&bytes).expect("decode");
        assert_eq!(back.kernel.hostname, b"sandbox");
        assert_eq!(back.containers[0].init, Some(1));
        assert_eq!(back.vvar_frame, Some(4096));
    }

    #[test]
    fn damaged_states_are_errors_never_panics() {
        let bytes = encode(&small_state()).expect("encode");
        // Every truncation.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "a state cut at {n} bytes");
        }
        // Trailing garbage.
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(&long), Err(StateError::Decode(_))));
        // Every single-byte change decodes or fails; it must not panic or allocate wildly.
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let _ = decode(&b);
            }
        }
        // Another version is refused by its version.
        let mut other = small_state();
        other.version = STATE_VERSION + 1;
        let err = decode(&encode(&other).expect("encode"))
            .err()
            .expect("refused");
        assert!(matches!(err, StateError::Version { found, .. } if found == STATE_VERSION + 1));
    }
}
