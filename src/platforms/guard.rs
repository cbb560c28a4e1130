//! The private-address guard. Instance and image URLs are user input, so fedialt refuses to talk to
//! loopback, private, link-local and other non-public addresses unless the configuration allows it.
//! The check lives in the HTTP client's DNS resolver (so a public name that resolves to a private
//! address, or rebinds to one, is refused at connect time) and in its redirect policy (so a redirect
//! to such an address is refused too), plus a check of IP-literal URLs, which skip the resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::IpNetwork;

#[derive(Debug, thiserror::Error)]
#[error("refused to connect to {0}: a private, loopback or link-local address")]
pub struct Blocked(pub IpAddr);

#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    pub allow_private: bool,
    /// Networks let through even with the guard on (a home server, say).
    pub exempt: Vec<IpNetwork>,
    /// Fixed answers for names, checked like any other answer (split-horizon DNS, tests).
    pub overrides: Vec<(String, IpAddr)>,
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip) || self.exempt.iter().any(|n| n.contains(ip))
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Blocked(ip))
        }
    }

    /// Checks a URL whose host is an IP literal (those never reach the resolver).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// Whether plain http is acceptable for this URL.
    pub fn allows_http(&self, url: &url::Url) -> bool {
        if self.allow_private {
            return true;
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.exempt.iter().any(|n| n.contains(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => self.exempt.iter().any(|n| n.contains(IpAddr::V6(ip))),
            _ => false,
        }
    }
}

/// Globally routable unicast, as far as fedialt is concerned. IPv6 forms that carry an IPv4
/// address (mapped, IPv4-compatible, 6to4, Teredo, NAT64) are judged by that address, or refused
/// where it cannot be known.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: std::net::Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240) // reserved, and the broadcast address
}

fn is_public_v6(v6: std::net::Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = |hi: u16, lo: u16| {
        std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-translated ::ffff:0:a.b.c.d (stateless IPv6-to-IPv4 translation, RFC 2765).
    if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // IPv4-compatible ::a.b.c.d (deprecated, but a stack may still route it as IPv4).
    if s[..6].iter().all(|&x| x == 0) {
        return !v6.is_unspecified() && !v6.is_loopback() && is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4: 2002:AABB:CCDD::/48 carries the IPv4 address AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    // Teredo: 2001:0::/32 carries the server's IPv4 and the client's, the latter inverted.
    if s[0] == 0x2001 && s[1] == 0 {
        return is_public_v4(embedded(s[2], s[3])) && is_public_v4(embedded(!s[6], !s[7]));
    }
    !(v6.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64, well-known and local-use: may reach private v4
}

/// A resolver that refuses names resolving to addresses the policy does not permit.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = match policy
                .overrides
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(&host))
            {
                Some((_, ip)) => vec![SocketAddr::new(*ip, 0)],
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            // One bad answer refuses the name: trying the others would let a rebinding name through.
            for addr in &addrs {
                policy.check(addr.ip())?;
            }
            let iter: Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// Follows up to five redirects, never to an address the policy refuses.
pub fn redirect_policy(policy: Arc<AddressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        if !matches!(attempt.url().scheme(), "http" | "https") {
            return attempt.error("redirect to a non-web address");
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(blocked) => attempt.error(blocked),
        }
    })
}

/// Whether an error (anywhere in its source chain) is the guard's refusal.
pub fn is_blocked(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<Blocked>()
            || e.to_string()
                .contains("a private, loopback or link-local address")
        {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every range the guard refuses, with an example inside it, and public neighbours that it
    /// must let through.
    #[test]
    fn classifies_addresses() {
        let refused = [
            ("0.0.0.0/8 this network", "0.1.2.3"),
            ("10.0.0.0/8 private", "10.1.2.3"),
            ("100.64.0.0/10 shared (CGNAT)", "100.64.0.1"),
            ("100.64.0.0/10 top", "100.127.255.254"),
            ("127.0.0.0/8 loopback", "127.0.0.1"),
            ("169.254.0.0/16 link-local (metadata)", "169.254.169.254"),
            ("172.16.0.0/12 private", "172.16.0.1"),
            ("192.0.0.0/24 IETF", "192.0.0.8"),
            ("192.0.2.0/24 documentation", "192.0.2.1"),
            ("192.88.99.0/24 6to4 relay", "192.88.99.1"),
            ("192.168.0.0/16 private", "192.168.1.1"),
            ("198.18.0.0/15 benchmarking", "198.19.0.1"),
            ("198.51.100.0/24 documentation", "198.51.100.7"),
            ("203.0.113.0/24 documentation", "203.0.113.9"),
            ("224.0.0.0/4 multicast", "224.0.0.251"),
            ("240.0.0.0/4 reserved", "240.0.0.1"),
            ("255.255.255.255 broadcast", "255.255.255.255"),
            ("::/128 unspecified", "::"),
            ("::1/128 loopback", "::1"),
            ("::ffff:0:0/96 mapped loopback", "::ffff:127.0.0.1"),
            ("::ffff:0:0/96 mapped private", "::ffff:10.0.0.1"),
            ("::/96 IPv4-compatible loopback", "::127.0.0.1"),
            ("::ffff:0:0/96 IPv4-translated private", "::ffff:0:10.0.0.1"),
            (
                "::ffff:0:0/96 IPv4-translated loopback",
                "::ffff:0:127.0.0.1",
            ),
            ("::/96 IPv4-compatible metadata", "::169.254.169.254"),
            ("64:ff9b::/96 NAT64", "64:ff9b::a00:1"),
            ("64:ff9b:1::/48 local NAT64", "64:ff9b:1::1"),
            ("2001::/32 Teredo, private server", "2001:0:a00:1::1"),
            (
                "2001::/32 Teredo, loopback client",
                "2001:0:808:808:0:0:80ff:fffe",
            ),
            ("2001:db8::/32 documentation", "2001:db8::1"),
            ("2002::/16 6to4 of loopback", "2002:7f00:1::1"),
            ("2002::/16 6to4 of private", "2002:c0a8:101::1"),
            ("fc00::/7 unique local", "fd00::1"),
            ("fe80::/10 link-local", "fe80::1"),
            ("fec0::/10 site-local", "fec0::1"),
            ("ff00::/8 multicast", "ff02::1"),
        ];
        for (range, example) in refused {
            let ip: IpAddr = example.parse().unwrap();
            assert!(!is_public(ip), "{range}: {example} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2001:0:808:808:0:0:f7f7:f7f7",
        ];
        for example in public {
            assert!(is_public(example.parse().unwrap()), "{example} is public");
        }
    }

    #[test]
    fn policy_allows_and_exempts() {
        let strict = AddressPolicy::default();
        assert!(strict.check("127.0.0.1".parse().unwrap()).is_err());
        let open = AddressPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(open.check("127.0.0.1".parse().unwrap()).is_ok());
        let exempt = AddressPolicy {
            exempt: vec![IpNetwork::parse("192.168.1.10").unwrap()],
            ..Default::default()
        };
        assert!(exempt.check("192.168.1.10".parse().unwrap()).is_ok());
        assert!(exempt.check("192.168.1.11".parse().unwrap()).is_err());
        assert!(exempt.allows_http(&url::Url::parse("http://192.168.1.10:3000").unwrap()));
        assert!(!exempt.allows_http(&url::Url::parse("http://social.example").unwrap()));
    }
}
