//! Futexes: waiting on a 32-bit word in guest memory, and waking those waiters.
//!
//! Waiters are keyed by (address space, address), or, for a futex not marked private
//! whose word is in a shared mapping (MAP_SHARED memory after fork, a file mapped by
//! several processes: process-shared semaphores and mutexes), by the word's guest
//! physical address, the same in every process, as Linux keys shared futexes by page.
//! The word is compared under the table lock, so a wake between the compare and the
//! sleep is never lost (the waiter is already queued).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::abi::Errno;
use crate::mm::MemoryManager;
use crate::waiter::{Waiter, Wake};

type Key = (usize, u64);

struct Entry {
    waiter: Arc<Waiter>,
    bitset: u32,
    woken: Arc<AtomicBool>,
}

/// The sandbox's futex waiters.
#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<Key, Vec<Entry>>>,
}

/// Keys of words in shared memory: no address space is at this address.
const PHYSICAL: usize = usize::MAX;

/// A futex word: where it is, and whether it may be shared with other processes (the
/// caller did not say FUTEX_PRIVATE_FLAG).
#[derive(Clone, Copy)]
pub struct Word<'a> {
    pub mm: &'a MemoryManager,
    pub addr: u64,
    pub shared: bool,
}

impl Word<'_> {
    /// The same kind of word at another address (a requeue's target).
    fn at(self, addr: u64) -> Self {
        Word { addr, ..self }
    }

    fn key(self) -> Result<Key, Errno> {
        if self.shared {
            if let Some(gpa) = self.mm.shared_physical(self.addr)? {
                return Ok((PHYSICAL, gpa));
            }
        }
        Ok((self.mm as *const MemoryManager as usize, self.addr))
    }
}

impl FutexTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Entry>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// FUTEX_WAIT(_BITSET): sleep while `*addr == val`, until woken, `deadline` or an
    /// interruption.
    pub fn wait(
        &self,
        word: Word<'_>,
        val: u32,
        bitset: u32,
        deadline: Option<Instant>,
        waiter: &Arc<Waiter>,
    ) -> Result<(), Errno> {
        let (mm, addr) = (word.mm, word.addr);
        if !addr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        if bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let k = word.key()?;
        let woken = Arc::new(AtomicBool::new(false));
        {
            let mut q = self.lock();
            if mm.read_u32(addr)? != val {
                return Err(Errno::EAGAIN);
            }
            waiter.reset();
            q.entry(k).or_default().push(Entry {
                waiter: waiter.clone(),
                bitset,
                woken: woken.clone(),
            });
        }
        loop {
            let wake = waiter.wait(deadline);
            if woken.load(Ordering::SeqCst) {
                return Ok(());
            }
            if wake == Wake::Notified {
                continue;
            }
            // Timed out or interrupted: leave the queue, unless a wake got us first.
            let mut q = self.lock();
            if woken.load(Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(list) = q.get_mut(&k) {
                list.retain(|e| !Arc::ptr_eq(&e.woken, &woken));
                if list.is_empty() {
                    q.remove(&k);
                }
            }
            return Err(if wake == Wake::TimedOut {
                Errno::ETIMEDOUT
            } else {
                Errno::EINTR
            });
        }
    }

    /// FUTEX_WAKE(_BITSET): wake up to `n` waiters whose bitset intersects `bitset`.
    pub fn wake(&self, word: Word<'_>, n: u32, bitset: u32) -> Result<u64, Errno> {
        if !word.addr.is_multiple_of(4) || bitset == 0 {
            return Err(Errno::EINVAL);
        }
        let k = word.key()?;
        let mut q = self.lock();
        Ok(Self::wake_locked(&mut q, k, n, bitset))
    }

    fn wake_locked(q: &mut HashMap<Key, Vec<Entry>>, k: Key, n: u32, bitset: u32) -> u64 {
        let Some(list) = q.get_mut(&k) else { return 0 };
        let mut woken = 0u64;
        list.retain(|e| {
            if woken < n as u64 && e.bitset & bitset != 0 {
                e.woken.store(true, Ordering::SeqCst);
                e.waiter.notify();
                woken += 1;
                false
            } else {
                true
            }
        });
        if list.is_empty() {
            q.remove(&k);
        }
        woken
    }

    /// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: wake `n_wake` waiters on `addr`, move up to
    /// `n_move` of the rest to `addr2`. With `expected`, fail with EAGAIN unless
    /// `*addr == expected`.
    pub fn requeue(
        &self,
        word: Word<'_>,
        addr2: u64,
        n_wake: u32,
        n_move: u32,
        expected: Option<u32>,
    ) -> Result<u64, Errno> {
        let (mm, addr) = (word.mm, word.addr);
        if !addr.is_multiple_of(4) || !addr2.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        let (k1, k2) = (word.key()?, word.at(addr2).key()?);
        let mut q = self.lock();
        if let Some(v) = expected {
            if mm.read_u32(addr)? != v {
                return Err(Errno::EAGAIN);
            }
        }
        let woken = Self::wake_locked(&mut q, k1, n_wake, u32::MAX);
        if k1 == k2 {
            return Ok(woken);
        }
        let mut moved = Vec::new();
        if let Some(list) = q.get_mut(&k1) {
            let n = (n_move as usize).min(list.len());
            moved.extend(list.drain(..n));
            if list.is_empty() {
                q.remove(&k1);
            }
        }
        let count = moved.len() as u64;
        if !moved.is_empty() {
            q.entry(k2).or_default().extend(moved);
        }
        Ok(woken + count)
    }
}
