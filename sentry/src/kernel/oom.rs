//! The sandbox's out-of-memory killer: which processes it killed, and how many.
//!
//! Guest memory is sized from the container's memory limit, so running out of guest
//! frames is the sandbox's form of hitting a memory cgroup's limit. Linux then runs the
//! memcg OOM killer, which sends SIGKILL to a process of the cgroup; the sentry kills the
//! process whose page fault found no frame (`kernel::run`), which in a container is
//! almost always the one that is growing. A syscall that cannot get a frame to copy into
//! fails with ENOMEM instead, as Linux's in-kernel accesses do under a memcg limit.
//!
//! The count feeds the control API's stats (`runsc events` turns a new kill into an
//! `oom` event). Containers' inits are known by pid, so that the log says a container
//! ended because its init was OOM-killed, not merely that something got SIGKILL, and the
//! control API says so with the init's exit (`WaitResponse.oom_killed`) and in the
//! container's stats (`init_oom_killed`): what becomes CRI's reason `OOMKilled`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Processes killed for want of guest memory.
#[derive(Default)]
pub struct OomKiller {
    kills: AtomicU64,
    /// Thread-group ids of the victims (ids are never reused within a sandbox).
    victims: Mutex<HashSet<i32>>,
    /// Containers' inits: tgid → container id.
    inits: Mutex<HashMap<i32, Arc<str>>>,
}

impl OomKiller {
    /// Count process `tgid` as killed. True only the first time for a process, so that
    /// several of its threads faulting at once make one kill (one log line, one count).
    pub fn record(&self, tgid: i32) -> bool {
        let first = self
            .victims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tgid);
        if first {
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
        first
    }

    /// Process `tgid` is the init of container `id`.
    pub fn note_init(&self, tgid: i32, id: &str) {
        self.inits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tgid, Arc::from(id));
    }

    /// The container whose init process `tgid` is, if it is one.
    pub fn init_of(&self, tgid: i32) -> Option<Arc<str>> {
        self.inits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tgid)
            .cloned()
    }

    /// Processes killed so far.
    pub fn kills(&self) -> u64 {
        self.kills.load(Ordering::SeqCst)
    }

    /// Whether process `tgid` was killed by the OOM killer.
    pub fn killed(&self, tgid: i32) -> bool {
        self.victims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&tgid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kill_per_process() {
        let oom = OomKiller::default();
        assert!(oom.record(7));
        assert!(
            !oom.record(7),
            "a second faulting thread of 7 is the same kill"
        );
        assert!(oom.record(9));
        assert_eq!(oom.kills(), 2);
        assert!(oom.killed(7) && oom.killed(9) && !oom.killed(1));
        oom.note_init(1, "c1");
        assert_eq!(oom.init_of(1).as_deref(), Some("c1"));
        assert_eq!(oom.init_of(7), None);
    }
}
