//! Restoring descriptions and fd tables from states a sandbox could not have made:
//! each is an error naming the object, never a panic or a stack overflow.

use super::super::vfs::PipeState;
use super::fixture::Parts;
use super::*;
use crate::vfs::pipe::PIPE_CAPACITY;

const RDWR: u32 = libc::O_RDWR as u32;

/// Restore fd table 0 of `parts` (no file systems needed).
fn restore_table(mut parts: Parts) -> Result<Arc<FdTable>, StateError> {
    parts.restore(Default::default()).fd_table(0)
}

/// One fd table holding fd 3 → file 0, with `files`.
fn one(files: Vec<FileState>) -> Parts {
    Parts {
        files,
        fd_tables: vec![FdTableState {
            slots: vec![(3, 0, false)],
        }],
        ..Parts::default()
    }
}

fn epoll_of(targets: &[u32]) -> FileState {
    FileState::Epoll(EpollState {
        entries: targets
            .iter()
            .map(|&file| EpollEntryState {
                file,
                fd: 3,
                events: 1,
                data: 0,
                edge: false,
            })
            .collect(),
    })
}

fn invalid(r: Result<Arc<FdTable>, StateError>, says: &str) {
    match r {
        Err(e @ StateError::Invalid(_)) => assert!(e.to_string().contains(says), "{e}"),
        Err(e) => panic!("not an Invalid error: {e}"),
        Ok(_) => panic!("restored, but should fail with {says:?}"),
    }
}

fn eventfd(count: u64, flags: u32) -> FileState {
    FileState::EventFd(EventFdState {
        count,
        semaphore: false,
        flags,
    })
}

#[test]
fn fd_tables_are_checked() {
    let table = |slots| Parts {
        files: vec![eventfd(0, RDWR)],
        fd_tables: vec![FdTableState { slots }],
        ..Parts::default()
    };
    let max = crate::vfs::fdtable::MAX_FDS as u32;
    assert!(restore_table(table(vec![(max - 1, 0, true)])).is_ok());
    invalid(
        restore_table(table(vec![(max, 0, false)])),
        &format!("fd {max}"),
    );
    invalid(
        restore_table(table(vec![(u32::MAX, 0, false)])),
        "not below the limit",
    );
    invalid(
        restore_table(table(vec![(1, 0, false), (1, 0, true)])),
        "open twice",
    );
    invalid(
        restore_table(table(vec![(1, 7, false)])),
        "open file 7 does not exist",
    );
    let mut none = table(Vec::new());
    invalid(
        none.restore(Default::default()).fd_table(1),
        "fd table 1 does not exist",
    );
}

#[test]
fn epolls_cannot_loop_or_nest_deeply() {
    // Two epolls watching each other.
    invalid(
        restore_table(one(vec![epoll_of(&[1]), epoll_of(&[0])])),
        "refers to itself",
    );
    // A chain far deeper than Linux allows is refused before the stack runs out.
    let n = 10_000u32;
    let mut chain: Vec<FileState> = (1..n).map(|i| epoll_of(&[i])).collect();
    chain.push(eventfd(0, RDWR));
    invalid(restore_table(one(chain)), "too deeply");
    // Five levels (one more than EP_MAX_NESTS) are refused even when built in parts.
    let mut five: Vec<FileState> = (1..6).map(|i| epoll_of(&[i])).collect();
    five.push(epoll_of(&[]));
    let mut parts = Parts {
        files: five,
        fd_tables: vec![
            FdTableState {
                slots: vec![(3, 2, false)],
            },
            FdTableState {
                slots: vec![(3, 0, false)],
            },
        ],
        ..Parts::default()
    };
    let mut rx = parts.restore(Default::default());
    assert!(rx.fd_table(0).is_ok(), "three levels are fine");
    match rx.fd_table(1) {
        Err(e) => assert!(e.to_string().contains("nest more than"), "{e}"),
        Ok(_) => panic!("five nested epolls restored"),
    }
    // An epoll watching one file twice under one fd.
    invalid(
        restore_table(one(vec![epoll_of(&[1, 1]), eventfd(0, RDWR)])),
        "watched twice",
    );
}

#[test]
fn values_out_of_range_are_refused() {
    invalid(
        restore_table(one(vec![eventfd(u64::MAX, RDWR)])),
        "eventfd count",
    );
    invalid(restore_table(one(vec![eventfd(0, 3)])), "status flags");
    let timer = FileState::TimerFd(TimerFdState {
        clock: 99,
        remaining_ns: Some(u64::MAX),
        interval_ns: u64::MAX,
        ticks: 0,
        flags: RDWR,
    });
    invalid(restore_table(one(vec![timer])), "timerfd clock 99");
    // A far-off timer is fine (it saturates, it does not overflow).
    let far = FileState::TimerFd(TimerFdState {
        clock: 1,
        remaining_ns: Some(u64::MAX),
        interval_ns: u64::MAX,
        ticks: u64::MAX,
        flags: RDWR,
    });
    assert!(restore_table(one(vec![far])).is_ok());
    let tty = FileState::Dev {
        node: DevNode::Tty,
        flags: RDWR,
    };
    invalid(restore_table(one(vec![tty])), "not an openable device");
    let pipe = |data: Vec<u8>, capacity| {
        let mut p = one(vec![FileState::Pipe(PipeEndState {
            pipe: 0,
            write_end: false,
            flags: 0,
        })]);
        p.vfs.pipes.push(PipeState {
            ino: 5000,
            data,
            capacity,
        });
        p
    };
    assert!(restore_table(pipe(vec![1; PIPE_CAPACITY], PIPE_CAPACITY as u32)).is_ok());
    invalid(
        restore_table(pipe(vec![1; PIPE_CAPACITY + 1], PIPE_CAPACITY as u32)),
        "bytes buffered",
    );
    invalid(restore_table(pipe(Vec::new(), 1 << 20)), "capacity");
    let no_pipe = one(vec![FileState::Pipe(PipeEndState {
        pipe: 3,
        write_end: true,
        flags: 1,
    })]);
    invalid(restore_table(no_pipe), "pipe 3 does not exist");
    let no_inode = one(vec![FileState::Tmp(TmpFileState {
        inode: 0,
        path: b"/x".to_vec(),
        pos: 0,
        flags: RDWR,
    })]);
    invalid(restore_table(no_inode), "inode 0 does not exist");
}

#[test]
fn stdio_must_be_given() {
    let stdio = FileState::Stdio(StdioState {
        container: Some("web".into()),
        slot: Some(1),
        flags: RDWR,
    });
    match restore_table(one(vec![stdio])) {
        Err(e @ StateError::Restore { .. }) => assert!(e.to_string().contains("\"web\""), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("restored stdio nobody gave"),
    }
    let bad_slot = FileState::Stdio(StdioState {
        container: Some("web".into()),
        slot: Some(7),
        flags: RDWR,
    });
    invalid(restore_table(one(vec![bad_slot])), "stdio Some(7)");
}
