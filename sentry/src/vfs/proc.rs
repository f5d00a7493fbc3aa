//! A minimal /proc, built from a snapshot of the calling task taken when the walk
//! enters /proc (the vfs never sees a task: the syscall layer builds the snapshot).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::file::{DirEntry, FileDescription, Stat};
use super::node::LinkTarget;
use super::tmpfs::{now, seek_regular};
use crate::abi::Errno;
use crate::state::files::{ContentFileState, FileState, StatState};
use crate::state::{SaveContext, StateError};

/// st_dev of /proc (0:22, as on a typical system).
pub const PROC_DEV: u64 = 22;

/// The other processes /proc lists (the caller's container's), made when asked for: all
/// of them, or the one with the pid given.
pub type Others = Arc<dyn Fn(Option<i32>) -> Vec<Arc<ProcSnapshot>> + Send + Sync>;

/// What /proc shows of the calling process.
#[derive(Clone, Default)]
pub struct ProcSnapshot {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub tid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Real, effective and saved user and group ids, and supplementary groups
    /// (/proc/PID/status).
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    pub groups: Vec<u32>,
    pub umask: u32,
    /// Executable path (/proc/self/exe).
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    /// argv joined with NULs, each terminated (as /proc/self/cmdline).
    pub cmdline: Vec<u8>,
    pub environ: Vec<u8>,
    pub comm: Vec<u8>,
    /// /proc/self/maps text.
    pub maps: String,
    pub vm_size: u64,
    /// Bytes resident now and at most (VmRSS, VmHWM).
    pub rss: u64,
    pub rss_peak: u64,
    pub fds: Vec<(i32, Arc<dyn FileDescription>)>,
    pub hostname: Vec<u8>,
    pub release: Vec<u8>,
    pub version: Vec<u8>,
    pub uptime: Duration,
    /// Bytes of guest memory, and how many of them are free (/proc/meminfo).
    pub mem_total: u64,
    pub mem_free: u64,
    /// The text of /proc/cpuinfo (captured when the sandbox was made).
    pub cpuinfo: Arc<[u8]>,
    /// Threads and processes created since boot (/proc/stat's `processes`).
    pub forks: u64,
    /// Threads of the process.
    pub threads: usize,
    /// Every thread sleeps in the sentry (state S; R otherwise). The reader is awake.
    pub asleep: bool,
    /// The container's other processes, as snapshots of their own (None in those).
    pub others: Option<Others>,
    /// The process's CPU time and start (/proc/PID/stat).
    pub cpu: ProcCpu,
}

/// A process's CPU time, its ended children's, and when it started.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcCpu {
    pub utime: Duration,
    pub stime: Duration,
    pub cutime: Duration,
    pub cstime: Duration,
    /// Since the sandbox's boot.
    pub start: Duration,
}

/// A /proc entry: `rel` is the path under /proc with the process directory spelled "pid".
#[derive(Clone)]
pub struct ProcNode {
    pub snap: Arc<ProcSnapshot>,
    pub rel: Vec<u8>,
    /// The container's own mounts, as /proc/self/mounts lines (after the sandbox's).
    pub mounts: Arc<Vec<u8>>,
}

enum Shape {
    Dir,
    File,
    Link,
}

const ROOT_FILES: [&str; 9] = [
    "cpuinfo",
    "stat",
    "meminfo",
    "version",
    "uptime",
    "loadavg",
    "filesystems",
    "mounts",
    "sys",
];
const PID_FILES: [&str; 12] = [
    "exe", "cwd", "root", "fd", "maps", "cmdline", "status", "comm", "environ", "stat", "statm",
    "mounts",
];

impl ProcNode {
    pub fn root(snap: Arc<ProcSnapshot>) -> ProcNode {
        ProcNode::root_with_mounts(snap, Arc::default())
    }

    /// The root of a /proc whose mounts file lists `mounts` too.
    pub fn root_with_mounts(snap: Arc<ProcSnapshot>, mounts: Arc<Vec<u8>>) -> ProcNode {
        ProcNode {
            snap,
            rel: Vec::new(),
            mounts,
        }
    }

    fn shape(&self) -> Shape {
        match self.rel.as_slice() {
            b"" | b"pid" | b"pid/fd" | b"sys" | b"sys/kernel" | b"sys/vm" => Shape::Dir,
            b"self" | b"mounts" | b"pid/exe" | b"pid/cwd" | b"pid/root" => Shape::Link,
            r if r.starts_with(b"pid/fd/") => Shape::Link,
            _ => Shape::File,
        }
    }

    pub fn file_type(&self) -> u32 {
        match self.shape() {
            Shape::Dir => libc::S_IFDIR,
            Shape::File => libc::S_IFREG,
            Shape::Link => libc::S_IFLNK,
        }
    }

    /// The names in this directory and the `rel` each leads to.
    fn children(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let pid = self.snap.pid.to_string().into_bytes();
        let named = |names: &[&str], base: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
            names
                .iter()
                .map(|n| {
                    (
                        n.as_bytes().to_vec(),
                        super::path::join_rel(base, n.as_bytes()),
                    )
                })
                .collect()
        };
        match self.rel.as_slice() {
            b"" => {
                let mut v = vec![(b"self".to_vec(), b"self".to_vec()), (pid, b"pid".to_vec())];
                v.extend(named(&ROOT_FILES, b""));
                v
            }
            b"pid" => named(&PID_FILES, b"pid"),
            b"pid/fd" => self
                .snap
                .fds
                .iter()
                .map(|(fd, _)| {
                    let n = fd.to_string().into_bytes();
                    (n.clone(), super::path::join_rel(b"pid/fd", &n))
                })
                .collect(),
            b"sys" => named(&["kernel", "vm"], b"sys"),
            b"sys/kernel" => named(
                &["hostname", "osrelease", "ostype", "pid_max"],
                b"sys/kernel",
            ),
            b"sys/vm" => named(&["overcommit_memory", "max_map_count"], b"sys/vm"),
            _ => Vec::new(),
        }
    }

    /// Another process of the caller's container, by its pid as a /proc name.
    fn other(&self, name: &[u8]) -> Option<Arc<ProcSnapshot>> {
        let pid: i32 = std::str::from_utf8(name).ok()?.parse().ok()?;
        if pid == self.snap.pid {
            return None;
        }
        let others = self.snap.others.as_ref()?;
        others(Some(pid)).into_iter().next()
    }

    pub fn lookup(&self, name: &[u8]) -> Option<ProcNode> {
        if !matches!(self.shape(), Shape::Dir) {
            return None;
        }
        if self.rel.is_empty() {
            if let Some(snap) = self.other(name) {
                return Some(ProcNode {
                    snap,
                    rel: b"pid".to_vec(),
                    mounts: self.mounts.clone(),
                });
            }
        }
        self.children()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, rel)| ProcNode {
                snap: self.snap.clone(),
                rel,
                mounts: self.mounts.clone(),
            })
    }

    fn ino(&self) -> u64 {
        // FNV-1a of the path: stable for one path, distinct enough within /proc.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.path() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        (h >> 1) | 1
    }

    /// The path shown to the guest.
    pub fn path(&self) -> Vec<u8> {
        let mut p = b"/proc".to_vec();
        if let Some(rest) = self.rel.strip_prefix(b"pid") {
            p.push(b'/');
            p.extend_from_slice(self.snap.pid.to_string().as_bytes());
            p.extend_from_slice(rest);
        } else if !self.rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(&self.rel);
        }
        p
    }

    pub fn stat(&self) -> Stat {
        let (mode, nlink) = match self.shape() {
            Shape::Dir => (libc::S_IFDIR | 0o555, 2),
            Shape::File => (libc::S_IFREG | 0o444, 1),
            Shape::Link => (libc::S_IFLNK | 0o777, 1),
        };
        let t = now();
        Stat {
            dev: PROC_DEV,
            ino: self.ino(),
            nlink,
            mode,
            uid: self.snap.uid,
            gid: self.snap.gid,
            blksize: 1024,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        }
    }

    pub fn link_target(&self) -> Option<LinkTarget> {
        let s = &self.snap;
        match self.rel.as_slice() {
            b"self" => Some(LinkTarget::Path(s.pid.to_string().into_bytes())),
            b"mounts" => Some(LinkTarget::Path(b"self/mounts".to_vec())),
            b"pid/exe" => Some(LinkTarget::Path(s.exe.clone())),
            b"pid/cwd" => Some(LinkTarget::Path(s.cwd.clone())),
            b"pid/root" => Some(LinkTarget::Path(b"/".to_vec())),
            r => {
                let n: i32 = std::str::from_utf8(r.strip_prefix(b"pid/fd/")?)
                    .ok()?
                    .parse()
                    .ok()?;
                let file = s.fds.iter().find(|(fd, _)| *fd == n)?.1.clone();
                let shown = file.path().into_bytes();
                Some(LinkTarget::File { file, shown })
            }
        }
    }

    /// Directory listing with "." and "..".
    pub fn list(&self) -> Vec<DirEntry> {
        let parent_ino = match self.rel.rsplit_once_slash() {
            Some(parent) => ProcNode {
                snap: self.snap.clone(),
                rel: parent.to_vec(),
                mounts: self.mounts.clone(),
            }
            .ino(),
            None => 1,
        };
        let mut out = vec![
            DirEntry {
                ino: self.ino(),
                kind: libc::DT_DIR,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: parent_ino,
                kind: libc::DT_DIR,
                name: b"..".to_vec(),
            },
        ];
        for (name, rel) in self.children() {
            let n = ProcNode {
                snap: self.snap.clone(),
                rel,
                mounts: self.mounts.clone(),
            };
            let kind = match n.shape() {
                Shape::Dir => libc::DT_DIR,
                Shape::File => libc::DT_REG,
                Shape::Link => libc::DT_LNK,
            };
            out.push(DirEntry {
                ino: n.ino(),
                kind,
                name,
            });
        }
        if self.rel.is_empty() {
            let others = self
                .snap
                .others
                .as_ref()
                .map(|f| f(None))
                .unwrap_or_default();
            for snap in others {
                let name = snap.pid.to_string().into_bytes();
                let n = ProcNode {
                    snap,
                    rel: b"pid".to_vec(),
                    mounts: self.mounts.clone(),
                };
                out.push(DirEntry {
                    ino: n.ino(),
                    kind: libc::DT_DIR,
                    name,
                });
            }
            // Processes after the files, in pid order, as Linux lists them.
            let pid_of = |e: &DirEntry| std::str::from_utf8(&e.name).ok()?.parse::<i32>().ok();
            out.sort_by_key(|e| pid_of(e).map_or((0, 0), |p| (1, p)));
        }
        out
    }

    /// The text of a /proc file, generated now from the snapshot.
    pub fn content(&self) -> Vec<u8> {
        let s = &self.snap;
        let text = |t: String| t.into_bytes();
        match self.rel.as_slice() {
            b"cpuinfo" => s.cpuinfo.to_vec(),
            b"meminfo" => meminfo(s.mem_total, s.mem_free),
            b"stat" => stat(s, sandbox_cpu_time()),
            b"version" => {
                let mut v = b"Linux version ".to_vec();
                v.extend_from_slice(&s.release);
                v.extend_from_slice(b" (root@nanovisor) (gcc) ");
                v.extend_from_slice(&s.version);
                v.push(b'\n');
                v
            }
            b"uptime" => {
                let u = s.uptime;
                text(format!(
                    "{}.{:02} 0.00\n",
                    u.as_secs(),
                    u.subsec_millis() / 10
                ))
            }
            b"loadavg" => text(format!("0.00 0.00 0.00 1/1 {}\n", s.pid)),
            b"filesystems" => b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\toverlay\n".to_vec(),
            b"pid/mounts" => {
                let mut m = b"none / overlay rw,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\ntmpfs /dev tmpfs rw,nosuid 0 0\n".to_vec();
                m.extend_from_slice(&self.mounts);
                m
            }
            b"pid/maps" => s.maps.clone().into_bytes(),
            b"pid/cmdline" => s.cmdline.clone(),
            b"pid/environ" => s.environ.clone(),
            b"pid/comm" => {
                let mut c = s.comm.clone();
                c.push(b'\n');
                c
            }
            b"pid/status" => self.status(),
            b"pid/stat" => self.stat_line(),
            b"pid/statm" => {
                let (size, resident) = (s.vm_size / 4096, s.rss / 4096);
                text(format!("{size} {resident} 0 0 0 {size} 0\n"))
            }
            b"sys/kernel/hostname" => {
                let mut h = s.hostname.clone();
                h.push(b'\n');
                h
            }
            b"sys/kernel/osrelease" => {
                let mut r = s.release.clone();
                r.push(b'\n');
                r
            }
            b"sys/kernel/ostype" => b"Linux\n".to_vec(),
            b"sys/kernel/pid_max" => b"4194304\n".to_vec(),
            b"sys/vm/overcommit_memory" => b"0\n".to_vec(),
            b"sys/vm/max_map_count" => b"65530\n".to_vec(),
            _ => Vec::new(),
        }
    }

    fn status(&self) -> Vec<u8> {
        let s = &self.snap;
        let kb = s.vm_size / 1024;
        let (rss, hwm) = (s.rss / 1024, s.rss_peak / 1024);
        format!(
            "Name:\t{}\nUmask:\t{:04o}\nState:\t{}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\n\
             Uid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nFDSize:\t64\nGroups:\t{groups}\n\
             VmPeak:\t{kb:8} kB\nVmSize:\t{kb:8} kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t{hwm:8} kB\nVmRSS:\t{rss:8} kB\nRssAnon:\t{rss:8} kB\n\
             Threads:\t{threads}\nSigQ:\t0/63439\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
             SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n\
             CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
             CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n\
             Cpus_allowed:\t1\nCpus_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
            String::from_utf8_lossy(&s.comm),
            s.umask,
            if s.asleep { "S (sleeping)" } else { "R (running)" },
            s.ppid,
            // The fourth is the file-system id, which follows the effective one.
            s.uids[0],
            s.uids[1],
            s.uids[2],
            s.uids[1],
            s.gids[0],
            s.gids[1],
            s.gids[2],
            s.gids[1],
            pid = s.pid,
            threads = s.threads.max(1),
            groups = s
                .groups
                .iter()
                .map(|g| format!("{g} "))
                .collect::<String>(),
        )
        .into_bytes()
    }

    fn stat_line(&self) -> Vec<u8> {
        let s = &self.snap;
        let rss_pages = s.rss / 4096;
        let c = &s.cpu;
        // Fields 1-52 of proc_pid_stat(5); times are in clock ticks (USER_HZ = 100).
        format!(
            "{} ({}) {} {} {} {} 0 -1 4194560 0 0 0 0 {} {} {} {} 20 0 {} 0 {} {} {} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            s.pid,
            String::from_utf8_lossy(&s.comm),
            if s.asleep { 'S' } else { 'R' },
            s.ppid,
            s.pgid,
            s.sid,
            ticks(c.utime),
            ticks(c.stime),
            ticks(c.cutime),
            ticks(c.cstime),
            s.threads.max(1),
            ticks(c.start),
            s.vm_size,
            rss_pages,
        )
        .into_bytes()
    }
}

/// `d` in clock ticks (USER_HZ = 100), truncated as Linux's nsec_to_clock_t does.
fn ticks(d: Duration) -> u128 {
    d.as_nanos() / 10_000_000
}

/// /proc/meminfo for a guest with `total` bytes of memory of which `free` are free.
///
/// Linux's lines, in Linux's order and format (`%-16s%8lu kB`), with what the sandbox
/// can know: every used frame is anonymous memory (there is no page cache, swap or
/// kernel memory of the guest's own), so MemAvailable is MemFree. Node (libuv's
/// `uv_get_total_memory`/`uv_get_available_memory`), `free` and JVMs read these.
pub fn meminfo(total: u64, free: u64) -> Vec<u8> {
    let kb = |bytes: u64| bytes / 1024;
    let (total, free) = (kb(total), kb(free.min(total)));
    let used = total - free;
    let lines: [(&str, u64); 24] = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", free),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", 0),
        ("Active", used),
        ("Inactive", 0),
        ("Active(anon)", used),
        ("Inactive(anon)", 0),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", 0),
        ("Mlocked", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("AnonPages", used),
        ("Mapped", 0),
        ("Shmem", 0),
        ("Slab", 0),
        ("SReclaimable", 0),
        ("SUnreclaim", 0),
    ];
    let mut out = String::new();
    for (name, value) in lines {
        out.push_str(&format!("{:<16}{value:>8} kB\n", format!("{name}:")));
    }
    // Heuristic overcommit (vm.overcommit_memory = 0): CommitLimit is what
    // overcommit_memory = 2 would allow, RAM × 50% with no swap.
    out.push_str(&format!("{:<16}{:>8} kB\n", "CommitLimit:", total / 2));
    out.push_str(&format!("{:<16}{used:>8} kB\n", "Committed_AS:"));
    for (name, value) in [("HugePages_Total", 0), ("HugePages_Free", 0)] {
        out.push_str(&format!("{:<16}{value:>8}\n", format!("{name}:")));
    }
    out.push_str(&format!("{:<16}{:>8} kB\n", "Hugepagesize:", 2048));
    out.into_bytes()
}

/// /proc/stat: the guest's CPUs (as many as /proc/cpuinfo lists), the time the
/// sandbox spent on them and idle, in USER_HZ ticks, and the counts programs read from
/// it (libuv's `uv_cpu_info`, behind Node's `os.cpus()`, fails without the cpu lines).
/// The sandbox's CPU time is shared evenly between its CPUs: it does not know which
/// host CPU ran what.
fn stat(s: &ProcSnapshot, cpu_time: (Duration, Duration)) -> Vec<u8> {
    const USER_HZ: u128 = 100;
    let ticks = |d: Duration| (d.as_millis() * USER_HZ / 1000) as u64;
    let cpus = s
        .cpuinfo
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"processor"))
        .count()
        .max(1) as u64;
    let (user, system) = (ticks(cpu_time.0), ticks(cpu_time.1));
    let idle = (ticks(s.uptime) * cpus).saturating_sub(user + system);
    let line = |name: &str, user: u64, system: u64, idle: u64| {
        format!("{name} {user} 0 {system} {idle} 0 0 0 0 0 0\n")
    };
    let mut out = line("cpu ", user, system, idle);
    for i in 0..cpus {
        out.push_str(&line(
            &format!("cpu{i}"),
            user / cpus,
            system / cpus,
            idle / cpus,
        ));
    }
    let btime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(s.uptime)
        .as_secs();
    out.push_str(&format!(
        "intr 0\nctxt 0\nbtime {btime}\nprocesses {}\nprocs_running 1\nprocs_blocked 0\n\
         softirq 0 0 0 0 0 0 0 0 0 0 0\n",
        s.forks
    ));
    out.into_bytes()
}

/// The CPU time of the sandbox process (every guest thread runs on one of its threads),
/// user and system.
fn sandbox_cpu_time() -> (Duration, Duration) {
    // SAFETY: a zeroed rusage is valid output space for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one struct rusage into `ru`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Default::default();
    }
    let d = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64)
            + Duration::from_micros(t.tv_usec.clamp(0, 999_999) as u64)
    };
    (d(ru.ru_utime), d(ru.ru_stime))
}

/// The host's /proc/cpuinfo, with only the first `cpus` processors: read once when a
/// sandbox is made (the sandbox process later gives up the host's file tree), and cut
/// to the CPUs the guest is told it has. Empty if the host's cannot be read.
pub fn host_cpuinfo(cpus: usize) -> Vec<u8> {
    match std::fs::read("/proc/cpuinfo") {
        Ok(text) => first_processors(&text, cpus.max(1)),
        Err(e) => {
            tracing::warn!("reading /proc/cpuinfo: {e}; the guest's will be empty");
            Vec::new()
        }
    }
}

/// The first `n` processor stanzas of a cpuinfo text (stanzas end with a blank line).
fn first_processors(text: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut kept = 0;
    for line in text.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"processor") {
            if kept == n {
                break;
            }
            kept += 1;
        }
        out.extend_from_slice(line);
    }
    out
}

trait RsplitSlash {
    fn rsplit_once_slash(&self) -> Option<&[u8]>;
}

impl RsplitSlash for Vec<u8> {
    /// The parent `rel` ("" for top-level entries), None for the root itself.
    fn rsplit_once_slash(&self) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        Some(match self.iter().rposition(|b| *b == b'/') {
            Some(i) => &self[..i],
            None => &[],
        })
    }
}

/// An open file whose whole content was generated at open time (/proc files).
pub struct ContentFile {
    data: Vec<u8>,
    pos: Mutex<u64>,
    path: Vec<u8>,
    stat: Stat,
    flags: AtomicU32,
}

impl ContentFile {
    pub fn new(data: Vec<u8>, path: Vec<u8>, stat: Stat, flags: u32) -> ContentFile {
        ContentFile {
            data,
            pos: Mutex::new(0),
            path,
            stat,
            flags: AtomicU32::new(flags),
        }
    }

    /// A description put back from a checkpoint: the content it was opened with, at
    /// offset `pos`.
    pub fn restore(data: Vec<u8>, path: Vec<u8>, stat: Stat, flags: u32, pos: u64) -> ContentFile {
        let f = ContentFile::new(data, path, stat, flags);
        *f.pos.lock().unwrap_or_else(|e| e.into_inner()) = pos;
        f
    }
}

impl FileDescription for ContentFile {
    fn read(&self, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
        let at = offset.unwrap_or(*pos);
        let start = (at.min(self.data.len() as u64)) as usize;
        let n = (self.data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        if offset.is_none() {
            *pos = at + n as u64;
        }
        Ok(n)
    }

    fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        let mut pos = self.pos.lock().unwrap_or_else(|e| e.into_inner());
        seek_regular(&mut pos, self.data.len() as u64, offset, whence)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.stat)
    }

    fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    fn status_flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn set_status_flags(&self, flags: u32) {
        super::tmpfs::set_flags(&self.flags, flags);
    }

    fn save(&self, _cx: &mut SaveContext) -> Result<FileState, StateError> {
        // The content is what the guest reads from this description: it stays as it was
        // generated at open, as it would have without the checkpoint.
        Ok(FileState::Content(ContentFileState {
            data: self.data.clone(),
            pos: *self.pos.lock().unwrap_or_else(|e| e.into_inner()),
            path: self.path.clone(),
            stat: StatState::from(&self.stat),
            flags: self.status_flags(),
        }))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Arc<ProcSnapshot> {
        Arc::new(ProcSnapshot {
            pid: 7,
            exe: b"/bin/true".to_vec(),
            comm: b"true".to_vec(),
            cmdline: b"true\0x\0".to_vec(),
            ..ProcSnapshot::default()
        })
    }

    #[test]
    fn meminfo_is_the_guests() {
        let text = String::from_utf8(meminfo(256 << 20, 200 << 20)).expect("utf-8");
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert_eq!(value("MemTotal"), 262_144);
        assert_eq!(value("MemFree"), 204_800);
        assert_eq!(value("MemAvailable"), 204_800);
        assert_eq!(value("AnonPages"), 262_144 - 204_800);
        assert_eq!(value("SwapTotal"), 0);
        assert!(text.starts_with("MemTotal:         262144 kB\n"), "{text}");
        // More free than total (a racing reader) never underflows.
        let odd = String::from_utf8(meminfo(8192, 16384)).expect("utf-8");
        assert!(odd.contains("MemFree:               8 kB"), "{odd}");
    }

    #[test]
    fn stat_lists_the_guests_cpus_and_its_time() {
        let snap = ProcSnapshot {
            cpuinfo: b"processor\t: 0\n\nprocessor\t: 1\n\n".to_vec().into(),
            uptime: Duration::from_secs(10),
            forks: 5,
            ..ProcSnapshot::default()
        };
        let busy = (Duration::from_secs(3), Duration::from_secs(1));
        let text = String::from_utf8(stat(&snap, busy)).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        // 2 CPUs × 10 s = 2000 ticks, 400 of them busy.
        assert_eq!(lines[0], "cpu  300 0 100 1600 0 0 0 0 0 0");
        assert_eq!(lines[1], "cpu0 150 0 50 800 0 0 0 0 0 0");
        assert_eq!(lines[2], "cpu1 150 0 50 800 0 0 0 0 0 0");
        assert!(lines[3..].contains(&"processes 5"), "{text}");
        assert!(lines.iter().any(|l| l.starts_with("btime ")), "{text}");
        // Busier than up (a clock read apart) never underflows; no cpuinfo is one CPU.
        let odd = ProcSnapshot::default();
        let text = String::from_utf8(stat(&odd, (Duration::from_secs(99), Duration::ZERO)))
            .expect("utf-8");
        assert!(text.starts_with("cpu  9900 0 0 0 "), "{text}");
        assert!(
            text.contains("\ncpu0 ") && !text.contains("\ncpu1 "),
            "{text}"
        );
    }

    #[test]
    fn cpuinfo_keeps_the_guests_processors() {
        let host =
            b"processor\t: 0\nflags\t: a\n\nprocessor\t: 1\nflags\t: a\n\nprocessor\t: 2\n\n";
        let one = first_processors(host, 1);
        assert_eq!(one, b"processor\t: 0\nflags\t: a\n\n");
        assert_eq!(first_processors(host, 8), host.to_vec());
    }

    #[test]
    fn walk_and_read() {
        let root = ProcNode::root(snap());
        let me = root.lookup(b"self").expect("self");
        assert!(matches!(me.link_target(), Some(LinkTarget::Path(p)) if p == b"7"));
        let pid = root.lookup(b"7").expect("pid dir");
        assert_eq!(pid.file_type(), libc::S_IFDIR);
        assert!(root.lookup(b"8").is_none());
        let exe = pid.lookup(b"exe").expect("exe");
        assert!(matches!(exe.link_target(), Some(LinkTarget::Path(p)) if p == b"/bin/true"));
        assert_eq!(
            pid.lookup(b"cmdline").map(|n| n.content()),
            Some(b"true\0x\0".to_vec())
        );
        assert_eq!(
            pid.lookup(b"comm").map(|n| n.path()),
            Some(b"/proc/7/comm".to_vec())
        );
        let stat = String::from_utf8(pid.lookup(b"stat").map(|n| n.content()).unwrap_or_default())
            .unwrap_or_default();
        assert!(stat.starts_with("7 (true) R 0"));
        assert_eq!(stat.split(' ').count(), 52);
        let names: Vec<_> = root.list().into_iter().map(|e| e.name).collect();
        assert!(names.contains(&b"self".to_vec()) && names.contains(&b"7".to_vec()));
    }

    #[test]
    fn pid_stat_shows_cpu_times_in_ticks() {
        let ms = Duration::from_millis;
        let snap = Arc::new(ProcSnapshot {
            pid: 7,
            comm: b"a b".to_vec(),
            threads: 3,
            cpu: ProcCpu {
                utime: ms(1234),
                stime: ms(56),
                cutime: ms(2000),
                cstime: ms(9),
                start: ms(4321),
            },
            ..ProcSnapshot::default()
        });
        let stat = ProcNode::root(snap)
            .lookup(b"7")
            .and_then(|p| p.lookup(b"stat"))
            .map(|n| n.content())
            .unwrap_or_default();
        let stat = String::from_utf8(stat).unwrap_or_default();
        // Fields after the command (which may hold spaces), numbered as in proc_pid_stat(5).
        let rest: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|x| x.1)
            .unwrap_or_default()
            .split(' ')
            .collect();
        let field = |n: usize| rest[n - 3];
        assert_eq!(
            (field(14), field(15), field(16), field(17)),
            ("123", "5", "200", "0")
        );
        assert_eq!((field(20), field(22)), ("3", "432"));
    }
}
