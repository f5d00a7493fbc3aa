//! Why a checkpoint could not be taken or a state could not be restored.

use crate::abi::Errno;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The sandbox holds something checkpoints cannot carry yet; names it.
    #[error("cannot checkpoint {0}")]
    Unsupported(String),
    /// Not every thread stopped in time (one is busy in the sentry and cannot be
    /// interrupted); names them.
    #[error("threads did not stop for the checkpoint: {0}")]
    NotQuiescent(String),
    #[error("kernel state: format version {found}, this sentry reads version {expected}")]
    Version { found: u32, expected: u32 },
    /// The bytes do not decode as kernel state (truncated, corrupted).
    #[error("kernel state does not decode: {0}")]
    Decode(String),
    #[error("encoding the kernel state: {0}")]
    Encode(String),
    /// The state decodes but is inconsistent (an id that names nothing, a frame outside
    /// guest memory, …); names what.
    #[error("kernel state is inconsistent: {0}")]
    Invalid(String),
    /// Rebuilding an object failed on this host.
    #[error("restoring {what}: {errno}")]
    Restore { what: String, errno: Errno },
    #[error("restoring the platform: {0}")]
    Platform(String),
}

impl StateError {
    pub fn invalid(what: impl Into<String>) -> StateError {
        StateError::Invalid(what.into())
    }

    pub fn unsupported(what: impl Into<String>) -> StateError {
        StateError::Unsupported(what.into())
    }
}
