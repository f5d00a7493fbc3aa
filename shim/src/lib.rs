//! The containerd runtime v2 shim and the standalone CRI server (issue 7).
//! Nothing is implemented yet; no binary is built, so nothing can be mistaken for working.
#![forbid(unsafe_code)]
