//! Tasks, their state, and the loop that runs a task until it exits.

pub mod exec;
pub mod exit;
pub mod signal;
pub mod task;
