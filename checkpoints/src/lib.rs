//! The checkpoint image format: manifest, memory file and kernel state.
//!
//! Nothing is implemented yet (issue 6). This crate exists so the workspace has its final
//! shape; it exports nothing that pretends to work.
#![forbid(unsafe_code)]
