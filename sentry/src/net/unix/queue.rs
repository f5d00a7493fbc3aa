//! An AF_UNIX socket's receive queue: the messages its peers sent it, in order. A stream
//! socket reads across them as one byte stream; datagram and seqpacket sockets take one
//! message per receive, and what does not fit the caller's buffer is lost.
//!
//! A message may carry open files (SCM_RIGHTS). A stream receive that meets such a
//! message takes its files and stops at the message's end, so files never arrive with
//! bytes sent after them (Linux unix_stream_read_generic).
//!
//! Messages leave the queue by value, so the caller credits their senders (and drops
//! them, with any files, which may close sockets) after letting go of the socket's lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::addr::UnixAddr;
use super::endpoint::Endpoint;
use crate::vfs::file::FileDescription;

/// Files in flight (SCM_RIGHTS).
pub type Rights = Vec<Arc<dyn FileDescription>>;

/// One message (a datagram, or one send's worth of a stream).
pub struct Message {
    pub data: Vec<u8>,
    /// The sender's name when it sent (recvfrom reports it).
    pub from: Option<UnixAddr>,
    /// Whose send buffer the message counts against until it is consumed.
    pub sender: Weak<Endpoint>,
    /// How much it counts.
    pub charge: usize,
    /// Files sent along.
    pub rights: Rights,
}

/// What a receive took.
pub struct Taken {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The message's length (datagrams), or `len` (streams).
    pub full_len: usize,
    /// The sender's name, from the first message read.
    pub from: Option<UnixAddr>,
    /// Messages consumed whole: their senders get their charge back.
    pub consumed: Vec<Message>,
    /// Files that came with the data (copies of the references when peeking).
    pub rights: Rights,
}

thread_local! {
    /// Messages waiting to be dropped by `dispose`, and whether a `dispose` further up
    /// this thread's stack is already dropping them.
    static DOOMED: RefCell<(Vec<Message>, bool)> = const { RefCell::new((Vec::new(), false)) };
}

/// Drop messages without recursing: a message may carry a socket whose own queue holds
/// a socket, and so on as deep as a guest likes. A drop that starts while another is
/// under way on this thread only queues its messages; the outermost one drops them all.
pub fn dispose(msgs: Vec<Message>) {
    let outermost = DOOMED.with(|d| {
        let mut d = d.borrow_mut();
        d.0.extend(msgs);
        !std::mem::replace(&mut d.1, true)
    });
    if !outermost {
        return;
    }
    loop {
        let batch = DOOMED.with(|d| std::mem::take(&mut d.borrow_mut().0));
        if batch.is_empty() {
            break;
        }
        drop(batch);
    }
    DOOMED.with(|d| d.borrow_mut().1 = false);
}

#[derive(Default)]
pub struct RecvQueue {
    msgs: VecDeque<Message>,
    /// Bytes of the front message a stream reader has already taken.
    front_read: usize,
    /// Unread bytes in the queue.
    unread: usize,
}

impl RecvQueue {
    pub fn push(&mut self, m: Message) {
        self.unread += m.data.len();
        self.msgs.push_back(m);
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Unread bytes in every message (FIONREAD of a stream or seqpacket socket).
    pub fn unread(&self) -> usize {
        self.unread
    }

    /// The length of the next message (FIONREAD of a datagram socket), 0 when empty.
    pub fn next_len(&self) -> usize {
        self.msgs.front().map_or(0, |m| m.data.len())
    }

    /// Take every message (the socket closes or is disconnected).
    pub fn drain(&mut self) -> Vec<Message> {
        self.front_read = 0;
        self.unread = 0;
        self.msgs.drain(..).collect()
    }

    /// Stream receive: copy up to `buf.len()` bytes across messages; with `peek`, leave
    /// them queued. None when the queue is empty.
    pub fn read_stream(&mut self, buf: &mut [u8], peek: bool) -> Option<Taken> {
        let from = self.msgs.front()?.from.clone();
        let mut done = 0;
        let mut consumed = Vec::new();
        let mut rights = Vec::new();
        let mut skip = self.front_read;
        let mut index = 0;
        while done < buf.len() {
            let Some(m) = self.msgs.get_mut(index) else {
                break;
            };
            let n = (m.data.len() - skip).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&m.data[skip..skip + n]);
            done += n;
            let had_rights = !m.rights.is_empty();
            if peek {
                rights.extend(m.rights.iter().cloned());
                if had_rights {
                    break;
                }
                index += 1;
                skip = 0;
                continue;
            }
            rights.append(&mut m.rights);
            self.unread -= n;
            if skip + n < m.data.len() {
                self.front_read = skip + n;
                break;
            }
            self.front_read = 0;
            skip = 0;
            consumed.extend(self.msgs.pop_front());
            if had_rights {
                break;
            }
        }
        Some(Taken {
            len: done,
            full_len: done,
            from,
            consumed,
            rights,
        })
    }

    /// Datagram receive: the next message, cut to `buf`; with `peek`, left queued.
    pub fn read_message(&mut self, buf: &mut [u8], peek: bool) -> Option<Taken> {
        let m = self.msgs.front_mut()?;
        let n = m.data.len().min(buf.len());
        buf[..n].copy_from_slice(&m.data[..n]);
        let (full_len, from) = (m.data.len(), m.from.clone());
        let mut consumed = Vec::new();
        let rights = if peek {
            m.rights.clone()
        } else {
            std::mem::take(&mut m.rights)
        };
        if !peek {
            self.unread -= full_len;
            consumed.extend(self.msgs.pop_front());
        }
        Some(Taken {
            len: n,
            full_len,
            from,
            consumed,
            rights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(data: &[u8]) -> Message {
        Message {
            data: data.to_vec(),
            from: None,
            sender: Weak::new(),
            charge: data.len(),
            rights: Vec::new(),
        }
    }

    fn with_file(data: &[u8]) -> Message {
        let (r, _w) = crate::vfs::pipe::new_pipe(0);
        Message {
            rights: vec![r],
            ..msg(data)
        }
    }

    #[test]
    fn a_stream_read_stops_after_files() {
        let mut q = RecvQueue::default();
        q.push(msg(b"ab"));
        q.push(with_file(b"cd"));
        q.push(msg(b"ef"));
        let mut b = [0u8; 8];
        let t = q.read_stream(&mut b, true).expect("peek");
        assert_eq!((t.len, t.rights.len()), (4, 1), "a peek copies the files");
        let t = q.read_stream(&mut b, false).expect("read");
        assert_eq!((&b[..t.len], t.rights.len()), (&b"abcd"[..], 1));
        let t = q.read_stream(&mut b, false).expect("read");
        assert_eq!((&b[..t.len], t.rights.len()), (&b"ef"[..], 0));
        // Files come with the first byte of their message, even when cut short.
        q.push(with_file(b"gh"));
        let mut one = [0u8; 1];
        let t = q.read_stream(&mut one, false).expect("read");
        assert_eq!((t.len, t.rights.len()), (1, 1));
        let t = q.read_stream(&mut one, false).expect("read");
        assert_eq!((t.len, t.rights.len()), (1, 0));
        q.push(with_file(b"m"));
        let t = q.read_message(&mut b, true).expect("peek");
        assert_eq!(t.rights.len(), 1);
        let t = q.read_message(&mut b, false).expect("read");
        assert_eq!(t.rights.len(), 1);
    }

    #[test]
    fn a_stream_reads_across_messages_and_peeks() {
        let mut q = RecvQueue::default();
        q.push(msg(b"hello"));
        q.push(msg(b"world"));
        let mut b = [0u8; 7];
        let t = q.read_stream(&mut b, true).expect("data");
        assert_eq!((t.len, &b[..7]), (7, &b"hellowo"[..]));
        assert!(t.consumed.is_empty());
        assert_eq!(q.unread(), 10);
        let t = q.read_stream(&mut b, false).expect("data");
        assert_eq!(t.len, 7);
        assert_eq!(t.consumed.len(), 1, "the first message is used up");
        assert_eq!(q.unread(), 3);
        let mut b = [0u8; 2];
        let t = q.read_stream(&mut b, true).expect("data");
        assert_eq!(&b[..t.len], b"rl", "a peek starts where reading stopped");
        let mut b = [0u8; 8];
        let t = q.read_stream(&mut b, false).expect("data");
        assert_eq!(&b[..t.len], b"rld");
        assert!(q.read_stream(&mut b, false).is_none());
    }

    #[test]
    fn datagrams_keep_boundaries_and_truncate() {
        let mut q = RecvQueue::default();
        q.push(msg(b"abcdef"));
        q.push(msg(b""));
        q.push(msg(b"xy"));
        assert_eq!(q.next_len(), 6);
        let mut b = [0u8; 4];
        let t = q.read_message(&mut b, true).expect("peek");
        assert_eq!((t.len, t.full_len, q.len()), (4, 6, 3));
        let t = q.read_message(&mut b, false).expect("message");
        assert_eq!((t.len, t.full_len, &b[..]), (4, 6, &b"abcd"[..]));
        let t = q.read_message(&mut b, false).expect("empty message");
        assert_eq!((t.len, t.full_len), (0, 0));
        assert_eq!(q.unread(), 2);
        let t = q.read_message(&mut b, false).expect("message");
        assert_eq!(&b[..t.len], b"xy");
        assert!(q.is_empty());
        q.push(msg(b"z"));
        assert_eq!(q.drain().len(), 1);
        assert_eq!(q.unread(), 0);
    }
}
