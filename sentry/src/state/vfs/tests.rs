//! Restoring file systems from states a sandbox could not have made (forged or corrupt
//! images), and from restore inputs that do not match the checkpoint: each is an error
//! naming what is wrong, never a panic.

use super::super::files::fixture::{bind, spec, Dirs};
use super::*;
use crate::sandbox::MountKind;

fn meta(mode: u32) -> MetaState {
    MetaState {
        mode,
        uid: 0,
        gid: 0,
        nlink: 1,
        atime: (0, 0),
        mtime: (0, 0),
        ctime: (0, 0),
    }
}

fn dir(ino: u64, entries: Vec<(&[u8], SlotState)>) -> InodeState {
    InodeState {
        ino,
        origin: None,
        cached: Vec::new(),
        fs: None,
        meta: meta(libc::S_IFDIR | 0o755),
        kind: InodeKindState::Dir {
            entries: entries.into_iter().map(|(n, s)| (n.to_vec(), s)).collect(),
            lower: Some(Vec::new()),
        },
    }
}

fn file(ino: u64, bytes: &[u8], size: u64) -> InodeState {
    InodeState {
        ino,
        origin: None,
        cached: Vec::new(),
        fs: None,
        meta: meta(libc::S_IFREG | 0o644),
        kind: InodeKindState::File {
            bytes: bytes.to_vec(),
            size,
        },
    }
}

/// One file system whose root is inode 0, with `mounts`.
fn objects(inodes: Vec<InodeState>, mounts: Vec<MountState>) -> VfsObjects {
    VfsObjects {
        file_systems: vec![VfsState { root: 0, mounts }],
        inodes,
        tmpfs: Vec::new(),
        pipes: Vec::new(),
    }
}

/// Restore file system 0 of `objects` over the fixture's rootfs with `specs`.
fn restore(
    dirs: &Dirs,
    objects: VfsObjects,
    specs: Vec<MountSpec>,
) -> Result<Arc<Vfs>, StateError> {
    VfsRestore::new(objects, dirs.sources(0, specs)).vfs(0)
}

fn invalid(r: Result<Arc<Vfs>, StateError>, says: &str) {
    match r {
        Err(e @ StateError::Invalid(_)) => assert!(e.to_string().contains(says), "{e}"),
        Err(e) => panic!("not an Invalid error: {e}"),
        Ok(_) => panic!("restored, but should fail with {says:?}"),
    }
}

#[test]
fn a_minimal_tree_restores_and_lists_the_rootfs() {
    let dirs = Dirs::new("vfs-minimal");
    let inodes = vec![
        dir(
            2,
            vec![(b"f", SlotState::Inode(1)), (b"data", SlotState::Whiteout)],
        ),
        file(3, b"abc", 5),
    ];
    let v = restore(&dirs, objects(inodes, Vec::new()), Vec::new()).expect("restore");
    let lk = crate::vfs::Lookup::new(b"/", 0, 0, 0o022, &ProcSnapshot::default);
    assert_eq!(
        v.stat(&lk, b"/f", true).map(|s| (s.ino, s.size)),
        Ok((3, 5))
    );
    assert!(v.stat(&lk, b"/etc/hosts", true).is_ok());
    assert_eq!(v.stat(&lk, b"/data", true).err(), Some(Errno::ENOENT));
}

use crate::vfs::ProcSnapshot;

#[test]
fn impossible_trees_are_refused() {
    let dirs = Dirs::new("vfs-trees");
    let root = |entries| dir(2, entries);
    let cases: Vec<(Vec<InodeState>, &str)> = vec![
        (
            vec![root(vec![]), file(3, b"abcd", 2)],
            "4 bytes for a file of size 2",
        ),
        (
            vec![
                root(vec![]),
                file(3, b"", crate::vfs::tmpfs::MAX_FILE_SIZE + 1),
            ],
            "for a file of size",
        ),
        (
            vec![root(vec![(b"a/b", SlotState::Inode(1))]), file(3, b"", 0)],
            "has a / or NUL",
        ),
        (
            vec![root(vec![(b"..", SlotState::Inode(1))]), file(3, b"", 0)],
            "named . or ..",
        ),
        (vec![root(vec![(b"x", SlotState::Inode(9))])], "no inode 9"),
        (
            vec![root(vec![]), file(2, b"", 0)],
            "repeated or impossible inode number",
        ),
        (vec![dir(0, vec![])], "repeated or impossible inode number"),
        // A directory inside itself, away from the root.
        (
            vec![root(vec![]), dir(3, vec![(b"me", SlotState::Inode(1))])],
            "inside itself",
        ),
        // Two directories inside each other.
        (
            vec![
                root(vec![]),
                dir(3, vec![(b"b", SlotState::Inode(2))]),
                dir(4, vec![(b"a", SlotState::Inode(1))]),
            ],
            "inside itself",
        ),
        // A directory with two names.
        (
            vec![
                root(vec![
                    (b"a", SlotState::Inode(1)),
                    (b"b", SlotState::Inode(1)),
                ]),
                dir(3, vec![]),
            ],
            "is in two",
        ),
        // The root inside a directory of its own tree, or of another.
        (
            vec![
                root(vec![(b"d", SlotState::Inode(1))]),
                dir(3, vec![(b"up", SlotState::Inode(0))]),
            ],
            "inside itself",
        ),
        (
            vec![root(vec![]), dir(3, vec![(b"up", SlotState::Inode(0))])],
            "root is inside a directory",
        ),
        // The root a file.
        (vec![file(2, b"", 0)], "root is not a directory"),
    ];
    for (inodes, says) in cases {
        invalid(
            restore(&dirs, objects(inodes, Vec::new()), Vec::new()),
            says,
        );
    }
    // A mode that is not the inode's kind, or has bits no mode has.
    for mode in [libc::S_IFREG | 0o644, libc::S_IFDIR | 0o1_0000] {
        let mut bad = dir(2, vec![]);
        bad.meta = meta(mode);
        invalid(
            restore(&dirs, objects(vec![bad], Vec::new()), Vec::new()),
            "mode",
        );
    }
    // A link with no text, a lower directory that climbs out.
    let mut link = file(3, b"", 0);
    link.meta = meta(libc::S_IFLNK | 0o777);
    link.kind = InodeKindState::Symlink(Vec::new());
    invalid(
        restore(
            &dirs,
            objects(vec![dir(2, vec![]), link], Vec::new()),
            Vec::new(),
        ),
        "a link to",
    );
    let mut up = dir(2, vec![]);
    up.kind = InodeKindState::Dir {
        entries: Vec::new(),
        lower: Some(b"../etc".to_vec()),
    };
    invalid(
        restore(&dirs, objects(vec![up], Vec::new()), Vec::new()),
        "named . or ..",
    );
}

#[test]
fn tmpfs_limits_and_devices_are_checked() {
    let dirs = Dirs::new("vfs-tmpfs");
    let tmp_root = |fs| InodeState {
        fs: Some(fs),
        ..dir(3, vec![(b"f", SlotState::Inode(2))])
    };
    let tmp_file = |fs, n: usize| InodeState {
        fs: Some(fs),
        ..file(4, &vec![0u8; n], n as u64)
    };
    let mounts = || {
        vec![MountState {
            point: b"/t".to_vec(),
            what: MountedState::Tmpfs { root: 1 },
        }]
    };
    let with = |tmpfs: Vec<TmpFsState>, n: usize| VfsObjects {
        tmpfs,
        ..objects(vec![dir(2, vec![]), tmp_root(0), tmp_file(0, n)], mounts())
    };
    let fs = |dev, limit| TmpFsState {
        dev,
        limit,
        readonly: false,
    };
    assert!(restore(&dirs, with(vec![fs(50, 100)], 100), Vec::new()).is_ok());
    invalid(
        restore(&dirs, with(vec![fs(50, 100)], 101), Vec::new()),
        "more bytes than",
    );
    invalid(
        restore(&dirs, with(vec![fs(42, 100)], 1), Vec::new()),
        "device number",
    );
    invalid(
        restore(&dirs, with(vec![fs(50, u64::MAX)], 1), Vec::new()),
        "a limit of",
    );
    let twice = VfsObjects {
        tmpfs: vec![fs(50, 100), fs(50, 100)],
        ..objects(vec![dir(2, vec![])], Vec::new())
    };
    invalid(restore(&dirs, twice, Vec::new()), "device number");
    // A tmpfs mount whose root is the overlay's, or an overlay directory.
    let overlay_root = objects(
        vec![dir(2, vec![])],
        vec![MountState {
            point: b"/t".to_vec(),
            what: MountedState::Tmpfs { root: 0 },
        }],
    );
    invalid(
        restore(&dirs, overlay_root, Vec::new()),
        "in another file system",
    );
}

#[test]
fn mount_points_are_checked() {
    let dirs = Dirs::new("vfs-points");
    for point in [&b"/dev"[..], b"/", b"rel", b"/a/../b", b"/a/"] {
        let m = vec![MountState {
            point: point.to_vec(),
            what: MountedState::Proc,
        }];
        invalid(
            restore(&dirs, objects(vec![dir(2, vec![])], m), Vec::new()),
            "mount point",
        );
    }
    let twice = (0..2)
        .map(|_| MountState {
            point: b"/p".to_vec(),
            what: MountedState::Proc,
        })
        .collect();
    invalid(
        restore(&dirs, objects(vec![dir(2, vec![])], twice), Vec::new()),
        "mount point",
    );
}

#[test]
fn binds_come_from_the_new_spec_by_destination() {
    let dirs = Dirs::new("vfs-binds");
    let saved = |dest: &[u8], file| {
        objects(
            vec![dir(2, vec![])],
            vec![MountState {
                point: b"/vol".to_vec(),
                what: MountedState::Bind {
                    dest: dest.to_vec(),
                    writable: true,
                    file,
                },
            }],
        )
    };
    let vol = || {
        spec(
            b"/vol",
            MountKind::Bind {
                source: bind(&dirs.path("vol"), false),
                readonly: false,
            },
        )
    };
    // Rebound: the volume's files are there.
    let v = restore(&dirs, saved(b"/vol", false), vec![vol()]).expect("restore");
    assert!(v.bind_at(b"/vol").is_some_and(|h| h.writable));
    // No bind there in the new spec: an error naming the destination.
    let tmpfs = spec(
        b"/vol",
        MountKind::Tmpfs {
            size: None,
            mode: None,
        },
    );
    match restore(&dirs, saved(b"/vol", false), vec![tmpfs]) {
        Err(e @ StateError::Restore { .. }) => assert!(e.to_string().contains("/vol"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("restored without its bind"),
    }
    // A file where a directory was.
    let single = spec(
        b"/vol",
        MountKind::Bind {
            source: bind(&dirs.path("single"), true),
            readonly: true,
        },
    );
    match restore(&dirs, saved(b"/vol", false), vec![single]) {
        Err(StateError::Restore { errno, .. }) => assert_eq!(errno, Errno::ENOTDIR),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("restored with a file for a directory"),
    }
    // No root file system given for it.
    let none = VfsRestore::new(saved(b"/vol", false), HashMap::new()).vfs(0);
    invalid(none, "no root file system");
    // The restore of a file system that does not exist.
    invalid(
        VfsRestore::new(VfsObjects::default(), HashMap::new()).vfs(3),
        "file system 3 does not exist",
    );
}
