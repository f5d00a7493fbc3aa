//! The addresses DNS names resolved to, as seen by the DNS proxy, kept for their TTL so
//! that `to_fqdn` rules can match flows to them. Bounded: the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::names::NamePattern;

/// Most (name, address) pairs kept.
pub const MAX_LEARNED: usize = 4096;
/// Shortest time an answer is kept, whatever its TTL.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest time an answer is kept, whatever its TTL.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

#[derive(Debug)]
struct Learned {
    /// Lower case, no trailing dot.
    name: Box<str>,
    expires: Instant,
    /// When the entry was (re)learned, for eviction.
    seq: u64,
}

/// Learned (name, address) pairs, indexed by address.
///
/// Invariants: `len` is the number of entries in `by_addr`; every entry has one item in
/// `order` with its `seq` (older items for the same entry are stale and skipped);
/// `order` is sorted by `seq`.
#[derive(Debug, Default)]
pub(crate) struct FqdnCache {
    by_addr: HashMap<IpAddr, Vec<Learned>>,
    order: VecDeque<(u64, IpAddr)>,
    len: usize,
    next_seq: u64,
}

impl FqdnCache {
    /// Records that `name` (lower case, no trailing dot) resolved to `addr` (unmapped) at
    /// `now`, valid for `ttl` seconds (clamped to [`MIN_TTL`, `MAX_TTL`]).
    pub(crate) fn learn(&mut self, name: &str, addr: IpAddr, ttl: u32, now: Instant) {
        let ttl = Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
        let expires = now.checked_add(ttl).unwrap_or(now);
        let seq = self.next_seq;
        self.next_seq += 1;

        let entries = self.by_addr.entry(addr).or_default();
        let before = entries.len();
        entries.retain(|e| e.expires > now || &*e.name == name);
        self.len -= before - entries.len();
        match entries.iter_mut().find(|e| &*e.name == name) {
            Some(entry) => {
                entry.expires = entry.expires.max(expires);
                entry.seq = seq;
            }
            None => {
                entries.push(Learned {
                    name: name.into(),
                    expires,
                    seq,
                });
                self.len += 1;
            }
        }
        self.order.push_back((seq, addr));

        while self.len > MAX_LEARNED {
            self.evict_oldest();
        }
        if self.order.len() > 2 * MAX_LEARNED {
            self.compact();
        }
    }

    /// Whether `addr` (unmapped) was learned for a name `pattern` matches and has not
    /// expired at `now`.
    pub(crate) fn matches(&self, addr: IpAddr, pattern: &NamePattern, now: Instant) -> bool {
        self.by_addr.get(&addr).is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e.expires > now && pattern.matches(&e.name))
        })
    }

    /// How many pairs are held (expired ones included until they are dropped).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn evict_oldest(&mut self) {
        while let Some((seq, addr)) = self.order.pop_front() {
            let Some(entries) = self.by_addr.get_mut(&addr) else {
                continue;
            };
            let Some(i) = entries.iter().position(|e| e.seq == seq) else {
                continue; // stale: the entry was refreshed or dropped since
            };
            entries.swap_remove(i);
            self.len -= 1;
            if entries.is_empty() {
                self.by_addr.remove(&addr);
            }
            return;
        }
    }

    /// Drops the stale items of `order`.
    fn compact(&mut self) {
        let mut live: Vec<(u64, IpAddr)> = self
            .by_addr
            .iter()
            .flat_map(|(addr, entries)| entries.iter().map(|e| (e.seq, *addr)))
            .collect();
        live.sort_unstable_by_key(|(seq, _)| *seq);
        self.order = live.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn expiry_and_refresh() {
        let t0 = Instant::now();
        let pat = NamePattern::parse("*.example.test").expect("valid");
        let mut cache = FqdnCache::default();
        cache.learn("a.example.test", ip(1), 10, t0);
        assert!(cache.matches(ip(1), &pat, t0 + Duration::from_secs(9)));
        assert!(!cache.matches(ip(1), &pat, t0 + Duration::from_secs(10)));
        assert!(!cache.matches(ip(2), &pat, t0));
        cache.learn("a.example.test", ip(1), 100, t0 + Duration::from_secs(5));
        assert!(cache.matches(ip(1), &pat, t0 + Duration::from_secs(50)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn ttl_is_clamped() {
        let t0 = Instant::now();
        let pat = NamePattern::Any;
        let mut cache = FqdnCache::default();
        cache.learn("a.test", ip(1), 0, t0);
        assert!(cache.matches(ip(1), &pat, t0 + Duration::from_millis(999)));
        cache.learn("b.test", ip(2), u32::MAX, t0);
        assert!(!cache.matches(ip(2), &pat, t0 + MAX_TTL));
    }

    #[test]
    fn bounded_oldest_first() {
        let t0 = Instant::now();
        let pat = NamePattern::Any;
        let mut cache = FqdnCache::default();
        cache.learn("first.test", ip(0), 3600, t0);
        for n in 1..=MAX_LEARNED as u32 {
            // Refreshing the first entry keeps it young.
            cache.learn("first.test", ip(0), 3600, t0);
            cache.learn("x.test", ip(n), 3600, t0);
        }
        assert_eq!(cache.len(), MAX_LEARNED);
        assert!(cache.matches(ip(0), &pat, t0));
        assert!(!cache.matches(ip(1), &pat, t0));
        assert!(cache.matches(ip(MAX_LEARNED as u32), &pat, t0));
        assert!(cache.order.len() <= 2 * MAX_LEARNED + 1);
    }
}
