//! Linux's user ABI as the guest sees it: errno values, constants and struct layouts.

pub mod errno;

pub use errno::Errno;
