//! The host cgroup of a sandbox: memory, CPU and pids limits from the spec's
//! `linux.resources`, applied to the whole sandbox process (VMM, sentry, netstack and
//! every vCPU thread, so guest time counts too).
//!
//! Layouts:
//! - cgroup v2 (`/sys/fs/cgroup` is a cgroup2 mount: it has `cgroup.controllers`): one
//!   directory; the `cpu`, `memory` and `pids` controllers are enabled in every
//!   ancestor's `cgroup.subtree_control` on the way down.
//! - cgroup v1, including the hybrid layout (v1 controllers plus cgroup2 at
//!   `/sys/fs/cgroup/unified`, which has no controllers to use): one directory per
//!   controller hierarchy, `memory`, `cpu`, `cpuacct` and `pids` (the same directory once
//!   when `cpu` and `cpuacct` are mounted together).
//!
//! Where: `<root>/nanovisor/<sandbox id>`, or the spec's `linux.cgroupsPath` (see
//! [`CgroupPath::from_oci`]). The cgroup is made before `pivot_to_empty` (it needs
//! `/sys/fs/cgroup`); it keeps descriptors of its directories, so `add_pid` and `stats`
//! keep working in the sandbox after the pivot. `delete` and `open` (from `runsc delete`,
//! another process) work by path.
//!
//! Memory: the spec's limit sizes the guest's memory (`runsc boot`), and the sentry
//! runs out of guest frames first, OOM-killing a guest process the way a memory cgroup
//! would, while the sandbox lives on. The host cgroup holds the sandbox process, which is
//! that guest memory *plus* the sentry itself, so its limit is the guest's memory plus
//! [`SENTRY_OVERHEAD`] (see [`host_memory_limit`]): a guest filling its memory must meet
//! the guest's OOM killer, not the host's, which would kill the whole pod's sandbox.
//!
//! Not applied (yet): swap, kernel memory, cpusets, realtime, block I/O, hugetlb,
//! devices (the sentry opens no devices but `/dev/kvm`), `unified`.
// Stats and the other accessors serve tests now, and `runsc events` once its stats
// come from the cgroup.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Where cgroup hierarchies are mounted.
const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Our directory under the root when the spec names no cgroup.
const OUR_PARENT: &str = "nanovisor";

/// How many times [`Cgroup::create_in`] tries when a parent directory vanishes under it.
const CREATE_ATTEMPTS: u32 = 3;

/// The v2 controllers we enable on the way down.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The least guest memory a sandbox gets, whatever the spec's limit: `runsc boot`'s
/// `memory_limit` raises smaller limits to this, and so does [`host_memory_limit`].
pub const MIN_GUEST_MEMORY: u64 = 256 << 20;

/// Host memory the sandbox process uses besides guest memory, allowed on top of it in
/// the host cgroup: the sentry's code and heap (kernel objects, the overlay's tmpfs
/// files), one host thread stack per guest thread, netstack's socket buffers, and I/O
/// staged through sentry buffers (a read or write moves up to 64 MiB at once). Measured
/// with Node serving HTTP over loopback: about 5 MiB of sentry heap and 16 MiB of host
/// kernel memory, besides the page cache of rootfs files (which the host reclaims before
/// it OOM-kills); 128 MiB leaves room for I/O bursts. Host kernel memory that grows with
/// guest memory (KVM's shadow page tables on kvm_pvm, the memfd's bookkeeping) is
/// covered by [`host_memory_limit`]'s 1/32.
pub const SENTRY_OVERHEAD: u64 = 128 << 20;

/// The host cgroup's memory limit for a spec's memory limit of `limit` bytes: the guest
/// memory that limit gives (at least [`MIN_GUEST_MEMORY`]), plus [`SENTRY_OVERHEAD`],
/// plus 1/32 of the guest memory for host kernel memory that scales with it.
pub fn host_memory_limit(limit: u64) -> u64 {
    let guest = limit.max(MIN_GUEST_MEMORY);
    guest
        .saturating_add(SENTRY_OVERHEAD)
        .saturating_add(guest / 32)
}

/// Usage figures of a sandbox's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory charged to the cgroup now (page cache included), in bytes.
    pub memory_bytes: u64,
    /// CPU time used by its processes so far, in nanoseconds.
    pub cpu_nanos: u64,
    /// Tasks (threads) in it now.
    pub pids: u64,
}

/// A cgroup's path relative to the root of each hierarchy (`nanovisor/ID`,
/// `kubepods/burstable/pod1/ID`): never empty, never with `..`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPath(PathBuf);

impl CgroupPath {
    /// `nanovisor/<sandbox_id>`.
    pub fn for_sandbox(sandbox_id: &str) -> anyhow::Result<CgroupPath> {
        let id = Path::new(sandbox_id);
        if sandbox_id.is_empty()
            || id.components().count() != 1
            || !matches!(id.components().next(), Some(Component::Normal(_)))
        {
            bail!("sandbox id {sandbox_id:?}: not usable as a cgroup directory name");
        }
        Ok(CgroupPath(Path::new(OUR_PARENT).join(id)))
    }

    /// From the spec's `linux.cgroupsPath`, as runc reads it:
    /// - unset or empty: `nanovisor/<sandbox_id>`;
    /// - `/a/b`: `a/b` under the root of each hierarchy;
    /// - `a/b` (relative): under `nanovisor/`;
    /// - `slice:prefix:name` (systemd's form, which containerd passes with
    ///   `SystemdCgroup = true`): the path systemd would use, e.g.
    ///   `kubepods-burstable-pod1.slice:cri-containerd:ID` →
    ///   `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ID.scope`.
    ///   We make those directories ourselves; we do not talk to systemd.
    pub fn from_oci(cgroups_path: Option<&Path>, sandbox_id: &str) -> anyhow::Result<CgroupPath> {
        let Some(raw) = cgroups_path.filter(|p| !p.as_os_str().is_empty()) else {
            return CgroupPath::for_sandbox(sandbox_id);
        };
        let text = raw
            .to_str()
            .ok_or_else(|| anyhow!("cgroupsPath {raw:?}: not UTF-8"))?;
        let plain = |p: &str| -> anyhow::Result<PathBuf> {
            let p = p.strip_suffix('/').unwrap_or(p);
            if p.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                bail!("cgroupsPath {text:?}: must name a directory below the cgroup root, without empty, . or .. parts");
            }
            Ok(PathBuf::from(p))
        };
        let rel = if let Some((slice, rest)) = text.split_once(':') {
            let (prefix, name) = rest
                .split_once(':')
                .ok_or_else(|| anyhow!("cgroupsPath {text:?}: expected slice:prefix:name"))?;
            systemd_path(slice, prefix, name).with_context(|| format!("cgroupsPath {text:?}"))?
        } else if let Some(abs) = text.strip_prefix('/') {
            plain(abs)?
        } else {
            Path::new(OUR_PARENT).join(plain(text)?)
        };
        Ok(CgroupPath(rel))
    }

    /// The relative path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl std::fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0.display())
    }
}

/// systemd's path for `slice:prefix:name` (runc's `ExpandSlice` and unit naming).
fn systemd_path(slice: &str, prefix: &str, name: &str) -> anyhow::Result<PathBuf> {
    let mut path = PathBuf::new();
    if !slice.is_empty() && slice != "-.slice" {
        let stem = slice
            .strip_suffix(".slice")
            .ok_or_else(|| anyhow!("slice {slice:?} does not end in .slice"))?;
        if stem.is_empty()
            || stem.contains('/')
            || stem.starts_with('-')
            || stem.ends_with('-')
            || stem.contains("--")
        {
            bail!("invalid slice name {slice:?}");
        }
        let mut acc = String::new();
        for part in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            path.push(format!("{acc}.slice"));
        }
    }
    if name.is_empty() || name.contains('/') {
        bail!("invalid unit name {name:?}");
    }
    let unit = if name.ends_with(".slice") {
        name.to_owned()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// The cgroup version found at a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A v1 controller we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
}

impl Controller {
    const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
    ];

    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
        }
    }
}

/// Which layout the hierarchies under `root` have: v2 when `root` itself is a cgroup2
/// mount (it has `cgroup.controllers`), v1 when it holds per-controller hierarchies
/// (`memory`, `cpu`, …; a hybrid's `unified` mount is not used).
pub fn detect(root: &Path) -> anyhow::Result<Version> {
    if root.join("cgroup.controllers").is_file() {
        return Ok(Version::V2);
    }
    if Controller::ALL
        .iter()
        .any(|c| root.join(c.name()).join("cgroup.procs").is_file())
    {
        return Ok(Version::V1);
    }
    bail!(
        "{}: neither a cgroup2 mount (no cgroup.controllers) nor cgroup v1 controller hierarchies",
        root.display()
    )
}

/// One directory of the cgroup (the only one on v2, one per hierarchy on v1).
#[derive(Debug)]
struct Dir {
    /// The controllers it serves (v1); empty on v2.
    controllers: Vec<Controller>,
    path: PathBuf,
    fd: OwnedFd,
}

/// A sandbox's host cgroup.
#[derive(Debug)]
pub struct Cgroup {
    path: CgroupPath,
    version: Version,
    dirs: Vec<Dir>,
}

/// One value to write: a file in the directory serving `controller` (v1) or the only
/// one (v2).
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    controller: Option<Controller>,
    file: &'static str,
    value: String,
}

impl Cgroup {
    /// Create `<root>/nanovisor/<sandbox_id>` with the limits in `resources`.
    pub fn create(sandbox_id: &str, resources: &LinuxResources) -> anyhow::Result<Cgroup> {
        Cgroup::create_at(&CgroupPath::for_sandbox(sandbox_id)?, resources)
    }

    /// Create the cgroup at `path` (see [`CgroupPath::from_oci`]) with the limits in
    /// `resources`. An existing directory is reused and its limits overwritten. On an
    /// error, the directories this call made are removed again (those that were there
    /// before stay).
    pub fn create_at(path: &CgroupPath, resources: &LinuxResources) -> anyhow::Result<Cgroup> {
        Cgroup::create_in(Path::new(DEFAULT_ROOT), path, resources)
    }

    /// An existing cgroup (for `runsc delete`, `stats` from another process).
    pub fn open(path: &CgroupPath) -> anyhow::Result<Cgroup> {
        Cgroup::open_in(Path::new(DEFAULT_ROOT), path)
    }

    fn create_in(
        root: &Path,
        path: &CgroupPath,
        resources: &LinuxResources,
    ) -> anyhow::Result<Cgroup> {
        let version = detect(root)?;
        let settings = settings(version, resources)?;
        let mut attempt = 1;
        loop {
            let mut created = Vec::new();
            let made = Cgroup::make_and_set(root, path, version, &settings, &mut created);
            let Err(e) = made else {
                return made;
            };
            // A limit the kernel refuses (a quota above the parent's on v1: EINVAL) must
            // not leave an empty cgroup behind. Deepest first; a directory something else
            // has come to use fails to go and stays. The error is the first one.
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            // Another runsc doing the same may have removed a parent it made just as we
            // found it there: try again (its next attempt or ours makes it anew).
            if attempt < CREATE_ATTEMPTS && a_directory_vanished(&e) {
                attempt += 1;
                continue;
            }
            return Err(e);
        }
    }

    /// [`Cgroup::create_in`]'s work; every directory it makes goes to `created`, parents
    /// first.
    fn make_and_set(
        root: &Path,
        path: &CgroupPath,
        version: Version,
        settings: &[Setting],
        created: &mut Vec<PathBuf>,
    ) -> anyhow::Result<Cgroup> {
        match version {
            Version::V2 => {
                let dir = root.join(path.as_path());
                enable_v2_controllers(root, &dir, settings, created)?;
            }
            Version::V1 => {
                for c in Controller::ALL {
                    let hierarchy = root.join(c.name());
                    if !hierarchy.is_dir() {
                        continue;
                    }
                    let mut dir = hierarchy;
                    for component in path.as_path().components() {
                        dir.push(component);
                        make_dir(&dir, created)?;
                    }
                }
            }
        }
        let cgroup = Cgroup::open_in(root, path)?;
        for s in settings {
            let dir = cgroup.dir_for(s.controller).ok_or_else(|| {
                anyhow!(
                    "{} asks for the {} controller, which {} does not have",
                    s.file,
                    s.controller.map_or("?", Controller::name),
                    root.display()
                )
            })?;
            write_at(dir, s.file, &s.value)?;
        }
        Ok(cgroup)
    }

    fn open_in(root: &Path, path: &CgroupPath) -> anyhow::Result<Cgroup> {
        let version = detect(root)?;
        let mut dirs: Vec<Dir> = Vec::new();
        match version {
            Version::V2 => {
                let p = root.join(path.as_path());
                dirs.push(Dir {
                    controllers: Vec::new(),
                    fd: open_dir(&p)?,
                    path: p,
                });
            }
            Version::V1 => {
                for c in Controller::ALL {
                    let hierarchy = root.join(c.name());
                    if !hierarchy.is_dir() {
                        continue;
                    }
                    // `cpu` and `cpuacct` are often one hierarchy behind two names.
                    let canonical = hierarchy.canonicalize().unwrap_or(hierarchy);
                    let p = canonical.join(path.as_path());
                    if let Some(d) = dirs.iter_mut().find(|d| d.path == p) {
                        d.controllers.push(c);
                        continue;
                    }
                    dirs.push(Dir {
                        controllers: vec![c],
                        fd: open_dir(&p)?,
                        path: p,
                    });
                }
            }
        }
        if dirs.is_empty() {
            bail!("{}: no cgroup controllers to use", root.display());
        }
        Ok(Cgroup {
            path: path.clone(),
            version,
            dirs,
        })
    }

    /// The directory serving `controller` (v1), or the only one (v2).
    fn dir_for(&self, controller: Option<Controller>) -> Option<&Dir> {
        match (self.version, controller) {
            (Version::V2, _) => self.dirs.first(),
            (Version::V1, Some(c)) => self.dirs.iter().find(|d| d.controllers.contains(&c)),
            (Version::V1, None) => None,
        }
    }

    /// Where the cgroup is, relative to each hierarchy's root.
    pub fn path(&self) -> &CgroupPath {
        &self.path
    }

    /// The layout in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Move the calling process, all its threads, into the cgroup.
    pub fn add_self(&self) -> anyhow::Result<()> {
        self.add_pid(std::process::id())
    }

    /// Move process `pid` (all its threads) into the cgroup: its pid into `cgroup.procs`
    /// of every directory.
    pub fn add_pid(&self, pid: u32) -> anyhow::Result<()> {
        for d in &self.dirs {
            write_at(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Memory, CPU time and task count now. A figure whose controller is missing is 0.
    pub fn stats(&self) -> anyhow::Result<CgroupStats> {
        let read = |c: Option<Controller>, file: &str| -> anyhow::Result<Option<String>> {
            match self.dir_for(c) {
                Some(d) => read_at(d, file),
                None => Ok(None),
            }
        };
        let number = |c, file: &str| -> anyhow::Result<u64> {
            match read(c, file)? {
                None => Ok(0),
                Some(text) => parse_number(&text).with_context(|| format!("{file}: {text:?}")),
            }
        };
        Ok(match self.version {
            Version::V2 => CgroupStats {
                memory_bytes: number(None, "memory.current")?,
                cpu_nanos: read(None, "cpu.stat")?
                    .map(|text| cpu_stat_usage_nanos(&text))
                    .transpose()?
                    .unwrap_or(0),
                pids: number(None, "pids.current")?,
            },
            Version::V1 => CgroupStats {
                memory_bytes: number(Some(Controller::Memory), "memory.usage_in_bytes")?,
                cpu_nanos: number(Some(Controller::Cpuacct), "cpuacct.usage")?,
                pids: number(Some(Controller::Pids), "pids.current")?,
            },
        })
    }

    /// Remove the cgroup's directories (its processes must have left: a directory still
    /// in use fails with EBUSY and stays). A directory already gone is fine.
    pub fn delete(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for d in self.dirs {
            let Dir { path, fd, .. } = d;
            drop(fd);
            match std::fs::remove_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let e = anyhow!("removing cgroup {}: {e}", path.display());
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What `resources` asks of each file, in the order to write it.
fn settings(version: Version, r: &LinuxResources) -> anyhow::Result<Vec<Setting>> {
    let mut out = Vec::new();
    let mut set = |controller: Controller, v1: &'static str, v2: &'static str, value: String| {
        let (controller, file) = match version {
            Version::V1 => (Some(controller), v1),
            Version::V2 => (None, v2),
        };
        out.push(Setting {
            controller,
            file,
            value,
        });
    };
    if let Some(limit) = r.memory().as_ref().and_then(|m| m.limit()) {
        let value = match (limit, version) {
            (l, _) if l > 0 => host_memory_limit(l as u64).to_string(),
            (-1, Version::V1) => "-1".to_owned(),
            (-1, Version::V2) => "max".to_owned(),
            (l, _) => bail!("linux.resources.memory.limit {l}: expected a positive size or -1"),
        };
        set(
            Controller::Memory,
            "memory.limit_in_bytes",
            "memory.max",
            value,
        );
    }
    if let Some(cpu) = r.cpu().as_ref() {
        let quota = cpu.quota().filter(|q| *q != 0);
        let period = cpu.period().filter(|p| *p != 0);
        if let Some(p) = period {
            if !(1_000..=1_000_000).contains(&p) {
                bail!("linux.resources.cpu.period {p}: expected 1000..=1000000 µs");
            }
        }
        if let Some(q) = quota {
            if q < 1_000 && q != -1 {
                bail!("linux.resources.cpu.quota {q}: expected at least 1000 µs, or -1");
            }
        }
        match version {
            Version::V1 => {
                if let Some(p) = period {
                    set(Controller::Cpu, "cpu.cfs_period_us", "", p.to_string());
                }
                if let Some(q) = quota {
                    set(Controller::Cpu, "cpu.cfs_quota_us", "", q.to_string());
                }
            }
            Version::V2 if quota.is_some() || period.is_some() => {
                let q = match quota {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".to_owned(),
                };
                let p = period.unwrap_or(100_000);
                set(Controller::Cpu, "", "cpu.max", format!("{q} {p}"));
            }
            Version::V2 => {}
        }
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            let value = match version {
                Version::V1 => shares.to_string(),
                Version::V2 => shares_to_weight(shares).to_string(),
            };
            set(Controller::Cpu, "cpu.shares", "cpu.weight", value);
        }
    }
    if let Some(pids) = r.pids().as_ref() {
        let value = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_owned()
        };
        set(Controller::Pids, "pids.max", "pids.max", value);
    }
    Ok(out)
}

/// cgroup v1 `cpu.shares` (2..=262144, default 1024) as v2 `cpu.weight` (1..=10000,
/// default 100), the way runc and crun convert it.
fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9_999) / 262_142
}

/// Make `dir` and enable our controllers in the `cgroup.subtree_control` of every
/// ancestor below `root` (and of `root`), so that `dir` gets their files. The directories
/// made go to `created`.
fn enable_v2_controllers(
    root: &Path,
    dir: &Path,
    settings: &[Setting],
    created: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut current = root.to_path_buf();
    for component in rel.components() {
        let available = std::fs::read_to_string(current.join("cgroup.controllers"))
            .with_context(|| format!("reading {}", current.join("cgroup.controllers").display()))?;
        let control = current.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control)
            .with_context(|| format!("reading {}", control.display()))?;
        for c in V2_CONTROLLERS {
            let has = |text: &str| text.split_whitespace().any(|w| w == c);
            if !has(&available) {
                if settings.iter().any(|s| s.file.starts_with(c)) {
                    bail!(
                        "the {c} controller is not available in {} (limits in the spec need it)",
                        current.display()
                    );
                }
                continue;
            }
            if !has(&enabled) {
                write_path(&control, &format!("+{c}"))?;
            }
        }
        current.push(component);
        make_dir(&current, created)?;
    }
    Ok(())
}

/// Make directory `dir` (its parent exists), and note it in `created`; one already there
/// is fine, and not noted.
fn make_dir(dir: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            created.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating cgroup {}", dir.display())),
    }
}

/// Whether `e` is a directory of the cgroup's path (or a file in it) not found: a parent
/// removed between our finding it and using it.
fn a_directory_vanished(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// `cpu.stat`'s `usage_usec`, in nanoseconds.
fn cpu_stat_usage_nanos(text: &str) -> anyhow::Result<u64> {
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("usage_usec ") {
            return Ok(parse_number(v)?.saturating_mul(1_000));
        }
    }
    bail!("cpu.stat has no usage_usec")
}

fn parse_number(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| anyhow!("not a number: {t:?}"))
}

fn open_dir(path: &Path) -> anyhow::Result<OwnedFd> {
    let file = File::open(path).with_context(|| format!("opening cgroup {}", path.display()))?;
    Ok(file.into())
}

/// Write `value` to `dir/file` through the directory's descriptor (works after the pivot).
fn write_at(dir: &Dir, file: &str, value: &str) -> anyhow::Result<()> {
    let path = dir.path.join(file);
    let fd = openat(
        &dir.fd,
        file,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("opening {}: {e}", path.display()))?;
    File::from(fd)
        .write_all(value.as_bytes())
        .map_err(|e| anyhow!("writing {value:?} to {}: {e}", path.display()))
}

fn write_path(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| anyhow!("writing {value:?} to {}: {e}", path.display()))
}

/// `dir/file`'s text, or `None` if the file does not exist (controller not there).
fn read_at(dir: &Dir, file: &str) -> anyhow::Result<Option<String>> {
    let path = dir.path.join(file);
    let fd = match openat(
        &dir.fd,
        file,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => bail!("opening {}: {e}", path.display()),
    };
    let mut text = String::new();
    File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use std::time::{Duration, Instant};

    fn path(p: Option<&str>) -> anyhow::Result<CgroupPath> {
        CgroupPath::from_oci(p.map(Path::new), "sb1")
    }

    #[test]
    fn cgroups_path_forms() {
        let rel = |p: Option<&str>| path(p).expect("valid").as_path().to_path_buf();
        assert_eq!(rel(None), Path::new("nanovisor/sb1"));
        assert_eq!(rel(Some("")), Path::new("nanovisor/sb1"));
        assert_eq!(
            rel(Some("/kubepods/burstable/pod1/c1")),
            Path::new("kubepods/burstable/pod1/c1")
        );
        assert_eq!(rel(Some("mine/c1")), Path::new("nanovisor/mine/c1"));
        assert_eq!(
            rel(Some("kubepods-burstable-pod1.slice:cri-containerd:abc")),
            Path::new("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            rel(Some("system.slice:docker:abc")),
            Path::new("system.slice/docker-abc.scope")
        );
        assert_eq!(rel(Some(":runc:abc")), Path::new("runc-abc.scope"));
        assert_eq!(rel(Some("-.slice::abc")), Path::new("abc.scope"));
        assert_eq!(
            rel(Some("user.slice::my.slice")),
            Path::new("user.slice/my.slice")
        );
        for bad in [
            "/",
            "/a/../../etc",
            "a/./b",
            "x.slice:p",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "a.slice:p:",
            "noslice:p:n",
            "/a//b/..",
        ] {
            assert!(path(Some(bad)).is_err(), "{bad:?} accepted");
        }
        for bad_id in ["", "a/b", "..", "."] {
            assert!(
                CgroupPath::for_sandbox(bad_id).is_err(),
                "{bad_id:?} accepted"
            );
        }
        assert_eq!(path(Some("/a/b")).expect("ok").to_string(), "/a/b");
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nv-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch");
        d
    }

    #[test]
    fn detects_the_layout_of_a_root() {
        let v2 = scratch("v2");
        std::fs::write(v2.join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("w");
        assert_eq!(detect(&v2).expect("v2"), Version::V2);

        let v1 = scratch("v1");
        for c in ["memory", "cpu", "cpuacct", "pids", "unified"] {
            std::fs::create_dir_all(v1.join(c)).expect("mkdir");
            std::fs::write(v1.join(c).join("cgroup.procs"), "").expect("w");
        }
        // The hybrid's unified mount has cgroup.controllers one level down: still v1.
        std::fs::write(v1.join("unified/cgroup.controllers"), "").expect("w");
        assert_eq!(detect(&v1).expect("v1"), Version::V1);

        let none = scratch("none");
        assert!(detect(&none).is_err());
        for d in [v2, v1, none] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// A limit that cannot be written (here: files a plain directory lacks) leaves none of
    /// the directories the call made, and every one that was there before.
    #[test]
    fn a_failed_create_removes_what_it_made_on_v1() {
        let root = scratch("undo-v1");
        for c in ["memory", "cpu", "pids"] {
            std::fs::create_dir_all(root.join(c)).expect("mkdir");
            std::fs::write(root.join(c).join("cgroup.procs"), "").expect("w");
        }
        std::fs::create_dir_all(root.join("memory/nanovisor")).expect("mkdir");
        std::fs::create_dir_all(root.join("pids/nanovisor/sb1")).expect("mkdir");
        let path = path(None).expect("path");
        let r = resources(256 << 20, 20_000, 100_000, 0, 64);
        let err = Cgroup::create_in(&root, &path, &r).expect_err("no limit files");
        assert!(
            format!("{err:#}").contains("memory.limit_in_bytes"),
            "{err:#}"
        );
        assert!(root.join("memory/nanovisor").is_dir());
        assert!(!root.join("memory/nanovisor/sb1").exists());
        assert!(!root.join("cpu/nanovisor").exists());
        assert!(root.join("pids/nanovisor/sb1").is_dir());
        // Without limits nothing fails, and everything stays.
        let cg = Cgroup::create_in(&root, &path, &LinuxResources::default()).expect("create");
        assert_eq!(cg.dirs.len(), 3);
        for c in ["memory", "cpu", "pids"] {
            assert!(root.join(c).join("nanovisor/sb1").is_dir(), "{c}");
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_failed_create_removes_what_it_made_on_v2() {
        let root = scratch("undo-v2");
        let fake_cgroup = |d: &Path| {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("cgroup.controllers"), "cpu memory pids\n").expect("w");
            std::fs::write(d.join("cgroup.subtree_control"), "").expect("w");
        };
        fake_cgroup(&root);
        let path = path(None).expect("path");
        let r = resources(256 << 20, 0, 0, 0, 0);
        // `nanovisor` is made, then has no cgroup.controllers of its own.
        let err = Cgroup::create_in(&root, &path, &r).expect_err("not a cgroup2 tree");
        assert!(format!("{err:#}").contains("cgroup.controllers"), "{err:#}");
        assert!(!root.join("nanovisor").exists());
        fake_cgroup(&root.join("nanovisor"));
        let err = Cgroup::create_in(&root, &path, &r).expect_err("no memory.max");
        assert!(format!("{err:#}").contains("memory.max"), "{err:#}");
        assert!(!root.join("nanovisor/sb1").exists());
        assert!(root.join("nanovisor/cgroup.controllers").is_file());
        let _ = std::fs::remove_dir_all(root);
    }

    /// Removes a test's parent cgroup from every v1 hierarchy, whatever the test did.
    struct ParentCgroup(String);

    impl Drop for ParentCgroup {
        fn drop(&mut self) {
            for c in Controller::ALL {
                let dir = Path::new(DEFAULT_ROOT).join(c.name()).join(&self.0);
                let _ = std::fs::remove_dir(dir.join("c1"));
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// The case met on a host: on v1 a CPU quota above the parent cgroup's is EINVAL, and
    /// the container's directories (and the parent in the hierarchies that lacked it) go.
    #[test]
    fn a_quota_above_the_parents_leaves_no_directories() {
        let cpu = Path::new(DEFAULT_ROOT).join("cpu");
        if !can_use_cgroups()
            || detect(Path::new(DEFAULT_ROOT)).ok() != Some(Version::V1)
            || !cpu.join("cpu.cfs_quota_us").is_file()
        {
            eprintln!("skipped: needs root and cgroup v1 with the cpu controller");
            return;
        }
        let parent = ParentCgroup(format!("nvtest-{}", std::process::id()));
        std::fs::create_dir(cpu.join(&parent.0)).expect("parent cgroup");
        write_path(&cpu.join(&parent.0).join("cpu.cfs_quota_us"), "20000").expect("quota");
        let path = CgroupPath::from_oci(Some(Path::new(&format!("/{}/c1", parent.0))), "sb")
            .expect("path");
        let err = Cgroup::create_at(&path, &resources(256 << 20, 50_000, 100_000, 0, 64))
            .expect_err("a quota above the parent's");
        assert!(format!("{err:#}").contains("cpu.cfs_quota_us"), "{err:#}");
        for c in Controller::ALL {
            let hierarchy = Path::new(DEFAULT_ROOT).join(c.name());
            if !hierarchy.is_dir() {
                continue;
            }
            let dir = hierarchy.join(&parent.0);
            assert!(!dir.join("c1").exists(), "{}", dir.display());
            // The parent was there on `cpu` (and on `cpuacct` if they are one hierarchy).
            let premade = hierarchy.canonicalize().ok() == cpu.canonicalize().ok();
            assert_eq!(dir.exists(), premade, "{}", dir.display());
        }
        // Within the parent's quota all goes well.
        let cg = Cgroup::create_at(&path, &resources(256 << 20, 10_000, 100_000, 0, 64))
            .expect("a quota within the parent's");
        cg.delete().expect("delete");
    }

    fn resources(memory: i64, quota: i64, period: u64, shares: u64, pids: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(memory)
                    .build()
                    .expect("mem"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(quota)
                    .period(period)
                    .shares(shares)
                    .build()
                    .expect("cpu"),
            )
            .pids(
                LinuxPidsBuilder::default()
                    .limit(pids)
                    .build()
                    .expect("pids"),
            )
            .build()
            .expect("resources")
    }

    #[test]
    fn settings_per_version() {
        let r = resources(256 << 20, 20_000, 100_000, 1024, 512);
        let files = |v| {
            settings(v, &r)
                .expect("settings")
                .into_iter()
                .map(|s| (s.file, s.value))
                .collect::<Vec<_>>()
        };
        // The guest's 256 MiB, the sentry's 128 MiB and 8 MiB (1/32) for the host kernel.
        let memory = ((256 + 128 + 8) << 20).to_string();
        assert_eq!(
            files(Version::V1),
            [
                ("memory.limit_in_bytes", memory.clone()),
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "20000".to_owned()),
                ("cpu.shares", "1024".to_owned()),
                ("pids.max", "512".to_owned()),
            ]
        );
        assert_eq!(
            files(Version::V2),
            [
                ("memory.max", memory),
                ("cpu.max", "20000 100000".to_owned()),
                ("cpu.weight", "39".to_owned()),
                ("pids.max", "512".to_owned()),
            ]
        );
        let unlimited = resources(-1, -1, 50_000, 0, 0);
        let v2: Vec<_> = settings(Version::V2, &unlimited)
            .expect("ok")
            .into_iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(v2, ["max", "max 50000", "max"]);
        assert!(settings(Version::V1, &resources(-5, 0, 0, 0, 0)).is_err());
        assert!(settings(Version::V1, &resources(1 << 30, 10, 0, 0, 0)).is_err());
        assert!(settings(Version::V2, &LinuxResources::default())
            .expect("empty")
            .is_empty());
    }

    #[test]
    fn the_host_limit_leaves_room_for_the_sentry() {
        let mib = |n: u64| n << 20;
        assert_eq!(host_memory_limit(mib(1024)), mib(1024 + 128 + 32));
        // Below the guest's minimum the guest still gets the minimum, and room for it.
        assert_eq!(host_memory_limit(mib(64)), mib(256 + 128 + 8));
        assert_eq!(host_memory_limit(u64::MAX), u64::MAX);
        for limit in [mib(1), mib(256), mib(300), 64 << 30] {
            assert!(host_memory_limit(limit) >= limit.max(MIN_GUEST_MEMORY) + SENTRY_OVERHEAD);
        }
    }

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
    }

    #[test]
    fn cpu_stat_parses() {
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(cpu_stat_usage_nanos(text).expect("usage"), 1_500_000);
        assert!(cpu_stat_usage_nanos("user_usec 1\n").is_err());
    }

    /// A host with writable cgroups (root, a real /sys/fs/cgroup), else skip.
    fn can_use_cgroups() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && detect(Path::new(DEFAULT_ROOT)).is_ok()
    }

    /// Kills and reaps the child on every exit path of the test.
    struct Busy(std::process::Child);

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A busy loop in a cgroup with a 20% CPU quota and 256 MiB gets ≤ ~30% of a CPU.
    #[test]
    fn busy_loop_cannot_exceed_its_cpu_quota() {
        if !can_use_cgroups() {
            eprintln!("skipped: needs root and /sys/fs/cgroup");
            return;
        }
        let id = format!("unit-test-{}", std::process::id());
        let r = resources(256 << 20, 20_000, 100_000, 0, 64);
        let cg = Cgroup::create(&id, &r).expect("create");
        let busy = Busy(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spawn sh"),
        );
        cg.add_pid(busy.0.id()).expect("add pid");
        let before = cg.stats().expect("stats");
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let after = cg.stats().expect("stats");
        let wall = start.elapsed().as_nanos() as f64;
        let share = (after.cpu_nanos - before.cpu_nanos) as f64 / wall;
        eprintln!(
            "busy loop in {}: {:.1}% of a CPU, {after:?}",
            cg.path(),
            share * 100.0
        );
        assert!(
            share <= 0.30,
            "used {:.1}% of a CPU with a 20% quota",
            share * 100.0
        );
        assert!(
            share >= 0.01,
            "used only {:.1}%: is the loop in the cgroup?",
            share * 100.0
        );
        assert_eq!(after.pids, 1);
        assert!(after.memory_bytes < 256 << 20, "{after:?}");
        let err = Cgroup::open(cg.path())
            .expect("open")
            .delete()
            .expect_err("busy cgroup");
        assert!(err.to_string().contains("removing cgroup"), "{err}");
        drop(busy);
        // The kernel takes a moment to let go of an exited task.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Cgroup::open(cg.path()).and_then(Cgroup::delete) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("delete: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        assert!(!Path::new(DEFAULT_ROOT)
            .join("memory")
            .join(cg.path().as_path())
            .exists());
    }

    /// Child: join the cgroup named by `NV_CGROUP` with `add_self`; every thread moves.
    pub(crate) fn child_add_self() {
        let rel = std::env::var("NV_CGROUP").expect("NV_CGROUP");
        let path = CgroupPath(PathBuf::from(&rel));
        let cg = Cgroup::open(&path).expect("open");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        cg.add_self().expect("add_self");
        let want = format!("/{rel}");
        let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
        let mut n = 0;
        for t in tasks {
            let t = t.expect("task");
            let text = std::fs::read_to_string(t.path().join("cgroup")).expect("cgroup");
            let memory_line = text
                .lines()
                .find(|l| l.contains(":memory:") || l.starts_with("0::"))
                .expect("a memory or v2 line");
            assert!(
                memory_line.ends_with(&want),
                "{}: {text}",
                t.path().display()
            );
            n += 1;
        }
        assert!(n >= 2, "only {n} threads");
        assert!(cg.stats().expect("stats").pids >= 2);
        drop(tx);
        other.join().expect("thread");
    }

    #[test]
    fn add_self_moves_every_thread() {
        if !can_use_cgroups() {
            eprintln!("skipped: needs root and /sys/fs/cgroup");
            return;
        }
        let id = format!("unit-self-{}", std::process::id());
        let cg = Cgroup::create(&id, &LinuxResources::default()).expect("create");
        assert_eq!(
            cg.version(),
            detect(Path::new(DEFAULT_ROOT)).expect("detect")
        );
        let rel = cg.path().as_path().to_str().expect("utf-8").to_owned();
        let out = crate::confine::seccomp::tests::run_child_env(
            "cgroup_add_self",
            &[("NV_CGROUP", &rel)],
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Cgroup::open(cg.path()).and_then(Cgroup::delete) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("delete: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        assert!(out.status.success(), "{out:?}");
    }

    /// The v2 code path on the hybrid layout's `unified` mount (no controllers there: no
    /// limits, but cgroup.procs and cpu.stat work).
    #[test]
    fn v2_without_controllers_on_the_unified_mount() {
        let unified = Path::new(DEFAULT_ROOT).join("unified");
        if !can_use_cgroups() || detect(&unified).ok() != Some(Version::V2) {
            eprintln!("skipped: no cgroup2 mount at {}", unified.display());
            return;
        }
        let path =
            CgroupPath::for_sandbox(&format!("unit-v2-{}", std::process::id())).expect("path");
        let r = resources(256 << 20, 0, 0, 0, 0);
        let available =
            std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
        if !available.contains("memory") {
            let err = Cgroup::create_in(&unified, &path, &r).expect_err("no memory controller");
            assert!(format!("{err:#}").contains("memory controller"), "{err:#}");
        }
        let cg = Cgroup::create_in(&unified, &path, &LinuxResources::default()).expect("create");
        let busy = Busy(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("spawn sh"),
        );
        cg.add_pid(busy.0.id()).expect("add pid");
        std::thread::sleep(Duration::from_millis(300));
        let stats = cg.stats().expect("stats");
        assert!(stats.cpu_nanos > 50_000_000, "{stats:?}");
        drop(busy);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Cgroup::open_in(&unified, &path).and_then(Cgroup::delete) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("delete: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
