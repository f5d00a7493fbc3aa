//! The vvar pages and the thread that keeps them current.
//!
//! Each sandbox's guest memory holds one vvar frame, shared read-only by every address
//! space in it. One host thread per sentry process ([`PERIOD_NS`]) samples the host's
//! clocks and rewrites every live page under its seqlock: `seq` odd, then the TSC value
//! the new lines start from is read, then the fields, then `seq` even. Readers
//! (`vdso.c`) retry while `seq` is odd or has changed. Since the switch point is taken
//! after `seq` went odd, no reader can finish a read with the old lines at a later TSC,
//! so the lines' continuity at that point is all monotonicity needs.
//!
//! Lock order: `PUBLISHER` only; frames are written through `GuestMemory`'s own copies.

use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::clock::{HostClocks, VvarData, DATA_OFFSET, MODE_SYSCALL, PERIOD_NS, SEQ_OFFSET};
use crate::platform::kvm::tsc::{guest_tsc_is_host_tsc, host_tsc};
use crate::platform::memory::{Gpa, GuestMemory, MemoryError};

/// Delay before the second sample, which gives the first usable rate.
const CALIBRATION: Duration = Duration::from_millis(20);
/// How soon the updater looks again while pages exist but no vCPU has told yet whether
/// guests read the host's TSC (so the pages still send every call to the sentry).
const VERDICT_POLL: Duration = Duration::from_millis(1);

struct Page {
    memory: Weak<GuestMemory>,
    frame: Gpa,
}

struct Publisher {
    pages: Vec<Page>,
    /// What the pages say now, once the updater has run (new pages start with it;
    /// before that a zero page, which sends every call to the sentry).
    current: Option<VvarData>,
    seq: u32,
    updater_started: bool,
}

static PUBLISHER: Mutex<Publisher> = Mutex::new(Publisher {
    pages: Vec::new(),
    current: None,
    seq: 0,
    updater_started: false,
});

fn publisher() -> MutexGuard<'static, Publisher> {
    PUBLISHER.lock().unwrap_or_else(|e| e.into_inner())
}

/// The vvar frame of `memory`, allocated and filled in on first use. The caller takes
/// its own reference (`share_frame`) for each mapping; the publisher keeps one forever.
pub fn frame_for(memory: &Arc<GuestMemory>) -> Result<Gpa, MemoryError> {
    let mut p = publisher();
    p.pages.retain(|page| page.memory.strong_count() > 0);
    if let Some(page) = p
        .pages
        .iter()
        .find(|page| std::ptr::eq(page.memory.as_ptr(), Arc::as_ptr(memory)))
    {
        return Ok(page.frame);
    }
    let frame = memory.alloc_frame()?;
    if let Some(current) = &p.current {
        write_page(memory, frame, p.seq, current);
    }
    p.pages.push(Page {
        memory: Arc::downgrade(memory),
        frame,
    });
    start_updater(&mut p);
    Ok(frame)
}

/// Start this process's updater thread now, if it has none yet, rather than when the
/// first vvar page appears: it needs [`CALIBRATION`] before its pages let guests read
/// clocks without a syscall, which a sandbox process can spend building the sandbox.
pub fn start_early() {
    start_updater(&mut publisher());
}

/// Start this process's updater thread, once.
fn start_updater(p: &mut Publisher) {
    if p.updater_started {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("nv-vvar".into())
        .spawn(update_forever);
    match spawned {
        Ok(_) => p.updater_started = true,
        // Pages stay in syscall mode: correct, only slower.
        Err(e) => tracing::warn!("starting the vvar updater: {e}"),
    }
}

/// The vvar frame of `memory`, if it has one (for a checkpoint).
pub fn frame_of(memory: &Arc<GuestMemory>) -> Option<Gpa> {
    publisher()
        .pages
        .iter()
        .find(|page| std::ptr::eq(page.memory.as_ptr(), Arc::as_ptr(memory)))
        .map(|page| page.frame)
}

/// Make `frame` of restored `memory` its vvar frame (mapped into the restored address
/// spaces already), kept current from now on like any other.
pub fn adopt(memory: &Arc<GuestMemory>, frame: Gpa) -> Result<(), MemoryError> {
    if !frame.is_multiple_of(crate::arch::PAGE_SIZE) || frame >= memory.size() {
        return Err(MemoryError::InvalidState(format!("vvar frame {frame:#x}")));
    }
    {
        let mut p = publisher();
        p.pages.retain(|page| page.memory.strong_count() > 0);
        // No guest thread runs yet: the page is written whole, as for a new one.
        if let Some(current) = &p.current {
            write_page(memory, frame, p.seq, current);
        } else {
            memory.zero(frame, crate::arch::PAGE_SIZE as usize);
        }
        p.pages.push(Page {
            memory: Arc::downgrade(memory),
            frame,
        });
        // The page is known now, so `frame_for` would not start the updater: start it
        // here, or the restored vDSO stays in syscall mode for good.
        start_updater(&mut p);
    }
    Ok(())
}

/// Write a whole page outside any update (a page no guest has mapped yet).
fn write_page(memory: &GuestMemory, frame: Gpa, seq: u32, data: &VvarData) {
    memory.write(frame + DATA_OFFSET, &data.encode());
    fence(Ordering::SeqCst);
    memory.write(frame + SEQ_OFFSET, &seq.to_le_bytes());
}

fn update_forever() {
    let mut clocks = HostClocks::new();
    let tsc_usable_host = host_clocksource_uses_tsc();
    let mut first = true;
    loop {
        let readings = HostClocks::read();
        let tsc_usable = tsc_usable_host && guest_tsc_is_host_tsc() == Some(true);
        let mut p = publisher();
        p.pages.retain(|page| page.memory.strong_count() > 0);
        let live: Vec<(Arc<GuestMemory>, Gpa)> = p
            .pages
            .iter()
            .filter_map(|page| Some((page.memory.upgrade()?, page.frame)))
            .collect();
        let odd = p.seq.wrapping_add(1) | 1;
        for (memory, frame) in &live {
            memory.write(frame + SEQ_OFFSET, &odd.to_le_bytes());
        }
        fence(Ordering::SeqCst);
        let now = host_tsc();
        let data = clocks.update(readings, now, tsc_usable);
        let encoded = data.encode();
        for (memory, frame) in &live {
            memory.write(frame + DATA_OFFSET, &encoded);
        }
        fence(Ordering::SeqCst);
        let even = odd.wrapping_add(1);
        for (memory, frame) in &live {
            memory.write(frame + SEQ_OFFSET, &even.to_le_bytes());
        }
        p.seq = even;
        let waiting_for_verdict = data.mode == MODE_SYSCALL
            && !first
            && !live.is_empty()
            && tsc_usable_host
            && guest_tsc_is_host_tsc().is_none();
        p.current = Some(data);
        drop(p);
        drop(live);
        std::thread::sleep(if first {
            CALIBRATION
        } else if waiting_for_verdict {
            VERDICT_POLL
        } else {
            Duration::from_nanos(PERIOD_NS)
        });
        first = false;
    }
}

/// Whether the host keeps its own time with the TSC (or a TSC-derived paravirtual
/// clock). Linux switches away from the TSC when it finds it unreliable; then so do we.
/// An unreadable sysfs says nothing either way.
fn host_clocksource_uses_tsc() -> bool {
    let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    match std::fs::read_to_string(path) {
        Ok(name) => {
            let ok = matches!(name.trim(), "tsc" | "kvm-clock");
            if !ok {
                tracing::info!(
                    "host clocksource is {}: the vDSO will use syscalls",
                    name.trim()
                );
            }
            ok
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::PAGE_SIZE;

    #[test]
    fn one_frame_per_guest_memory() {
        let a = Arc::new(GuestMemory::new(8 * PAGE_SIZE).expect("memfd"));
        let b = Arc::new(GuestMemory::new(8 * PAGE_SIZE).expect("memfd"));
        let fa = frame_for(&a).expect("frame");
        assert_eq!(frame_for(&a).expect("frame"), fa);
        let fb = frame_for(&b).expect("frame");
        assert_eq!(a.frames_in_use(), 1);
        assert_eq!(b.frames_in_use(), 1);
        // Filled in: the coarse resolution is never 0 once the updater has run, and
        // the sequence count is even whenever nobody is writing.
        std::thread::sleep(CALIBRATION * 3);
        let mut page = [0u8; 72];
        b.read(fb, &mut page);
        assert_ne!(&page[64..72], &[0u8; 8]);
        assert_eq!(page[0] & 1, 0);
    }

    #[test]
    fn an_adopted_frame_is_kept_current() {
        // A restored sandbox's frame, as its image left it; adopting it must start the
        // updater (when this process has none yet) and put the frame under it.
        let mem = Arc::new(GuestMemory::new(8 * PAGE_SIZE).expect("memfd"));
        let frame = mem.alloc_frame().expect("frame");
        mem.write(frame, &[0xaa; 72]);
        adopt(&mem, frame).expect("adopt");
        assert_eq!(frame_of(&mem), Some(frame));
        std::thread::sleep(CALIBRATION * 3);
        let mut page = [0u8; 72];
        mem.read(frame, &mut page);
        assert_ne!(&page[64..72], &[0u8; 8], "the updater filled the page in");
        assert_ne!(&page[64..72], &[0xaa; 8]);
        assert_eq!(page[0] & 1, 0);
    }
}
