//! Longest-prefix match of client addresses over many CIDRs.
//!
//! One hash map per prefix length that occurs, searched from the longest length down:
//! a lookup costs at most one hash probe per distinct length (≤ 33 for IPv4, ≤ 129 for
//! IPv6, in practice a dozen or so), whatever the number of prefixes. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`) match IPv4 prefixes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;

/// Keys are masked addresses chosen by the operator, not by clients, so a fast
/// multiply-mix hash (no DoS-resistant SipHash) is safe and several times cheaper.
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type Map<K, T> = HashMap<K, T, BuildHasherDefault<AddrHasher>>;

pub struct PrefixTable<T> {
    /// (prefix length, masked address → value), longest first.
    v4: Vec<(u8, Map<u32, T>)>,
    v6: Vec<(u8, Map<u128, T>)>,
    len: usize,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
            len: 0,
        }
    }
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

fn slot<K, T>(tables: &mut Vec<(u8, Map<K, T>)>, len: u8) -> &mut Map<K, T> {
    let i = match tables.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(i) => i,
        Err(i) => {
            tables.insert(i, (len, Map::default()));
            i
        }
    };
    &mut tables[i].1
}

impl<T> PrefixTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a prefix. When the same prefix is added twice the first value stays, and
    /// the second is returned back.
    pub fn insert(&mut self, net: IpNet, value: T) -> Result<(), T> {
        let inserted = match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let key = mask4(u32::from(n.network()), len);
                let map = slot(&mut self.v4, len);
                if map.contains_key(&key) {
                    return Err(value);
                }
                map.insert(key, value);
                true
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = mask6(u128::from(n.network()), len);
                let map = slot(&mut self.v6, len);
                if map.contains_key(&key) {
                    return Err(value);
                }
                map.insert(key, value);
                true
            }
        };
        self.len += usize::from(inserted);
        Ok(())
    }

    /// The value stored for exactly `net`.
    pub fn get(&self, net: IpNet) -> Option<&T> {
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let i = self.v4.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
                self.v4[i].1.get(&mask4(u32::from(n.network()), len))
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let i = self.v6.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
                self.v6[i].1.get(&mask6(u128::from(n.network()), len))
            }
        }
    }

    /// The value of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&mask4(a, *len)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&mask6(a, *len)))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &'static str)]) -> PrefixTable<&'static str> {
        let mut t = PrefixTable::new();
        for (net, v) in entries {
            t.insert(net.parse().unwrap(), *v).unwrap();
        }
        t
    }

    #[test]
    fn longest_prefix_wins_for_v4_and_v6() {
        let t = table(&[
            ("0.0.0.0/0", "any4"),
            ("10.0.0.0/8", "ten"),
            ("10.1.0.0/16", "ten-one"),
            ("10.1.2.3/32", "host"),
            ("2001:db8::/32", "doc"),
            ("2001:db8:1::/48", "doc-1"),
        ]);
        let at = |s: &str| t.lookup(s.parse().unwrap()).copied();
        assert_eq!(at("10.1.2.3"), Some("host"));
        assert_eq!(at("10.1.2.4"), Some("ten-one"));
        assert_eq!(at("10.2.0.1"), Some("ten"));
        assert_eq!(at("192.0.2.1"), Some("any4"));
        assert_eq!(at("::ffff:10.1.9.9"), Some("ten-one"), "v4-mapped v6");
        assert_eq!(at("2001:db8:1::5"), Some("doc-1"));
        assert_eq!(at("2001:db8:2::5"), Some("doc"));
        assert_eq!(at("2001:db9::1"), None);
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn host_bits_are_ignored_and_duplicates_refused() {
        let mut t = PrefixTable::new();
        t.insert("192.0.2.77/24".parse().unwrap(), 1).unwrap();
        assert_eq!(t.insert("192.0.2.0/24".parse().unwrap(), 2), Err(2));
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), Some(&1));
        assert_eq!(t.get("192.0.2.0/24".parse().unwrap()), Some(&1));
        assert_eq!(t.get("192.0.2.0/25".parse().unwrap()), None);
    }

    #[test]
    fn many_prefixes_agree_with_a_linear_scan() {
        // 20,000 random prefixes; 2,000 random addresses; compare with brute force.
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = PrefixTable::new();
        let mut all = Vec::new();
        for i in 0..20_000u32 {
            let len = 8 + (next() % 25) as u8;
            let net = ipnet::Ipv4Net::new((next() as u32).into(), len)
                .unwrap()
                .trunc();
            if t.insert(IpNet::V4(net), i).is_ok() {
                all.push((net, i));
            }
        }
        for _ in 0..2_000 {
            let ip = std::net::Ipv4Addr::from(next() as u32);
            let want = all
                .iter()
                .filter(|(n, _)| n.contains(&ip))
                .max_by_key(|(n, _)| n.prefix_len())
                .map(|(_, v)| v);
            assert_eq!(t.lookup(IpAddr::V4(ip)), want, "{ip}");
        }
    }
}
