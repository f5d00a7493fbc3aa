//! The container's `/etc/resolv.conf` (a pod's, as its runtime binds it, or the image's
//! own): its nameservers become the DNS proxy's upstreams, and the guest gets a
//! resolv.conf of the same search domains and options that points at the proxy.

use std::net::{IpAddr, SocketAddr};

/// glibc reads at most three nameservers (MAXNS).
const MAX_NAMESERVERS: usize = 3;

/// What a resolv.conf says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// `search` domains (or the `domain` line's, without a `search` line).
    pub search: Vec<String>,
    /// `options` words, in order (ndots:5, timeout:2, …).
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parse resolv.conf text as glibc does: keyword lines, `#` or `;` comments, the
    /// last `search`/`domain` line winning, at most three nameservers; anything else is
    /// ignored.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        let mut domain = None;
        let mut search = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // An IPv6 address may carry a zone (fe80::1%eth0): not for us.
                    let addr = words.next().and_then(|a| a.split('%').next()?.parse().ok());
                    if let Some(addr) = addr {
                        if conf.nameservers.len() < MAX_NAMESERVERS {
                            conf.nameservers.push(addr);
                        }
                    }
                }
                Some("search") => {
                    search = Some(
                        words
                            .take_while(|w| !is_comment(w))
                            .map(str::to_owned)
                            .collect(),
                    );
                    domain = None;
                }
                Some("domain") => {
                    domain = words.next().filter(|w| !is_comment(w)).map(str::to_owned);
                    search = None;
                }
                Some("options") => conf
                    .options
                    .extend(words.take_while(|w| !is_comment(w)).map(str::to_owned)),
                _ => {}
            }
        }
        conf.search = match (search, domain) {
            (Some(s), _) => s,
            (None, Some(d)) => vec![d],
            (None, None) => Vec::new(),
        };
        conf
    }

    /// The upstream resolvers: every nameserver on port 53, except loopback ones (a
    /// host's `127.0.0.53` is the host's own stub; in the sandbox, loopback is the
    /// sandbox's and would send the proxy its own questions).
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter(|a| !a.is_loopback())
            .map(|a| SocketAddr::new(*a, 53))
            .collect()
    }

    /// The guest's resolv.conf naming the sandbox's DNS proxy, as bytes to write.
    pub fn for_guest_bytes(&self) -> Vec<u8> {
        self.for_guest(crate::stack::DNS_PROXY_ADDR.into())
            .into_bytes()
    }

    /// The guest's resolv.conf: the proxy at `proxy`, with these search domains and
    /// options.
    pub fn for_guest(&self, proxy: IpAddr) -> String {
        let mut out = String::from(
            "# Written by Nanovisor: the sandbox's DNS proxy enforces the DNS policy.\n",
        );
        out.push_str(&format!("nameserver {proxy}\n"));
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn is_comment(word: &str) -> bool {
    word.starts_with('#') || word.starts_with(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_resolv_conf() {
        let text = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                    nameserver 10.96.0.10\noptions ndots:5\n";
        let c = ResolvConf::parse(text);
        assert_eq!(
            c.nameservers,
            vec!["10.96.0.10".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(c.search.len(), 3);
        assert_eq!(c.options, vec!["ndots:5"]);
        assert_eq!(c.upstreams(), vec!["10.96.0.10:53".parse().expect("addr")]);
        assert_eq!(
            c.for_guest("127.0.0.53".parse().expect("ip")),
            "# Written by Nanovisor: the sandbox's DNS proxy enforces the DNS policy.\n\
             nameserver 127.0.0.53\n\
             search default.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn glibcs_rules() {
        let text = "# comment\n; other comment\nnameserver 1.1.1.1\nnameserver 2001:db8::1\n\
                    nameserver fe80::1%eth0\nnameserver 9.9.9.9\nnameserver bogus\n\
                    domain example.com\nsearch a.example b.example # trailing\n\
                    options edns0\noptions trust-ad timeout:1\n";
        let c = ResolvConf::parse(text);
        // Three at most; a zone is dropped; the fourth is ignored.
        assert_eq!(c.nameservers.len(), 3);
        assert_eq!(c.nameservers[2], "fe80::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(c.search, vec!["a.example", "b.example"]);
        assert_eq!(c.options, vec!["edns0", "trust-ad", "timeout:1"]);
        // The last of search/domain wins.
        assert_eq!(ResolvConf::parse("search a\ndomain b\n").search, vec!["b"]);
        assert_eq!(
            ResolvConf::parse("")
                .for_guest("127.0.0.53".parse().expect("ip"))
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn loopback_nameservers_are_not_upstreams() {
        let c = ResolvConf::parse("nameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n");
        assert_eq!(c.upstreams(), vec!["10.0.0.2:53".parse().expect("addr")]);
    }
}
