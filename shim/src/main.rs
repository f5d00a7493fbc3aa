//! `containerd-shim-nanovisor-v1`: started by containerd for `runtime_type =
//! "io.containerd.nanovisor.v1"`; see the shim crate.

fn main() {
    containerd_shim::run::<shim::shim::Shim>(shim::shim::RUNTIME_ID, None);
}
