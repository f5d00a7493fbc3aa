//! ExecSync: `runsc exec --detach` of the command in the container, its stdout and stderr
//! collected from pipes, its exit from runsc's waiter; past the timeout the process gets
//! SIGKILL (`runsc kill --pid`) and the call fails with DeadlineExceeded.

use std::io::Read as _;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};
use shim::runsc::Stdio3;

use crate::containers::resolve;
use crate::error::{Error, Result};
use crate::model::CtrState;
use crate::{blocking, names, rootfs, spec, Inner};

/// The most output kept of each stream (kubelet's own cap is 16 MiB).
const MAX_OUTPUT: u64 = 16 << 20;
/// How long the output may trail the exit (the sandbox closes its copies of the pipes).
const DRAIN: Duration = Duration::from_secs(5);

fn reader(fd: std::os::fd::OwnedFd) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::fs::File::from(fd)
            .take(MAX_OUTPUT)
            .read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

pub async fn exec_sync(inner: &Arc<Inner>, r: ExecSyncRequest) -> Result<ExecSyncResponse> {
    let id = resolve(inner, &r.container_id)?;
    if r.cmd.is_empty() {
        return Err(Error::Invalid("ExecSync: no command".into()));
    }
    let (bundle, process) = {
        let state = inner.lock();
        let c = state
            .ctrs
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
        if c.state != CtrState::Running {
            return Err(Error::Precondition(format!(
                "container {id} is not running"
            )));
        }
        (c.bundle.clone(), spec::exec_process(&c.spec, &r.cmd))
    };
    let timeout = (r.timeout > 0).then(|| Duration::from_secs(r.timeout.unsigned_abs()));
    let (runsc, reaper) = (Arc::clone(&inner.runsc), Arc::clone(&inner.reaper));
    blocking(move || {
        let exec_id = &names::new_id().map_err(Error::io("making an id"))?[..16];
        let file = |ext: &str| bundle.join(format!("exec-{exec_id}.{ext}"));
        let (process_file, pid_file, ipid_file) = (file("json"), file("pid"), file("sandbox-pid"));
        let cleanup = || {
            for f in [&process_file, &pid_file, &ipid_file] {
                let _ = std::fs::remove_file(f);
            }
        };
        let result = (|| {
            std::fs::write(&process_file, process.to_string())
                .map_err(Error::io(format!("writing {}", process_file.display())))?;
            let (out_r, out_w) = rootfs::pipe()?;
            let (err_r, err_w) = rootfs::pipe()?;
            let (out, err) = (reader(out_r), reader(err_r));
            // Before `runsc exec` starts the waiter whose pid it writes.
            let since = reaper.exits.mark();
            reaper.kick();
            runsc.exec(
                &id,
                &bundle,
                &process_file,
                &pid_file,
                &ipid_file,
                None,
                Stdio3 {
                    stdin: None,
                    stdout: Some(out_w),
                    stderr: Some(err_w),
                },
            )?;
            let read_pid = |p: &std::path::Path| -> Result<i32> {
                let t = std::fs::read_to_string(p)
                    .map_err(Error::io(format!("reading {}", p.display())))?;
                t.trim()
                    .parse()
                    .map_err(|_| Error::Internal(format!("{}: not a pid: {t:?}", p.display())))
            };
            let waiter = read_pid(&pid_file)?;
            let Some(exit) = reaper.exits.wait_after(waiter, since, timeout) else {
                if let Ok(pid) = read_pid(&ipid_file) {
                    let _ = runsc.kill_pid(&id, pid, libc::SIGKILL as u32);
                }
                return Err(Error::Timeout(format!(
                    "ExecSync {:?} in container {id}: timed out after {} s",
                    process["args"], r.timeout
                )));
            };
            let stdout = out.recv_timeout(DRAIN).unwrap_or_default();
            let stderr = err.recv_timeout(DRAIN).unwrap_or_default();
            Ok(ExecSyncResponse {
                stdout,
                stderr,
                exit_code: exit.status,
            })
        })();
        cleanup();
        result
    })
    .await
}
