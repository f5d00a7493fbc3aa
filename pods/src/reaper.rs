//! Exit statuses of our children, for the shim's typed runsc wrapper.
//!
//! `runsc create` leaves the sandbox process (or, for a container that joins its pod's
//! sandbox, a waiter whose exit is the container's) behind when it exits; `runsc exec
//! --detach` leaves a waiter. We make ourselves a child subreaper so that these come to us
//! rather than to init, and one thread reaps every child (`waitpid(-1)`) and files its status
//! in the shim's [`Exits`] table, where whoever waits for a pid takes it, whether the exit
//! came first or the wait. This is how the shim works too (exits.rs there).
//!
//! The price: the process hosting the [`crate::Runtime`] must not wait for children any other
//! way (no `Child::wait`, no `tokio::process`): this thread would take their statuses first.
//!
//! With no child at all `waitpid` fails at once (ECHILD); the thread then sleeps until
//! [`Reaper::kick`], which is called before every spawn, or for at most [`IDLE_POLL`].

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use shim::exits::Exits;

/// How long the reaper sleeps when there is no child and nobody kicked it.
const IDLE_POLL: Duration = Duration::from_millis(200);

pub struct Reaper {
    pub exits: Arc<Exits>,
    kicked: Mutex<bool>,
    wake: Condvar,
}

/// The process's one reaper: a second `waitpid(-1)` loop would steal the first one's exits.
static REAPER: std::sync::OnceLock<Arc<Reaper>> = std::sync::OnceLock::new();

impl Reaper {
    /// Becomes a subreaper and starts the reaping thread, once per process; later calls get
    /// the same reaper.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        static STARTING: Mutex<()> = Mutex::new(());
        let _once = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = REAPER.get() {
            return Ok(Arc::clone(r));
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        let reaper = Arc::new(Reaper {
            exits: Arc::new(Exits::default()),
            kicked: Mutex::new(false),
            wake: Condvar::new(),
        });
        let r = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("nanovisor-reaper".into())
            .spawn(move || r.run())?;
        let _ = REAPER.set(Arc::clone(&reaper));
        Ok(reaper)
    }

    /// Says a child is about to be spawned: an idle reaper starts waiting again.
    pub fn kick(&self) {
        *self.kicked.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) => self.exits.record(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    self.exits.record(pid.as_raw(), 128 + signal as i32)
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    // No child (ECHILD): sleep until the next spawn.
                    let mut kicked = self.kicked.lock().unwrap_or_else(PoisonError::into_inner);
                    if !*kicked {
                        kicked = self
                            .wake
                            .wait_timeout(kicked, IDLE_POLL)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    *kicked = false;
                }
            }
        }
    }
}
