//! What the vvar page says: each clock as a line over the TSC, steered to follow the
//! host's clock, which NTP may slew.
//!
//! The guest computes `ns = base + ((tsc - tsc_base) × mult) >> 32` ([`Line::at`], the
//! same arithmetic as `vdso.c`). Every update keeps the line continuous: the new line
//! starts where the old one stands at the moment of the switch, so CLOCK_MONOTONIC never
//! goes back, and its slope is chosen to meet the host's clock one period later. Only a
//! lag of more than [`STEP_NS`] is closed with a jump, and only forwards.
//!
//! CLOCK_REALTIME and CLOCK_BOOTTIME are CLOCK_MONOTONIC plus an offset (the host's
//! offsets change only when its clock is stepped, never when it is slewed);
//! CLOCK_MONOTONIC_RAW has a line of its own.

use std::collections::VecDeque;

use crate::platform::kvm::tsc::host_tsc;

/// How often the sentry refreshes the lines.
pub const PERIOD_NS: u64 = 100_000_000;
/// Lag beyond which the line jumps forward instead of catching up gradually.
const STEP_NS: i128 = 1_000_000;
/// The host rate is measured over at least this long before the TSC is used.
const MIN_BASELINE_NS: u64 = 10_000_000;
/// Samples kept: the rate is the host's over the last period, so a change in NTP's
/// slew shows within one period.
const MAX_HISTORY: usize = 2;
/// Tries per host sample; the narrowest `rdtsc` bracket wins.
const SAMPLE_TRIES: usize = 5;

/// `mode` values (vvar.h).
pub const MODE_SYSCALL: u32 = 0;
pub const MODE_TSC: u32 = 1;

/// Byte offsets in the vvar page (vvar.h checks the same numbers).
pub const SEQ_OFFSET: u64 = 0;
/// The fields after the sequence count, written as one block.
pub const DATA_OFFSET: u64 = 4;
pub const DATA_LEN: usize = 68;

/// A clock as the guest extrapolates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Line {
    pub tsc_base: u64,
    pub ns: u64,
    /// Nanoseconds per TSC cycle, 32.32 fixed point.
    pub mult: u64,
}

impl Line {
    /// The clock at `tsc`, exactly as `vdso.c` computes it.
    pub fn at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_base);
        self.ns
            .wrapping_add(((delta as u128 * self.mult as u128) >> 32) as u64)
    }
}

/// The host clock's reading `ns` at TSC value `tsc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub tsc: u64,
    pub ns: u64,
}

/// Everything after the sequence count in the vvar page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VvarData {
    pub mode: u32,
    pub mono: Line,
    pub raw: Line,
    pub real_offset: u64,
    pub boot_offset: u64,
    pub coarse_res: u64,
}

impl VvarData {
    /// The bytes at [`DATA_OFFSET`] in the page (vvar.h's layout; both lines share
    /// `tsc_base`, which the updater guarantees).
    pub fn encode(&self) -> [u8; DATA_LEN] {
        let mut b = [0u8; DATA_LEN];
        let words = [
            self.mono.tsc_base,
            self.mono.ns,
            self.mono.mult,
            self.raw.ns,
            self.raw.mult,
            self.real_offset,
            self.boot_offset,
            self.coarse_res,
        ];
        b[..4].copy_from_slice(&self.mode.to_le_bytes());
        for (i, w) in words.iter().enumerate() {
            b[4 + 8 * i..12 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

/// Read a host clock in ns, if it can be read.
pub fn host_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    u64::try_from(ts.tv_sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(ts.tv_nsec).ok()?)
}

/// `clock` paired with the TSC, from the narrowest of a few `rdtsc` brackets.
fn sample(clock: libc::clockid_t) -> Option<Sample> {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..SAMPLE_TRIES {
        let before = host_tsc();
        let ns = host_ns(clock)?;
        let after = host_tsc();
        let width = after.checked_sub(before)?;
        if best.is_none_or(|(w, _)| width < w) {
            let tsc = before + width / 2;
            best = Some((width, Sample { tsc, ns }));
        }
    }
    best.map(|(_, s)| s)
}

/// `clock − CLOCK_MONOTONIC` in ns (wrapping) and the uncertainty of that estimate.
fn offset_from_mono(clock: libc::clockid_t) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    for _ in 0..SAMPLE_TRIES {
        let before = host_ns(libc::CLOCK_MONOTONIC)?;
        let other = host_ns(clock)?;
        let after = host_ns(libc::CLOCK_MONOTONIC)?;
        let width = after.checked_sub(before)?;
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((width, other.wrapping_sub(before + width / 2)));
        }
    }
    best.map(|(w, off)| (off, w))
}

/// One clock's line and the host samples it is steered by.
#[derive(Default)]
pub struct Steered {
    history: VecDeque<Sample>,
    line: Option<Line>,
}

impl Steered {
    /// Add a host sample.
    pub fn observe(&mut self, s: Sample) {
        if self
            .history
            .back()
            .is_some_and(|b| s.tsc <= b.tsc || s.ns < b.ns)
        {
            // The TSC or the host clock went backwards: start measuring again.
            self.history.clear();
        }
        self.history.push_back(s);
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
    }

    /// The host's rate in ns per cycle (32.32), measured over the history.
    fn rate(&self) -> Option<u64> {
        let (first, last) = (self.history.front()?, self.history.back()?);
        let (dns, dtsc) = (last.ns - first.ns, last.tsc - first.tsc);
        if dns < MIN_BASELINE_NS || dtsc == 0 {
            return None;
        }
        u64::try_from(((dns as u128) << 32) / dtsc as u128).ok()
    }

    /// The line to publish from TSC value `now` on: continuous with the current line
    /// at `now`, meeting the host's clock [`PERIOD_NS`] later. `None` until the host's
    /// rate is known.
    pub fn steer(&mut self, now: u64) -> Option<Line> {
        let rate = self.rate()?;
        let last = *self.history.back()?;
        // The host's clock at `now`, extrapolated from the newest sample.
        let host = Line {
            tsc_base: last.tsc,
            ns: last.ns,
            mult: rate,
        }
        .at(now);
        let line = match self.line {
            None => Line {
                tsc_base: now,
                ns: host,
                mult: rate,
            },
            Some(old) => {
                let ours = old.at(now);
                let lag = host as i128 - ours as i128;
                if lag > STEP_NS {
                    Line {
                        tsc_base: now,
                        ns: host,
                        mult: rate,
                    }
                } else {
                    // Close the lag over one period: mult = rate × (1 + lag / period).
                    let adjust = rate as i128 * lag / PERIOD_NS as i128;
                    let mult = (rate as i128 + adjust).clamp(rate as i128 / 2, rate as i128 * 2);
                    Line {
                        tsc_base: now,
                        ns: ours,
                        mult: mult as u64,
                    }
                }
            }
        };
        self.line = Some(line);
        Some(line)
    }
}

/// The host clocks the vvar page follows.
pub struct HostClocks {
    mono: Steered,
    raw: Steered,
    real_offset: Option<(u64, u64)>,
    boot_offset: Option<(u64, u64)>,
    coarse_res: u64,
}

/// Host samples taken before the vvar pages are locked for writing.
pub struct Readings {
    mono: Option<Sample>,
    raw: Option<Sample>,
    real_offset: Option<(u64, u64)>,
    boot_offset: Option<(u64, u64)>,
}

impl HostClocks {
    pub fn new() -> HostClocks {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec into `ts`.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
        HostClocks {
            mono: Steered::default(),
            raw: Steered::default(),
            real_offset: None,
            boot_offset: None,
            // The sentry's own clock_getres answers with the host's coarse resolution.
            coarse_res: if ok && ts.tv_sec == 0 && ts.tv_nsec > 0 {
                ts.tv_nsec as u64
            } else {
                4_000_000
            },
        }
    }

    /// Sample the host's clocks (slow part, done without holding anything).
    pub fn read() -> Readings {
        Readings {
            mono: sample(libc::CLOCK_MONOTONIC),
            raw: sample(libc::CLOCK_MONOTONIC_RAW),
            real_offset: offset_from_mono(libc::CLOCK_REALTIME),
            boot_offset: offset_from_mono(libc::CLOCK_BOOTTIME),
        }
    }

    /// Fold in new readings and compute the page's contents from TSC value `now` on.
    /// `tsc_usable` says whether guests read the host's TSC.
    pub fn update(&mut self, r: Readings, now: u64, tsc_usable: bool) -> VvarData {
        if let Some(s) = r.mono {
            self.mono.observe(s);
        }
        if let Some(s) = r.raw {
            self.raw.observe(s);
        }
        self.real_offset = follow_offset(self.real_offset, r.real_offset);
        self.boot_offset = follow_offset(self.boot_offset, r.boot_offset);
        let mono = self.mono.steer(now);
        let raw = self.raw.steer(now);
        let mut data = VvarData {
            mode: MODE_SYSCALL,
            coarse_res: self.coarse_res,
            ..Default::default()
        };
        if let (Some(mono), Some(raw), Some(real), Some(boot), true) =
            (mono, raw, self.real_offset, self.boot_offset, tsc_usable)
        {
            data = VvarData {
                mode: MODE_TSC,
                mono,
                raw,
                real_offset: real.0,
                boot_offset: boot.0,
                coarse_res: self.coarse_res,
            };
        }
        data
    }
}

/// Keep an offset steady against sampling noise; follow it when the host clock was
/// stepped (the change exceeds what the two estimates' uncertainty explains).
fn follow_offset(current: Option<(u64, u64)>, new: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (current, new) {
        (Some((cur, cur_w)), Some((off, w))) => {
            let moved = (off.wrapping_sub(cur) as i64).unsigned_abs();
            if moved > cur_w + w + 1_000 {
                Some((off, w))
            } else if w < cur_w {
                // A tighter estimate of the same offset: take it only if it moves the
                // clock by less than a microsecond.
                Some((if moved < 1_000 { off } else { cur }, w.min(cur_w)))
            } else {
                current
            }
        }
        (None, new) => new,
        (current, None) => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2.5 GHz: 0.4 ns per cycle.
    const RATE: u64 = (4u64 << 32) / 10;

    /// A host clock whose rate is RATE × (1 + skew), changed at will.
    struct Host {
        tsc: u64,
        ns: u64,
        skew_ppm: i64,
    }

    impl Host {
        fn at(&self, tsc: u64) -> u64 {
            let d = (((tsc - self.tsc) as u128 * RATE as u128) >> 32) as i128;
            (self.ns as i128 + d + d * self.skew_ppm as i128 / 1_000_000) as u64
        }
        fn set_skew(&mut self, tsc: u64, skew_ppm: i64) {
            self.ns = self.at(tsc);
            self.tsc = tsc;
            self.skew_ppm = skew_ppm;
        }
    }

    #[test]
    fn line_matches_the_vdso_arithmetic() {
        let l = Line {
            tsc_base: 1000,
            ns: 5,
            mult: 3 << 31, // 1.5 ns per cycle
        };
        assert_eq!(l.at(1000), 5);
        assert_eq!(l.at(1002), 8);
        // A TSC a hair behind tsc_base reads as tsc_base.
        assert_eq!(l.at(10), 5);
    }

    #[test]
    fn needs_a_baseline_before_publishing() {
        let mut s = Steered::default();
        s.observe(Sample { tsc: 0, ns: 1 });
        assert!(s.steer(10).is_none());
    }

    #[test]
    fn follows_a_slewing_host_without_going_back() {
        let mut s = Steered::default();
        let cycles_per_period = 250_000_000u64; // 100 ms at 2.5 GHz
        let mut tsc = 1u64 << 40;
        let mut host = Host {
            tsc,
            ns: 1_000_000_000,
            skew_ppm: 0,
        };
        let mut previous: Option<Line> = None;
        let mut worst = 0i128;
        for step in 0..200 {
            // NTP slews the host: 500 ppm fast for a while, then 300 ppm slow.
            match step {
                50 => host.set_skew(tsc - 7_000_000, 500),
                120 => host.set_skew(tsc - 7_000_000, -300),
                _ => {}
            }
            s.observe(Sample {
                tsc,
                ns: host.at(tsc),
            });
            let now = tsc + 1000;
            let line = s.steer(now);
            if let (Some(old), Some(new)) = (previous, line) {
                assert_eq!(new.at(now), old.at(now), "discontinuous at step {step}");
            }
            if let Some(line) = line {
                if ![50, 51, 52, 120, 121, 122].contains(&step) {
                    for at in [now + cycles_per_period / 2, now + cycles_per_period] {
                        let err = line.at(at) as i128 - host.at(at) as i128;
                        worst = worst.max(err.abs());
                    }
                }
                previous = Some(line);
            }
            tsc += cycles_per_period;
        }
        assert!(worst < 1_000, "off by {worst} ns");
    }

    #[test]
    fn steps_forward_after_a_long_lag() {
        let mut s = Steered::default();
        s.observe(Sample { tsc: 0, ns: 0 });
        s.observe(Sample {
            tsc: 250_000_000,
            ns: 100_000_000,
        });
        let first = s.steer(250_000_000).expect("line");
        // The host clock is 5 ms ahead of the rate we measured.
        s.observe(Sample {
            tsc: 500_000_000,
            ns: 205_000_000,
        });
        let second = s.steer(500_000_000).expect("line");
        assert!(second.at(500_000_000) > first.at(500_000_000));
        assert!(second.at(500_000_000).abs_diff(205_000_000) < 2_000_000);
    }

    #[test]
    fn offsets_ignore_noise_and_follow_steps() {
        let cur = Some((1_000_000u64, 100u64));
        assert_eq!(follow_offset(cur, Some((1_000_050, 100))), cur);
        assert_eq!(
            follow_offset(cur, Some((2_000_000, 100))),
            Some((2_000_000, 100))
        );
        assert_eq!(follow_offset(None, Some((5, 1))), Some((5, 1)));
        assert_eq!(follow_offset(cur, None), cur);
    }

    #[test]
    fn encoding_follows_vvar_h() {
        let d = VvarData {
            mode: MODE_TSC,
            mono: Line {
                tsc_base: 1,
                ns: 2,
                mult: 3,
            },
            raw: Line {
                tsc_base: 1,
                ns: 4,
                mult: 5,
            },
            real_offset: 6,
            boot_offset: 7,
            coarse_res: 8,
        };
        let b = d.encode();
        let word = |off: usize| u64::from_le_bytes(b[off - 4..off + 4].try_into().expect("8"));
        assert_eq!(u32::from_le_bytes(b[..4].try_into().expect("4")), MODE_TSC);
        assert_eq!(
            [
                word(8),
                word(16),
                word(24),
                word(32),
                word(40),
                word(48),
                word(56),
                word(64)
            ],
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn host_clocks_publish_tsc_mode_once_calibrated() {
        let mut clocks = HostClocks::new();
        let first = clocks.update(HostClocks::read(), host_tsc(), true);
        assert_eq!(first.mode, MODE_SYSCALL);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = host_tsc();
        let data = clocks.update(HostClocks::read(), now, true);
        assert_eq!(data.mode, MODE_TSC);
        let host = host_ns(libc::CLOCK_MONOTONIC).expect("clock");
        let ours = data.mono.at(host_tsc());
        assert!(ours.abs_diff(host) < 1_000_000, "{ours} vs {host}");
        let untrusted = clocks.update(HostClocks::read(), host_tsc(), false);
        assert_eq!(untrusted.mode, MODE_SYSCALL);
    }
}
