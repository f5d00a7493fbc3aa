//! What the shim knows of one process: a container's init or an exec.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim::api::Status;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::console::Console;
use crate::exits::Exit;
use crate::stdio::StdinRelay;

/// The paths containerd gave for the process's stdio (reported back by State).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

pub struct Process {
    pub stdio: StdioPaths,
    /// The host pid containerd sees: the sandbox process for a pod's sandbox container, a
    /// `runsc exec-wait` waiter for anything else. 0 until created (execs: started).
    pub pid: u32,
    /// An exec's pid inside the sandbox, for `runsc kill --pid`.
    pub sandbox_pid: Option<i32>,
    pub started: bool,
    pub exit: Option<Exit>,
    pub stdin: Option<StdinRelay>,
    /// With `terminal: true`, once created (execs: started): the pty master and its relays,
    /// which go with the process.
    pub console: Option<Console>,
    /// An exec's OCI process (JSON), until it is started.
    pub spec: Option<Vec<u8>>,
    /// Files to remove with the process (an exec's process.json and pid files).
    pub files: Vec<PathBuf>,
}

impl Process {
    pub fn new(stdio: StdioPaths) -> Process {
        Process {
            stdio,
            pid: 0,
            sandbox_pid: None,
            started: false,
            exit: None,
            stdin: None,
            console: None,
            spec: None,
            files: Vec::new(),
        }
    }

    /// containerd's view of the process.
    pub fn status(&self, paused: bool) -> Status {
        match (&self.exit, self.started, paused) {
            (Some(_), _, _) => Status::STOPPED,
            (None, false, _) => Status::CREATED,
            (None, true, true) => Status::PAUSED,
            (None, true, false) => Status::RUNNING,
        }
    }

    pub fn exit_status(&self) -> u32 {
        self.exit.map_or(0, |e| e.status as u32)
    }

    pub fn exited_at(&self) -> Option<Timestamp> {
        self.exit.map(|e| timestamp(e.at))
    }

    pub fn remove_files(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_lifecycle() {
        let mut p = Process::new(StdioPaths::default());
        assert_eq!(p.status(false), Status::CREATED);
        p.started = true;
        assert_eq!(p.status(false), Status::RUNNING);
        assert_eq!(p.status(true), Status::PAUSED);
        p.exit = Some(Exit {
            status: 137,
            at: UNIX_EPOCH,
        });
        assert_eq!(p.status(true), Status::STOPPED);
        assert_eq!(p.exit_status(), 137);
    }
}
