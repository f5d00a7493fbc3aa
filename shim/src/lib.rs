//! containerd-shim-nanovisor-v1: containerd's runtime v2 task API (ttrpc), served by driving
//! `runsc` as a process, one shim per pod.
//!
//! - [`shim`]: start/delete/serve, grouping a pod's tasks into one shim.
//! - [`service`]: the task API (Create, Start, Exec, Kill, Wait, Delete, …) and its events.
//! - [`runsc`]: the typed wrapper around the runsc command line.
//! - [`exits`]: exit statuses of the shim's children (it is their subreaper).
//! - [`console`]: terminals (`terminal: true`): the console socket, relays, ResizePty.
//! - [`stdio`], [`bundle`], [`process`], [`metrics`], [`config`], [`options`]: the parts.

pub mod bundle;
pub mod config;
pub mod console;
pub mod exits;
pub mod hold;
pub mod metrics;
pub mod options;
pub mod process;
pub mod runsc;
pub mod service;
pub mod shim;
pub mod stdio;
