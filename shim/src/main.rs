//! `containerd-shim-nanovisor-v1`: started by containerd for `runtime_type =
//! "io.containerd.nanovisor.v1"`; see the shim crate. `… hold NETNS BUNDLE` is the shim's own
//! stand-in for a pod restored from a checkpoint image (shim/src/hold.rs).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(shim::hold::HOLD) {
        let netns = args.get(2).map_or("", String::as_str);
        std::process::exit(shim::hold::run(netns));
    }
    containerd_shim::run::<shim::shim::Shim>(shim::shim::RUNTIME_ID, None);
}
