//! The shim binary's life: `start` (containerd asks for a shim for a task and gets the
//! address of the pod's shim, starting it if it is the pod's first task), `delete` (clean
//! up after a shim that is gone), and serving the task API until the pod's last container
//! is deleted.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, ExitSignal, Flags, StartOpts};

use crate::bundle;
use crate::exits::Exits;
use crate::runsc::Runsc;
use crate::service::Service;

/// The runtime id containerd knows us by (`runtime_type` in its configuration).
pub const RUNTIME_ID: &str = "io.containerd.nanovisor.v1";

pub struct Shim {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
}

impl containerd_shim::Shim for Shim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Shim {
        Shim {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
        }
    }

    /// One shim per pod: tasks carrying the same CRI sandbox id get the same address, so
    /// containerd sends the whole pod to one shim, which keeps the pod in one sandbox.
    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = bundle::read_config(Path::new("."))
            .ok()
            .and_then(|c| bundle::annotation(&c, bundle::SANDBOX_ID_ANNOTATION).map(String::from))
            .unwrap_or_else(|| opts.id.clone());
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        Ok(address)
    }

    /// Called with the bundle as the working directory when containerd finds a task whose
    /// shim is gone: remove the container and unmount its rootfs.
    fn delete_shim(&mut self) -> containerd_shim::Result<api::DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("the bundle directory: {e}")))?;
        if let Some(record) = bundle::read_record(&bundle) {
            let exits = Exits::start()?;
            let runsc = Runsc::new(record.runsc, record.root, false, exits);
            if let Err(e) = runsc.delete(&self.id) {
                containerd_shim::warn!("cleaning up {} in {}: {e}", self.id, self.namespace);
            }
        }
        bundle::unmount_rootfs(&bundle);
        Ok(api::DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(crate::process::timestamp(std::time::SystemTime::now())).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Without the exit table no task could ever be waited for: nothing to serve.
        let exits = Exits::start().expect("starting the shim's exit table");
        Service::new(
            self.namespace.clone(),
            exits,
            publisher,
            Arc::clone(&self.exit),
        )
    }
}
