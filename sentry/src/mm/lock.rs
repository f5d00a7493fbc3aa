//! mlock and friends (mm/mlock.c). The sentry never pages guest memory out, so locking
//! adds no guarantee the guest lacks; what remains of Linux's behaviour is checked
//! here: the range must be mapped, and locking faults it in, as callers that mlock a
//! buffer to avoid later faults expect.

use super::{Access, MemoryManager};
use crate::abi::Errno;
use crate::arch::{page_up, PAGE_SIZE, USER_ADDR_END};

pub const MLOCK_ONFAULT: u64 = 1;
pub const MCL_CURRENT: u64 = 1;
pub const MCL_FUTURE: u64 = 2;
pub const MCL_ONFAULT: u64 = 4;

impl MemoryManager {
    /// mlock/mlock2/munlock: `[addr, addr+len)` rounded out to pages must be mapped
    /// (ENOMEM). Locking without MLOCK_ONFAULT populates the accessible pages.
    pub fn mlock(&self, addr: u64, len: u64, populate: bool) -> Result<(), Errno> {
        let start = addr & !(PAGE_SIZE - 1);
        let end = addr
            .checked_add(len)
            .and_then(page_up)
            .filter(|e| *e <= USER_ADDR_END)
            .ok_or(Errno::ENOMEM)?;
        if start == end {
            return Ok(());
        }
        let st = self.state();
        if !st.vmas.covers(start, end) {
            return Err(Errno::ENOMEM);
        }
        if !populate {
            return Ok(());
        }
        let mut page = start;
        while page < end {
            let accessible = st.vmas.find(page).is_some_and(|v| !v.perms.is_none());
            if accessible && self.space.translate(page).is_none() {
                // Past a mapped file's end (SIGBUS on touch) or out of memory: Linux
                // stops populating there too, and the call still succeeds.
                if self.fault_locked(&st, page, Access::Read).is_err() {
                    break;
                }
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// mlockall(MCL_CURRENT): every mapping populated.
    pub fn mlock_all(&self) {
        let areas: Vec<(u64, u64)> = self
            .state()
            .vmas
            .iter()
            .filter(|v| !v.perms.is_none())
            .map(|v| (v.start, v.end))
            .collect();
        for (start, end) in areas {
            // An area unmapped since the list was taken is skipped.
            let _ = self.mlock(start, end - start, true);
        }
    }
}
