//! The guest frames that hold a writable bind's file pages once it is mapped MAP_SHARED,
//! shared by every shared mapping of the file in the sandbox and kept coherent with
//! read and write, as `page_cache` does for overlay files. The host file is the truth
//! for everyone else, so what the guest stores through a mapping is written back: the
//! bytes that changed since the page was read (a copy of each page as last synced says
//! which), at msync, fsync, munmap, and when the last mapping and description of the
//! file are gone. Host processes see those stores at those points, not as they happen
//! (as with a network file system); changes the host makes meanwhile to bytes the guest
//! did not store are not overwritten.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::host::{fstat, pread, pwrite};
use super::page_cache::PageCache;
use crate::arch::PAGE_SIZE;
use crate::mm::AccessError;
use crate::platform::memory::{Gpa, GuestMemory};

/// One host file's cache: its (st_dev, st_ino) names it.
pub struct HostCache {
    state: Mutex<State>,
}

struct State {
    /// A descriptor open for writing, for write-back (a writable mapping needs one).
    fd: Option<Arc<OwnedFd>>,
    pages: Option<PageCache>,
    /// Each cached page as the host file had it when last read or synced.
    clean: BTreeMap<u64, Vec<u8>>,
}

/// Host caches by (st_dev, st_ino).
type Registry = HashMap<(u64, u64), Weak<HostCache>>;

/// The sandbox's host caches.
fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl HostCache {
    /// The cache of file `key`, made if it has none.
    pub fn of(key: (u64, u64)) -> Arc<HostCache> {
        let mut reg = registry();
        if let Some(c) = reg.get(&key).and_then(Weak::upgrade) {
            return c;
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(HostCache {
            state: Mutex::new(State {
                fd: None,
                pages: None,
                clean: BTreeMap::new(),
            }),
        });
        reg.insert(key, Arc::downgrade(&c));
        c
    }

    /// The cache of file `key` if it exists (read and write look, and skip the rest).
    pub fn existing(key: (u64, u64)) -> Option<Arc<HostCache>> {
        registry().get(&key).and_then(Weak::upgrade)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any page is cached (a shared mapping has touched the file).
    pub fn has_pages(&self) -> bool {
        self.lock()
            .pages
            .as_ref()
            .is_some_and(|p| !p.entries().is_empty())
    }

    /// Remember a descriptor open for writing, for write-back.
    pub fn writer(&self, fd: &Arc<OwnedFd>) {
        let mut s = self.lock();
        if s.fd.is_none() {
            s.fd = Some(fd.clone());
        }
    }

    /// The frame for the page at `offset`, read from `fd` if not cached yet, with a
    /// reference taken for the caller's mapping.
    pub fn shared_frame(
        &self,
        memory: &Arc<GuestMemory>,
        fd: &OwnedFd,
        offset: u64,
    ) -> Result<Gpa, AccessError> {
        let size = fstat(fd).map_err(|_| AccessError::BeyondFile)?.size.max(0) as u64;
        if offset >= size {
            return Err(AccessError::BeyondFile);
        }
        let index = offset / PAGE_SIZE;
        let mut s = self.lock();
        let State { pages, clean, .. } = &mut *s;
        let pages = pages.get_or_insert_with(|| PageCache::new(memory.clone()));
        let frame = match pages.get(index) {
            Some(frame) => frame,
            None => {
                let mut page = vec![0u8; PAGE_SIZE as usize];
                let mut done = 0;
                while done < page.len() {
                    match pread(fd, &mut page[done..], index * PAGE_SIZE + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(_) => return Err(AccessError::BeyondFile),
                    }
                }
                let frame = pages
                    .memory()
                    .alloc_frame()
                    .map_err(|_| AccessError::NoMemory)?;
                pages.memory().write(frame, &page);
                pages.insert(index, frame);
                clean.insert(index, page);
                frame
            }
        };
        pages.memory().share_frame(frame);
        Ok(frame)
    }

    /// `data` was written to the host file at `offset`: the cached pages follow, and
    /// their clean copies too (those bytes are on the host already).
    pub fn wrote(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        let State { pages, clean, .. } = &mut *s;
        if let Some(pages) = pages.as_ref() {
            pages.write(offset, data);
        }
        for (index, page) in clean.iter_mut() {
            let start = index * PAGE_SIZE;
            let end = start + PAGE_SIZE;
            let from = offset.max(start);
            let to = (offset + data.len() as u64).min(end);
            if from < to {
                page[(from - start) as usize..(to - start) as usize]
                    .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            }
        }
    }

    /// Lay the cached pages over `buf`, read from the host at `offset`: stores through
    /// mappings not yet written back are what the guest must see.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        if let Some(pages) = self.lock().pages.as_ref() {
            pages.read(offset, buf);
        }
    }

    /// The host file was truncated to `len`: cached bytes past it read as zeros.
    pub fn truncated(&self, len: u64) {
        let mut s = self.lock();
        let State { pages, clean, .. } = &mut *s;
        if let Some(pages) = pages.as_ref() {
            pages.zero_from(len);
        }
        for (index, page) in clean.iter_mut() {
            let start = index * PAGE_SIZE;
            if len < start + PAGE_SIZE {
                page[len.saturating_sub(start) as usize..].fill(0);
            }
        }
    }

    /// Write back what mappings stored since the last sync: the runs of bytes that
    /// differ from the clean copy, within the file's size.
    pub fn sync(&self) {
        let mut s = self.lock();
        let State { fd, pages, clean } = &mut *s;
        let (Some(fd), Some(pages)) = (fd.as_ref(), pages.as_ref()) else {
            return;
        };
        let Ok(st) = fstat(fd) else {
            return;
        };
        let size = st.size.max(0) as u64;
        let mut now = vec![0u8; PAGE_SIZE as usize];
        for (index, old) in clean.iter_mut() {
            let start = index * PAGE_SIZE;
            if start >= size {
                continue;
            }
            let Some(frame) = pages.get(*index) else {
                continue;
            };
            pages.memory().read(frame, &mut now);
            let limit = ((size - start) as usize).min(now.len());
            let mut i = 0;
            while i < limit {
                if now[i] == old[i] {
                    i += 1;
                    continue;
                }
                let run_start = i;
                while i < limit && now[i] != old[i] {
                    i += 1;
                }
                if pwrite(fd, &now[run_start..i], start + run_start as u64).is_ok() {
                    old[run_start..i].copy_from_slice(&now[run_start..i]);
                }
            }
        }
    }
}

impl Drop for HostCache {
    fn drop(&mut self) {
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_written_back_and_host_bytes_kept() {
        let memory = Arc::new(GuestMemory::new(16 * PAGE_SIZE).expect("guest memory"));
        let path = std::env::temp_dir().join(format!("nv-host-cache-{}", std::process::id()));
        std::fs::write(&path, vec![b'a'; 6000]).expect("a file");
        let fd: Arc<OwnedFd> = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open")
                .into(),
        );
        let key = (u64::MAX, 1);
        let cache = HostCache::of(key);
        cache.writer(&fd);
        let frame = cache.shared_frame(&memory, &fd, 0).expect("page 0");
        // The guest stores "XY" at 10; the host writes 'h' at 100 meanwhile.
        memory.write(frame + 10, b"XY");
        pwrite(&fd, b"h", 100).expect("a host write");
        cache.sync();
        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(&bytes[8..14], b"aaXYaa");
        assert_eq!(
            bytes[100], b'h',
            "a byte the guest did not store is the host's"
        );
        // A write through the sandbox reaches the mapping.
        cache.wrote(4097, b"Q");
        let frame1 = cache.shared_frame(&memory, &fd, 4096).expect("page 1");
        let mut b = [0u8; 2];
        memory.read(frame1, &mut b);
        assert_eq!(&b, b"aa", "page 1 is read from the host file");
        let mut buf = [0u8; 3];
        cache.read(9, &mut buf);
        assert_eq!(&buf, b"aXY");
        assert!(HostCache::existing(key).is_some());
        memory.free_frame(frame);
        memory.free_frame(frame1);
        drop(cache);
        assert!(HostCache::existing(key).is_none());
        let _ = std::fs::remove_file(&path);
    }
}
