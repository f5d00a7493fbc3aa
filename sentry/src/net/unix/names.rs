//! The sandbox's abstract AF_UNIX namespace (names that start with a NUL byte and live in
//! no file system). As in Linux, where the name hash includes the socket type, a stream
//! and a datagram socket may hold the same name, and a lookup finds only sockets of the
//! asker's type. Autobind picks free five-hex-digit names.
//!
//! Lock order: the namespace lock before an endpoint's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::addr::UnixAddr;
use super::endpoint::{Endpoint, SockType};
use crate::abi::Errno;

/// Autobind names are 5 hex digits: 2^20 of them.
const AUTOBIND_NAMES: u32 = 1 << 20;

#[derive(Default)]
struct Names {
    bound: HashMap<(SockType, Vec<u8>), Weak<Endpoint>>,
    next_auto: u32,
}

impl Names {
    fn in_use(&self, key: &(SockType, Vec<u8>)) -> bool {
        self.bound
            .get(key)
            .and_then(Weak::upgrade)
            .is_some_and(|e| !e.is_dead())
    }
}

/// One sandbox's abstract names.
#[derive(Default)]
pub struct AbstractNamespace {
    names: Mutex<Names>,
}

impl AbstractNamespace {
    fn lock(&self) -> MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// bind(2) to `name` (EINVAL if `ep` is named already, EADDRINUSE if the name is held).
    pub fn bind(&self, ep: &Arc<Endpoint>, name: &[u8]) -> Result<(), Errno> {
        let mut g = self.lock();
        if ep.addr().is_some() {
            return Err(Errno::EINVAL);
        }
        let key = (ep.ty, name.to_vec());
        if g.in_use(&key) {
            return Err(Errno::EADDRINUSE);
        }
        ep.set_addr(UnixAddr::Abstract(name.to_vec()))?;
        g.bound.insert(key, Arc::downgrade(ep));
        Ok(())
    }

    /// Autobind (bind with only the family): a free name, unless `ep` has one already.
    pub fn autobind(&self, ep: &Arc<Endpoint>) -> Result<(), Errno> {
        let mut g = self.lock();
        if ep.addr().is_some() {
            return Ok(());
        }
        g.bound.retain(|_, w| w.strong_count() > 0);
        for _ in 0..AUTOBIND_NAMES {
            let n = g.next_auto;
            g.next_auto = (n + 1) % AUTOBIND_NAMES;
            let name = format!("{n:05x}").into_bytes();
            let key = (ep.ty, name.clone());
            if !g.in_use(&key) {
                ep.set_addr(UnixAddr::Abstract(name))?;
                g.bound.insert(key, Arc::downgrade(ep));
                return Ok(());
            }
        }
        Err(Errno::ENOSPC)
    }

    /// The live socket of type `ty` holding `name`.
    pub fn lookup(&self, ty: SockType, name: &[u8]) -> Option<Arc<Endpoint>> {
        self.lock()
            .bound
            .get(&(ty, name.to_vec()))
            .and_then(Weak::upgrade)
            .filter(|e| !e.is_dead())
    }

    /// Free `name` if `ep` holds it (its socket closed).
    pub fn unbind(&self, ep: &Arc<Endpoint>, name: &[u8]) {
        let mut g = self.lock();
        let key = (ep.ty, name.to_vec());
        if g.bound
            .get(&key)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(ep)))
        {
            g.bound.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_type_and_freed_on_close() {
        let ns = AbstractNamespace::default();
        let a = Endpoint::new(SockType::Stream);
        let b = Endpoint::new(SockType::Stream);
        let d = Endpoint::new(SockType::Dgram);
        assert_eq!(ns.bind(&a, b"x"), Ok(()));
        assert_eq!(ns.bind(&a, b"y"), Err(Errno::EINVAL));
        assert_eq!(ns.bind(&b, b"x"), Err(Errno::EADDRINUSE));
        assert_eq!(ns.bind(&d, b"x"), Ok(()), "another type, another namespace");
        assert!(ns.lookup(SockType::Stream, b"x").is_some());
        assert!(ns.lookup(SockType::SeqPacket, b"x").is_none());
        a.release(false);
        assert!(ns.lookup(SockType::Stream, b"x").is_none());
        assert_eq!(ns.bind(&b, b"x"), Ok(()), "a dead holder does not count");
        ns.unbind(&a, b"x");
        assert!(
            ns.lookup(SockType::Stream, b"x").is_some(),
            "not a's to free"
        );
    }

    #[test]
    fn autobind_picks_distinct_hex_names_once() {
        let ns = AbstractNamespace::default();
        let a = Endpoint::new(SockType::Dgram);
        let b = Endpoint::new(SockType::Dgram);
        ns.autobind(&a).expect("autobind");
        let first = a.addr();
        ns.autobind(&a).expect("again");
        assert_eq!(a.addr(), first, "a named socket keeps its name");
        ns.autobind(&b).expect("autobind");
        assert_ne!(a.addr(), b.addr());
        let Some(UnixAddr::Abstract(n)) = b.addr() else {
            panic!("abstract name expected");
        };
        assert_eq!(n.len(), 5);
        assert!(n.iter().all(u8::is_ascii_hexdigit));
    }
}
