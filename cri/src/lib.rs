//! nanovisor-cri: a CRI endpoint (RuntimeService and ImageService over a unix socket) that
//! serves the `nanovisor` runtime handler itself, through `nanovisor-pods`, and forwards every
//! other handler and all images to an upstream CRI endpoint (containerd), merging the two
//! where kubelet asks about the whole node (Version, Status, the list calls).
#![forbid(unsafe_code)]

// `pods::Runtime`, `pods::Config` read better than the package name.
extern crate nanovisor_pods as pods;

pub mod config;
pub mod handler;
pub mod image_service;
pub mod merge;
pub mod route;
pub mod runtime_service;
pub mod server;
pub mod upstream;
