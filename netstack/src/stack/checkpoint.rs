//! Sockets across a checkpoint of the sandbox: what of a guest socket can be saved and
//! rebuilt in a new stack.
//!
//! Listening TCP sockets keep listening (on the same address, with the same backlog),
//! bound sockets stay bound, UDP sockets keep their address and peer. A connection does
//! not survive: its peer is gone with the old stack, so it comes back reset (reads and
//! writes fail with ECONNRESET, poll says POLLERR|POLLHUP). Data queued in a socket, and
//! connections waiting in a listen queue, are lost.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::tcp::{TcpOptions, TcpState};
use super::{SockError, SockResult, Stack, TcpSocket, UdpSocket};

/// A TCP socket's options, as saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpOptionsState {
    pub nodelay: bool,
    pub keepalive: bool,
    pub reuseaddr: bool,
    pub v6only: bool,
}

/// What a TCP socket was doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TcpPhase {
    /// Fresh, maybe bound.
    Idle {
        bound: Option<SocketAddr>,
    },
    Listening {
        bound: SocketAddr,
        backlog: u32,
    },
    /// Connected or connecting: it comes back reset.
    Connection,
    /// A connect that failed, its error (errno) not yet read.
    Failed {
        error: Option<i32>,
    },
}

/// One guest TCP socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocketState {
    pub v6: bool,
    pub options: TcpOptionsState,
    pub phase: TcpPhase,
}

/// One guest UDP socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpSocketState {
    pub v6: bool,
    pub bound: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub reuseaddr: bool,
}

impl TcpSocket {
    /// This socket as a checkpoint keeps it.
    pub fn checkpoint(&self) -> TcpSocketState {
        let g = self.shared.lock();
        let Some(e) = g.tcp.get(&self.id) else {
            return TcpSocketState {
                v6: self.v6,
                options: TcpOptionsState::default(),
                phase: TcpPhase::Failed { error: None },
            };
        };
        let phase = match &e.state {
            TcpState::Idle => TcpPhase::Idle { bound: e.bound },
            TcpState::Listening { backlog, .. } => match e.bound {
                Some(bound) => TcpPhase::Listening {
                    bound,
                    backlog: *backlog as u32,
                },
                None => TcpPhase::Idle { bound: None },
            },
            TcpState::Connecting { .. } | TcpState::Connected { .. } => TcpPhase::Connection,
            TcpState::Failed => TcpPhase::Failed {
                error: e.error.map(|err| err.errno()),
            },
        };
        TcpSocketState {
            v6: self.v6,
            options: TcpOptionsState {
                nodelay: e.opts.nodelay,
                keepalive: e.opts.keepalive,
                reuseaddr: e.opts.reuseaddr,
                v6only: e.opts.v6only,
            },
            phase,
        }
    }
}

impl UdpSocket {
    /// This socket as a checkpoint keeps it.
    pub fn checkpoint(&self) -> UdpSocketState {
        let bound = self.shared.lock().udp.get(&self.id).and_then(|e| e.bound);
        UdpSocketState {
            v6: self.v6,
            bound,
            peer: self.peer_addr().ok(),
            reuseaddr: self.reuseaddr(),
        }
    }
}

impl Stack {
    /// A TCP socket rebuilt from a checkpoint: listening again, bound again, or (a
    /// connection) reset. Binding goes through the port table and the listen policy as
    /// any bind does, so a port taken or refused fails the restore of this socket.
    pub fn restore_tcp(&self, state: &TcpSocketState) -> SockResult<TcpSocket> {
        let s = self.tcp_socket(state.v6);
        s.set_options(TcpOptions {
            nodelay: state.options.nodelay,
            keepalive: state.options.keepalive,
            reuseaddr: state.options.reuseaddr,
            v6only: state.options.v6only,
        });
        match &state.phase {
            TcpPhase::Idle { bound: None } => {}
            TcpPhase::Idle { bound: Some(addr) } => s.bind(*addr)?,
            TcpPhase::Listening { bound, backlog } => {
                s.bind(*bound)?;
                s.listen(i32::try_from(*backlog).unwrap_or(i32::MAX))?;
            }
            TcpPhase::Connection => s.fail(Some(SockError::ECONNRESET)),
            TcpPhase::Failed { error } => s.fail(error.map(SockError)),
        }
        Ok(s)
    }

    /// A UDP socket rebuilt from a checkpoint (its queued datagrams are gone).
    pub fn restore_udp(&self, state: &UdpSocketState) -> SockResult<UdpSocket> {
        let s = self.udp_socket(state.v6);
        s.set_reuseaddr(state.reuseaddr);
        if let Some(addr) = state.bound {
            s.bind(addr)?;
        }
        if state.peer.is_some() {
            s.connect(state.peer)?;
        }
        Ok(s)
    }
}
