//! The redirector's request path without the network (criterion):
//! - `lpm/100k`: longest-prefix lookup of a client address among 100,000 IPv4 and
//!   10,000 IPv6 prefixes;
//! - `decide/blob_100k`: the whole routing decision for a blob GET (path parsing and
//!   validation, region lookup, rendezvous choice among 3 nodes, Location string).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry::config::redirect::RedirectConfig;
use ferry::redirect::lpm::PrefixTable;
use ferry::redirect::{Decision, Routing};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// (cidr text, region) for 100k distinct v4 and 10k v6 prefixes over 20 regions.
fn prefixes() -> Vec<(String, usize)> {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < 100_000 {
        let len = 12 + rng.next() % 17;
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len as u8).unwrap();
        let text = net.trunc().to_string();
        if seen.insert(text.clone()) {
            out.push((text, out.len() % 20));
        }
    }
    while out.len() < 110_000 {
        let len = 32 + rng.next() % 33;
        let addr = Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(rng.next()));
        let text = ipnet::Ipv6Net::new(addr, len as u8)
            .unwrap()
            .trunc()
            .to_string();
        if seen.insert(text.clone()) {
            out.push((text, out.len() % 20));
        }
    }
    out
}

fn addresses(n: usize) -> Vec<IpAddr> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|i| {
            if i % 10 == 0 {
                IpAddr::V6(Ipv6Addr::from(
                    (u128::from(rng.next()) << 64) | u128::from(rng.next()),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            }
        })
        .collect()
}

fn lpm(c: &mut Criterion) {
    let mut table = PrefixTable::new();
    for (net, region) in prefixes() {
        let _ = table.insert(net.parse().unwrap(), region);
    }
    let addrs = addresses(4096);
    let mut g = c.benchmark_group("lpm");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("100k", |b| {
        b.iter(|| addrs.iter().filter_map(|a| table.lookup(*a)).count())
    });
    g.finish();
}

fn decide(c: &mut Criterion) {
    let mut text = String::from("upstream = \"https://registry.example\"\n");
    let mut by_region: Vec<Vec<String>> = vec![Vec::new(); 20];
    for (net, region) in prefixes() {
        by_region[region].push(net);
    }
    for (i, nets) in by_region.iter().enumerate() {
        text.push_str(&format!("[[region]]\nname = \"r{i}\"\ncidrs = {nets:?}\n"));
        for n in 0..3 {
            text.push_str(&format!(
                "[[node]]\nurl = \"http://n{n}.r{i}.example:5000\"\nregion = \"r{i}\"\n"
            ));
        }
    }
    let routing = Routing::new(RedirectConfig::from_toml(&text, "bench", None).unwrap()).unwrap();
    let addrs = addresses(4096);
    let path = format!("/v2/library/alpine/blobs/sha256:{}", "ab".repeat(32));
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("blob_100k", |b| {
        b.iter(|| {
            addrs
                .iter()
                .filter(|a| {
                    matches!(
                        routing.decide("GET", &path, None, **a, &|_| true),
                        Decision::Redirect(..)
                    )
                })
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, lpm, decide);
criterion_main!(benches);
