//! `-p HOST:GUEST` without a network namespace (`--network none`): connections accepted on
//! `127.0.0.1:HOST` are relayed by the sandbox's own stack to the guest's port over its
//! loopback (see `netstack::stack::Stack::relay_to_guest`). Needs no root.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context as _;
use netstack::stack::Stack;

/// Start relaying `127.0.0.1:host_port` to the guest's `guest_port`; the address listened on.
/// The accepting thread lives as long as the process (the sandbox ends with it).
pub fn start(stack: Arc<Stack>, host_port: u16, guest_port: u16) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, host_port))
        .with_context(|| format!("listening on 127.0.0.1:{host_port} for -p"))?;
    let addr = listener.local_addr().context("listener address")?;
    std::thread::Builder::new()
        .name(format!("fwd-{host_port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        if let Err(e) = stack.relay_to_guest(c, guest_port) {
                            tracing::warn!("-p {host_port}:{guest_port}: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("-p {host_port}: accept: {e}"),
                }
            }
        })
        .context("spawning the -p thread")?;
    Ok(addr)
}
