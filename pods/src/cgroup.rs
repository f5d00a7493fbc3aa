//! Where a pod's sandbox cgroup is, its removal, and its usage figures.
//!
//! runsc (`runsc boot`) makes the sandbox's cgroup from config.json's `linux.cgroupsPath`,
//! writes the limits (see resources.rs) and moves the sandbox process in; we choose the path
//! ([`cgroups_path`]), record it in the pod's record before `runsc create`, and remove its
//! directories ourselves once the sandbox has gone ([`remove`]): at StopPodSandbox (as runc's
//! go at containerd's task delete, so that kubelet can remove its pod cgroup), when a
//! restored sandbox's container is removed, after a create that failed half-way (runsc
//! leaves the cgroup of a boot that failed) and after a restart (record.rs). A pooled
//! sandbox, made before its pod, is moved into the pod's cgroup when a pod claims it
//! ([`adopt`]).
//!
//! The path, as containerd chooses it for runc:
//! - kubelet's cgroupfs driver: `cgroup_parent` is a path (`/kubepods/burstable/podUID`);
//!   the sandbox's cgroup is `PARENT/ID` under each hierarchy.
//! - kubelet's systemd driver: `cgroup_parent` is a slice (`kubepods-burstable-podUID.slice`);
//!   the sandbox's cgroup is `PARENT:nanovisor:ID`, which runsc expands as runc does
//!   (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podUID.slice/nanovisor-ID.scope`)
//!   and makes itself: we do not ask systemd for a scope unit.
//! - no parent (no kubelet): `/nanovisor/ID`, runsc's own default, named explicitly so that
//!   it is recorded.
//!
//! The parent is kubelet's; only the sandbox's own directory is ever removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup hierarchies are mounted.
const ROOT: &str = "/sys/fs/cgroup";
/// runsc's directory for sandboxes whose spec names no cgroup.
const OURS: &str = "nanovisor";
/// The unit prefix of a sandbox's scope under a systemd slice (containerd's is
/// `cri-containerd`).
const SCOPE_PREFIX: &str = "nanovisor";
/// The cgroup v1 hierarchies runsc puts a sandbox in (runsc/src/confine/cgroup.rs).
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];
/// How long a removal waits for a sandbox process that was just killed to leave.
const REMOVE_WAIT: Duration = Duration::from_secs(3);

/// `linux.cgroupsPath` for the sandbox of runsc container `id` under kubelet's
/// `cgroup_parent` (see the module comment).
pub fn cgroups_path(parent: &str, id: &str) -> Result<String, String> {
    if id.is_empty() || id.contains(['/', ':']) || id == "." || id == ".." {
        return Err(format!("{id:?} is not usable as a cgroup name"));
    }
    if parent.is_empty() {
        return Ok(format!("/{OURS}/{id}"));
    }
    if parent.ends_with(".slice") && !parent.contains('/') {
        let path = format!("{parent}:{SCOPE_PREFIX}:{id}");
        relative(&path).map_err(|e| format!("cgroup_parent {parent:?}: {e}"))?;
        return Ok(path);
    }
    let Some(rel) = parent.strip_prefix('/') else {
        return Err(format!(
            "cgroup_parent {parent:?}: expected an absolute path (cgroupfs) or a systemd slice (NAME.slice)"
        ));
    };
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel.is_empty() {
        return Ok(format!("/{id}"));
    }
    if rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "cgroup_parent {parent:?}: empty, . or .. parts are not allowed"
        ));
    }
    Ok(format!("/{rel}/{id}"))
}

/// Whether kubelet's `cgroup_parent` is one [`cgroups_path`] takes.
pub fn check_parent(parent: &str) -> Result<(), String> {
    cgroups_path(parent, "id").map(drop)
}

/// Whether `cgroups_path` (made by [`cgroups_path`]) is the cgroup of runsc container `id`.
pub fn is_for(cgroups_path: &str, id: &str) -> bool {
    cgroups_path
        .rsplit(['/', ':'])
        .next()
        .is_some_and(|last| last == id)
}

/// The directory a `cgroupsPath` made by [`cgroups_path`] names under each hierarchy's root.
pub fn relative(cgroups_path: &str) -> Result<PathBuf, String> {
    if let Some((slice, rest)) = cgroups_path.split_once(':') {
        let (prefix, name) = rest
            .split_once(':')
            .ok_or_else(|| format!("{cgroups_path:?}: expected slice:prefix:name"))?;
        return systemd_path(slice, prefix, name);
    }
    let rel = cgroups_path
        .strip_prefix('/')
        .ok_or_else(|| format!("{cgroups_path:?}: not absolute"))?;
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("{cgroups_path:?}: not a directory below the root"));
    }
    Ok(PathBuf::from(rel))
}

/// systemd's directory for unit `prefix-name.scope` in `slice`.
fn systemd_path(slice: &str, prefix: &str, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return Err(format!("invalid unit name {prefix:?}-{name:?}"));
    }
    let mut path = slice_path(slice)?;
    path.push(format!("{prefix}-{name}.scope"));
    Ok(path)
}

/// systemd's directory for `slice` (runc's `ExpandSlice`): `a-b.slice` is
/// `a.slice/a-b.slice`.
fn slice_path(slice: &str) -> Result<PathBuf, String> {
    let stem = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("slice {slice:?} does not end in .slice"))?;
    if stem.is_empty()
        || stem.contains('/')
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
    {
        return Err(format!("invalid slice name {slice:?}"));
    }
    let mut path = PathBuf::new();
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        path.push(format!("{acc}.slice"));
    }
    Ok(path)
}

/// Whether `root` is a cgroup2 mount (else per-controller v1 hierarchies).
fn is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").is_file()
}

/// The directories `rel` names under `root`: one on cgroup v2, one per hierarchy on v1 (the
/// hybrid layout's `unified` mount included).
fn host_dirs(root: &Path, rel: &Path) -> Vec<PathBuf> {
    if is_v2(root) {
        return vec![root.join(rel)];
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        // `cpu,cpuacct`-style links name a hierarchy twice: the directories are enough.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(rel))
        .collect();
    dirs.sort();
    dirs
}

/// Removes the sandbox's cgroup directories (not its parents). One that still holds a
/// process stays (an error); one that holds none but is busy (the kernel lets go of a task
/// that just exited a moment later) is retried for [`REMOVE_WAIT`]; one already gone is
/// fine. Blocking.
pub fn remove(cgroups_path: &str) -> std::io::Result<()> {
    let rel = relative(cgroups_path).map_err(std::io::Error::other)?;
    let deadline = Instant::now() + REMOVE_WAIT;
    for dir in host_dirs(Path::new(ROOT), &rel) {
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && Instant::now() < deadline
                        && std::fs::read_to_string(dir.join("cgroup.procs"))
                            .is_ok_and(|procs| procs.trim().is_empty()) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("removing cgroup {}: {e}", dir.display()),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Moves process `pid` (every thread) into the cgroup `cgroups_path`, made with no limits
/// in the hierarchies runsc uses: for a pooled sandbox claimed by a pod (pool.rs). Memory
/// it has charged stays with its old cgroup (cgroup v1 does not move charges). Blocking.
pub fn adopt(cgroups_path: &str, pid: u32) -> std::io::Result<()> {
    let rel = relative(cgroups_path).map_err(std::io::Error::other)?;
    let root = Path::new(ROOT);
    let dirs: Vec<PathBuf> = if is_v2(root) {
        vec![root.join(&rel)]
    } else {
        V1_CONTROLLERS
            .iter()
            .map(|c| root.join(c))
            .filter(|h| h.is_dir())
            .map(|h| h.join(&rel))
            .collect()
    };
    for dir in dirs {
        let add = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()));
        add.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("moving process {pid} into {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// What kubelet's pod cgroup (the sandbox's parent) limits, when it exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParentLimits {
    pub memory: bool,
    pub cpu_quota: bool,
}

/// Whether kubelet's pod cgroup `parent` (a `cgroup_parent`) limits memory and CPU time;
/// None when it cannot be read (no kubelet made it: no parent, or the systemd driver's
/// slice before systemd made it). Blocking.
pub fn parent_limits(parent: &str) -> Option<ParentLimits> {
    check_parent(parent).ok()?;
    let rel = match parent.strip_prefix('/') {
        Some(rel) => PathBuf::from(rel),
        None => slice_path(parent).ok()?,
    };
    let root = Path::new(ROOT);
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    if is_v2(root) {
        let dir = root.join(&rel);
        return Some(ParentLimits {
            memory: limited_v2(&read(dir.join("memory.max"))?),
            cpu_quota: limited_v2(&read(dir.join("cpu.max"))?),
        });
    }
    Some(ParentLimits {
        memory: limited_v1_memory(&read(
            root.join("memory").join(&rel).join("memory.limit_in_bytes"),
        )?),
        cpu_quota: limited_v1_quota(&read(root.join("cpu").join(&rel).join("cpu.cfs_quota_us"))?),
    })
}

/// v2 `memory.max` or `cpu.max`: `max` (first word) is no limit.
fn limited_v2(text: &str) -> bool {
    text.split_whitespace().next().is_some_and(|w| w != "max")
}

/// v1 `memory.limit_in_bytes`: no limit reads as the largest i64 rounded down to a page
/// (which depends on the page size): anything from 2^62 on is taken for it.
fn limited_v1_memory(text: &str) -> bool {
    text.trim().parse::<u64>().is_ok_and(|n| n < 1 << 62)
}

/// v1 `cpu.cfs_quota_us`: -1 is no limit.
fn limited_v1_quota(text: &str) -> bool {
    text.trim().parse::<i64>().is_ok_and(|q| q > 0)
}

/// What the host charges a sandbox's cgroup: the sandbox process as a whole (guest memory,
/// the sentry, netstack), which is what kubelet's pod cgroup sees too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
    /// Usage less inactive file pages, which the host reclaims first (cAdvisor's rule).
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
}

/// The cgroup's usage now; None when its files cannot be read (no such cgroup).
pub fn usage(cgroups_path: &str) -> Option<Usage> {
    let rel = relative(cgroups_path).ok()?;
    let root = Path::new(ROOT);
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    if is_v2(root) {
        let dir = root.join(&rel);
        let memory_bytes = read(dir.join("memory.current"))?.trim().parse().ok()?;
        let stat = read(dir.join("memory.stat")).unwrap_or_default();
        let cpu = read(dir.join("cpu.stat")).unwrap_or_default();
        return Some(Usage {
            cpu_nanos: stat_value(&cpu, "usage_usec").saturating_mul(1_000),
            memory_bytes,
            working_set_bytes: memory_bytes.saturating_sub(stat_value(&stat, "inactive_file")),
            rss_bytes: stat_value(&stat, "anon"),
        });
    }
    let memory = root.join("memory").join(&rel);
    let memory_bytes = read(memory.join("memory.usage_in_bytes"))?
        .trim()
        .parse()
        .ok()?;
    let stat = read(memory.join("memory.stat")).unwrap_or_default();
    let cpu_nanos = read(root.join("cpuacct").join(&rel).join("cpuacct.usage"))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Some(Usage {
        cpu_nanos,
        memory_bytes,
        working_set_bytes: memory_bytes.saturating_sub(stat_value(&stat, "total_inactive_file")),
        rss_bytes: stat_value(&stat, "total_rss"),
    })
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat); 0 if absent.
fn stat_value(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_containerd_chooses_them() {
        assert_eq!(
            cgroups_path("/kubepods/burstable/pod1", "abc"),
            Ok("/kubepods/burstable/pod1/abc".into())
        );
        assert_eq!(
            cgroups_path("/kubepods/pod1/", "abc"),
            Ok("/kubepods/pod1/abc".into())
        );
        assert_eq!(cgroups_path("", "abc"), Ok("/nanovisor/abc".into()));
        assert_eq!(cgroups_path("/", "abc"), Ok("/abc".into()));
        assert_eq!(
            cgroups_path("kubepods-burstable-pod1.slice", "abc"),
            Ok("kubepods-burstable-pod1.slice:nanovisor:abc".into())
        );
        for bad in ["kubepods", "/a/../b", "/a//b", "-a.slice", "a--b.slice"] {
            assert!(cgroups_path(bad, "abc").is_err(), "{bad:?} accepted");
        }
        for bad_id in ["", "a/b", "..", "a:b"] {
            assert!(cgroups_path("/p", bad_id).is_err(), "{bad_id:?} accepted");
        }
    }

    #[test]
    fn names_its_container() {
        for parent in ["", "/kubepods/pod1", "kubepods-pod1.slice"] {
            let path = cgroups_path(parent, "abc").expect("valid");
            assert!(is_for(&path, "abc"), "{path}");
            assert!(!is_for(&path, "ab"), "{path}");
        }
    }

    #[test]
    fn relative_directories() {
        assert_eq!(
            relative("/kubepods/pod1/abc"),
            Ok(PathBuf::from("kubepods/pod1/abc"))
        );
        assert_eq!(
            relative("kubepods-burstable-pod1.slice:nanovisor:abc"),
            Ok(PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/nanovisor-abc.scope"
            ))
        );
        assert!(relative("/").is_err());
        assert!(relative("rel/ative").is_err());
        assert!(relative("/a/../../etc").is_err());
    }

    #[test]
    fn host_directories_per_layout() {
        let root = tempfile::tempdir().expect("tempdir");
        for c in ["memory", "cpu", "unified"] {
            std::fs::create_dir(root.path().join(c)).expect("mkdir");
        }
        std::fs::write(root.path().join("stray"), "").expect("write");
        let rel = Path::new("nanovisor/x");
        assert_eq!(
            host_dirs(root.path(), rel),
            ["cpu", "memory", "unified"].map(|c| root.path().join(c).join(rel))
        );
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").expect("write");
        assert_eq!(host_dirs(root.path(), rel), [root.path().join(rel)]);
    }

    #[test]
    fn parent_limits_parse() {
        assert!(!limited_v1_memory("9223372036854771712\n"));
        assert!(!limited_v1_memory("9223372036854710272\n"));
        assert!(limited_v1_memory("1073741824\n"));
        assert!(!limited_v1_quota("-1\n"));
        assert!(limited_v1_quota("50000\n"));
        assert!(!limited_v2("max\n"));
        assert!(!limited_v2("max 100000\n"));
        assert!(limited_v2("50000 100000\n"));
        assert!(limited_v2("1073741824\n"));
        assert!(parent_limits("").is_none());
    }

    #[test]
    fn stat_files_parse() {
        let stat = "cache 10\nrss 4096\ntotal_rss 8192\ntotal_inactive_file 100\n";
        assert_eq!(stat_value(stat, "total_rss"), 8192);
        assert_eq!(stat_value(stat, "rss"), 4096);
        assert_eq!(stat_value(stat, "missing"), 0);
        assert_eq!(stat_value("usage_usec 1500\n", "usage_usec"), 1500);
    }
}
