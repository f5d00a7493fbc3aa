//! The handler's errors, and the gRPC status each becomes: the code says whose fault it is
//! (NotFound for an unknown id, InvalidArgument for a bad request, FailedPrecondition for a
//! request the object's state forbids), the message names the object and the cause.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runsc(#[from] shim::runsc::RunscError),
    #[error(transparent)]
    Cni(#[from] crate::cni::CniError),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.to_string();
        move |source| Error::Io { what, source }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::NotFound(_) => Code::NotFound,
            Error::Invalid(_) => Code::InvalidArgument,
            Error::Precondition(_) => Code::FailedPrecondition,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Image(i) if i.is_not_found() => Code::NotFound,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s = Status::from(Error::NotFound("container abc".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "container abc not found")
        );
        assert_eq!(
            Status::from(Error::Invalid("x".into())).code(),
            Code::InvalidArgument
        );
    }
}
