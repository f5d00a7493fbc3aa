//! The nanovisor runtime handler as the server sees it: `nanovisor-pods`' [`pods::Runtime`]
//! once it has started, and until then the reason it has not.
//!
//! [`Handler::start`] starts the runtime in the background and retries (with a growing pause,
//! logging each failure) until it starts, unless it refuses its configuration, so that nanovisor-cri serves the upstream's
//! handlers at once and the nanovisor handler as soon as it can. Until then a RunPodSandbox
//! for the handler is `Unavailable` with the last start error.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::Status;

use crate::merge;

/// The handler name routed to the nanovisor handler before it has started and can say its
/// own name ([`pods::Runtime::handler`]).
pub const DEFAULT_NAME: &str = "nanovisor";

/// The first and the longest pause between two start attempts.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

pub struct Handler {
    runtime: OnceLock<pods::Runtime>,
    /// Why the runtime has not started (the last attempt's error).
    not_started: Mutex<String>,
    starter: Mutex<Option<JoinHandle<()>>>,
}

impl Handler {
    /// Starts [`pods::Runtime`] with `config` in the background, retrying until it starts.
    pub fn start(config: pods::Config) -> std::sync::Arc<Handler> {
        let handler = std::sync::Arc::new(Handler {
            runtime: OnceLock::new(),
            not_started: Mutex::new("starting".into()),
            starter: Mutex::new(None),
        });
        let this = handler.clone();
        let task = tokio::spawn(async move {
            let mut pause = FIRST_RETRY;
            loop {
                match pods::Runtime::start(config.clone()).await {
                    Ok(runtime) => {
                        tracing::info!(handler = runtime.handler(), "nanovisor handler started");
                        if this.runtime.set(runtime).is_err() {
                            tracing::error!("nanovisor handler started twice");
                        }
                        return;
                    }
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        // A configuration error does not heal by waiting.
                        let why = format!(
                            "its configuration ([nanovisor]) is refused: {}; not retried",
                            status.message()
                        );
                        tracing::error!("starting the nanovisor handler: {why}");
                        this.set_not_started(why);
                        return;
                    }
                    Err(status) => {
                        let why = format!("{:?}: {}", status.code(), status.message());
                        tracing::error!(
                            "starting the nanovisor handler: {why}; retrying in {pause:?} \
                             (RunPodSandbox for it answers Unavailable meanwhile)"
                        );
                        this.set_not_started(why);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LONGEST_RETRY);
                    }
                }
            }
        });
        if let Ok(mut starter) = handler.starter.lock() {
            *starter = Some(task);
        }
        handler
    }

    fn set_not_started(&self, why: String) {
        let mut slot = self.not_started.lock().unwrap_or_else(|e| e.into_inner());
        *slot = why;
    }

    fn why_not_started(&self) -> String {
        self.not_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The runtime, once started.
    pub fn runtime(&self) -> Option<&pods::Runtime> {
        self.runtime.get()
    }

    /// The runtime handler name it serves.
    pub fn name(&self) -> &str {
        self.runtime().map_or(DEFAULT_NAME, pods::Runtime::handler)
    }

    /// The error for a call the handler would serve, before it has started.
    pub fn not_started(&self) -> Status {
        Status::unavailable(format!(
            "the {} runtime handler of nanovisor-cri has not started: {}",
            self.name(),
            self.why_not_started()
        ))
    }

    /// What Status says about the handler.
    pub async fn status(&self) -> merge::Handler {
        match self.runtime() {
            Some(runtime) => merge::Handler::Started {
                handler: runtime.handler().to_string(),
                conditions: runtime.conditions().await,
            },
            None => merge::Handler::NotStarted {
                handler: self.name().to_string(),
                why: self.why_not_started(),
            },
        }
    }

    /// Stops retrying the start, and shuts the runtime down if it has started.
    pub async fn shutdown(&self) {
        let starter = self
            .starter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = starter {
            task.abort();
        }
        if let Some(runtime) = self.runtime() {
            runtime.shutdown().await;
        }
    }
}
