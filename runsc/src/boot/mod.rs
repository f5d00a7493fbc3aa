//! The sandbox process (`runsc boot`, started by `runsc create`): one host process per
//! sandbox holding the VM, the sentry and the netstack. It builds the sandbox from the
//! bundle, confines itself, reports `ready` on the pipe `create` gave it, serves the
//! control socket, and exits with the container init's status.

pub mod control;
pub mod mounts;
pub mod network;
