//! CPU time of guest threads and processes (getrusage, times, CPU clocks, /proc stat).
//!
//! Every guest thread runs on its own host thread of the sentry, so a guest thread's CPU
//! time is its host thread's: the guest's own instructions (time in KVM_RUN counts as
//! the host thread's user time) plus the sentry's work on its behalf. A process's time
//! is what its ended threads used (recorded exactly as each leaves, from
//! getrusage(RUSAGE_THREAD) on the leaving host thread) plus its live threads' host CPU
//! clocks, read with clock_gettime on the clock id of each (any thread of the sentry may
//! read any other's). The host gives a live thread's user/system split only to the
//! thread itself, so other live threads' time counts as user time.
//!
//! Nothing here survives a checkpoint: a restored process starts its count again.

use std::time::Duration;

/// Clock ticks per second (USER_HZ), the unit of times() and /proc/PID/stat.
pub const USER_HZ: u64 = 100;

/// User and system CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    pub fn total(self) -> Duration {
        self.user.saturating_add(self.system)
    }

    /// Both times added, saturating (a guest cannot overflow them, but a sum never wraps).
    pub fn plus(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_add(other.user),
            system: self.system.saturating_add(other.system),
        }
    }

    /// The calling host thread's own time, exact and split (getrusage(RUSAGE_THREAD)).
    pub fn own_thread() -> CpuTimes {
        // SAFETY: a zeroed rusage is valid output space for getrusage.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one struct rusage into `ru`.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return CpuTimes::default();
        }
        CpuTimes {
            user: from_timeval(ru.ru_utime),
            system: from_timeval(ru.ru_stime),
        }
    }
}

/// `d` in clock ticks, truncated as Linux's nsec_to_clock_t does.
pub fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(USER_HZ) / 1_000_000_000).min(u128::from(u64::MAX)) as u64
}

/// A `struct timeval` as the guest reads it: seconds and microseconds.
pub fn timeval(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
    b[8..].copy_from_slice(&i64::from(d.subsec_micros()).to_le_bytes());
    b
}

fn from_timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64)
        + Duration::from_micros(t.tv_usec.clamp(0, 999_999) as u64)
}

/// A host thread's CPU clock (pthread_getcpuclockid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The calling host thread's clock.
    pub fn current() -> Option<ThreadClock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self names the calling thread, which is alive; the call writes
        // one clockid_t into `id`.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        (rc == 0).then_some(ThreadClock(id))
    }

    /// The thread's CPU time so far. Only meaningful while the host thread lives: after
    /// it ends, its id may name another thread (the group reads a member's clock only
    /// under its lock, and a member leaves that list before its thread ends).
    pub fn read(self) -> Option<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`.
        if unsafe { libc::clock_gettime(self.0, &mut ts) } != 0 {
            return None;
        }
        Some(Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        ))
    }
}

/// What one live thread contributes to its process's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The calling thread's own, split into user and system.
    Split(CpuTimes),
    /// Another thread's clock: a total, counted as user time.
    Total(Duration),
}

/// A process's CPU time bookkeeping, kept under its thread group's members lock.
#[derive(Default)]
pub struct GroupClocks {
    /// What the threads that have left used.
    dead: CpuTimes,
    /// The clocks of the live threads that have started running (by tid).
    live: Vec<(i32, ThreadClock)>,
}

impl GroupClocks {
    /// Thread `tid` runs on the host thread whose clock is `clock`.
    pub fn start(&mut self, tid: i32, clock: ThreadClock) {
        self.live.retain(|(t, _)| *t != tid);
        self.live.push((tid, clock));
    }

    /// Thread `tid` leaves: its time so far becomes the dead threads'. Exact when the
    /// leaving thread calls it (as it does: run_thread); a member that never ran has no
    /// clock and no time.
    pub fn retire(&mut self, tid: i32) {
        let Some(i) = self.live.iter().position(|(t, _)| *t == tid) else {
            return;
        };
        let (_, clock) = self.live.swap_remove(i);
        self.dead = self.dead.plus(sample(clock).into_times());
    }

    /// The process's time now: the dead threads' and every live one's.
    pub fn total(&self) -> CpuTimes {
        combine(self.dead, self.live.iter().map(|(_, c)| sample(*c)))
    }

    /// Live thread `tid`'s time, if it runs.
    pub fn thread(&self, tid: i32) -> Option<CpuTimes> {
        let (_, clock) = self.live.iter().find(|(t, _)| *t == tid)?;
        Some(sample(*clock).into_times())
    }
}

impl Sample {
    fn into_times(self) -> CpuTimes {
        match self {
            Sample::Split(t) => t,
            Sample::Total(d) => CpuTimes {
                user: d,
                system: Duration::ZERO,
            },
        }
    }
}

/// Read `clock`: the exact split if it is the caller's own, its total otherwise.
fn sample(clock: ThreadClock) -> Sample {
    if ThreadClock::current() == Some(clock) {
        Sample::Split(CpuTimes::own_thread())
    } else {
        // A clock that cannot be read (the host thread is ending) adds nothing.
        Sample::Total(clock.read().unwrap_or_default())
    }
}

/// The dead threads' time plus the live threads' samples.
pub fn combine(dead: CpuTimes, live: impl Iterator<Item = Sample>) -> CpuTimes {
    live.fold(dead, |acc, s| acc.plus(s.into_times()))
}

/// What a CPU clock measures (Linux's CPUCLOCK_PROF, _VIRT, _SCHED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuClockKind {
    /// User and system time, at tick resolution.
    Prof,
    /// User time only, at tick resolution.
    Virt,
    /// The scheduler's runtime, to the nanosecond (what the fixed ids measure).
    Sched,
}

/// What a CPU clock id names (Linux's clock_getcpuclockid/pthread_getcpuclockid
/// encoding: `(~pid << 3) | per-thread bit (4) | kind (0 PROF, 1 VIRT, 2 SCHED)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuClockId {
    /// The pid or tid (0: the caller's own).
    pub id: i32,
    pub per_thread: bool,
    pub kind: CpuClockKind,
}

impl CpuClockId {
    /// Decode a dynamic clock id; None if it is not a valid CPU clock id.
    pub fn decode(clock: i32) -> Option<CpuClockId> {
        if clock >= 0 {
            return None;
        }
        let kind = match clock & 3 {
            0 => CpuClockKind::Prof,
            1 => CpuClockKind::Virt,
            2 => CpuClockKind::Sched,
            // CPUCLOCK_MAX: invalid (Linux's clock fds use it with the per-thread bit).
            _ => return None,
        };
        Some(CpuClockId {
            id: !(clock >> 3),
            per_thread: clock & 4 != 0,
            kind,
        })
    }

    /// The reading this clock gives of `times`.
    pub fn reading(self, times: CpuTimes) -> Duration {
        if self.kind == CpuClockKind::Virt {
            times.user
        } else {
            times.total()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn live_clocks_count_as_user_time_and_the_callers_split_is_kept() {
        let dead = CpuTimes {
            user: ms(100),
            system: ms(10),
        };
        let own = CpuTimes {
            user: ms(5),
            system: ms(7),
        };
        let sum = combine(
            dead,
            [Sample::Total(ms(200)), Sample::Split(own)].into_iter(),
        );
        assert_eq!(
            sum,
            CpuTimes {
                user: ms(305),
                system: ms(17)
            }
        );
        assert_eq!(sum.total(), ms(322));
    }

    #[test]
    fn ticks_truncate_at_user_hz() {
        assert_eq!(ticks(ms(0)), 0);
        assert_eq!(ticks(ms(9)), 0);
        assert_eq!(ticks(ms(10)), 1);
        assert_eq!(ticks(Duration::from_secs(3) + ms(999)), 399);
    }

    #[test]
    fn timeval_is_seconds_and_microseconds() {
        let b = timeval(Duration::new(2, 345_678_901));
        assert_eq!(i64::from_le_bytes(b[..8].try_into().unwrap()), 2);
        assert_eq!(i64::from_le_bytes(b[8..].try_into().unwrap()), 345_678);
    }

    #[test]
    fn cpu_clock_ids_decode_as_linux_makes_them() {
        // clock_getcpuclockid(42): MAKE_PROCESS_CPUCLOCK(42, CPUCLOCK_SCHED).
        let process = (!42i32 << 3) | 2;
        assert_eq!(
            CpuClockId::decode(process),
            Some(CpuClockId {
                id: 42,
                per_thread: false,
                kind: CpuClockKind::Sched
            })
        );
        // pthread_getcpuclockid of tid 7: per-thread, SCHED.
        let thread = (!7i32 << 3) | 4 | 2;
        assert_eq!(
            CpuClockId::decode(thread),
            Some(CpuClockId {
                id: 7,
                per_thread: true,
                kind: CpuClockKind::Sched
            })
        );
        // pid 0 is the caller; VIRT is user time only.
        let virt = CpuClockId::decode((!0i32 << 3) | 1).unwrap();
        assert_eq!((virt.id, virt.kind), (0, CpuClockKind::Virt));
        let t = CpuTimes {
            user: ms(3),
            system: ms(4),
        };
        assert_eq!(virt.reading(t), ms(3));
        assert_eq!(CpuClockId::decode(process).unwrap().reading(t), ms(7));
        // Static clock ids and kind 3 are not CPU clocks.
        assert_eq!(CpuClockId::decode(2), None);
        assert_eq!(CpuClockId::decode((!1i32 << 3) | 3), None);
    }

    #[test]
    fn a_leaving_thread_moves_its_time_to_the_dead() {
        let mut g = GroupClocks::default();
        let me = ThreadClock::current().unwrap();
        g.start(1, me);
        // Burn a little so the clock is not zero.
        let start = std::time::Instant::now();
        while start.elapsed() < ms(5) {
            std::hint::black_box(0u64);
        }
        assert!(g.thread(1).unwrap().total() > Duration::ZERO);
        g.retire(1);
        assert!(g.thread(1).is_none());
        let after = g.total();
        assert!(after.total() > Duration::ZERO);
        // Once dead, the time no longer grows with the host thread's clock.
        let start = std::time::Instant::now();
        while start.elapsed() < ms(5) {
            std::hint::black_box(0u64);
        }
        assert_eq!(g.total(), after);
        // A member that never ran leaves nothing.
        g.retire(2);
        assert_eq!(g.total(), after);
    }
}
