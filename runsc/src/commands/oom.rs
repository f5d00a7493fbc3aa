//! Whether a container's init was ended by the sandbox's out-of-memory killer, for
//! `runsc state` (`"oomKilled": true`), which is how containerd's shim and nanovisor-pods
//! tell an `OOMKilled` container from one killed by a signal. (`runsc wait` takes it from
//! the sandbox's answer to the wait itself.)
//!
//! The sandbox knows (`WaitResponse.oom_killed` with the exit, `StatsResponse.
//! init_oom_killed` after it) for as long as the container is in it. A pod container's
//! waiter (`runsc exec-wait`), which is the first to learn of the init's end, also leaves a
//! mark in the container's state directory, so that the answer outlives the sandbox: the
//! pod may be torn down before anyone asks.

use crate::container::Container;

/// The mark's file name in the container's state directory, and what it holds when the
/// init was OOM-killed. (A sandbox process makes the file empty before it gives up the
/// host's file tree, and fills it only if its own container's init was OOM-killed.)
pub const MARK: &str = "oom-killed";
pub const MARK_TEXT: &[u8] = b"oom\n";

/// Whether the init of `c`, which has ended, was OOM-killed: the mark, or the sandbox's
/// word while it runs.
pub fn init_oom_killed(c: &Container) -> bool {
    if matches!(c.dir.read(MARK), Ok(Some(text)) if text == MARK_TEXT) {
        return true;
    }
    c.sandbox_alive() && ask_sandbox(c)
}

/// Marks `c`'s init as OOM-killed (the sandbox said so with its exit). A failure to
/// write the mark is logged: the sandbox still answers while it lives.
pub fn mark(c: &Container) {
    if let Err(e) = c.dir.write_atomic(MARK, MARK_TEXT) {
        tracing::warn!(container = c.id(), "marking the OOM kill: {e}");
    }
}

fn ask_sandbox(c: &Container) -> bool {
    match c.control().and_then(|mut ctl| ctl.stats()) {
        Ok(s) => s.init_oom_killed,
        Err(e) => {
            tracing::debug!(container = c.id(), "asking about an OOM kill: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::dir::Root;

    #[test]
    fn the_mark_outlives_the_sandbox() {
        let path = std::env::temp_dir().join(format!("runsc-oom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let root = Root::new(&path).expect("root");
        let (dir, _lock) = root.create("c1").expect("container dir");
        let c = Container::from_dir(dir).expect("container");
        // No sandbox to ask and no mark: not OOM-killed.
        assert!(!init_oom_killed(&c));
        c.dir.write_atomic(MARK, MARK_TEXT).expect("mark");
        assert!(init_oom_killed(&c));
        let _ = std::fs::remove_dir_all(&path);
    }
}
