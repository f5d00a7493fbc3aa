//! A task's file-descriptor table: fd numbers → shared file descriptions, with the
//! close-on-exec flag per fd. New fds take the lowest free number, as on Linux.

use std::sync::{Arc, Mutex, MutexGuard};

use super::file::FileDescription;
use super::hostfd::HostFd;
use crate::abi::Errno;

/// The most fds a table ever holds: Linux's default fs.nr_open, the highest hard
/// RLIMIT_NOFILE root may set.
pub const MAX_FDS: usize = 1 << 20;

#[derive(Clone)]
struct Slot {
    file: Arc<dyn FileDescription>,
    cloexec: bool,
}

pub struct FdTable {
    slots: Mutex<Vec<Option<Slot>>>,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable {
            slots: Mutex::new(Vec::new()),
        }
    }

    /// fds 0, 1, 2 are duplicates of the sentry's own standard streams.
    pub fn with_stdio() -> Result<FdTable, std::io::Error> {
        let t = FdTable::new();
        for fd in 0..3 {
            let f: Arc<dyn FileDescription> = Arc::new(HostFd::dup_of(fd)?.as_stdio(fd as u8));
            t.lock().push(Some(Slot {
                file: f,
                cloexec: false,
            }));
        }
        Ok(t)
    }

    /// A table whose fds 0, 1 and 2 are the given host descriptors.
    pub fn with_host_fds(fds: [std::os::fd::OwnedFd; 3]) -> Result<FdTable, std::io::Error> {
        let t = FdTable::new();
        for (slot, fd) in (0u8..).zip(fds) {
            let f: Arc<dyn FileDescription> = Arc::new(HostFd::from_owned(fd)?.as_stdio(slot));
            t.lock().push(Some(Slot {
                file: f,
                cloexec: false,
            }));
        }
        Ok(t)
    }

    /// Say that this table's stdio (fds 0-2 as `with_stdio` or `with_host_fds` made them)
    /// is container `container`'s init's: a restored sandbox gives that container new
    /// stdio, and these descriptions become it. Stdio of other processes (an exec's) is
    /// not replaced on restore: it reads as end of file and swallows writes (/dev/null).
    pub fn set_stdio_owner(&self, container: &str) {
        for fd in 0..3 {
            if let Ok(f) = self.get(fd) {
                if let Some(h) = f.as_any().downcast_ref::<HostFd>() {
                    h.set_owner(container);
                }
            }
        }
    }

    /// Every open fd with its description and close-on-exec flag, in order (for a
    /// checkpoint).
    pub fn slots(&self) -> Vec<(i32, Arc<dyn FileDescription>, bool)> {
        self.lock()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as i32, s.file.clone(), s.cloexec)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(slots: &[Option<Slot>], fd: i32) -> Option<&Slot> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
    }

    pub fn get(&self, fd: i32) -> Result<Arc<dyn FileDescription>, Errno> {
        Self::slot(&self.lock(), fd)
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// The description and its close-on-exec flag.
    pub fn get_with_flags(&self, fd: i32) -> Result<(Arc<dyn FileDescription>, bool), Errno> {
        Self::slot(&self.lock(), fd)
            .map(|s| (s.file.clone(), s.cloexec))
            .ok_or(Errno::EBADF)
    }

    /// Install at the lowest free fd ≥ `min`, below `limit` (RLIMIT_NOFILE); EMFILE if none.
    pub fn install_from(
        &self,
        file: Arc<dyn FileDescription>,
        cloexec: bool,
        min: usize,
        limit: u64,
    ) -> Result<i32, Errno> {
        let limit = (limit.min(MAX_FDS as u64)) as usize;
        let mut slots = self.lock();
        let fd = (min..limit)
            .find(|&i| slots.get(i).is_none_or(|s| s.is_none()))
            .ok_or(Errno::EMFILE)?;
        if slots.len() <= fd {
            slots.resize(fd + 1, None);
        }
        slots[fd] = Some(Slot { file, cloexec });
        Ok(fd as i32)
    }

    /// Install at the lowest free fd.
    pub fn install(
        &self,
        file: Arc<dyn FileDescription>,
        cloexec: bool,
        limit: u64,
    ) -> Result<i32, Errno> {
        self.install_from(file, cloexec, 0, limit)
    }

    /// dup2/dup3: make `fd` refer to `file`, closing what it held. EBADF if `fd` is
    /// negative or at/above `limit`. Returns the replaced description (closed by dropping).
    pub fn install_at(
        &self,
        fd: i32,
        file: Arc<dyn FileDescription>,
        cloexec: bool,
        limit: u64,
    ) -> Result<Option<Arc<dyn FileDescription>>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        if i as u64 >= limit.min(MAX_FDS as u64) {
            return Err(Errno::EBADF);
        }
        let mut slots = self.lock();
        if slots.len() <= i {
            slots.resize(i + 1, None);
        }
        let old = slots[i].replace(Slot { file, cloexec });
        Ok(old.map(|s| s.file))
    }

    /// close(2): EBADF if not open. The description is returned so the caller drops it
    /// outside the table lock.
    pub fn close(&self, fd: i32) -> Result<Arc<dyn FileDescription>, Errno> {
        let mut slots = self.lock();
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let slot = slots
            .get_mut(i)
            .and_then(|s| s.take())
            .ok_or(Errno::EBADF)?;
        while matches!(slots.last(), Some(None)) {
            slots.pop();
        }
        Ok(slot.file)
    }

    pub fn set_cloexec(&self, fd: i32, cloexec: bool) -> Result<(), Errno> {
        let mut slots = self.lock();
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)?;
        slot.cloexec = cloexec;
        Ok(())
    }

    /// At execve: close every fd marked close-on-exec.
    pub fn close_on_exec(&self) {
        let dropped: Vec<Slot> = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .filter(|s| s.as_ref().is_some_and(|s| s.cloexec))
                .filter_map(|s| s.take())
                .collect()
        };
        drop(dropped);
    }

    /// Every open fd in order (for /proc/self/fd).
    pub fn list(&self) -> Vec<(i32, Arc<dyn FileDescription>)> {
        self.lock()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as i32, s.file.clone())))
            .collect()
    }

    /// A copy of the table sharing the descriptions (fork).
    pub fn fork(&self) -> FdTable {
        FdTable {
            slots: Mutex::new(self.lock().clone()),
        }
    }

    /// How many fds are open.
    pub fn count(&self) -> usize {
        self.lock().iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::dev::DevNode;

    fn null() -> Arc<dyn FileDescription> {
        DevNode::Null.open(libc::O_RDWR as u32).expect("null")
    }

    #[test]
    fn lowest_free_and_dup_semantics() {
        let t = FdTable::new();
        assert_eq!(t.install(null(), false, 1024), Ok(0));
        assert_eq!(t.install(null(), false, 1024), Ok(1));
        assert_eq!(t.install(null(), true, 1024), Ok(2));
        assert!(t.close(1).is_ok());
        assert_eq!(t.close(1).err(), Some(Errno::EBADF));
        assert_eq!(t.install(null(), false, 1024), Ok(1));
        // F_DUPFD-style minimum.
        assert_eq!(t.install_from(null(), false, 10, 1024), Ok(10));
        assert_eq!(t.install(null(), false, 1024), Ok(3));
        // dup2 onto an open fd replaces it.
        let f = t.get(0).expect("fd 0");
        assert!(t
            .install_at(3, f.clone(), false, 1024)
            .expect("dup2")
            .is_some());
        assert!(Arc::ptr_eq(&t.get(3).expect("fd 3"), &f));
        assert_eq!(
            t.install_at(1024, f.clone(), false, 1024).err(),
            Some(Errno::EBADF)
        );
        assert_eq!(t.get(-1).err(), Some(Errno::EBADF));
        t.close_on_exec();
        assert_eq!(t.get(2).err(), Some(Errno::EBADF));
        assert_eq!(
            t.list().iter().map(|(fd, _)| *fd).collect::<Vec<_>>(),
            vec![0, 1, 3, 10]
        );
    }

    #[test]
    fn emfile_at_the_limit() {
        let t = FdTable::new();
        for i in 0..4 {
            assert_eq!(t.install(null(), false, 4), Ok(i));
        }
        assert_eq!(t.install(null(), false, 4), Err(Errno::EMFILE));
    }
}
