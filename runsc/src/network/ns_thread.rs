//! A thread that lives in a network namespace and runs jobs there. Network namespaces
//! belong to threads: one thread enters the namespace (a fresh one, or an existing one)
//! and stays, so the rest of the process keeps the host's. Things opened by a job (an
//! AF_PACKET socket) keep working from any thread afterwards.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context as _};

/// A job for the namespace thread.
type Job = Box<dyn FnOnce() + Send>;

pub struct NsThread {
    name: String,
    jobs: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    /// The thread's id (its namespace is `/proc/PID/task/TID/ns/net`).
    pub tid: libc::pid_t,
}

impl NsThread {
    /// Start thread `name`, which first runs `enter` to move itself into a namespace
    /// (unshare or setns), then serves jobs. The error is `enter`'s.
    pub fn spawn(
        name: &str,
        enter: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> anyhow::Result<NsThread> {
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<libc::pid_t>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread_name: String = name.chars().take(15).collect();
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                if let Err(e) = enter() {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                if ready_tx.send(Ok(tid)).is_err() {
                    return;
                }
                drop(ready_tx);
                for job in jobs_rx {
                    // A panicking job drops its result sender, which `run` reports; the
                    // thread, and with it the namespace, lives on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .with_context(|| format!("spawning the network namespace thread {name}"))?;
        let mut thread = NsThread {
            name: name.to_owned(),
            jobs: Some(jobs_tx),
            handle: Some(handle),
            tid: 0,
        };
        match ready_rx.recv() {
            Ok(Ok(tid)) => {
                thread.tid = tid;
                Ok(thread)
            }
            Ok(Err(e)) => {
                thread.stop();
                Err(e.into())
            }
            Err(_) => {
                thread.stop();
                bail!("the network namespace thread {name} died while starting");
            }
        }
    }

    /// Run `f` inside the namespace and return its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let gone = || anyhow!("the network namespace thread {} is gone", self.name);
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| {
            anyhow!(
                "a job in the network namespace thread {} panicked",
                self.name
            )
        })
    }

    /// Let the thread finish and wait for it; the namespace goes with it unless something
    /// opened inside still holds it.
    pub fn stop(&mut self) {
        drop(self.jobs.take());
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::warn!("the network namespace thread {} panicked", self.name);
            }
        }
    }
}
