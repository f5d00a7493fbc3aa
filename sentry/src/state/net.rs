//! Sockets across a checkpoint. An AF_INET/AF_INET6 socket keeps its options and what
//! netstack keeps of it (a listener listens again; a connection comes back reset: see
//! `netstack::stack::checkpoint`). AF_UNIX sockets are not carried yet: a checkpoint of
//! a sandbox holding one fails, naming it.

use serde::{Deserialize, Serialize};

pub use netstack::stack::checkpoint::{TcpSocketState, UdpSocketState};

#[derive(Serialize, Deserialize)]
pub enum ProtoState {
    Tcp(TcpSocketState),
    Udp(UdpSocketState),
}

/// One AF_INET/AF_INET6 socket.
#[derive(Serialize, Deserialize)]
pub struct InetSocketState {
    pub domain: i32,
    /// Status flags (O_NONBLOCK).
    pub flags: u32,
    /// Options stored for getsockopt: (level, name) → value.
    pub stored: Vec<((i32, i32), Vec<u8>)>,
    pub broadcast: bool,
    pub proto: ProtoState,
}
