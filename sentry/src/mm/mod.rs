//! Guest address spaces: areas (VMAs), demand paging, and the only way the sentry reads
//! or writes guest memory (`copy_in`/`copy_out`, with bounds and permission checks).
//!
//! Lock order: `MemoryManager::state` is taken before the address space's own lock (inside
//! the platform). Pages are populated on fault or on first access by the sentry; the page
//! tables are the record of what is populated.

pub mod lock;
pub mod remap;
pub mod syscalls_api;
pub mod vma;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::abi::Errno;
use crate::arch::{page_down, page_up, PAGE_SIZE, USER_ADDR_END};
use crate::platform::memory::{Gpa, GuestMemory};
use crate::platform::{AddressSpace, Perms};
pub use vma::{AreaKind, Backing, MappedFile, Vma, VmaSet};

/// Lowest address a guest may map (Linux's default `vm.mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
/// Top-down mmap allocations start below this (the stack lives above it).
pub const MMAP_BASE: u64 = 0x7f00_0000_0000;
/// The initial stack's top.
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// Pages populated together on a fault (see `fault_around`).
pub const FAULT_AROUND_PAGES: u64 = 16;
/// Longest string a guest may pass for a path or argument.
pub const MAX_STRING: usize = 128 * 1024;

/// Why an access to guest memory failed, in the terms of a SIGSEGV's si_code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// No area there (SEGV_MAPERR).
    Unmapped,
    /// The area forbids this access (SEGV_ACCERR).
    Forbidden,
    /// No free guest frame: the OOM killer's case for a fault, ENOMEM for a syscall.
    NoMemory,
    /// A file-backed page wholly past the end of its file, or one that cannot be read
    /// (SIGBUS with BUS_ADRERR; EFAULT for a syscall, as Linux's copy routines report).
    BeyondFile,
}

impl From<AccessError> for Errno {
    fn from(e: AccessError) -> Errno {
        match e {
            AccessError::NoMemory => Errno::ENOMEM,
            AccessError::Unmapped | AccessError::Forbidden | AccessError::BeyondFile => {
                Errno::EFAULT
            }
        }
    }
}

/// Bytes of guest memory no frame is allocated from (MemFree, sysinfo's freeram).
pub fn free_bytes(memory: &GuestMemory) -> u64 {
    memory
        .size()
        .saturating_sub(memory.frames_in_use().saturating_mul(PAGE_SIZE))
}

/// The kind of access being made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

struct MmState {
    vmas: VmaSet,
    brk_start: u64,
    brk: u64,
}

/// One guest address space and the areas in it.
pub struct MemoryManager {
    space: Arc<dyn AddressSpace>,
    memory: Arc<GuestMemory>,
    state: Mutex<MmState>,
    /// The processes using this address space: one, or more while children made with
    /// CLONE_VM (vfork, posix_spawn) share it until they execve or exit.
    sharers: std::sync::atomic::AtomicUsize,
}

impl Drop for MemoryManager {
    fn drop(&mut self) {
        // Give every frame back (nothing left if the process's exit already did). The
        // address space is never run again, so translations a vCPU may still cache for
        // it cannot be used.
        self.release();
    }
}

impl MemoryManager {
    /// Another process uses this address space (clone with CLONE_VM).
    pub fn share(&self) {
        self.sharers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A process stops using this address space (it ended, or ran execve). True if it
    /// was the last: then nothing runs in it any more and [`release`](Self::release)
    /// may give its frames back.
    pub fn leave(&self) -> bool {
        self.sharers
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
    }

    /// The last process using this address space has ended: forget every area and give
    /// every frame back now, not when the last handle to it goes. None of its threads
    /// runs any more, so nothing uses it again; a handle left over finds no area and
    /// faults nothing in.
    pub fn release(&self) {
        let mut st = self.state();
        st.vmas = VmaSet::default();
        let memory = &self.memory;
        self.space
            .unmap(0, USER_ADDR_END, &mut |_, frame| memory.free_frame(frame));
    }

    pub fn new(space: Arc<dyn AddressSpace>, memory: Arc<GuestMemory>) -> MemoryManager {
        MemoryManager {
            space,
            memory,
            state: Mutex::new(MmState {
                vmas: VmaSet::default(),
                brk_start: 0,
                brk: 0,
            }),
            sharers: std::sync::atomic::AtomicUsize::new(1),
        }
    }

    /// The areas and the heap, for a checkpoint: (areas in address order, brk start,
    /// brk).
    pub fn checkpoint_parts(&self) -> (Vec<Vma>, u64, u64) {
        let st = self.state();
        (st.vmas.iter().cloned().collect(), st.brk_start, st.brk)
    }

    /// An address space restored from a checkpoint: its page tables (`space`) are in
    /// guest memory already; `areas` must be page-aligned, in user space, and disjoint.
    pub fn restore(
        space: Arc<dyn AddressSpace>,
        memory: Arc<GuestMemory>,
        areas: Vec<Vma>,
        brk_start: u64,
        brk: u64,
    ) -> Result<MemoryManager, String> {
        let mut vmas = VmaSet::default();
        for v in areas {
            let aligned = v.start.is_multiple_of(PAGE_SIZE) && v.end.is_multiple_of(PAGE_SIZE);
            if !aligned
                || v.start >= v.end
                || v.end > USER_ADDR_END
                || vmas.overlaps(v.start, v.end)
            {
                return Err(format!("memory area {:#x}-{:#x}", v.start, v.end));
            }
            vmas.insert(v);
        }
        if brk < brk_start || brk > USER_ADDR_END {
            return Err(format!("heap {brk_start:#x}-{brk:#x}"));
        }
        Ok(MemoryManager {
            space,
            memory,
            state: Mutex::new(MmState {
                vmas,
                brk_start,
                brk,
            }),
            sharers: std::sync::atomic::AtomicUsize::new(1),
        })
    }

    fn state(&self) -> MutexGuard<'_, MmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The platform address space (for running guest threads in it).
    pub fn address_space(&self) -> &Arc<dyn AddressSpace> {
        &self.space
    }

    /// The guest physical memory this address space draws frames from (the vDSO maps
    /// the sandbox's one vvar frame into every address space).
    pub fn guest_memory(&self) -> &Arc<GuestMemory> {
        &self.memory
    }

    /// Set where the heap starts (just past the loaded program).
    pub fn set_brk_start(&self, addr: u64) {
        let mut st = self.state();
        st.brk_start = addr;
        st.brk = addr;
    }

    /// The highest free range of `len` bytes below `below`, starting at a multiple of
    /// `align` (a power of two), as an mmap without a hint would choose it.
    pub fn unmapped_area(&self, len: u64, align: u64, below: u64) -> Option<u64> {
        self.state()
            .vmas
            .find_gap_top_down_aligned(len, align.max(PAGE_SIZE), below, MMAP_MIN_ADDR)
    }

    /// Add an area at a fixed place, replacing whatever was there.
    pub fn map_fixed(&self, vma: Vma) {
        let mut st = self.state();
        self.unmap_locked(&mut st, vma.start, vma.end);
        st.vmas.insert(vma);
    }

    fn unmap_locked(&self, st: &mut MmState, start: u64, end: u64) {
        st.vmas.remove(start, end);
        self.drop_pages(start, end);
    }

    /// Unmap the pages of `[start, end)` and give their frames back once no thread of
    /// the address space can still reach them (another may be running with the old
    /// translations until it next enters the guest).
    fn drop_pages(&self, start: u64, end: u64) {
        let mut frames = Vec::new();
        self.space
            .unmap(start, end, &mut |_, frame| frames.push(frame));
        if !frames.is_empty() {
            self.space.free_after_flush(frames);
        }
    }

    /// Bring the page at `addr` in for `access`, as a page fault would.
    pub fn fault(&self, addr: u64, access: Access) -> Result<(), AccessError> {
        let st = self.state();
        self.fault_locked(&st, addr, access)?;
        self.fault_around(&st, addr);
        Ok(())
    }

    /// Populate the neighbours of a faulting page too. A guest page fault is expensive to
    /// exit for (tens of µs on kvm_pvm, where the fault first lands in the guest's ring
    /// 0), far more than filling a page, so faults are taken in aligned windows, like
    /// Linux's fault-around for file mappings but for anonymous memory as well.
    fn fault_around(&self, st: &MmState, addr: u64) {
        let Some(vma) = st.vmas.find(addr) else {
            return;
        };
        if vma.perms.is_none() {
            return;
        }
        let window = FAULT_AROUND_PAGES * PAGE_SIZE;
        let start = (addr & !(window - 1)).max(vma.start);
        let end = ((addr & !(window - 1)) + window).min(vma.end);
        let mut page = start;
        while page < end {
            if self.space.translate(page).is_none() {
                // Past the end of a mapped file (SIGBUS on touch) or out of memory: stop.
                if self.fault_locked(st, page, Access::Read).is_err() {
                    break;
                }
            }
            page += PAGE_SIZE;
        }
    }

    /// For a futex not marked private: the guest physical address of the word at `addr`
    /// if it lies in a shared mapping (the same in every process that maps it), with its
    /// page faulted in; None for a private mapping. EFAULT where nothing is mapped.
    pub fn shared_physical(&self, addr: u64) -> Result<Option<u64>, Errno> {
        let st = self.state();
        let vma = st.vmas.find(addr).ok_or(Errno::EFAULT)?;
        if !vma.shared {
            return Ok(None);
        }
        let frame = self
            .fault_locked(&st, addr, Access::Read)
            .map_err(Errno::from)?;
        Ok(Some(frame + (addr & (PAGE_SIZE - 1))))
    }

    /// Populate one page; returns its frame.
    fn fault_locked(&self, st: &MmState, addr: u64, access: Access) -> Result<Gpa, AccessError> {
        let vma = st.vmas.find(addr).ok_or(AccessError::Unmapped)?;
        let allowed = match access {
            Access::Read => vma.perms.read || vma.perms.write || vma.perms.exec,
            Access::Write => vma.perms.write,
            Access::Exec => vma.perms.exec,
        };
        if !allowed {
            return Err(AccessError::Forbidden);
        }
        let page = page_down(addr);
        if let Some((frame, perms)) = self.space.translate(page) {
            if perms == vma.perms || perms.covers(vma.perms) {
                return Ok(frame);
            }
            // Present but narrower than the area allows (cannot happen without
            // copy-on-write, which comes with fork): map again with the area's rights.
            self.space
                .map(page, frame, vma.perms)
                .map_err(|_| AccessError::NoMemory)?;
            return Ok(frame);
        }
        if let (true, Backing::File { file, offset }) = (vma.shared, &vma.backing) {
            if let Some(frame) = file.shared_frame(&self.memory, offset + (page - vma.start)) {
                let frame = frame?;
                return match self.space.map(page, frame, vma.perms) {
                    Ok(_) => Ok(frame),
                    Err(_) => {
                        self.memory.free_frame(frame);
                        Err(AccessError::NoMemory)
                    }
                };
            }
        }
        let frame = self
            .memory
            .alloc_frame()
            .map_err(|_| AccessError::NoMemory)?;
        if let Backing::File { file, offset } = &vma.backing {
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            let at = offset + (page - vma.start);
            // Linux raises SIGBUS for a page wholly past the end of the file, or one that
            // cannot be read; a partial last page reads as zeros past the end.
            if !matches!(file.read_at(at, &mut buf), Ok(n) if n > 0) {
                self.memory.free_frame(frame);
                return Err(AccessError::BeyondFile);
            }
            self.memory.write(frame, &buf);
        }
        match self.space.map(page, frame, vma.perms) {
            Ok(_) => Ok(frame),
            Err(_) => {
                self.memory.free_frame(frame);
                Err(AccessError::NoMemory)
            }
        }
    }

    /// Walk `[addr, addr+len)` page by page, populating as needed; `f(gpa, offset, n)`
    /// gets each piece.
    fn for_each_piece(
        &self,
        addr: u64,
        len: usize,
        access: Access,
        f: &mut dyn FnMut(Gpa, usize, usize),
    ) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        if end > USER_ADDR_END {
            return Err(Errno::EFAULT);
        }
        let st = self.state();
        let mut at = addr;
        let mut done = 0usize;
        while at < end {
            let page = page_down(at);
            let n = ((page + PAGE_SIZE).min(end) - at) as usize;
            let frame = match self.space.translate(page) {
                Some((frame, perms))
                    if perms.covers(Perms {
                        read: true,
                        write: access == Access::Write,
                        exec: false,
                    }) =>
                {
                    frame
                }
                _ => self.fault_locked(&st, page, access).map_err(Errno::from)?,
            };
            f(frame + (at - page), done, n);
            done += n;
            at += n as u64;
        }
        Ok(())
    }

    /// Copy guest memory at `addr` into `buf`. EFAULT if any byte is not readable.
    pub fn copy_in(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let memory = &self.memory;
        let len = buf.len();
        self.for_each_piece(addr, len, Access::Read, &mut |gpa, off, n| {
            memory.read(gpa, &mut buf[off..off + n])
        })
    }

    /// Copy `buf` into guest memory at `addr`. EFAULT if any byte is not writable.
    pub fn copy_out(&self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        let memory = &self.memory;
        self.for_each_piece(addr, buf.len(), Access::Write, &mut |gpa, off, n| {
            memory.write(gpa, &buf[off..off + n])
        })
    }

    /// Read a NUL-terminated string of at most `max` bytes (ENAMETOOLONG beyond).
    pub fn read_cstring(&self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let chunk = (PAGE_SIZE - (at % PAGE_SIZE)) as usize;
            let mut buf = vec![0u8; chunk];
            self.copy_in(at, &mut buf)?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            at = at.checked_add(chunk as u64).ok_or(Errno::EFAULT)?;
        }
    }

    /// Read a little-endian u64.
    pub fn read_u64(&self, addr: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.copy_in(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a little-endian u32.
    pub fn read_u32(&self, addr: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.copy_in(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Write a little-endian u64.
    pub fn write_u64(&self, addr: u64, v: u64) -> Result<(), Errno> {
        self.copy_out(addr, &v.to_le_bytes())
    }

    /// Write a little-endian u32.
    pub fn write_u32(&self, addr: u64, v: u32) -> Result<(), Errno> {
        self.copy_out(addr, &v.to_le_bytes())
    }

    /// Read an array of NUL-terminated strings (argv/envp), at most `max_total` bytes.
    pub fn read_string_array(&self, addr: u64, max_total: usize) -> Result<Vec<Vec<u8>>, Errno> {
        let mut out = Vec::new();
        let mut total = 0usize;
        if addr == 0 {
            return Ok(out);
        }
        for i in 0.. {
            let p = self.read_u64(addr + 8 * i)?;
            if p == 0 {
                break;
            }
            let s = self.read_cstring(p, MAX_STRING)?;
            total += s.len() + 1;
            if total > max_total {
                return Err(Errno::E2BIG);
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Text of /proc/self/maps.
    pub fn maps(&self) -> String {
        let st = self.state();
        let mut out = String::new();
        for v in st.vmas.iter() {
            let (off, dev, ino, name) = match &v.backing {
                Backing::File { file, offset } => {
                    let (dev, ino) = file.identity();
                    (*offset, dev, ino, file.path())
                }
                Backing::Anonymous => (
                    0,
                    0,
                    0,
                    match v.kind {
                        AreaKind::Heap => "[heap]".to_string(),
                        AreaKind::Stack => "[stack]".to_string(),
                        AreaKind::Plain => String::new(),
                    },
                ),
            };
            let line = format!(
                "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {}",
                v.start,
                v.end,
                if v.perms.read { 'r' } else { '-' },
                if v.perms.write { 'w' } else { '-' },
                if v.perms.exec { 'x' } else { '-' },
                if v.shared { 's' } else { 'p' },
                off,
                (dev >> 8) & 0xfff,
                dev & 0xff,
                ino
            );
            if name.is_empty() {
                out.push_str(&line);
            } else {
                out.push_str(&format!("{line:<73}{name}"));
            }
            out.push('\n');
        }
        out
    }

    /// Bytes of memory the process holds now, and the most it ever held (VmRSS, VmHWM).
    pub fn resident(&self) -> (u64, u64) {
        let (now, peak) = self.space.resident_pages();
        (now * PAGE_SIZE, peak * PAGE_SIZE)
    }

    /// Total size of all areas, in bytes (VmSize).
    pub fn virtual_size(&self) -> u64 {
        self.state().vmas.iter().map(|v| v.end - v.start).sum()
    }

    /// Round `len` to pages, refusing 0 and overflow, as mmap/munmap/mprotect do.
    pub(crate) fn page_len(len: u64) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        page_up(len)
            .filter(|l| *l <= USER_ADDR_END)
            .ok_or(Errno::ENOMEM)
    }
}

impl MemoryManager {
    /// fork(2): a copy of this address space in `space` (which must be empty). Private
    /// pages are copied now (copy-on-write sharing is a later optimisation); shared
    /// mappings map the very same frames.
    pub fn fork(&self, space: Arc<dyn AddressSpace>) -> Result<MemoryManager, AccessError> {
        let st = self.state();
        self.populate_shared_anonymous(&st)?;
        let child = MemoryManager::new(space, self.memory.clone());
        {
            let mut cst = child.state();
            cst.vmas = st.vmas.clone();
            cst.brk_start = st.brk_start;
            cst.brk = st.brk;
        }
        let mut result = Ok(());
        for vma in st.vmas.iter() {
            let memory = &self.memory;
            self.space
                .for_each_page(vma.start, vma.end, &mut |addr, frame, perms| {
                    if result.is_err() {
                        return;
                    }
                    let target = if vma.shared {
                        memory.share_frame(frame);
                        frame
                    } else {
                        match memory.alloc_frame() {
                            Ok(copy) => {
                                memory.copy_frame(frame, copy);
                                copy
                            }
                            Err(_) => {
                                result = Err(AccessError::NoMemory);
                                return;
                            }
                        }
                    };
                    if child.space.map(addr, target, perms).is_err() {
                        memory.free_frame(target);
                        result = Err(AccessError::NoMemory);
                    }
                });
        }
        result.map(|_| child)
    }

    /// A shared anonymous area is one object for parent and child after fork, but its
    /// pages exist only once touched: give the untouched ones a frame in the parent now,
    /// so that both sides map the same frames instead of each getting a zero page of its
    /// own on first touch (a write the other side would never see). The frames were
    /// promised at mmap time (`check_commit`), unless the guest asked for MAP_NORESERVE.
    fn populate_shared_anonymous(&self, st: &MmState) -> Result<(), AccessError> {
        let areas = st
            .vmas
            .iter()
            .filter(|v| v.shared && matches!(v.backing, Backing::Anonymous));
        for vma in areas {
            let mut page = vma.start;
            while page < vma.end {
                if self.space.translate(page).is_none() {
                    let frame = self
                        .memory
                        .alloc_frame()
                        .map_err(|_| AccessError::NoMemory)?;
                    // Mapped with the area's rights, empty ones included, as a fault would.
                    if self.space.map(page, frame, vma.perms).is_err() {
                        self.memory.free_frame(frame);
                        return Err(AccessError::NoMemory);
                    }
                }
                page += PAGE_SIZE;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
