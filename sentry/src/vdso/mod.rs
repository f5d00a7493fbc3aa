//! The guest vDSO: `clock_gettime`, `gettimeofday`, `time`, `clock_getres` and `getcpu`
//! answered inside the guest, with no exit to the sentry.
//!
//! Every new address space gets two areas, as on Linux: `[vvar]`, one read-only page the
//! sentry keeps current (`vvar.rs`, layout in `vvar.h`), and right above it `[vdso]`,
//! a small ELF shared object (`vdso.c`, built by `build.rs`, embedded by `image.rs`)
//! whose base the program finds in AT_SYSINFO_EHDR. glibc, static or dynamic, looks up
//! `__vdso_clock_gettime` & co. there by name and version (LINUX_2.6).
//!
//! Time is the TSC turned into nanoseconds with lines the sentry steers towards the
//! host's clocks (`clock.rs`). The guest's TSC must be the host's: `platform::kvm::tsc`
//! checks every vCPU. Until the first calibration (20 ms after the first sandbox starts),
//! or if the TSC cannot be trusted, the vvar page says so and the vDSO makes the real
//! syscall, which the sentry answers as before: slower, never wrong.
//!
//! Known gaps: a restored checkpoint carries a stale vvar frame in its memory image
//! (lines for another host's TSC) and must register that frame with the publisher again
//! before guests run; `mprotect(PROT_WRITE)` on `[vvar]` is not refused as on Linux, so a
//! process could scribble on its sandbox's shared page until the next refresh (100 ms);
//! `getcpu` answers CPU 0, like the sentry's syscall.

mod clock;
pub mod image;
pub(crate) mod vvar;

use std::sync::Arc;

use crate::arch::PAGE_SIZE;
use crate::mm::{Access, AreaKind, Backing, MemoryManager, Vma, MMAP_BASE};
use crate::platform::memory::MemoryError;
use crate::platform::Perms;

/// Start the thread that keeps vvar pages current now, before any sandbox exists, so
/// that it has calibrated the guest TSC against the host's clocks by the time the first
/// guest code runs (a restored sandbox's guest runs within milliseconds of its process
/// starting). Without it the thread starts with the first vvar page.
pub fn start_clock_updater() {
    vvar::start_early();
}

/// Why the vDSO could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum VdsoError {
    #[error("no room in the address space for the vDSO")]
    NoRoom,
    #[error("allocating the vvar page: {0}")]
    Memory(#[from] MemoryError),
    #[error("mapping the vvar page")]
    Map,
    #[error("populating the vDSO")]
    Populate,
}

/// Map `[vvar]` and `[vdso]` into `mm` below its other top-down mappings; returns the
/// vDSO's base address, for AT_SYSINFO_EHDR.
pub fn map(mm: &MemoryManager) -> Result<u64, VdsoError> {
    let len = image::mapped_len();
    let vvar = mm
        .unmapped_area(PAGE_SIZE + len, PAGE_SIZE, MMAP_BASE)
        .ok_or(VdsoError::NoRoom)?;
    let base = vvar + PAGE_SIZE;
    let memory = mm.guest_memory();
    let frame = vvar::frame_for(memory)?;

    mm.map_fixed(Vma {
        start: vvar,
        end: base,
        perms: Perms::R,
        // Shared, so fork maps the same frame into the child instead of a frozen copy
        // (/proc/self/maps shows `r--s` where Linux shows `r--p`).
        shared: true,
        backing: Backing::File {
            file: Arc::new(image::VvarFile),
            offset: 0,
        },
        kind: AreaKind::Plain,
    });
    // The frame is the sandbox's one vvar page: this mapping holds a reference of its
    // own, given back when the page is unmapped like any other.
    memory.share_frame(frame);
    if mm.address_space().map(vvar, frame, Perms::R).is_err() {
        memory.free_frame(frame);
        return Err(VdsoError::Map);
    }

    mm.map_fixed(Vma {
        start: base,
        end: base + len,
        perms: Perms::RX,
        shared: false,
        backing: Backing::File {
            file: Arc::new(image::VdsoFile),
            offset: 0,
        },
        kind: AreaKind::Plain,
    });
    // Populate now: glibc reads the image at start-up, and a fault costs an exit.
    mm.fault(base, Access::Read)
        .map_err(|_| VdsoError::Populate)?;
    Ok(base)
}
