//! The sandbox's out-of-memory killer: which processes it killed, and how many.
//!
//! Guest memory is sized from the container's memory limit, so running out of guest
//! frames is the sandbox's form of hitting a memory cgroup's limit. Linux then runs the
//! memcg OOM killer, which sends SIGKILL to a process of the cgroup; the sentry kills the
//! process whose page fault found no frame (`kernel::run`), which in a container is
//! almost always the one that is growing. A syscall that cannot get a frame to copy into
//! fails with ENOMEM instead, as Linux's in-kernel accesses do under a memcg limit.
//!
//! The count, per container, feeds the control API's stats (`runsc events ID` turns a
//! new kill of one of container ID's processes into an `oom` event). Containers' inits are known by pid, so that the log says a container
//! ended because its init was OOM-killed, not merely that something got SIGKILL, and the
//! control API says so with the init's exit (`WaitResponse.oom_killed`) and in the
//! container's stats (`init_oom_killed`): what becomes CRI's reason `OOMKilled`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Processes killed for want of guest memory.
#[derive(Default)]
pub struct OomKiller {
    /// Kills by the container of the process killed.
    kills: Mutex<HashMap<Arc<str>, u64>>,
    /// Thread-group ids of the victims (ids are never reused within a sandbox).
    victims: Mutex<HashSet<i32>>,
    /// Containers' inits: tgid → container id.
    inits: Mutex<HashMap<i32, Arc<str>>>,
}

impl OomKiller {
    /// Count process `tgid`, of container `container`, as killed. True only the first
    /// time for a process, so that several of its threads faulting at once make one kill
    /// (one log line, one count).
    pub fn record(&self, tgid: i32, container: &Arc<str>) -> bool {
        let first = self
            .victims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tgid);
        if first {
            *self
                .kills
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(container.clone())
                .or_default() += 1;
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

    /// Processes of container `id` killed so far (of every container when None).
    pub fn kills(&self, id: Option<&str>) -> u64 {
        let kills = self.kills.lock().unwrap_or_else(|e| e.into_inner());
        match id {
            Some(id) => kills.get(id).copied().unwrap_or(0),
            None => kills.values().sum(),
        }
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
        let (c1, c2): (Arc<str>, Arc<str>) = (Arc::from("c1"), Arc::from("c2"));
        assert!(oom.record(7, &c1));
        assert!(
            !oom.record(7, &c1),
            "a second faulting thread of 7 is the same kill"
        );
        assert!(oom.record(9, &c2));
        assert!(oom.record(11, &c2));
        assert_eq!(oom.kills(None), 3);
        assert_eq!(oom.kills(Some("c1")), 1);
        assert_eq!(oom.kills(Some("c2")), 2);
        assert_eq!(oom.kills(Some("c3")), 0);
        assert!(oom.killed(7) && oom.killed(9) && !oom.killed(1));
        oom.note_init(1, "c1");
        assert_eq!(oom.init_of(1).as_deref(), Some("c1"));
        assert_eq!(oom.init_of(7), None);
    }
}
