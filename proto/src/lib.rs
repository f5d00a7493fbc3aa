//! The sandbox control API (ACL, checkpoint, stats, exec) spoken over the sandbox's
//! control socket. The `.proto` files and generated code arrive with issue 5.
#![forbid(unsafe_code)]
