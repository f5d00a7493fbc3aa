//! The errors guest socket operations return: Linux errno values, because the sentry hands
//! them to the guest unchanged.

/// A Linux errno for a socket operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockError(pub i32);

impl SockError {
    pub const EAGAIN: SockError = SockError(libc::EAGAIN);
    pub const EINVAL: SockError = SockError(libc::EINVAL);
    pub const EACCES: SockError = SockError(libc::EACCES);
    pub const EPERM: SockError = SockError(libc::EPERM);
    pub const EADDRINUSE: SockError = SockError(libc::EADDRINUSE);
    pub const EADDRNOTAVAIL: SockError = SockError(libc::EADDRNOTAVAIL);
    pub const EAFNOSUPPORT: SockError = SockError(libc::EAFNOSUPPORT);
    pub const EISCONN: SockError = SockError(libc::EISCONN);
    pub const ENOTCONN: SockError = SockError(libc::ENOTCONN);
    pub const EALREADY: SockError = SockError(libc::EALREADY);
    pub const EINPROGRESS: SockError = SockError(libc::EINPROGRESS);
    pub const ECONNREFUSED: SockError = SockError(libc::ECONNREFUSED);
    pub const ECONNRESET: SockError = SockError(libc::ECONNRESET);
    pub const ECONNABORTED: SockError = SockError(libc::ECONNABORTED);
    pub const ETIMEDOUT: SockError = SockError(libc::ETIMEDOUT);
    pub const ENETUNREACH: SockError = SockError(libc::ENETUNREACH);
    pub const EPIPE: SockError = SockError(libc::EPIPE);
    pub const EMSGSIZE: SockError = SockError(libc::EMSGSIZE);
    pub const EDESTADDRREQ: SockError = SockError(libc::EDESTADDRREQ);
    pub const EOPNOTSUPP: SockError = SockError(libc::EOPNOTSUPP);
    pub const ENOBUFS: SockError = SockError(libc::ENOBUFS);

    pub fn errno(self) -> i32 {
        self.0
    }
}

impl std::fmt::Display for SockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for SockError {}

pub type SockResult<T> = Result<T, SockError>;
