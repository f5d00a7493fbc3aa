//! Waiting for files: park a task's [`Waiter`] on the queues of the files it watches until
//! a condition holds, a deadline passes or the wait is interrupted (a signal, an exit).
//!
//! Every blocking file operation, poll, select and epoll_wait goes through `wait_until`, so
//! they share one rule for timers (`FileDescription::next_deadline`) and interruption.

use std::sync::Arc;
use std::time::Instant;

use super::file::FileDescription;
use crate::abi::Errno;
use crate::waiter::{Waiter, Wake};

/// Call `check` until it returns `Some`, parking `waiter` on every file of `files` (with the
/// readiness bits it cares about) in between. `Ok(None)` when `deadline` passes first,
/// EINTR when the waiter is interrupted. `check` runs once before anything is registered,
/// so a condition that already holds costs no queue traffic, and a zero timeout never
/// parks.
pub fn wait_until<T>(
    waiter: &Arc<Waiter>,
    files: &[(&dyn FileDescription, i16)],
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<T>,
) -> Result<Option<T>, Errno> {
    if let Some(v) = check() {
        return Ok(Some(v));
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(None);
    }
    let result = loop {
        // (Re-)register each round: an epoll set may have gained files since the last one.
        for (f, events) in files {
            f.register_waiter(waiter, *events);
        }
        waiter.reset();
        if let Some(v) = check() {
            break Ok(Some(v));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(None);
        }
        let wake_at = files
            .iter()
            .filter_map(|(f, _)| f.next_deadline())
            .chain(deadline)
            .min();
        if waiter.wait(wake_at) == Wake::Interrupted {
            // A condition that holds wins over the interruption (Linux checks first).
            break match check() {
                Some(v) => Ok(Some(v)),
                None => Err(Errno::EINTR),
            };
        }
    };
    for (f, _) in files {
        f.unregister_waiter(waiter);
    }
    result
}

/// Run a file operation that answers EAGAIN when it would block until it answers
/// something else, waiting for `events` on `file` in between (EINTR when interrupted).
pub fn block_on<T>(
    file: &dyn FileDescription,
    waiter: &Arc<Waiter>,
    events: i16,
    mut op: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    let r = wait_until(waiter, &[(file, events)], None, || match op() {
        Err(Errno::EAGAIN) => None,
        r => Some(r),
    })?;
    r.unwrap_or(Err(Errno::EAGAIN))
}

/// Whether an operation on `file` that would block should wait (a queue to wait on and no
/// O_NONBLOCK) rather than return EAGAIN.
pub fn should_block(file: &dyn FileDescription) -> bool {
    file.status_flags() & libc::O_NONBLOCK as u32 == 0 && file.pollable()
}

/// An interrupted read or write that moved nothing is restarted after a handler with
/// SA_RESTART (Linux pipe_read, eventfd_read, timerfd_read: -ERESTARTSYS).
pub fn restartable(e: Errno) -> Errno {
    if e == Errno::EINTR {
        Errno::ERESTARTSYS
    } else {
        e
    }
}

/// read(2) with blocking as the description's flags say.
pub fn read(
    file: &dyn FileDescription,
    waiter: &Arc<Waiter>,
    buf: &mut [u8],
    offset: Option<u64>,
) -> Result<usize, Errno> {
    if !should_block(file) {
        return file.read(buf, offset);
    }
    block_on(file, waiter, super::file::POLLIN, || file.read(buf, offset)).map_err(restartable)
}

/// write(2) with blocking as the description's flags say: a blocking write continues until
/// everything is written, and an interruption or error after some progress returns the
/// count written so far (Linux pipe_write).
pub fn write(
    file: &dyn FileDescription,
    waiter: &Arc<Waiter>,
    buf: &[u8],
    offset: Option<u64>,
) -> Result<usize, Errno> {
    if !should_block(file) {
        return file.write(buf, offset);
    }
    let mut done = 0;
    while done < buf.len() || buf.is_empty() {
        match block_on(file, waiter, super::file::POLLOUT, || {
            file.write(&buf[done..], offset)
        }) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(restartable(e)),
            Err(_) => break,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::pipe::new_pipe;
    use std::time::Duration;

    #[test]
    fn a_blocking_read_wakes_when_data_arrives() {
        let (r, w) = new_pipe(0);
        let waiter = Waiter::new();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.write(b"hey", None)
        });
        let mut b = [0u8; 8];
        assert_eq!(read(&*r, &waiter, &mut b, None), Ok(3));
        assert_eq!(t.join().ok(), Some(Ok(3)));
        // The writer is gone: end of file, no blocking.
        assert_eq!(read(&*r, &waiter, &mut b, None), Ok(0));
    }

    #[test]
    fn an_interrupted_wait_is_eintr_and_a_timeout_is_none() {
        let (r, _w) = new_pipe(0);
        let waiter = Waiter::new();
        let f: &dyn FileDescription = &*r;
        let soon = Some(Instant::now() + Duration::from_millis(10));
        assert_eq!(
            wait_until(&waiter, &[(f, 1)], soon, || None::<()>),
            Ok(None)
        );
        waiter.interrupt();
        let mut b = [0u8; 8];
        assert_eq!(read(f, &waiter, &mut b, None), Err(Errno::ERESTARTSYS));
    }
}
