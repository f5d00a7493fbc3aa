//! Guest physical memory: one memfd that every guest page and every page-table page
//! lives in, mapped once into the sentry and once (as a KVM memslot) into the VM.
//!
//! Frames are 4 KiB offsets into the memfd. The allocator hands out zeroed frames and
//! takes them back; the file is sparse, so untouched frames cost the host nothing.
//!
//! Guest vCPUs may write any frame while the sentry reads it; all access from the
//! sentry goes through the bounds-checked copies below, never through references.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use crate::arch::PAGE_SIZE;

/// Errors setting up or exhausting guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("creating the guest memory file: {0}")]
    Create(std::io::Error),
    #[error("mapping {size} bytes of guest memory")]
    Map { size: u64, source: std::io::Error },
    #[error("guest physical memory exhausted ({0} bytes)")]
    Exhausted(u64),
    #[error("guest memory state from a checkpoint is inconsistent: {0}")]
    InvalidState(String),
}

/// A guest physical address of a 4 KiB frame.
pub type Gpa = u64;

struct FrameAllocator {
    /// Frames below this have been handed out at least once.
    next: Gpa,
    /// Frames given back, to be zeroed before reuse.
    free: Vec<Gpa>,
    in_use: u64,
    /// Frames mapped in more than one place (shared mappings across fork), with the
    /// number of extra references. Frames absent here have exactly one owner.
    shared: std::collections::HashMap<Gpa, u32>,
}

/// The memfd behind all guest physical memory, and its allocator.
pub struct GuestMemory {
    fd: OwnedFd,
    host_base: *mut u8,
    size: u64,
    frames: Mutex<FrameAllocator>,
}

// SAFETY: `host_base` points to a MAP_SHARED mapping owned by this struct for its whole
// life; all access goes through bounds-checked raw copies that tolerate concurrent
// writers (the guest), so sharing the pointer between threads is sound.
unsafe impl Send for GuestMemory {}
// SAFETY: as above; the allocator state is behind a Mutex.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Create `size` bytes (a multiple of 4 KiB) of sparse guest physical memory.
    pub fn new(size: u64) -> Result<GuestMemory, MemoryError> {
        let name = c"nanovisor-guest-memory";
        // SAFETY: memfd_create takes a valid NUL-terminated name and flags; it returns a
        // new fd or -1.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(MemoryError::Create(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on an fd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(MemoryError::Create(std::io::Error::last_os_error()));
        }
        // SAFETY: a new shared mapping of our own memfd, at an address the kernel picks;
        // it does not alias any Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MemoryError::Map {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(GuestMemory {
            fd,
            host_base: ptr.cast(),
            size,
            frames: Mutex::new(FrameAllocator {
                next: 0,
                free: Vec::new(),
                in_use: 0,
                shared: std::collections::HashMap::new(),
            }),
        })
    }

    /// Size of guest physical memory in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The sentry's address of guest physical address 0 (for the KVM memslot).
    pub fn host_base(&self) -> u64 {
        self.host_base as u64
    }

    /// The memfd (for mapping guest memory elsewhere, e.g. checkpoints).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Frames currently allocated.
    pub fn frames_in_use(&self) -> u64 {
        self.frames.lock().map(|f| f.in_use).unwrap_or(0)
    }

    /// Allocate one zeroed frame.
    pub fn alloc_frame(&self) -> Result<Gpa, MemoryError> {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let gpa = match frames.free.pop() {
            Some(gpa) => {
                self.zero(gpa, PAGE_SIZE as usize);
                gpa
            }
            None => {
                if frames.next + PAGE_SIZE > self.size {
                    return Err(MemoryError::Exhausted(self.size));
                }
                let gpa = frames.next;
                frames.next += PAGE_SIZE;
                gpa
            }
        };
        frames.in_use += 1;
        Ok(gpa)
    }

    /// Give a reference to a frame back; the frame is free once its last owner gives
    /// it back. The caller guarantees its own page table no longer maps it.
    pub fn free_frame(&self, gpa: Gpa) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(gpa.is_multiple_of(PAGE_SIZE) && gpa < frames.next);
        if let Some(extra) = frames.shared.get_mut(&gpa) {
            *extra -= 1;
            if *extra == 0 {
                frames.shared.remove(&gpa);
            }
            return;
        }
        frames.free.push(gpa);
        frames.in_use = frames.in_use.saturating_sub(1);
    }

    /// Take another reference to a frame (it is now mapped in one more place).
    pub fn share_frame(&self, gpa: Gpa) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        *frames.shared.entry(gpa).or_insert(0) += 1;
    }

    fn check(&self, gpa: Gpa, len: usize) -> Option<*mut u8> {
        let end = gpa.checked_add(len as u64)?;
        if end > self.size {
            return None;
        }
        // SAFETY: gpa + len is within the mapping, so the offset pointer stays in bounds.
        Some(unsafe { self.host_base.add(gpa as usize) })
    }

    /// Copy out of guest physical memory. Panics only on a sentry bug (out of range).
    pub fn read(&self, gpa: Gpa, buf: &mut [u8]) {
        let src = self
            .check(gpa, buf.len())
            .unwrap_or_else(|| panic!("guest physical read out of range: {gpa:#x}+{}", buf.len()));
        // SAFETY: `src..src+len` is inside our mapping (checked) and `buf` is a distinct
        // host buffer; the guest may write concurrently, which at worst yields torn data.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    }

    /// Copy into guest physical memory. Panics only on a sentry bug (out of range).
    pub fn write(&self, gpa: Gpa, buf: &[u8]) {
        let dst = self
            .check(gpa, buf.len())
            .unwrap_or_else(|| panic!("guest physical write out of range: {gpa:#x}+{}", buf.len()));
        // SAFETY: `dst..dst+len` is inside our mapping (checked) and does not overlap `buf`.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) }
    }

    /// Fill a range with zeros.
    pub fn zero(&self, gpa: Gpa, len: usize) {
        let dst = self
            .check(gpa, len)
            .unwrap_or_else(|| panic!("guest physical zero out of range: {gpa:#x}+{len}"));
        // SAFETY: `dst..dst+len` is inside our mapping (checked).
        unsafe { std::ptr::write_bytes(dst, 0, len) }
    }

    /// Read a little-endian u64 (page-table entries, stack frames).
    pub fn read_u64(&self, gpa: Gpa) -> u64 {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b);
        u64::from_le_bytes(b)
    }

    /// Write a little-endian u64.
    pub fn write_u64(&self, gpa: Gpa, value: u64) {
        self.write(gpa, &value.to_le_bytes());
    }

    /// Map `frames` (sorted) writable in this process's page tables now
    /// (`MADV_POPULATE_WRITE`, one call per run of adjacent frames), so KVM can map them
    /// into the guest ahead of its touches. Content is unchanged; in a restored
    /// sandbox's private mapping of its image it makes each a private copy. Frames
    /// outside guest memory are skipped.
    pub fn populate_writable(&self, frames: &[Gpa]) -> std::io::Result<()> {
        let page = PAGE_SIZE;
        let mut runs: Vec<(Gpa, u64)> = Vec::new();
        for &f in frames
            .iter()
            .filter(|f| f.is_multiple_of(page) && **f < self.size)
        {
            match runs.last_mut() {
                Some((start, len)) if *start + *len == f => *len += page,
                _ => runs.push((f, page)),
            }
        }
        for (start, len) in runs {
            // SAFETY: `start..start+len` lies inside our mapping (frames were checked
            // against its size); MADV_POPULATE_WRITE only faults pages in, writing
            // nothing, so no Rust object or guest data changes under it.
            let r = unsafe {
                libc::madvise(
                    self.host_base.add(start as usize).cast(),
                    len as usize,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Copy one whole frame to another (copy-on-write).
    pub fn copy_frame(&self, from: Gpa, to: Gpa) {
        let src = self.check(from, PAGE_SIZE as usize);
        let dst = self.check(to, PAGE_SIZE as usize);
        match (src, dst) {
            // SAFETY: both frames are inside our mapping and distinct frames never overlap.
            (Some(s), Some(d)) if from != to => unsafe {
                std::ptr::copy_nonoverlapping(s, d, PAGE_SIZE as usize)
            },
            _ => panic!("copy_frame out of range: {from:#x} -> {to:#x}"),
        }
    }
}

/// The allocator's state, for a checkpoint: which frames are in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AllocatorState {
    /// Frames below this have been handed out at least once.
    pub next: Gpa,
    /// Frames below `next` that are free.
    pub free: Vec<Gpa>,
    /// Frames mapped in more than one place, with their extra references.
    pub shared: Vec<(Gpa, u32)>,
}

impl GuestMemory {
    /// The allocator's state now.
    pub fn allocator_state(&self) -> AllocatorState {
        let f = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared: Vec<(Gpa, u32)> = f.shared.iter().map(|(g, n)| (*g, *n)).collect();
        shared.sort_unstable();
        AllocatorState {
            next: f.next,
            free: f.free.clone(),
            shared,
        }
    }

    /// Write every frame in use under `state` into `out` at its guest physical address
    /// (`pwrite`, so `out` is a file the caller sized; all-zero frames are skipped and
    /// stay holes). Returns the bytes written. The guest must not run meanwhile.
    pub fn write_frames(
        &self,
        state: &AllocatorState,
        out: &std::fs::File,
    ) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt as _;
        let mut free = vec![false; (state.next / PAGE_SIZE) as usize];
        for gpa in &state.free {
            if let Some(slot) = free.get_mut((gpa / PAGE_SIZE) as usize) {
                *slot = true;
            }
        }
        let mut page = vec![0u8; PAGE_SIZE as usize];
        let mut written = 0;
        for (index, is_free) in free.iter().enumerate() {
            if *is_free {
                continue;
            }
            let gpa = index as u64 * PAGE_SIZE;
            self.read(gpa, &mut page);
            if page.iter().all(|b| *b == 0) {
                continue;
            }
            out.write_all_at(&page, gpa)?;
            written += PAGE_SIZE;
        }
        Ok(written)
    }

    /// Guest memory restored from a checkpoint: `image` (memory.img, `size` bytes) mapped
    /// copy-on-write, so sandboxes restored from one image share its pages until they
    /// write them, and the allocator as it was. `state` comes from a file: it is checked.
    pub fn restore(
        image: &std::fs::File,
        size: u64,
        state: &AllocatorState,
    ) -> Result<GuestMemory, MemoryError> {
        let invalid = |what: String| MemoryError::InvalidState(what);
        if !size.is_multiple_of(PAGE_SIZE)
            || state.next > size
            || !state.next.is_multiple_of(PAGE_SIZE)
        {
            return Err(invalid(format!(
                "{} bytes of memory, frames handed out up to {:#x}",
                size, state.next
            )));
        }
        // Guest memory is the image's file: a size it does not have would map pages past
        // its end, which fault (SIGBUS) on first touch, or ask KVM for a slot it refuses.
        let file_len = image.metadata().map_err(MemoryError::Create)?.len();
        if size == 0 || size != file_len {
            return Err(invalid(format!(
                "{size} bytes of guest memory, but the memory image holds {file_len}"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for gpa in &state.free {
            if !gpa.is_multiple_of(PAGE_SIZE) || *gpa >= state.next || !seen.insert(*gpa) {
                return Err(invalid(format!("free frame {gpa:#x}")));
            }
        }
        for (gpa, _) in &state.shared {
            if !gpa.is_multiple_of(PAGE_SIZE) || *gpa >= state.next || seen.contains(gpa) {
                return Err(invalid(format!("shared frame {gpa:#x}")));
            }
        }
        let fd = image.try_clone().map_err(MemoryError::Create)?;
        // SAFETY: a new private mapping of a file we hold, at an address the kernel
        // picks; it does not alias any Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MemoryError::Map {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        let in_use = state.next / PAGE_SIZE - state.free.len() as u64;
        Ok(GuestMemory {
            fd: fd.into(),
            host_base: ptr.cast(),
            size,
            frames: Mutex::new(FrameAllocator {
                next: state.next,
                free: state.free.clone(),
                in_use,
                shared: state.shared.iter().copied().collect(),
            }),
        })
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `new`, which nothing references now.
        unsafe { libc::munmap(self.host_base.cast(), self.size as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_zeroed_on_reuse() {
        let mem = GuestMemory::new(16 * PAGE_SIZE).expect("memfd");
        let a = mem.alloc_frame().expect("frame");
        mem.write_u64(a + 8, 0xdead_beef);
        mem.free_frame(a);
        let b = mem.alloc_frame().expect("frame");
        assert_eq!(a, b);
        assert_eq!(mem.read_u64(b + 8), 0);
    }

    #[test]
    fn shared_frames_are_freed_by_their_last_owner() {
        let mem = GuestMemory::new(16 * PAGE_SIZE).expect("memfd");
        let a = mem.alloc_frame().expect("frame");
        mem.share_frame(a);
        mem.free_frame(a);
        assert_eq!(mem.frames_in_use(), 1);
        mem.free_frame(a);
        assert_eq!(mem.frames_in_use(), 0);
    }

    #[test]
    fn populating_frames_keeps_their_content_and_skips_what_is_outside() {
        let mut file = tempfile_in_memory(8 * PAGE_SIZE);
        std::io::Write::write_all(&mut file, &[7u8; 3 * PAGE_SIZE as usize]).expect("write");
        let state = AllocatorState {
            next: 3 * PAGE_SIZE,
            ..Default::default()
        };
        let mem = GuestMemory::restore(&file, 8 * PAGE_SIZE, &state).expect("restore");
        mem.populate_writable(&[
            0,
            PAGE_SIZE,
            2 * PAGE_SIZE,
            5 * PAGE_SIZE,
            64 * PAGE_SIZE,
            3,
        ])
        .expect("populate");
        for f in 0..3 {
            assert_eq!(mem.read_u64(f * PAGE_SIZE + 16), 0x0707_0707_0707_0707);
        }
        assert_eq!(mem.read_u64(5 * PAGE_SIZE), 0);
        // The image itself is untouched: the populated pages are private copies.
        mem.write_u64(0, 1);
        let mut back = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, 0).expect("read");
        assert_eq!(back, [7u8; 8]);
    }

    #[test]
    fn a_size_the_image_does_not_have_is_refused() {
        let file = tempfile_in_memory(8 * PAGE_SIZE);
        let state = AllocatorState {
            next: PAGE_SIZE,
            ..Default::default()
        };
        // Larger than the file: pages past its end would fault on first touch.
        for size in [16 * PAGE_SIZE, 4 * PAGE_SIZE, 1 << 46] {
            let err = GuestMemory::restore(&file, size, &state)
                .err()
                .expect("a size other than the image's is refused");
            assert!(
                err.to_string().contains(&format!(
                    "{size} bytes of guest memory, but the memory image holds 32768"
                )),
                "{err}"
            );
        }
        assert!(GuestMemory::restore(&file, 8 * PAGE_SIZE, &state).is_ok());
    }

    fn tempfile_in_memory(len: u64) -> std::fs::File {
        // SAFETY: memfd_create with a valid name; the fd is new and ours.
        let fd = unsafe { libc::memfd_create(c"populate-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just created and nothing else owns it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.set_len(len).expect("size");
        file
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mem = GuestMemory::new(2 * PAGE_SIZE).expect("memfd");
        assert!(mem.alloc_frame().is_ok());
        assert!(mem.alloc_frame().is_ok());
        assert!(matches!(mem.alloc_frame(), Err(MemoryError::Exhausted(_))));
    }
}
