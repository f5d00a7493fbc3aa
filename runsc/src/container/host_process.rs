//! Host processes named by pid and start time: is the sandbox process we started still
//! alive, or has its pid been reused by someone else?

use std::time::{Duration, Instant};

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The one-letter state (`R`, `S`, `Z`, …).
    pub state: char,
    /// Start time after boot, in clock ticks (field 22).
    pub start_time: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) comes field 4; start time is field 22.
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// `/proc/PID/stat` of a live process; `None` if there is no such process.
pub fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The start time to record for `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Whether `pid` is still the process that started at `start_time` and has not exited
/// (a zombie waiting for its parent counts as gone). A `start_time` of 0 trusts the pid.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    match stat(pid) {
        Some(s) => {
            s.state != 'Z' && s.state != 'X' && (start_time == 0 || s.start_time == start_time)
        }
        None => false,
    }
}

/// Sends `signal` to `pid` if it is still the process that started at `start_time`.
pub fn signal(pid: i32, start_time: u64, signal: i32) -> std::io::Result<()> {
    if !is_alive(pid, start_time) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) takes plain integers; the pid was checked to be ours just above
    // (a pid reused in between is the inherent race of signalling by pid).
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `pid` (started at `start_time`) is gone, for at most `timeout`.
/// Returns whether it went.
pub fn wait_gone(pid: i32, start_time: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid, start_time) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                start_time: 98765
            })
        );
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("our own stat");
        assert!(is_alive(me, start));
        assert!(is_alive(me, 0));
        assert!(
            !is_alive(me, start + 1),
            "a different start time is another process"
        );
        assert!(!is_alive(0, 0));
        assert!(!is_alive(i32::MAX, 0));
    }
}
