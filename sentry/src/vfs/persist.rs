//! What a checkpoint sees of a container's file system, and how a restore puts one
//! back together (the serialized form is `crate::state::vfs`).
//!
//! The overlay's upper tree and mounted tmpfs contents are in-memory inodes, saved whole.
//! The rootfs and bind sources are host directories: they are not saved but given anew
//! (opened) to the restore, and rebound at the same places. The namespace lock and the
//! host-socket map hold nothing that outlives the frozen sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::host::HostRoot;
use super::mount::{MountRoot, MountTable};
use super::tmpfs::Inode;
use super::Vfs;

/// One mount of the mount table.
pub enum MountView {
    /// A bind of a host directory or file, with the destination the spec gave it.
    Bind {
        dest: Vec<u8>,
        root: Arc<HostRoot>,
    },
    /// A tmpfs (or an empty read-only directory): its root inode, whose file system says
    /// which.
    Tmp(Arc<Inode>),
    Proc,
}

impl Vfs {
    /// The overlay's root directory.
    pub fn overlay_root(&self) -> &Arc<Inode> {
        &self.root
    }

    /// The rootfs (the overlay's lower layer).
    pub fn rootfs(&self) -> &Arc<HostRoot> {
        &self.host
    }

    /// The mount table: (mount point, what is mounted there) in path order.
    pub fn mount_views(&self) -> Vec<(Vec<u8>, MountView)> {
        self.mounts()
            .iter()
            .map(|(point, root)| {
                let view = match &**root {
                    MountRoot::Host { root, dest } => MountView::Bind {
                        dest: dest.clone(),
                        root: root.clone(),
                    },
                    MountRoot::Tmp(i) => MountView::Tmp(i.clone()),
                    MountRoot::Proc => MountView::Proc,
                };
                (point.clone(), view)
            })
            .collect()
    }

    /// A file system put back from a checkpoint: `root` is the restored overlay root over
    /// the rootfs `host`, and `mounts` the table as it was (the caller has checked the
    /// mount points: absolute, normalized, none of them /, /dev or /proc).
    pub fn restored(
        host: Arc<HostRoot>,
        root: Arc<Inode>,
        mounts: Vec<(Vec<u8>, MountView)>,
    ) -> Arc<Vfs> {
        let table: MountTable = mounts
            .into_iter()
            .map(|(point, view)| {
                let root = match view {
                    MountView::Bind { dest, root } => MountRoot::Host { root, dest },
                    MountView::Tmp(i) => MountRoot::Tmp(i),
                    MountView::Proc => MountRoot::Proc,
                };
                (point, Arc::new(root))
            })
            .collect();
        Arc::new(Vfs {
            host,
            root,
            ns: Mutex::new(()),
            mounts: RwLock::new(Arc::new(table)),
            host_sockets: Mutex::new(HashMap::new()),
            watches: Arc::default(),
        })
    }

    /// The host directory or file mounted at `point` by a bind.
    pub fn bind_at(&self, point: &[u8]) -> Option<Arc<HostRoot>> {
        match self.mounts().get(point).map(|m| &**m) {
            Some(MountRoot::Host { root, .. }) => Some(root.clone()),
            _ => None,
        }
    }
}
