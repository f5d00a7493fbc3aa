//! Tasks, thread groups, their state, and the loop that runs a task until it exits.

pub mod cputime;
pub mod creds;
pub mod exec;
pub mod exit;
pub mod freeze;
pub mod futex;
pub mod oom;
pub mod posix_timer;
pub mod process;
pub mod run;
pub mod signal;
pub mod sigqueue;
pub mod task;
pub mod thread_group;
